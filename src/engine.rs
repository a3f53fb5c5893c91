//! The engine: a model's weights on the GPU, and [`BatchRunner`]s that run N tiles per submit.
//!
//! A batch is recorded as one command encoder and one submit: pack (8-bit pixels -> float tensor),
//! every layer, unpack (float -> 8-bit), and the copy to the read-back buffer.

use std::cell::Cell;
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};

use crate::gpu::{AdapterChoice, Gpu, TrackedBuffer};
use crate::kernels::conv_transpose2d::ConvTranspose2dLayer;
use crate::kernels::conv2d::Conv2dLayer;
use crate::kernels::pack::{PixelDepth, PixelMapping};
use crate::kernels::{
    Kernels, Precision, Step, binary, copy_block, copy_channels, depth_to_space, global_avg_pool,
    matmul, nchw_to_nhwc, nd_binary, nd_copy, normalize, pack, pad, pool2d, reduce, resize_filter,
    resize_nearest, softmax, unary, unpack,
};
use crate::model::{ItemShape, LayerOp, Model, TensorOp};

/// The GPU could not allocate or run what a batch needs; a smaller batch may fit.
#[derive(Debug)]
pub struct OutOfMemory(pub String);

impl std::fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OutOfMemory {}

/// Whether `e` is (or wraps) an [`OutOfMemory`].
pub fn is_out_of_memory(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<OutOfMemory>())
}

/// Fault injection for tests of the out-of-memory paths: with `BATCHWISE_FAIL_BATCHES_ABOVE=N`
/// allocating a batch runner of more than N items fails as if the GPU were out of memory, with
/// `BATCHWISE_FAIL_RUNS_ABOVE=N` running a batch of more than N items does.
fn injected_out_of_memory(var: &str, items: u32) -> Option<OutOfMemory> {
    let limit: u32 = std::env::var(var).ok()?.parse().ok()?;
    (items > limit).then(|| {
        OutOfMemory(format!(
            "out of memory for a batch of {items} (injected by {var}={limit})"
        ))
    })
}

/// A device with its compiled pipelines.
pub struct Engine {
    pub gpu: Arc<Gpu>,
    kernels: Kernels,
    /// The float16 pipelines, compiled on first use.
    kernels_f16: std::sync::OnceLock<Kernels>,
}

enum GpuLayer {
    Conv2d(Conv2dLayer),
    ConvTranspose2d(ConvTranspose2dLayer),
    /// The constant operand of a BinaryConst or a tensor op.
    Constant(TrackedBuffer),
    /// Ops without weights: everything they need is in the model's layer.
    Plain,
}

/// A model whose weights live on the GPU.
pub struct GpuModel {
    pub model: Arc<Model>,
    /// The element type of its activations.
    pub precision: Precision,
    layers: Vec<GpuLayer>,
    /// Bytes of the uploaded (packed) weights.
    pub weight_bytes: u64,
}

impl Engine {
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        let gpu = Arc::new(Gpu::new(choice)?);
        let kernels = Kernels::new(&gpu);
        Ok(Self {
            gpu,
            kernels,
            kernels_f16: Default::default(),
        })
    }

    /// The compiled float32 pipelines (and their tunable settings).
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// The pipelines for activations of `precision`.
    pub fn kernels_for(&self, precision: Precision) -> &Kernels {
        match precision {
            Precision::F32 => &self.kernels,
            Precision::F16 => self.kernels_f16.get_or_init(|| {
                let k = Kernels::with_precision(&self.gpu, Precision::F16);
                k.set_conv_rows(self.kernels.conv_rows());
                k
            }),
        }
    }

    /// Uploads a model's weights, for float32 activations.
    pub fn load(&self, model: Arc<Model>) -> Result<GpuModel> {
        self.load_with(model, Precision::F32)
    }

    /// Uploads a model's weights for activations of `precision`; float16 needs the adapter's
    /// SHADER_F16 and kernels for every op of the model.
    pub fn load_with(&self, model: Arc<Model>, precision: Precision) -> Result<GpuModel> {
        if precision == Precision::F16 {
            if !self
                .gpu
                .device
                .features()
                .contains(wgpu::Features::SHADER_F16)
            {
                bail!(
                    "float16 needs the adapter's SHADER_F16, which this one lacks; run in float32"
                );
            }
            if let Some(l) = model.layers.iter().find(|l| !float16_supported(&l.op)) {
                bail!(
                    "float16: layer {} ({}) has no float16 kernel yet; run {} in float32",
                    l.name,
                    l.op.kind(),
                    model.name
                );
            }
        }
        let gpu = &self.gpu;
        let before = gpu.ledger.in_use_bytes();
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let layers: Vec<GpuLayer> = model
            .layers
            .iter()
            .map(|l| match &l.op {
                LayerOp::Conv2d(s) | LayerOp::Conv2dResidual { spec: s, .. } => GpuLayer::Conv2d(
                    Conv2dLayer::upload(gpu, &l.name, s.clone(), &l.weights, &l.bias),
                ),
                LayerOp::ConvTranspose2d(s) => GpuLayer::ConvTranspose2d(
                    ConvTranspose2dLayer::upload(gpu, &l.name, s.clone(), &l.weights, &l.bias),
                ),
                // A binary op's constant is read as an activation: float16 in a float16 model.
                LayerOp::BinaryConst { .. } if precision == Precision::F16 => {
                    let mut bytes: Vec<u8> = l
                        .weights
                        .iter()
                        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                        .collect();
                    bytes.resize(bytes.len().next_multiple_of(4), 0);
                    GpuLayer::Constant(gpu.create_buffer_init(
                        &l.name,
                        &bytes,
                        wgpu::BufferUsages::STORAGE,
                    ))
                }
                LayerOp::BinaryConst { .. } | LayerOp::Tensor(_) if !l.weights.is_empty() => {
                    GpuLayer::Constant(gpu.create_buffer_init(
                        &l.name,
                        bytemuck::cast_slice(&l.weights),
                        wgpu::BufferUsages::STORAGE,
                    ))
                }
                _ => GpuLayer::Plain,
            })
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!(
                "the GPU ran out of memory loading the weights of {}: {e}",
                model.name
            );
        }
        let weight_bytes = gpu.ledger.in_use_bytes().saturating_sub(before);
        Ok(GpuModel {
            model,
            precision,
            layers,
            weight_bytes,
        })
    }
}

