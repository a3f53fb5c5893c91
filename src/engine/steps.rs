//! The op -> kernel table: each layer of the model IR bound to its kernel launches ([`Step`]s),
//! for one lane's buffers. One arm per op; the kernels' `prepare` functions do the binding.

use super::GpuLayer;
use super::placement::Placement;
use crate::gpu::{Gpu, TrackedBuffer};
use crate::kernels::winograd_gemm::Scratch;
use crate::kernels::{
    Bind, Kernels, Step, across_channels, binary, conv2d, copy_block, copy_channels,
    depth_to_space, edge_clamp, elementwise, global_avg_pool, linear, matmul, nchw_to_nhwc,
    nd_binary, nd_copy, normalize, pad, pool2d, reduce, resize_filter, resize_nearest, softmax,
    space_to_depth,
};
use crate::model::{
    ElementwiseProgram, ElementwiseStep, ItemShape, Layer, LayerOp, Operand, TensorOp,
};

/// What binding a layer needs: the device, its pipelines, every value's shape and buffer.
pub(super) struct Binding<'a> {
    pub gpu: &'a Gpu,
    pub k: &'a Kernels,
    pub shapes: &'a [ItemShape],
    pub values: &'a [std::sync::Arc<TrackedBuffer>],
    /// Value -> index into `values` (buffers are shared by liveness, and by Concats done in
    /// place: `placement`).
    pub buffer_of: &'a [usize],
    pub placement: &'a Placement,
    /// Each item's [`edge_clamp::Geometry`], written per batch.
    pub geometry: &'a wgpu::Buffer,
    /// The split Winograd's scratch, shared by its layers.
    pub scratch: Option<Scratch<'a>>,
}

impl Binding<'_> {
    fn buffer(&self, v: usize) -> &wgpu::Buffer {
        &self.values[self.buffer_of[v]]
    }

    /// `v` as a channel slice of its root's buffer, for conv2d.wgsl (None: a buffer of its own).
    fn slice(&self, v: usize) -> Option<conv2d::ChannelSlice> {
        self.placement
            .channel_slice(v, self.shapes)
            .map(|(item_c, offset)| conv2d::ChannelSlice { item_c, offset })
    }

    /// Where a convolution reading `input` and writing `output` finds them.
    fn operands(&self, input: usize, output: usize, upsample: [u32; 2]) -> conv2d::Operands {
        conv2d::Operands {
            src: self.slice(input),
            dst: self.slice(output),
            upsample,
            skip_c: None,
            gate: false,
        }
    }
}

/// Every layer's steps, each with its layer's index, in order. Prepared on up to
/// [`PREPARE_THREADS`] threads, layer `i` on thread `i mod n`: preparing a step compiles its
/// kernel the first time, and lavapipe's compiler runs on the calling thread (a model's kernels
/// built on 2 cores in about half the time).
pub(super) fn all_layer_steps(
    cx: &Binding,
    gpu_layers: &[GpuLayer],
    layers: &[Layer],
) -> Vec<(usize, Step)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, PREPARE_THREADS);
    let prepare = |t: usize| -> Vec<(usize, Vec<Step>)> {
        let each = gpu_layers.iter().zip(layers).enumerate();
        each.filter(|(i, _)| i % threads == t)
            .map(|(i, (g, l))| (i, layer_steps(cx, i, g, l)))
            .collect()
    };
    let mut prepared: Vec<(usize, Vec<Step>)> = std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads)
            .map(|t| scope.spawn(move || prepare(t)))
            .collect();
        let mut all = prepare(0);
        for h in others {
            all.extend(h.join().expect("a thread preparing steps panicked"));
        }
        all
    });
    prepared.sort_by_key(|(i, _)| *i);
    prepared
        .into_iter()
        .flat_map(|(i, steps)| steps.into_iter().map(move |s| (i, s)))
        .collect()
}

/// The most threads that prepare a model's steps at once.
const PREPARE_THREADS: usize = 4;

