//! The engine's model: a list of layers over numbered values, imported from ONNX.
//!
//! Value 0 is the model input, `[N, C, H, W]` with N and the spatial size free at run time.

use anyhow::{Result, bail};

pub mod activation;
pub mod elementwise;
pub mod limits;
pub mod ops;
pub mod shape;

pub use activation::Activation;
pub use elementwise::*;
pub use ops::*;
pub use shape::*;

pub type ValueId = usize;

#[derive(Clone, Debug)]
pub enum LayerOp {
    Conv2d(Conv2dSpec),
    /// A dense convolution of `inputs[0]` with the Add that followed it fused in: `inputs[1]`
    /// (of the output's shape) is added after the last input chunk, before or after the
    /// activation.
    Conv2dResidual {
        spec: Conv2dSpec,
        residual: Residual,
    },
    /// A dense convolution of `inputs[0]` upsampled (nearest) by whole `factor`s (height,
    /// width): a `ResizeNearest` fused in (`passes::fuse_upsample`). The kernel reads input
    /// pixel `(y / f, x / f)`; the upsampled value is never stored.
    Conv2dUpsampled {
        spec: Conv2dSpec,
        factor: [u32; 2],
    },
    /// A 1x1 convolution (one gemm.wgsl runs) of `program`'s output, the program over the
    /// layer's first inputs (all but a residual's): the kernel computes each input value of the
    /// convolution from the program's inputs as it loads them, so the program's output is never
    /// stored (`passes::fuse_conv_input`). With a `residual`, the last input is added after the
    /// product, before or after the activation. The program's inputs each have the output's
    /// size (or are a channel slice of a map of that size) or are one value a channel
    /// (`c x 1 x 1`, squeeze-and-excitation's scales). A program of no steps is its first input.
    /// With `normalize` (an epsilon), the program's output is normalized over its channels at
    /// each pixel before the product, `(x - mean) / sqrt(var + epsilon)` (a layer norm's
    /// `AcrossChannels::Normalize` fused in by `passes::fuse_norm_conv`).
    Conv2dProgram {
        spec: Conv2dSpec,
        program: ElementwiseProgram,
        residual: Option<Residual>,
        normalize: Option<f32>,
    },
    /// A depthwise convolution of `2c` channels whose output's two halves are multiplied
    /// (NAFNet's SimpleGate, fused in by `passes::fuse_gate`): output channel `k` is
    /// `conv_k * conv_{k + c}`, `c` channels stored. The kernel computes both halves of a pixel
    /// block; the `2c`-channel output is never stored.
    Conv2dGated(Conv2dSpec),
    ConvTranspose2d(ConvTranspose2dSpec),
    DepthToSpace(DepthToSpaceSpec),
    /// Blocks of `[bh, bw]` pixels to channels, in ONNX SpaceToDepth's order (output channel
    /// `(by * bw + bx) * C + c`); rows and columns past the last whole block dropped. A strided
    /// patch convolution's input (`passes::patch_conv`).
    SpaceToDepth([u32; 2]),
    /// Nearest-neighbour upscale by whole factors (height, width).
    ResizeNearest([u32; 2]),
    /// Elementwise op of two values with broadcasting.
    Binary(BinaryOp),
    /// Elementwise op of a value and a constant (the layer's `weights`) of shape `constant`,
    /// shared by all items; `constant_first` for `constant op value`.
    BinaryConst {
        op: BinaryOp,
        constant: ItemShape,
        constant_first: bool,
    },
    /// Elementwise activation or affine map of one value.
    Unary(UnaryOp),
    /// A tree of elementwise ops over the inputs (broadcast to the output's shape) as one kernel
    /// (made by `passes::fuse_elementwise`).
    Elementwise(ElementwiseProgram),
    /// Concatenation of all inputs on the channel axis.
    Concat,
    /// Channels `start .. start + count` of the input.
    SliceChannels {
        start: u32,
        count: u32,
    },
    /// The mean of each channel: `[C, H, W] -> [C, 1, 1]`.
    GlobalAvgPool,
    /// A reduction over the channels, or each pixel's channels normalized.
    AcrossChannels(AcrossChannels),
    /// Bilinear resize.
    ResizeFilter(ResizeFilterSpec),
    Pad(PadSpec),
    /// A copy of the input with each item's pixels outside its image replaced by the image's
    /// edge, from the batch's per-item geometry (a chain's step input; see [`EdgeClampSpec`]).
    EdgeClamp(EdgeClampSpec),
    Pool2d(Pool2dSpec),
    /// NCHW -> NHWC, stored flat: `[C, H, W] -> [H * W * C, 1, 1]`.
    ToNhwc,
    /// Concatenation on axis 1, 2 or 3 (channels, height, width).
    ConcatAxis(usize),
    /// A block of the input: per axis (c, h, w) ONNX Slice `start` / `end` / `step` (negative
    /// from the end, clamped as ONNX does; a negative step walks backwards).
    Crop {
        starts: [i64; 3],
        ends: [i64; 3],
        steps: [i64; 3],
    },
    /// The same elements in order, as `[C * H * W, 1, 1]` (Flatten from axis 1, Reshape to
    /// `[N, K]`).
    Flatten,
    /// An op on tensors of any rank whose shapes were fixed at import (see [`TensorOp`]).
    Tensor(TensorOp),
}