/// Whether an op has a float16 kernel: every op of the image lowering but the gather
/// ConvTranspose (strided ones run as a phase convolution, which has one), and none of the general
/// tensor ops yet.
pub fn float16_supported(op: &LayerOp) -> bool {
    !matches!(op, LayerOp::ConvTranspose2d(_) | LayerOp::Tensor(_))
}

/// Bytes a batch of `items` needs for activations of `precision`, as the runner allocates them
/// (liveness reuse).
pub fn activation_bytes(
    model: &Model,
    shapes: &[ItemShape],
    items: u32,
    precision: Precision,
) -> u64 {
    plan_buffers(model, shapes, items, precision).iter().sum()
}

/// What a batch will hold on the GPU, known before anything is allocated.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct MemoryPlan {
    /// Weights as the kernels store them (blocked, padded), shared by every batch.
    pub weight_bytes: u64,
    /// Activations (after liveness reuse) plus pixel and read-back buffers, per batch item.
    pub bytes_per_item: u64,
    /// Peak activation bytes of one item alone (the largest set of values alive at once).
    pub activation_bytes_per_item: u64,
    pub items: u32,
}

impl MemoryPlan {
    /// Everything: weights plus `items` items. Uniform parameter records (a few KiB) are not
    /// counted.
    pub fn total_bytes(&self) -> u64 {
        self.weight_bytes + self.bytes_per_item * self.items as u64
    }
}

/// Plans a batch of `items` tiles of `h x w` for `model` whose weights are on the GPU.
pub fn plan(model: &GpuModel, h: u32, w: u32, items: u32) -> Result<MemoryPlan> {
    let (activations, io) = item_bytes(&model.model, h, w, model.precision)?;
    Ok(MemoryPlan {
        weight_bytes: model.weight_bytes,
        bytes_per_item: activations + io,
        activation_bytes_per_item: activations,
        items,
    })
}

/// Bytes one batch item of `h x w` needs on the GPU, known from the model alone: activations
/// (after liveness reuse) and pixel buffers (8-bit pixels in; for image outputs, pixels out and
/// two read-back copies for two batches in flight: 4 bytes per pixel each). 16-bit pixels
/// ([`PixelDepth::Sixteen`]) need twice the pixel bytes.
pub fn item_bytes(model: &Model, h: u32, w: u32, precision: Precision) -> Result<(u64, u64)> {
    let shapes = model.shapes(h, w)?;
    let activations = activation_bytes(model, &shapes, 1, precision);
    let out = shapes[model.output];
    let out_pixels = if out.c == 3 { 12 } else { 0 } * (out.h as u64 * out.w as u64);
    Ok((activations, 4 * (h as u64 * w as u64) + out_pixels))
}

/// Assigns each value to a buffer, reusing a buffer once its value is no longer read.
/// Returns the buffer sizes; `assign_values` gives the value -> buffer mapping.
fn plan_buffers(model: &Model, shapes: &[ItemShape], items: u32, precision: Precision) -> Vec<u64> {
    assign_values(model, shapes, items, precision).1
}

fn assign_values(
    model: &Model,
    shapes: &[ItemShape],
    items: u32,
    precision: Precision,
) -> (Vec<usize>, Vec<u64>) {
    // At least one element (an empty tensor still needs a bindable buffer), in whole 4 bytes.
    let bytes = |v: usize| {
        (shapes[v].elements().max(1) * precision.bytes() * items as u64).next_multiple_of(4)
    };
    let mut last_read = vec![0usize; model.value_count];
    for (i, l) in model.layers.iter().enumerate() {
        for &v in &l.inputs {
            last_read[v] = i;
        }
    }
    let mut sizes: Vec<u64> = vec![bytes(0)];
    let mut free: Vec<usize> = Vec::new();
    let mut buffer_of = vec![usize::MAX; model.value_count];
    buffer_of[0] = 0;
    for (i, l) in model.layers.iter().enumerate() {
        let need = bytes(l.output);
        // Best fit among free buffers, growing the largest one if none fits.
        let pick = free
            .iter()
            .enumerate()
            .filter(|(_, b)| sizes[**b] >= need)
            .min_by_key(|(_, b)| sizes[**b])
            .map(|(k, _)| k)
            .or_else(|| {
                free.iter()
                    .enumerate()
                    .max_by_key(|(_, b)| sizes[**b])
                    .map(|(k, _)| k)
            });
        let buf = match pick {
            Some(k) => {
                let b = free.swap_remove(k);
                sizes[b] = sizes[b].max(need);
                b
            }
            None => {
                sizes.push(need);
                sizes.len() - 1
            }
        };
        buffer_of[l.output] = buf;
        let mut dead: Vec<usize> = l
            .inputs
            .iter()
            .filter(|&&v| {
                last_read[v] == i && v != model.output && !model.extra_outputs.contains(&v)
            })
            .map(|&v| buffer_of[v])
            .collect();
        dead.sort_unstable();
        dead.dedup();
        free.extend(dead);
    }
    (buffer_of, sizes)
}