/// The steps that run layer `l`, the model's `index`-th (with its uploaded weights `g`).
pub(super) fn layer_steps(cx: &Binding, index: usize, g: &GpuLayer, l: &Layer) -> Vec<Step> {
    let (gpu, k, shapes) = (cx.gpu, cx.k, cx.shapes);
    if let (GpuLayer::Linear(product), LayerOp::Tensor(TensorOp::MatMul { spec, .. })) = (g, &l.op)
    {
        let (a, out) = (l.inputs[0], l.output);
        let rows = linear::rows(spec).expect("uploaded as a linear product");
        let items = [a, out].map(|v| shapes[v].elements() as u32);
        let layout = linear::layout(spec, rows, items[0], items[1]);
        let bind = Bind::new(gpu, k, &l.name);
        return vec![product.prepare(bind, cx.buffer(a), cx.buffer(out), layout, None)];
    }
    if let LayerOp::Tensor(op) = &l.op {
        let constant = match g {
            GpuLayer::Constant(b) => Some(&**b),
            _ => None,
        };
        let buffer = |v: usize| -> &wgpu::Buffer { cx.buffer(v) };
        let item = |v: usize| shapes[v].elements() as u32;
        return tensor_steps(gpu, k, l, op, constant, buffer, item);
    }
    match l.op {
        LayerOp::ConcatAxis(axis) => return concat_steps(cx, l, axis),
        LayerOp::Concat => return concat_channel_steps(cx, l, &cx.placement.copies[index]),
        _ => {}
    }
    let src = cx.buffer(l.inputs[0]);
    let dst = cx.buffer(l.output);
    let s = shapes[l.inputs[0]];
    vec![match (g, &l.op) {
        (GpuLayer::Conv2d(c), _) => conv_step(cx, c, l),
        (GpuLayer::ConvTranspose2d(c), _) => {
            c.prepare(Bind::new(gpu, k, &l.name), src, dst, s.h, s.w)
        }
        (_, LayerOp::DepthToSpace(spec)) => {
            depth_to_space::prepare(Bind::new(gpu, k, &l.name), spec, src, dst, s.c, s.h, s.w)
        }
        (_, LayerOp::SpaceToDepth(block)) => {
            space_to_depth::prepare(Bind::new(gpu, k, &l.name), *block, src, dst, s)
        }
        (_, LayerOp::ResizeNearest(scale)) => {
            resize_nearest::prepare(Bind::new(gpu, k, &l.name), *scale, src, dst, s.c, s.h, s.w)
        }
        // A binary op runs as an elementwise program of one step: flat where neither operand is
        // broadcast (elementwise::is_flat).
        (_, LayerOp::Binary(op)) => {
            let (a, b) = (Operand::Input(0), Operand::Input(1));
            let program = ElementwiseProgram::new(vec![ElementwiseStep::Binary(*op, a, b)]);
            let inputs = [(src, s), (cx.buffer(l.inputs[1]), shapes[l.inputs[1]])];
            let out = shapes[l.output];
            elementwise::prepare(Bind::new(gpu, k, &l.name), &program, &inputs, out, dst)
        }
        (GpuLayer::Constant(constant), LayerOp::BinaryConst { .. }) => {
            binary_const_step(cx, l, constant)
        }
        (_, LayerOp::BinaryConst { .. }) => {
            unreachable!("constants are uploaded as GpuLayer::Constant")
        }
        (_, LayerOp::Elementwise(program)) => {
            let inputs: Vec<(&wgpu::Buffer, ItemShape)> = l
                .inputs
                .iter()
                .map(|&v| (cx.buffer(v), shapes[v]))
                .collect();
            let out = shapes[l.output];
            elementwise::prepare(Bind::new(gpu, k, &l.name), program, &inputs, out, dst)
        }
        // A unary op runs as an elementwise program of one step (flat; 4 values an invocation
        // where the item holds a multiple of 4).
        (_, LayerOp::Unary(op)) => {
            let program =
                ElementwiseProgram::new(vec![ElementwiseStep::Unary(*op, Operand::Input(0))]);
            elementwise::prepare(Bind::new(gpu, k, &l.name), &program, &[(src, s)], s, dst)
        }
        (_, LayerOp::SliceChannels { start, count }) => copy_channels::prepare(
            Bind::new(gpu, k, &l.name),
            copy_channels::ChannelCopy {
                src_c: s.c,
                src_offset: *start,
                dst_c: *count,
                dst_offset: 0,
                count: *count,
            },
            src,
            dst,
            s.h,
            s.w,
        ),
        (_, LayerOp::AcrossChannels(op)) => {
            let affine = match g {
                GpuLayer::Constant(b) => Some(&**b),
                _ => None,
            };
            across_channels::prepare(Bind::new(gpu, k, &l.name), *op, src, dst, s, affine)
        }
        (_, LayerOp::GlobalAvgPool) => {
            global_avg_pool::prepare(Bind::new(gpu, k, &l.name), src, dst, s.c, s.h * s.w)
        }
        (_, LayerOp::ResizeFilter(spec)) => {
            resize_filter::prepare(Bind::new(gpu, k, &l.name), spec, src, dst, s.c, s.h, s.w)
        }
        (_, LayerOp::Pad(spec)) => pad::prepare(Bind::new(gpu, k, &l.name), spec, src, dst, s),
        (_, LayerOp::EdgeClamp(spec)) => {
            edge_clamp::prepare(Bind::new(gpu, k, &l.name), *spec, src, dst, cx.geometry, s)
        }
        (_, LayerOp::Pool2d(spec)) => {
            pool2d::prepare(Bind::new(gpu, k, &l.name), spec, src, dst, s.c, s.h, s.w)
        }
        (_, LayerOp::Crop { .. }) => crop_step(cx, l),
        (_, LayerOp::Flatten) => {
            copy_block::prepare_flat(Bind::new(gpu, k, &l.name), s, shapes[l.output], src, dst)
        }
        (_, LayerOp::ToNhwc) => {
            let slice = cx.placement.channel_slice(l.output, shapes);
            nchw_to_nhwc::prepare_into(Bind::new(gpu, k, &l.name), src, dst, s, slice)
        }
        (_, LayerOp::Concat | LayerOp::ConcatAxis(_) | LayerOp::Tensor(_)) => {
            unreachable!("handled above")
        }
        (
            GpuLayer::Plain | GpuLayer::Constant(_) | GpuLayer::Linear(_),
            LayerOp::Conv2d(_)
            | LayerOp::Conv2dResidual { .. }
            | LayerOp::Conv2dUpsampled { .. }
            | LayerOp::Conv2dGated(_)
            | LayerOp::Conv2dProgram { .. }
            | LayerOp::ConvTranspose2d(_),
        ) => {
            unreachable!("convolutions are uploaded as GpuLayer::Conv*")
        }
    }]
}