/// Ops on general tensors, lowered by the static importer with every shape known: each op
/// carries its dims, and values are plain row-major buffers.
#[derive(Clone, Debug)]
pub enum TensorOp {
    /// Strided copies into the output, in order: each from `layer.inputs[k]`, or (None) from the
    /// layer's constant `weights`, shared by every item.
    Copy(Vec<(Option<usize>, CopySpec)>),
    /// `a op b`; `constant` names the operand (0 or 1) that is the layer's `weights`.
    Binary {
        spec: NdBinarySpec,
        constant: Option<usize>,
    },
    Reduce(ReduceSpec),
    Softmax(SoftmaxSpec),
    /// `constant_b`: B is the layer's `weights`.
    MatMul {
        spec: MatMulSpec,
        constant_b: bool,
    },
    /// Scales then biases in the layer's `weights`.
    Normalize(NormSpec),
}

impl LayerOp {
    /// The op's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerOp::Conv2d(s) if s.is_depthwise() => "depthwise Conv",
            LayerOp::Conv2d(_) => "Conv",
            LayerOp::Conv2dResidual { .. } => "Conv + Add",
            LayerOp::Conv2dUpsampled { .. } => "Resize + Conv",
            LayerOp::Conv2dGated(_) => "depthwise Conv + gate",
            LayerOp::Conv2dProgram {
                normalize: Some(_), ..
            } => "a norm over channels + Conv",
            LayerOp::Conv2dProgram { .. } => "elementwise ops + Conv",
            LayerOp::ConvTranspose2d(_) => "ConvTranspose",
            LayerOp::DepthToSpace(_) => "DepthToSpace",
            LayerOp::SpaceToDepth(_) => "SpaceToDepth",
            LayerOp::ResizeNearest(_) | LayerOp::ResizeFilter(_) => "Resize",
            LayerOp::Binary(_) | LayerOp::BinaryConst { .. } => "a binary op",
            LayerOp::Unary(_) => "an elementwise op",
            LayerOp::Elementwise(_) => "fused elementwise ops",
            LayerOp::Concat | LayerOp::ConcatAxis(_) => "Concat",
            LayerOp::SliceChannels { .. } | LayerOp::Crop { .. } => "Slice",
            LayerOp::GlobalAvgPool => "GlobalAveragePool",
            LayerOp::AcrossChannels(AcrossChannels::Reduce(_)) => "a reduction over channels",
            LayerOp::AcrossChannels(AcrossChannels::Normalize { .. }) => "a norm over channels",
            LayerOp::Pad(_) => "Pad",
            LayerOp::EdgeClamp(_) => "edge clamp",
            LayerOp::Pool2d(_) => "Pool",
            LayerOp::ToNhwc => "Transpose",
            LayerOp::Flatten => "Flatten",
            LayerOp::Tensor(_) => "a general tensor op",
        }
    }
}

/// Where a value's pixels lie in the image: value pixel `x` of an item is image pixel
/// `scale * x0 + lost + x`, `x0` being the item's first input pixel (its tile's corner minus the
/// context), `scale` the value's pixels per input pixel and `lost` the value pixels the layers
/// before it lost at each border (padding-free convolutions; negative where a step before padded
/// its input beyond the tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeClampSpec {
    pub scale: u32,
    pub lost: i32,
    /// Pixels cut off each border (the context the steps before this one needed), or added at
    /// each border where negative (a step padding its own input on a tile that covers its whole
    /// image, see [`crate::chain::Tiling::WholeImages`]).
    pub cut: i32,
}