/// Buffers and recorded steps for batches of up to `max_items` tiles of one size.
///
/// A batch is split into lanes when one buffer for all its items would exceed the adapter's
/// storage binding limit (128 MiB on many devices): each lane holds its own buffers for up to
/// `items_per_lane` items, and all lanes are recorded into the same pass and submit. The batch size
/// is then bounded by memory, not by the binding limit.
pub struct BatchRunner {
    pub max_items: u32,
    pub items_per_lane: u32,
    pub input: ItemShape,
    pub output: ItemShape,
    pub extra_outputs: Vec<ItemShape>,
    /// Fed floats directly: no pack step.
    float_input: bool,
    /// How pixels are uploaded and read back.
    pub depth: PixelDepth,
    precision: Precision,
    gpu: Arc<Gpu>,
    lanes: Vec<Lane>,
    /// One read-back buffer per batch in flight.
    read_back: [TrackedBuffer; 2],
    /// Which read-back buffers a submitted batch still owns (shared with its [`Submitted`], which
    /// frees its slot when collected or dropped).
    busy: std::rc::Rc<Cell<[bool; 2]>>,
    /// The most batches that were in flight at once.
    peak_in_flight: Cell<usize>,
    timer: Option<GpuTimer>,
}

/// What a runner is fed: pixels (packed on the GPU) or float tensors.
enum Feed {
    Pixels(PixelDepth),
    Floats,
}

/// A batch submitted to the GPU whose results are not read yet: hand it to
/// [`BatchRunner::collect_pixels`] or [`BatchRunner::collect_floats`]. While it runs, the next
/// batch can be packed and submitted (at most two in flight).
#[must_use = "a submitted batch holds a read-back buffer until it is collected"]
pub struct Submitted {
    index: wgpu::SubmissionIndex,
    items: u32,
    timed: bool,
    read: Readback,
}

/// A read-back buffer a submitted batch holds; dropping it (collected or not) frees the slot.
struct Slot {
    busy: std::rc::Rc<Cell<[bool; 2]>>,
    index: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = self.busy.get();
        busy[self.index] = false;
        self.busy.set(busy);
    }
}

enum Readback {
    /// Pixels in read-back buffer `slot`.
    Pixels { slot: Slot, bytes: u64 },
    /// Every output in float, copied to its own staging buffer (byte ranges per output and lane).
    Floats {
        staging: TrackedBuffer,
        bytes: u64,
        ranges: Vec<Vec<std::ops::Range<usize>>>,
    },
}

impl Submitted {
    pub fn items(&self) -> u32 {
        self.items
    }
}

/// Everything `items` batch items need on the GPU, bound and recorded once.
struct Lane {
    items: u32,
    pixels_in: TrackedBuffer,
    pixels_out: TrackedBuffer,
    values: Vec<TrackedBuffer>,
    model_out: usize,
    extra_out: Vec<usize>,
    /// The buffer holding the model input (value 0).
    model_in: usize,
    pack: Step,
    layers: Vec<Step>,
    /// Float -> 8-bit RGBA, for models whose output is a 3-channel image.
    unpack: Option<Step>,
}

/// Two timestamps around a batch's compute pass, where the adapter has timestamp queries.
struct GpuTimer {
    queries: wgpu::QuerySet,
    resolve: TrackedBuffer,
    period_ns: f64,
}