/// A Crop: a strided block copy.
fn crop_step(cx: &Binding, l: &Layer) -> Step {
    let LayerOp::Crop {
        starts,
        ends,
        steps,
    } = &l.op
    else {
        unreachable!("a Crop layer")
    };
    let s = cx.shapes[l.inputs[0]];
    let r = crate::model::crop_axes(s, *starts, *ends, *steps);
    let block = copy_block::Block {
        src: s,
        src_offset: r.map(|a| a.start),
        src_step: r.map(|a| a.step),
        dst: cx.shapes[l.output],
        dst_offset: [0; 3],
        size: r.map(|a| a.count),
    };
    let (src, dst) = (cx.buffer(l.inputs[0]), cx.buffer(l.output));
    copy_block::prepare(Bind::new(cx.gpu, cx.k, &l.name), &block, src, dst)
}

/// A binary op of a value and a constant shared by the items (binary.wgsl).
fn binary_const_step(cx: &Binding, l: &Layer, constant: &wgpu::Buffer) -> Step {
    let LayerOp::BinaryConst {
        op,
        constant: sc,
        constant_first,
    } = &l.op
    else {
        unreachable!("a BinaryConst layer")
    };
    let value: (&wgpu::Buffer, ItemShape, bool) =
        (cx.buffer(l.inputs[0]), cx.shapes[l.inputs[0]], false);
    let constant: (&wgpu::Buffer, ItemShape, bool) = (constant, *sc, true);
    let (a, b) = if *constant_first {
        (constant, value)
    } else {
        (value, constant)
    };
    let dst = cx.buffer(l.output);
    binary::prepare_shared(Bind::new(cx.gpu, cx.k, &l.name), *op, a, b, dst)
}