impl EdgeClampSpec {
    /// The output for an input of shape `s`, if anything is left of it.
    pub fn output(&self, s: ItemShape) -> ItemShape {
        let side = |n: u32| (i64::from(n) - 2 * i64::from(self.cut)).clamp(0, i64::from(u32::MAX));
        ItemShape {
            c: s.c,
            h: side(s.h) as u32,
            w: side(s.w) as u32,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Layer {
    /// The node's name in the source file, for errors and profiles.
    pub name: String,
    pub op: LayerOp,
    /// The values the layer reads: one, or two for a binary op.
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
    /// Weights in the source layout (OIHW for Conv, IOHW for ConvTranspose).
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Layer {
    /// Multiply-adds of one item, the model's value shapes given (0 for layers without).
    pub fn macs(&self, shapes: &[ItemShape]) -> u64 {
        let Some(s) = self.inputs.first().and_then(|&v| shapes.get(v)) else {
            return 0;
        };
        match &self.op {
            LayerOp::Conv2d(spec)
            | LayerOp::Conv2dResidual { spec, .. }
            | LayerOp::Conv2dGated(spec)
            | LayerOp::Conv2dProgram { spec, .. } => spec.macs(s.h, s.w),
            LayerOp::Conv2dUpsampled { spec, factor } => {
                spec.macs(s.h * factor[0], s.w * factor[1])
            }
            LayerOp::ConvTranspose2d(spec) => spec.macs(s.h, s.w),
            LayerOp::Tensor(TensorOp::MatMul { spec, .. }) => spec.count() as u64 * spec.k as u64,
            _ => 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Model {
    pub name: String,
    pub input_name: String,
    pub output_name: String,
    pub input_channels: u32,
    pub output_channels: u32,
    pub layers: Vec<Layer>,
    pub output: ValueId,
    /// Further outputs read after the batch (a detector's scores beside its boxes).
    pub extra_outputs: Vec<ValueId>,
    /// The scale (to the input) of each of the first `extra_outputs` that is an RGB image with
    /// values in 0..=255 (a chain's kept steps, `--keep-steps`): the runner unpacks them to
    /// pixels beside the output. Empty for every other model.
    pub image_outputs: Vec<u32>,
    pub value_count: usize,
    pub opset: i64,
    /// Every value's shape, for models lowered with a fixed input shape (general tensors);
    /// None: shapes follow the input's height and width.
    pub static_shapes: Option<Vec<ItemShape>>,
    /// The file's input is channels-last (NHWC); the engine feeds value 0 as NCHW and the
    /// lowering took care of the layout.
    pub nhwc_input: bool,
    /// The output is an image to write (a user's image-to-image model): 1 channel (grey) and
    /// 4 (RGBA) are unpacked to pixels as 3 (RGB) always are ([`Model::unpacks_output`]). Off,
    /// a 1-channel output (a fixed-input model's mask) is read as floats.
    pub image_output: bool,
}

impl Model {
    /// Whether a runner turns an output of shape `out` into pixels: 3 channels always (RGB),
    /// 1 (grey) and 4 (RGBA) where the model's output is an image ([`Model::image_output`]).
    pub fn unpacks_output(&self, out: ItemShape) -> bool {
        out.c == 3 || (self.image_output && matches!(out.c, 1 | 4))
    }

    /// The shape of every value for an input of `h x w`, or an error naming the layer that does not fit.
    pub fn shapes(&self, h: u32, w: u32) -> Result<Vec<ItemShape>> {
        if let Some(shapes) = &self.static_shapes {
            let input = shapes[0];
            if (input.h, input.w) != (h, w) {
                bail!(
                    "{} takes a fixed input of {}x{}x{}, not {h}x{w}",
                    self.name,
                    input.c,
                    input.h,
                    input.w
                );
            }
            return Ok(shapes.clone());
        }
        let mut shapes = vec![None; self.value_count];
        shapes[0] = Some(ItemShape {
            c: self.input_channels,
            h,
            w,
        });
        for layer in &self.layers {
            let inputs: Vec<ItemShape> = layer
                .inputs
                .iter()
                .map(|&v| shapes[v])
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    anyhow::anyhow!("layer {} reads a value before it is computed", layer.name)
                })?;
            if let LayerOp::Tensor(_) = layer.op {
                bail!(
                    "layer {} is a general tensor op, which only static models hold",
                    layer.name
                );
            }
            let out = layer_output(&layer.op, &inputs);
            let Some(out) = out else {
                bail!(
                    "layer {} cannot take inputs of {:?}",
                    layer.name,
                    inputs
                        .iter()
                        .map(|s| format!("{}x{}x{}", s.c, s.h, s.w))
                        .collect::<Vec<_>>()
                );
            };
            if !limits::fits(out) {
                bail!(
                    "layer {} would compute {}x{}x{} per item, beyond batchwise's limits ({} px \
                     a side, {} elements); try a smaller input or tile",
                    layer.name,
                    out.c,
                    out.h,
                    out.w,
                    limits::MAX_SIDE,
                    limits::MAX_ELEMENTS
                );
            }
            shapes[layer.output] = Some(out);
        }
        // Values no kept layer computes (pruned heads) have no shape and no buffer.
        Ok(shapes
            .into_iter()
            .map(|s| s.unwrap_or(ItemShape { c: 0, h: 0, w: 0 }))
            .collect())
    }

    /// Whether a layer takes the mean over a whole map (GlobalAveragePool: a channel attention)
    /// where the map is not the single pixel of every item: the output of a model run on tiles
    /// then depends on the tiles. A model that fixes its shapes at a map of one pixel does not.
    pub fn means_over_the_map(&self) -> bool {
        let one_pixel = |v: ValueId| {
            self.static_shapes
                .as_ref()
                .is_some_and(|s| s.get(v).is_some_and(|s| s.h * s.w == 1))
        };
        self.layers
            .iter()
            .any(|l| matches!(l.op, LayerOp::GlobalAvgPool) && !one_pixel(l.inputs[0]))
    }

    /// How many layers read `v`, plus one if it is an output of the model.
    pub fn readers(&self, v: ValueId) -> usize {
        self.layers.iter().filter(|l| l.inputs.contains(&v)).count()
            + usize::from(self.output == v || self.extra_outputs.contains(&v))
    }

    /// The index of the layer that computes `v`.
    pub fn producer(&self, v: ValueId) -> Option<usize> {
        self.layers.iter().position(|l| l.output == v)
    }

    /// Bytes of all weights and biases as float32.
    pub fn weight_bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| 4 * (l.weights.len() + l.bias.len()) as u64)
            .sum()
    }

    /// Multiply-adds for one item of `h x w`.
    pub fn macs_per_item(&self, h: u32, w: u32) -> Result<u64> {
        let shapes = self.shapes(h, w)?;
        Ok(self.layers.iter().map(|l| l.macs(&shapes)).sum())
    }
}

/// A layer's output shape for inputs of `inputs` (the first the main one), or None where they do
/// not fit the op. General tensor ops (fixed shapes only) have none.
fn layer_output(op: &LayerOp, inputs: &[ItemShape]) -> Option<ItemShape> {
    let input = *inputs.first()?;
    match op {
        LayerOp::Conv2d(s) => {
            s.output_hw(input.h, input.w)
                .map(|(h, w)| ItemShape { c: s.out_c, h, w })
        }
        LayerOp::Conv2dResidual { spec, .. } => residual_output(spec, input, inputs.get(1)),
        LayerOp::Conv2dGated(s) => s
            .output_hw(input.h, input.w)
            .filter(|_| s.out_c.is_multiple_of(2))
            .map(|(h, w)| ItemShape {
                c: s.out_c / 2,
                h,
                w,
            }),
        LayerOp::Conv2dProgram {
            spec,
            program,
            residual,
            ..
        } => program_output(spec, program, residual.is_some(), inputs),
        LayerOp::Conv2dUpsampled { spec, factor } => input
            .h
            .checked_mul(factor[0])
            .zip(input.w.checked_mul(factor[1]))
            .and_then(|(h, w)| spec.output_hw(h, w))
            .map(|(h, w)| ItemShape {
                c: spec.out_c,
                h,
                w,
            }),
        LayerOp::ConvTranspose2d(s) => {
            s.output_hw(input.h, input.w)
                .map(|(h, w)| ItemShape { c: s.out_c, h, w })
        }
        LayerOp::DepthToSpace(s) => s
            .output_chw(input.c, input.h, input.w)
            .map(|(c, h, w)| ItemShape { c, h, w }),
        LayerOp::SpaceToDepth(block) => {
            let out = crate::kernels::space_to_depth::output(input, *block);
            (out.h > 0 && out.w > 0).then_some(out)
        }
        LayerOp::ResizeNearest([sh, sw]) => Some(ItemShape {
            c: input.c,
            h: input.h * sh,
            w: input.w * sw,
        }),
        LayerOp::Binary(_) => inputs.iter().try_fold(input, |out, &s| broadcast(out, s)),
        LayerOp::Elementwise(program) => program.output_shape(inputs),
        LayerOp::BinaryConst { constant, .. } => broadcast(input, *constant),
        LayerOp::Unary(_) => Some(input),
        LayerOp::EdgeClamp(spec) => {
            let out = spec.output(input);
            (out.h > 0 && out.w > 0).then_some(out)
        }
        LayerOp::Concat => concat_shape(inputs, 1),
        LayerOp::ResizeFilter(spec) => {
            let (h, w) = spec.output_hw(input.h, input.w);
            (h > 0 && w > 0).then_some(ItemShape { c: input.c, h, w })
        }
        LayerOp::Pad(spec) => Some(spec.output(input)),
        LayerOp::ConcatAxis(axis) => concat_shape(inputs, *axis),
        LayerOp::Crop {
            starts,
            ends,
            steps,
        } => {
            let r = crop_axes(input, *starts, *ends, *steps);
            r.iter().all(|a| a.count > 0).then(|| ItemShape {
                c: r[0].count,
                h: r[1].count,
                w: r[2].count,
            })
        }
        LayerOp::Flatten | LayerOp::ToNhwc => Some(ItemShape {
            c: input.c * input.h * input.w,
            h: 1,
            w: 1,
        }),
        LayerOp::Pool2d(spec) => {
            spec.output_hw(input.h, input.w)
                .map(|(h, w)| ItemShape { c: input.c, h, w })
        }
        LayerOp::GlobalAvgPool => Some(ItemShape {
            c: input.c,
            h: 1,
            w: 1,
        }),
        LayerOp::AcrossChannels(op) => Some(op.output(input)),
        LayerOp::SliceChannels { start, count } => {
            (start.checked_add(*count).is_some_and(|end| end <= input.c))
                .then_some(ItemShape { c: *count, ..input })
        }
        LayerOp::Tensor(_) => None,
    }
}

/// The shape of `inputs` concatenated on `axis` (1 channels, 2 height, 3 width): None where the
/// other dims differ or the sum overflows.
fn concat_shape(inputs: &[ItemShape], axis: usize) -> Option<ItemShape> {
    let first = *inputs.first()?;
    let dim = |s: &ItemShape, a: usize| [s.c, s.h, s.w][a - 1];
    let same = inputs
        .iter()
        .all(|s| (1..=3).all(|a| a == axis || dim(s, a) == dim(&first, a)));
    let total = inputs
        .iter()
        .try_fold(0u32, |t, s| t.checked_add(dim(s, axis)));
    let mut d = [first.c, first.h, first.w];
    d[axis - 1] = total.filter(|_| same)?;
    Some(ItemShape {
        c: d[0],
        h: d[1],
        w: d[2],
    })
}

/// The output of a 1x1 convolution of `program`'s output over `inputs` (a residual the last,
/// where `residual`); None where the program's inputs broadcast otherwise than the kernel reads
/// (laid out as x, or one value a channel or an item) or the residual does not fit.
fn program_output(
    spec: &Conv2dSpec,
    program: &ElementwiseProgram,
    residual: bool,
    inputs: &[ItemShape],
) -> Option<ItemShape> {
    let n = inputs.len() - usize::from(residual);
    let read = |k: usize| program.read_shape(k, inputs[k]);
    let x = program.output_shape(&inputs[..n])?;
    // The kernel reads each input as x (whole or a channel slice, all such stored with as many
    // channels: x's item stride) or one value a channel or an item.
    let whole: Vec<usize> = (0..n).filter(|&k| read(k) == x).collect();
    let point = |s: ItemShape| (s.h, s.w) == (1, 1) && (s.c == x.c || s.c == 1);
    let readable = program.padded_channels.iter().all(|&c| c == 0)
        && whole.iter().all(|&k| inputs[k].c == inputs[whole[0]].c)
        && (0..n).all(|k| whole.contains(&k) || point(read(k)));
    if whole.is_empty() || !readable {
        return None;
    }
    if residual {
        return residual_output(spec, x, inputs.last());
    }
    let (h, w) = spec.output_hw(x.h, x.w)?;
    Some(ItemShape {
        c: spec.out_c,
        h,
        w,
    })
}

/// The output of a convolution with a fused residual `skip`: the output's shape, or fewer
/// channels of it (a fused channel Pad, the rest 0); None where the skip does not fit.
fn residual_output(
    spec: &Conv2dSpec,
    input: ItemShape,
    skip: Option<&ItemShape>,
) -> Option<ItemShape> {
    let (h, w) = spec.output_hw(input.h, input.w)?;
    let fits = skip.is_some_and(|k| (k.h, k.w) == (h, w) && k.c > 0 && k.c <= spec.out_c);
    fits.then_some(ItemShape {
        c: spec.out_c,
        h,
        w,
    })
}