impl Lane {
    fn new(
        engine: &Engine,
        model: &GpuModel,
        shapes: &[ItemShape],
        items: u32,
        input_map: &PixelMapping,
        depth: PixelDepth,
    ) -> Self {
        let gpu = &engine.gpu;
        let m = &model.model;
        let (buffer_of, sizes) = assign_values(m, shapes, items, model.precision);
        let storage = wgpu::BufferUsages::STORAGE;
        let values: Vec<TrackedBuffer> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                gpu.create_buffer(
                    &format!("activations {i}"),
                    s,
                    storage | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                )
            })
            .collect();
        let in_px = shapes[0].h * shapes[0].w;
        let out_px = shapes[m.output].h * shapes[m.output].w;
        let word_bytes = 4 * depth.words() as u64;
        let pixels_in = gpu.create_buffer(
            "pixels in",
            word_bytes * in_px.max(1) as u64 * items as u64,
            storage | wgpu::BufferUsages::COPY_DST,
        );
        let unpacks = shapes[m.output].c == 3;
        let pixels_out = gpu.create_buffer(
            "pixels out",
            if unpacks {
                word_bytes * out_px.max(1) as u64 * items as u64
            } else {
                4
            },
            storage | wgpu::BufferUsages::COPY_SRC,
        );
        let k = engine.kernels_for(model.precision);
        let pack = pack::prepare(
            gpu,
            &k.pack,
            &pixels_in,
            &values[buffer_of[0]],
            in_px,
            items,
            input_map,
            depth,
        );
        let layers = model
            .layers
            .iter()
            .zip(&m.layers)
            .flat_map(|(g, l)| -> Vec<Step> {
                if let LayerOp::Tensor(op) = &l.op {
                    let constant = match g {
                        GpuLayer::Constant(b) => Some(&**b),
                        _ => None,
                    };
                    let buffer = |v: usize| -> &wgpu::Buffer { &values[buffer_of[v]] };
                    let item = |v: usize| shapes[v].elements() as u32;
                    return tensor_steps(gpu, k, l, op, constant, buffer, item);
                }
                if let LayerOp::ConcatAxis(axis) = l.op {
                    let out = shapes[l.output];
                    let mut offset = [0u32; 3];
                    return l
                        .inputs
                        .iter()
                        .map(|&v| {
                            let s = shapes[v];
                            let block = copy_block::Block {
                                src: s,
                                src_offset: [0; 3],
                                dst: out,
                                dst_offset: offset,
                                size: [s.c, s.h, s.w],
                            };
                            offset[axis - 1] += [s.c, s.h, s.w][axis - 1];
                            copy_block::prepare(
                                gpu,
                                &k.copy_block,
                                &l.name,
                                &block,
                                &values[buffer_of[v]],
                                &values[buffer_of[l.output]],
                            )
                        })
                        .collect();
                }
                if let LayerOp::Concat = l.op {
                    let out_c = shapes[l.output].c;
                    let mut offset = 0;
                    return l
                        .inputs
                        .iter()
                        .map(|&v| {
                            let s = shapes[v];
                            let copy = copy_channels::ChannelCopy {
                                src_c: s.c,
                                src_offset: 0,
                                dst_c: out_c,
                                dst_offset: offset,
                                count: s.c,
                            };
                            offset += s.c;
                            copy_channels::prepare(
                                gpu,
                                &k.copy_channels,
                                &l.name,
                                copy,
                                &values[buffer_of[v]],
                                &values[buffer_of[l.output]],
                                s.h,
                                s.w,
                            )
                        })
                        .collect();
                }
                let src = &values[buffer_of[l.inputs[0]]];
                let dst = &values[buffer_of[l.output]];
                let s = shapes[l.inputs[0]];
                vec![match (g, &l.op) {
                    (GpuLayer::Conv2d(c), LayerOp::Conv2dResidual { residual, .. }) => c
                        .prepare_with_residual(
                            gpu,
                            k,
                            &l.name,
                            src,
                            dst,
                            s.h,
                            s.w,
                            Some((&values[buffer_of[l.inputs[1]]], *residual)),
                        ),
                    (GpuLayer::Conv2d(c), _) => c.prepare(gpu, k, &l.name, src, dst, s.h, s.w),
                    (GpuLayer::ConvTranspose2d(c), _) => {
                        c.prepare(gpu, &k.conv_transpose2d, &l.name, src, dst, s.h, s.w)
                    }
                    (_, LayerOp::DepthToSpace(spec)) => depth_to_space::prepare(
                        gpu,
                        &k.depth_to_space,
                        &l.name,
                        spec,
                        src,
                        dst,
                        s.c,
                        s.h,
                        s.w,
                    ),
                    (_, LayerOp::ResizeNearest(scale)) => resize_nearest::prepare(
                        gpu,
                        &k.resize_nearest,
                        &l.name,
                        *scale,
                        src,
                        dst,
                        s.c,
                        s.h,
                        s.w,
                    ),
                    (_, LayerOp::Binary(op)) => binary::prepare(
                        gpu,
                        &k.binary,
                        &l.name,
                        *op,
                        src,
                        s,
                        &values[buffer_of[l.inputs[1]]],
                        shapes[l.inputs[1]],
                        dst,
                    ),
                    (
                        GpuLayer::Constant(constant),
                        LayerOp::BinaryConst {
                            op,
                            constant: sc,
                            constant_first,
                        },
                    ) => {
                        let value: (&wgpu::Buffer, ItemShape, bool) = (src, s, false);
                        let constant: (&wgpu::Buffer, ItemShape, bool) = (constant, *sc, true);
                        let (a, b) = if *constant_first {
                            (constant, value)
                        } else {
                            (value, constant)
                        };
                        binary::prepare_shared(gpu, &k.binary, &l.name, *op, a, b, dst)
                    }
                    (_, LayerOp::BinaryConst { .. }) => {
                        unreachable!("constants are uploaded as GpuLayer::Constant")
                    }
                    (_, LayerOp::Unary(op)) => {
                        unary::prepare(gpu, &k.unary, &l.name, *op, src, dst, s.elements() as u32)
                    }
                    (_, LayerOp::SliceChannels { start, count }) => copy_channels::prepare(
                        gpu,
                        &k.copy_channels,
                        &l.name,
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
                    (_, LayerOp::GlobalAvgPool) => global_avg_pool::prepare(
                        gpu,
                        &k.global_avg_pool,
                        &l.name,
                        src,
                        dst,
                        s.c,
                        s.h * s.w,
                    ),
                    (_, LayerOp::ResizeFilter(spec)) => resize_filter::prepare(
                        gpu,
                        &k.resize_filter,
                        &l.name,
                        spec,
                        src,
                        dst,
                        s.c,
                        s.h,
                        s.w,
                    ),
                    (_, LayerOp::Pad(spec)) => {
                        pad::prepare(gpu, &k.pad, &l.name, spec, src, dst, s)
                    }
                    (_, LayerOp::Pool2d(spec)) => {
                        pool2d::prepare(gpu, &k.pool2d, &l.name, spec, src, dst, s.c, s.h, s.w)
                    }
                    (_, LayerOp::Crop { starts, ends }) => {
                        let r = crate::model::crop_ranges(s, *starts, *ends);
                        let block = copy_block::Block {
                            src: s,
                            src_offset: [r[0].0, r[1].0, r[2].0],
                            dst: shapes[l.output],
                            dst_offset: [0; 3],
                            size: [r[0].1 - r[0].0, r[1].1 - r[1].0, r[2].1 - r[2].0],
                        };
                        copy_block::prepare(gpu, &k.copy_block, &l.name, &block, src, dst)
                    }
                    (_, LayerOp::Flatten) => copy_block::prepare_flat(
                        gpu,
                        &k.copy_block,
                        &l.name,
                        s,
                        shapes[l.output],
                        src,
                        dst,
                    ),
                    (_, LayerOp::ConcatAxis(_)) => unreachable!("handled above"),
                    (_, LayerOp::ToNhwc) => {
                        nchw_to_nhwc::prepare(gpu, &k.nchw_to_nhwc, &l.name, src, dst, s)
                    }
                    (_, LayerOp::Concat | LayerOp::Tensor(_)) => unreachable!("handled above"),
                    (
                        GpuLayer::Plain | GpuLayer::Constant(_),
                        LayerOp::Conv2d(_)
                        | LayerOp::Conv2dResidual { .. }
                        | LayerOp::ConvTranspose2d(_),
                    ) => {
                        unreachable!("convolutions are uploaded as GpuLayer::Conv*")
                    }
                }]
            })
            .collect();
        let unpack = unpacks.then(|| {
            unpack::prepare(
                gpu,
                &k.unpack,
                &values[buffer_of[m.output]],
                &pixels_out,
                out_px,
                items,
                &unpack::inverse(input_map),
                depth,
            )
        });
        Self {
            items,
            pixels_in,
            pixels_out,
            model_out: buffer_of[m.output],
            model_in: buffer_of[0],
            extra_out: m.extra_outputs.iter().map(|&v| buffer_of[v]).collect(),
            values,
            pack,
            layers,
            unpack,
        }
    }

    fn dispatches(&self) -> usize {
        self.pack.dispatches()
            + self.layers.iter().map(Step::dispatches).sum::<usize>()
            + self.unpack.as_ref().map_or(0, Step::dispatches)
    }
}