/// A 1x1 convolution of a program's output (normalized over its channels where `normalize`
/// says): the program's inputs (all but a residual, the last) read by the convolution's kernel.
fn program_conv_step(
    cx: &Binding,
    c: &conv2d::Conv2dLayer,
    l: &Layer,
    program: &crate::model::ElementwiseProgram,
    (residual, normalize): (Option<crate::model::Residual>, Option<f32>),
) -> Step {
    let n = l.inputs.len() - usize::from(residual.is_some());
    let input = |v: usize| (cx.buffer(v), cx.shapes[v]);
    let x = crate::kernels::gemm::InputProgram {
        program,
        inputs: l.inputs[..n].iter().map(|&v| input(v)).collect(),
        normalize,
    };
    let skip = residual.map(|r| (l.inputs[n], r));
    // A residual of fewer channels than the output: a fused channel Pad (`fuse_residual`).
    let skip_c = skip
        .map(|(v, _)| cx.shapes[v].c)
        .filter(|&k| k < cx.shapes[l.output].c);
    let residual = skip.map(|(v, r)| (cx.buffer(v), r));
    let bind = Bind::new(cx.gpu, cx.k, &l.name);
    c.prepare_program(bind, &x, cx.buffer(l.output), residual, skip_c)
}

/// A convolution's step: its input and output where the placement put them, with its fused
/// residual or upsample.
fn conv_step(cx: &Binding, c: &conv2d::Conv2dLayer, l: &Layer) -> Step {
    if let LayerOp::Conv2dProgram {
        program,
        residual,
        normalize,
        ..
    } = &l.op
    {
        return program_conv_step(cx, c, l, program, (*residual, *normalize));
    }
    let s = cx.shapes[l.inputs[0]];
    let (residual, upsample) = match &l.op {
        LayerOp::Conv2dResidual { residual, .. } => {
            (Some((cx.buffer(l.inputs[1]), *residual)), [1, 1])
        }
        LayerOp::Conv2dUpsampled { factor, .. } => (None, *factor),
        _ => (None, [1, 1]),
    };
    let scratch = cx.scratch.as_ref().map(|s| Scratch { v: s.v, m: s.m });
    // A residual of fewer channels than the output: a fused channel Pad (`fuse_residual`).
    let skip_c = residual
        .and(l.inputs.get(1))
        .map(|&k| cx.shapes[k].c)
        .filter(|&c| c < cx.shapes[l.output].c);
    c.prepare_placed_with_scratch(
        Bind::new(cx.gpu, cx.k, &l.name),
        [cx.buffer(l.inputs[0]), cx.buffer(l.output)],
        [s.h, s.w],
        residual,
        conv2d::Operands {
            skip_c,
            gate: matches!(l.op, LayerOp::Conv2dGated(_)),
            ..cx.operands(l.inputs[0], l.output, upsample)
        },
        scratch,
    )
}