/// The steps of a general tensor op. `buffer(v)` is value v's buffer, `item(v)` its elements per
/// batch item; `constant` the layer's uploaded weights.
fn tensor_steps<'a>(
    gpu: &Gpu,
    k: &Kernels,
    l: &crate::model::Layer,
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
                nd_copy::prepare(gpu, &k.nd_copy, name, spec, src, src_item, dst, out_item)
            })
            .collect(),
        TensorOp::Binary { spec, constant: c } => {
            let (a, a_item) = operand(*c == Some(0));
            let (b, b_item) = operand(*c == Some(1));
            vec![nd_binary::prepare(
                gpu,
                &k.nd_binary,
                name,
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
                gpu, &k.matmul, name, spec, a, a_item, b, b_item, dst,
            )]
        }
        TensorOp::Reduce(spec) => {
            let (src, _) = operand(false);
            vec![reduce::prepare(gpu, &k.reduce, name, spec, src, dst)]
        }
        TensorOp::Softmax(spec) => {
            let (src, _) = operand(false);
            vec![softmax::prepare(gpu, &k.softmax, name, spec, src, dst)]
        }
        TensorOp::Normalize(spec) => {
            let (src, _) = operand(false);
            vec![normalize::prepare(
                gpu,
                &k.normalize,
                name,
                spec,
                src,
                constant(),
                dst,
            )]
        }
    }
}

impl BatchRunner {
    /// Allocates everything a batch of `max_items` tiles of `tile_h x tile_w` needs.
    pub fn new(
        engine: &Engine,
        model: &GpuModel,
        max_items: u32,
        tile_h: u32,
        tile_w: u32,
        input_map: &PixelMapping,
    ) -> Result<Self> {
        let limit = engine.gpu.limits.max_storage_buffer_binding_size;
        let depth = PixelDepth::Eight;
        Self::with_binding_limit(
            engine, model, max_items, tile_h, tile_w, input_map, limit, depth,
        )
    }

    /// As [`Self::new`] with pixels of `depth`, splitting the batch into lanes as if the adapter
    /// bound at most `limit` bytes per buffer (tests use it to exercise lanes on any adapter).
    #[allow(clippy::too_many_arguments)]
    pub fn with_binding_limit(
        engine: &Engine,
        model: &GpuModel,
        max_items: u32,
        tile_h: u32,
        tile_w: u32,
        input_map: &PixelMapping,
        limit: u64,
        depth: PixelDepth,
    ) -> Result<Self> {
        let feed = Feed::Pixels(depth);
        Self::build(
            engine, model, max_items, tile_h, tile_w, input_map, limit, feed,
        )
    }