/// batch item; `constant` the layer's uploaded weights.
fn tensor_steps<'a>(
    gpu: &Gpu,
    k: &Kernels,
    l: &Layer,
    op: &TensorOp,
    constant: Option<&'a wgpu::Buffer>,
    buffer: impl Fn(usize) -> &'a wgpu::Buffer,
    item: impl Fn(usize) -> u32,
) -> Vec<Step> {
    let name = &l.name;
    let dst = buffer(l.output);
    let out_item = item(l.output);
    let constant = || constant.expect("a tensor op with weights has them uploaded");
    // Operand k of a two-input op: the constant, or the next value input.
    let mut next = l.inputs.iter();
    let mut operand = |is_constant: bool| -> (&'a wgpu::Buffer, u32) {
        if is_constant {
            (constant(), 0)
        } else {
            let v = *next.next().expect("a value input per operand");
            (buffer(v), item(v))
        }
    };
    match op {
        TensorOp::Copy(copies) => copies
            .iter()
            .map(|(from, spec)| {
                let (src, src_item) = match from {
                    Some(i) => (buffer(l.inputs[*i]), item(l.inputs[*i])),
                    None => (constant(), 0),
                };
                nd_copy::prepare(Bind::new(gpu, k, name), spec, src, src_item, dst, out_item)
            })
            .collect(),
        TensorOp::Binary { spec, constant: c } => {
            let (a, a_item) = operand(*c == Some(0));
            let (b, b_item) = operand(*c == Some(1));
            vec![nd_binary::prepare(
                Bind::new(gpu, k, name),
                spec,
                a,
                a_item,
                b,
                b_item,
                dst,
            )]
        }
        TensorOp::MatMul { spec, constant_b } => {
            let (a, a_item) = operand(false);
            let (b, b_item) = operand(*constant_b);
            vec![matmul::prepare(
                Bind::new(gpu, k, name),
                spec,
                a,
                a_item,
                b,
                b_item,
                dst,
            )]
        }
        TensorOp::Reduce(spec) => {
            let (src, _) = operand(false);
            vec![reduce::prepare(Bind::new(gpu, k, name), spec, src, dst)]
        }
        TensorOp::Softmax(spec) => {
            let (src, _) = operand(false);
            vec![softmax::prepare(Bind::new(gpu, k, name), spec, src, dst)]
        }
        TensorOp::Normalize(spec) => {
            let (src, _) = operand(false);
            vec![normalize::prepare(
                Bind::new(gpu, k, name),
                spec,
                src,
                constant(),
                dst,
            )]
        }
    }
}

/// Concat on axis 1, 2 or 3: one block copy per input.
fn concat_steps(cx: &Binding, l: &Layer, axis: usize) -> Vec<Step> {
    let (gpu, k, shapes) = (cx.gpu, cx.k, cx.shapes);
    let out = shapes[l.output];
    let mut offset = [0u32; 3];
    l.inputs
        .iter()
        .map(|&v| {
            let s = shapes[v];
            let block = copy_block::Block {
                src: s,
                src_offset: [0; 3],
                src_step: [1; 3],
                dst: out,
                dst_offset: offset,
                size: [s.c, s.h, s.w],
            };
            offset[axis - 1] += [s.c, s.h, s.w][axis - 1];
            copy_block::prepare(
                Bind::new(gpu, k, &l.name),
                &block,
                cx.buffer(v),
                cx.buffer(l.output),
            )
        })
        .collect()
}

/// Concat on channels: one channel copy per input `copies` names (the others are in place: see
/// [`Placement`]), each read from and written to where its value lies.
fn concat_channel_steps(cx: &Binding, l: &Layer, copies: &[bool]) -> Vec<Step> {
    let (gpu, k, shapes) = (cx.gpu, cx.k, cx.shapes);
    let whole = |v: usize| (shapes[v].c, 0);
    let (out_c, mut offset) = cx
        .placement
        .channel_slice(l.output, shapes)
        .unwrap_or_else(|| whole(l.output));
    l.inputs
        .iter()
        .zip(copies)
        .filter_map(|(&v, &copy)| {
            let s = shapes[v];
            let dst_offset = offset;
            offset += s.c;
            copy.then_some((v, s, dst_offset))
        })
        .map(|(v, s, dst_offset)| {
            let (src_c, src_offset) = cx
                .placement
                .channel_slice(v, shapes)
                .unwrap_or_else(|| whole(v));
            let copy = copy_channels::ChannelCopy {
                src_c,
                src_offset,
                dst_c: out_c,
                dst_offset,
                count: s.c,
            };
            copy_channels::prepare(
                Bind::new(gpu, k, &l.name),
                copy,
                cx.buffer(v),
                cx.buffer(l.output),
                s.h,
                s.w,
            )
        })
        .collect()
}