    /// A runner fed float tensors `[items, C, H, W]` directly (any channel count, no pack step):
    /// for conformance tests and models whose input is not an image.
    pub fn float_input(
        engine: &Engine,
        model: &GpuModel,
        max_items: u32,
        h: u32,
        w: u32,
    ) -> Result<Self> {
        let limit = engine.gpu.limits.max_storage_buffer_binding_size;
        let map = PixelMapping::UNIT;
        Self::build(engine, model, max_items, h, w, &map, limit, Feed::Floats)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        engine: &Engine,
        model: &GpuModel,
        max_items: u32,
        tile_h: u32,
        tile_w: u32,
        input_map: &PixelMapping,
        limit: u64,
        feed: Feed,
    ) -> Result<Self> {
        let (float_input, depth) = match feed {
            Feed::Pixels(depth) => (false, depth),
            Feed::Floats => (true, PixelDepth::Eight),
        };
        let limit = limit.min(engine.gpu.limits.max_storage_buffer_binding_size);
        let gpu = &engine.gpu;
        let m = &model.model;
        if m.input_channels != 3 && !float_input {
            bail!(
                "{} takes {} input channels; batchwise feeds RGB images (3 channels)",
                m.name,
                m.input_channels
            );
        }
        let max_items = max_items.max(1);
        if let Some(e) = injected_out_of_memory("BATCHWISE_FAIL_BATCHES_ABOVE", max_items) {
            return Err(e.into());
        }
        let shapes = m.shapes(tile_h, tile_w)?;
        // The largest buffer one item needs: an activation, or its pixels in or out.
        let output = shapes[m.output];
        let unpacks = output.c == 3 && !float_input;
        let words = 4 * depth.words() as u64;
        let pixel_bytes = words * (shapes[0].h * shapes[0].w) as u64;
        let out_pixel_bytes = if unpacks {
            words * (output.h * output.w) as u64
        } else {
            0
        };
        let per_item = shapes
            .iter()
            .map(|s| s.elements() * model.precision.bytes())
            .chain([pixel_bytes, out_pixel_bytes])
            .max()
            .unwrap_or(4)
            .max(4);
        let items_per_lane = (limit / per_item).min(max_items as u64) as u32;
        if items_per_lane == 0 {
            bail!(
                "one tile of {tile_w}x{tile_h} needs a {} MiB buffer, more than this adapter binds \
                 ({} MiB); use a smaller tile size (--tile-size)",
                per_item >> 20,
                limit >> 20
            );
        }
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut lanes = Vec::new();
        let mut left = max_items;
        while left > 0 {
            let items = left.min(items_per_lane);
            lanes.push(Lane::new(engine, model, &shapes, items, input_map, depth));
            left -= items;
        }
        let input = shapes[0];
        // Models whose output is not an image read floats into buffers of their own.
        let read_back = [0, 1].map(|_| {
            gpu.create_buffer(
                "pixels read back",
                out_pixel_bytes * max_items as u64,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )
        });
        let timer = gpu
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| GpuTimer {
                queries: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("batch timer"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                }),
                resolve: gpu.create_buffer(
                    "batch timer",
                    16,
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                ),
                period_ns: gpu.queue.get_timestamp_period() as f64,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(OutOfMemory(format!(
                "the GPU ran out of memory allocating a batch of {max_items} tiles of \
                 {tile_w}x{tile_h}: {e}; use a smaller batch size or tile size"
            ))
            .into());
        }
        Ok(Self {
            max_items,
            items_per_lane,
            input,
            output,
            extra_outputs: m.extra_outputs.iter().map(|&v| shapes[v]).collect(),
            float_input,
            depth,
            precision: model.precision,
            gpu: gpu.clone(),
            lanes,
            read_back,
            busy: Default::default(),
            peak_in_flight: Cell::new(0),
            timer,
        })
    }

    /// Bytes this runner holds on the GPU (activations, pixel and read-back buffers).
    pub fn allocated_bytes(&self) -> u64 {
        self.lanes
            .iter()
            .map(|l| {
                l.values.iter().map(|b| b.size()).sum::<u64>()
                    + l.pixels_in.size()
                    + l.pixels_out.size()
            })
            .sum::<u64>()
            + self.read_back.iter().map(|b| b.size()).sum::<u64>()
    }

    /// The most batches this runner had submitted and not yet collected at one time.
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.get()
    }

    /// Submits the recorded batch under error scopes: a validation error fails it, running out of
    /// memory gives [`OutOfMemory`].
    fn submit_encoder(&self, encoder: wgpu::CommandEncoder) -> Result<wgpu::SubmissionIndex> {
        let device = &self.gpu.device;
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let index = self.gpu.queue.submit([encoder.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            let _ = pollster::block_on(oom.pop());
            return Err(anyhow!("the GPU rejected the batch: {e}"));
        }
        if let Some(e) = pollster::block_on(oom.pop()) {
            return Err(
                OutOfMemory(format!("the GPU ran out of memory running the batch: {e}")).into(),
            );
        }
        Ok(index)
    }

    fn in_flight(&self) -> usize {
        self.busy.get().iter().filter(|&&b| b).count()
    }

    /// Number of kernel dispatches in one full batch.
    pub fn dispatches(&self) -> usize {
        self.lanes.iter().map(Lane::dispatches).sum()
    }

    /// How many of `items` each lane takes, in order.
    fn split(&self, items: u32) -> impl Iterator<Item = (&Lane, u32)> {
        let mut left = items;
        self.lanes.iter().map_while(move |lane| {
            let take = left.min(lane.items);
            left -= take;
            (take > 0).then_some((lane, take))
        })
    }

    /// Records the whole batch as one compute pass: for every lane pack, every layer, and (for
    /// 8-bit output) unpack.
    fn record(&self, encoder: &mut wgpu::CommandEncoder, items: u32, unpack: bool, timed: bool) {
        let timestamp_writes =
            self.timer
                .as_ref()
                .filter(|_| timed)
                .map(|t| wgpu::ComputePassTimestampWrites {
                    query_set: &t.queries,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("batch"),
                timestamp_writes,
            });
            for (lane, n) in self.split(items) {
                if !self.float_input {
                    lane.pack.record(&mut pass, n);
                }
                for step in &lane.layers {
                    step.record(&mut pass, n);
                }
                if let Some(step) = lane.unpack.as_ref().filter(|_| unpack) {
                    step.record(&mut pass, n);
                }
            }
        }
        if let Some(t) = self.timer.as_ref().filter(|_| timed) {
            encoder.resolve_query_set(&t.queries, 0..2, &t.resolve, 0);
        }
    }

    fn upload(&self, pixels: &[u32], items: u32) -> Result<()> {
        let per_item = (self.input.h * self.input.w) as usize * self.depth.words();
        self.write_lanes(pixels, items, per_item, |lane| &lane.pixels_in)
    }

    /// Checks `items` and writes each lane's share of `data` (`per_item` values an item) to the
    /// buffer `target` picks in that lane.
    fn write_lanes<T: bytemuck::Pod>(
        &self,
        data: &[T],
        items: u32,
        per_item: usize,
        target: impl Fn(&Lane) -> &TrackedBuffer,
    ) -> Result<()> {
        if items == 0 || items > self.max_items {
            bail!("a batch holds 1 to {} items, not {items}", self.max_items);
        }
        if data.len() != items as usize * per_item {
            bail!(
                "{items} items need {} values, got {}",
                items as usize * per_item,
                data.len()
            );
        }
        let mut at = 0;
        for (lane, n) in self.split(items) {
            let len = n as usize * per_item;
            let bytes: &[u8] = bytemuck::cast_slice(&data[at..at + len]);
            // Writes go in whole 4 bytes (an odd count of float16 values gets a zero after it).
            let mut padded;
            let bytes = if bytes.len().is_multiple_of(4) {
                bytes
            } else {
                padded = bytes.to_vec();
                padded.resize(bytes.len().next_multiple_of(4), 0);
                &padded[..]
            };
            self.gpu.queue.write_buffer(target(lane), 0, bytes);
            at += len;
        }
        Ok(())
    }

    /// Runs `items` tiles (RGBA8 pixels, R in the low byte, tile after tile) in one submit and returns
    /// the output tiles as RGBA8 pixels.
    pub fn run(&self, pixels: &[u32], items: u32) -> Result<Vec<u32>> {
        self.run_timed(pixels, items, false).map(|(out, _)| out)
    }

    /// As [`Self::run`]; with `timed`, also the GPU time of the batch in milliseconds where the
    /// adapter has timestamp queries.
    pub fn run_timed(
        &self,
        pixels: &[u32],
        items: u32,
        timed: bool,
    ) -> Result<(Vec<u32>, Option<f64>)> {
        let submitted = self.submit_pixels(pixels, items, timed)?;
        self.collect_pixels(submitted)
    }

    /// Uploads `items` tiles, records the batch with its read-back copy and submits it without
    /// waiting. At most two batches are in flight; collect one before submitting a third.
    pub fn submit_pixels(&self, pixels: &[u32], items: u32, timed: bool) -> Result<Submitted> {
        if self.lanes.iter().any(|l| l.unpack.is_none()) {
            bail!("this model's output is not a 3-channel image; read it with run_f32");
        }
        if let Some(e) = injected_out_of_memory("BATCHWISE_FAIL_RUNS_ABOVE", items) {
            return Err(e.into());
        }
        let Some(slot) = self.busy.get().iter().position(|&b| !b) else {
            bail!("two batches are in flight already; collect one first");
        };
        // The timer's query buffer is shared: a timed batch runs alone.
        let timed = timed && self.in_flight() == 0;
        self.upload(pixels, items)?;
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("batch"),
            });
        self.record(&mut encoder, items, true, timed);
        let per_item = 4 * self.depth.words() as u64 * (self.output.h * self.output.w) as u64;
        let mut at = 0;
        for (lane, n) in self.split(items) {
            let bytes = per_item * n as u64;
            encoder.copy_buffer_to_buffer(&lane.pixels_out, 0, &self.read_back[slot], at, bytes);
            at += bytes;
        }
        let index = self.submit_encoder(encoder)?;
        let mut busy = self.busy.get();
        busy[slot] = true;
        self.busy.set(busy);
        let slot = Slot {
            busy: self.busy.clone(),
            index: slot,
        };
        self.peak_in_flight
            .set(self.peak_in_flight.get().max(self.in_flight()));
        Ok(Submitted {
            index,
            items,
            timed,
            read: Readback::Pixels { slot, bytes: at },
        })
    }

    /// Waits for a batch from [`Self::submit_pixels`] (not for any submitted after it) and returns
    /// its output tiles as RGBA8 pixels, with the GPU time when it was timed.
    pub fn collect_pixels(&self, submitted: Submitted) -> Result<(Vec<u32>, Option<f64>)> {
        let Readback::Pixels { slot, bytes } = submitted.read else {
            bail!("this batch was submitted for float outputs; collect it with collect_floats");
        };
        let out =
            self.gpu
                .map_read_after(&self.read_back[slot.index], bytes, Some(submitted.index));
        drop(slot);
        let out = out?;
        let gpu_ms = match self.timer.as_ref().filter(|_| submitted.timed) {
            Some(t) => {
                let ticks: Vec<u64> =
                    bytemuck::pod_collect_to_vec(&self.gpu.read_back(&t.resolve, 16)?);
                Some(ticks[1].saturating_sub(ticks[0]) as f64 * t.period_ns / 1e6)
            }
            None => None,
        };
        Ok((bytemuck::pod_collect_to_vec(&out), gpu_ms))
    }

    /// Runs `items` tiles and returns the model's float output `[items, C, H, W]` (before unpacking
    /// for image models).
    pub fn run_f32(&self, pixels: &[u32], items: u32) -> Result<Vec<f32>> {
        Ok(self.run_f32_all(pixels, items)?.swap_remove(0))
    }

    /// Runs `items` float inputs `[items, C, H, W]` (a runner made with [`Self::float_input`]) and
    /// returns every output.
    pub fn run_floats(&self, input: &[f32], items: u32) -> Result<Vec<Vec<f32>>> {
        if !self.float_input {
            bail!("this runner packs 8-bit pixels; make it with BatchRunner::float_input");
        }
        let per_item = self.input.elements() as usize;
        fn target(lane: &Lane) -> &TrackedBuffer {
            &lane.values[lane.model_in]
        }
        match self.precision {
            Precision::F32 => self.write_lanes(input, items, per_item, target)?,
            Precision::F16 => {
                let half: Vec<half::f16> = input.iter().map(|&x| half::f16::from_f32(x)).collect();
                self.write_lanes(&half, items, per_item, target)?
            }
        }
        self.collect_floats(self.submit_outputs(items)?)
    }

    /// Runs `items` tiles and returns every output: the main one, then the extra ones, each
    /// `[items, ...]` in float.
    pub fn run_f32_all(&self, pixels: &[u32], items: u32) -> Result<Vec<Vec<f32>>> {
        let submitted = self.submit_f32(pixels, items)?;
        self.collect_floats(submitted)
    }

    /// Uploads `items` tiles and submits the batch, reading every output in float, without
    /// waiting: collect it with [`Self::collect_floats`].
    pub fn submit_f32(&self, pixels: &[u32], items: u32) -> Result<Submitted> {
        self.upload(pixels, items)?;
        self.submit_outputs(items)
    }

    /// Records the batch (without unpacking) and copies every output to a staging buffer.
    fn submit_outputs(&self, items: u32) -> Result<Submitted> {
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("batch"),
            });
        self.record(&mut encoder, items, false, false);
        let shapes: Vec<ItemShape> = std::iter::once(self.output)
            .chain(self.extra_outputs.iter().copied())
            .collect();
        let eb = self.precision.bytes();
        // Each lane's copy in whole 4 bytes.
        let total: u64 = shapes
            .iter()
            .map(|s| {
                (eb * s.elements() * items as u64).next_multiple_of(4) + 4 * self.lanes.len() as u64
            })
            .sum();
        let staging = self.gpu.create_buffer(
            "float read back",
            total,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let mut at = 0;
        let mut ranges = Vec::new();
        for (k, shape) in shapes.iter().enumerate() {
            let per_item = eb * shape.elements();
            let mut parts = Vec::new();
            for (lane, n) in self.split(items) {
                let buffer = if k == 0 {
                    lane.model_out
                } else {
                    lane.extra_out[k - 1]
                };
                let bytes = per_item * n as u64;
                let copied = bytes.next_multiple_of(4);
                encoder.copy_buffer_to_buffer(&lane.values[buffer], 0, &staging, at, copied);
                parts.push(at as usize..(at + bytes) as usize);
                at += copied;
            }
            ranges.push(parts);
        }
        let index = self.submit_encoder(encoder)?;
        Ok(Submitted {
            index,
            items,
            timed: false,
            read: Readback::Floats {
                staging,
                bytes: at,
                ranges,
            },
        })
    }

    /// Waits for a batch from [`Self::submit_f32`] and returns every output in float.
    pub fn collect_floats(&self, submitted: Submitted) -> Result<Vec<Vec<f32>>> {
        let Readback::Floats {
            staging,
            bytes,
            ranges,
        } = submitted.read
        else {
            bail!("this batch was submitted for pixels; collect it with collect_pixels");
        };
        let out = self
            .gpu
            .map_read_after(&staging, bytes, Some(submitted.index))?;
        Ok(ranges
            .into_iter()
            .map(|parts| {
                parts
                    .into_iter()
                    .flat_map(|r| match self.precision {
                        Precision::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(&out[r]),
                        Precision::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(&out[r])
                            .into_iter()
                            .map(half::f16::to_f32)
                            .collect(),
                    })
                    .collect()
            })
            .collect())
    }
}
