//! Products by a constant matrix (`shaders/gemm.wgsl`): 1x1 convolutions, and Gemm / MatMul with a
//! constant B. Fused bias, activation and residual.

use super::gemm_blocking::UNROLL_MIN_Q;
use super::{Bind, Step};
use crate::gpu::{Gpu, TrackedBuffer};
use crate::model::{Activation, Residual};

pub use super::gemm_blocking::{
    BLOCKING, Blocking, blocking_for, blocking_from_env, parse_blocking, products_blocking,
};
pub use super::gemm_epilogue::Epilogue;
pub use super::gemm_layout::{Layout, Width};
pub use super::gemm_program::InputProgram;

/// The weight window bound for one dispatch: `array<vec4<f32>, 4096>` in gemm.wgsl.
pub(super) const WINDOW_BYTES: u64 = 65536;
/// Dynamic uniform offsets are multiples of this (the largest alignment any adapter asks for).
const UNIFORM_ALIGN: u64 = 256;
/// Invocations per workgroup along q. Keep in sync with `@workgroup_size` in gemm.wgsl.
pub(crate) const WORKGROUP_X: u32 = 64;
/// The bias and the PRelu slopes share one 64 KiB uniform buffer.
const BIAS_SLOPE_FLOATS: usize = 16384;

/// Whether a product with `out_c` output channels fits the kernel (bias and slopes in one
/// uniform buffer).
pub fn supported(out_c: u32) -> bool {
    2 * (out_c.div_ceil(MAX_OC_BLOCK) * MAX_OC_BLOCK) as usize <= BIAS_SLOPE_FLOATS
}

/// Whether a product of `in_c` inputs to `out_c` channels covers every input channel in each
/// dispatch, as the weights bound either way hold them: what a norm fused into its loads
/// (`LayerOp::Conv2dProgram`) needs.
pub fn one_pass(in_c: u32, out_c: u32) -> bool {
    (blocking_for(out_c).oc_block * in_c) as u64 <= WINDOW_BYTES / 4
}

/// Items with at most this many q each are folded into q (one dispatch row runs them all); with
/// more, each item is a workgroup row of its own in z. A batch needs over 30000 items before a
/// folded dispatch of 64-invocation workgroups reaches the 65535 workgroups a dispatch may have
/// along x (`group_size` takes 8-invocation ones only where what the buffers hold fits).
const FOLD_MAX_Q: u32 = 1024;

/// The widest channel block any blocking uses.
pub(super) const MAX_OC_BLOCK: u32 = 64;

/// Mirror of `Params` in shaders/gemm.wgsl: one record per dispatch.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmParams {
    pub q_count: u32,
    pub q_item: u32,
    pub in_cs: u32,
    pub in_qs: u32,
    pub in_item: u32,
    pub out_cs: u32,
    pub out_qs: u32,
    pub out_item: u32,
    pub out_c: u32,
    pub ic_base: u32,
    pub ic_count: u32,
    pub oc_base: u32,
    pub first: u32,
    pub last: u32,
    pub activation: u32,
    pub alpha: f32,
    pub beta: f32,
    pub residual: u32,
    pub slope_base: u32,
    pub skip_item: u32,
    pub skip_c: u32,
    /// vec4s from one channel block's weights to the next's (`Dispatch::block_stride` / 4).
    pub block_stride: u32,
}

/// One dispatch: `blocks` channel blocks from `oc_base`, one chunk of input channels.
#[derive(Clone, Debug, PartialEq)]
pub struct Dispatch {
    pub oc_base: u32,
    pub blocks: u32,
    pub ic_base: u32,
    pub ic_count: u32,
    pub first: bool,
    pub last: bool,
    /// Byte offset of the window in the packed weights (a multiple of 256).
    pub weight_offset: u64,
    /// Floats from one block's weights to the next's in the window: the block's
    /// `ic_count x oc_block` rounded up to 64 (256 bytes), so that each block starts where a
    /// dispatch of its own may bind the window.
    pub block_stride: u32,
}

/// How the kernel reads the weights: 64 KiB uniform windows, one dispatch each (the split
/// Winograd's products, and 1x1 convolutions on a CPU adapter), or the whole matrix as one
/// storage binding (1x1 convolutions on a GPU: every channel block in one dispatch, so a small
/// map still has a workgroup per block). [`Weights::for_adapter`] chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Weights {
    Uniform,
    Storage,
}

impl Weights {
    /// How 1x1 convolutions read their weights on `gpu`: a GPU the storage binding (every
    /// channel block in one dispatch); a CPU adapter the 64 KiB uniform windows, as llvmpipe
    /// loads a storage value lane by lane even where every lane's address is the same, and a
    /// uniform value at such an address once (BENCHMARKS.md, "1x1 weights in uniform windows on
    /// a CPU adapter"). `BATCHWISE_GEMM_WEIGHTS=uniform|storage` picks one (to compare).
    pub fn for_adapter(gpu: &Gpu) -> Self {
        match std::env::var("BATCHWISE_GEMM_WEIGHTS").as_deref() {
            Ok("uniform") => Self::Uniform,
            Ok("storage") => Self::Storage,
            _ if gpu.adapter.device_type == "Cpu" => Self::Uniform,
            _ => Self::Storage,
        }
    }
}

/// Packs `weights` (`[out_c][in_c]`) into 64 KiB windows of `[block][ic in chunk][oc_block]`,
/// for the uniform binding: the buffer extends a window past the last offset.
pub fn pack(
    blocking: Blocking,
    out_c: u32,
    in_c: u32,
    weights: &[f32],
) -> (Vec<f32>, Vec<Dispatch>) {
    let window = WINDOW_BYTES as usize / 4;
    let (mut packed, dispatches) = pack_within(blocking, (out_c, in_c), weights, window);
    // Every dispatch binds a full window, so the buffer extends a window past the last offset
    // (a block's: the unrolled kernel binds the window at each block, `dispatches_for`).
    let last = dispatches.last().map_or(0, |d| {
        d.weight_offset as usize / 4 + (d.blocks as usize - 1) * d.block_stride as usize
    });
    packed.resize(last + window, 0.0);
    (packed, dispatches)
}

/// Packs as [`pack`] into windows of at most `window` floats (one where the whole matrix fits),
/// without padding past the last. Returns the floats each dispatch reads, at most.
pub fn pack_storage(
    blocking: Blocking,
    (out_c, in_c): (u32, u32),
    weights: &[f32],
    window: usize,
) -> (Vec<f32>, Vec<Dispatch>, usize) {
    let ob = blocking.oc_block as usize;
    let (mut packed, dispatches) = pack_within(blocking, (out_c, in_c), weights, window);
    let span = dispatches
        .iter()
        .map(|d| d.blocks as usize * d.block_stride as usize)
        .max()
        .unwrap_or(ob);
    let last = dispatches
        .last()
        .map_or(0, |d| d.weight_offset as usize / 4);
    packed.resize(last + span, 0.0);
    (packed, dispatches, span)
}

/// The packing of [`pack`] and [`pack_storage`], `window` floats a dispatch at most.
fn pack_within(
    blocking: Blocking,
    (out_c, in_c): (u32, u32),
    weights: &[f32],
    window: usize,
) -> (Vec<f32>, Vec<Dispatch>) {
    let ob = blocking.oc_block as usize;
    let chunk = (window / ob).min(in_c as usize) as u32;
    let blocks_total = out_c.div_ceil(blocking.oc_block);
    let stride = |count: u32| (count as usize * ob).next_multiple_of(UNIFORM_ALIGN as usize / 4);
    // Blocks per window: all of them where one chunk holds every input channel and they fit.
    let per_window = if chunk == in_c {
        ((window / stride(chunk)) as u32).clamp(1, blocks_total)
    } else {
        1
    };
    let mut packed = Vec::new();
    let mut dispatches = Vec::new();
    for b0 in (0..blocks_total).step_by(per_window as usize) {
        let blocks = per_window.min(blocks_total - b0);
        for ic0 in (0..in_c).step_by(chunk as usize) {
            let count = chunk.min(in_c - ic0);
            let offset = packed.len().next_multiple_of(UNIFORM_ALIGN as usize / 4);
            let block_stride = stride(count);
            packed.resize(offset + blocks as usize * block_stride, 0.0);
            for b in 0..blocks {
                for ic in 0..count {
                    for j in 0..ob {
                        let oc = ((b0 + b) * blocking.oc_block) as usize + j;
                        if oc < out_c as usize {
                            packed[offset + b as usize * block_stride + ic as usize * ob + j] =
                                weights[oc * in_c as usize + (ic0 + ic) as usize];
                        }
                    }
                }
            }
            dispatches.push(Dispatch {
                oc_base: b0 * blocking.oc_block,
                blocks,
                ic_base: ic0,
                ic_count: count,
                first: ic0 == 0,
                last: ic0 + count == in_c,
                weight_offset: offset as u64 * 4,
                block_stride: block_stride as u32,
            });
        }
    }
    (packed, dispatches)
}

/// CPU reference (f64 accumulation) for `items` items: `weights` `[out_c][in_c]`, then the
/// residual (`skip`, laid out as the output) and the activation.
#[allow(
    clippy::too_many_arguments,
    reason = "the product's parts, each a slice or a small value"
)]
pub fn reference(
    layout: &Layout,
    (out_c, in_c): (u32, u32),
    weights: &[f32],
    bias: &[f32],
    activation: &Activation,
    residual: Option<(&[f32], Residual)>,
    input: &[f32],
    items: u32,
) -> Vec<f32> {
    let l = layout;
    let mut out = vec![0.0f32; (items * l.out_item) as usize];
    for n in 0..items {
        for oc in 0..out_c {
            for q in 0..l.q_count {
                let mut acc = bias.get(oc as usize).copied().unwrap_or(0.0) as f64;
                for ic in 0..in_c {
                    let x = input[(n * l.in_item + ic * l.in_cs + q * l.in_qs) as usize];
                    acc += x as f64 * weights[(oc * in_c + ic) as usize] as f64;
                }
                let at = (n * l.out_item + oc * l.out_cs + q * l.out_qs) as usize;
                let skip_at = (n * l.skip_item + oc * l.out_cs + q * l.out_qs) as usize;
                let k = |skip: &[f32]| if oc < l.skip_c { skip[skip_at] } else { 0.0 };
                let mut v = acc as f32;
                if let Some((skip, Residual::BeforeActivation)) = residual {
                    v += k(skip);
                }
                v = activation.apply(v, oc as usize);
                if let Some((skip, Residual::AfterActivation)) = residual {
                    v += k(skip);
                }
                out[at] = v;
            }
        }
    }
    out
}

/// A constant matrix on the GPU, packed for gemm.wgsl, with its bias and activation.
pub struct GemmLayer {
    pub(super) blocking: Blocking,
    pub out_c: u32,
    pub in_c: u32,
    pub(super) activation: (u32, f32, f32),
    /// Bound as `binding` says here (64 KiB uniform windows, or storage: whole, or windows of
    /// `window_bytes` where larger than a binding may be), and whole by gemv.wgsl (either
    /// packing: its table of window offsets, `gemv::offsets`).
    pub(super) weights: TrackedBuffer,
    binding: Weights,
    window_bytes: u64,
    pub(super) bias_slope: TrackedBuffer,
    pub(super) dispatches: Vec<Dispatch>,
    pub(super) slope_base: u32,
}

impl GemmLayer {
    /// Uploads `weights` (`[out_c][in_c]`), the bias (zeros where shorter) and the activation's
    /// slopes, blocked as [`blocking_for`] says. `out_c` must be [`supported`].
    pub fn upload(
        gpu: &Gpu,
        label: &str,
        (out_c, in_c): (u32, u32),
        weights: &[f32],
        bias: &[f32],
        activation: &Activation,
    ) -> Self {
        Self::upload_blocked(
            gpu,
            label,
            (out_c, in_c),
            weights,
            bias,
            activation,
            blocking_for(out_c).unrolled(
                in_c,
                Weights::for_adapter(gpu) == Weights::Uniform,
                super::storage_loads_loop(&gpu.adapter.device_type, &gpu.adapter.driver),
            ),
        )
    }

    /// As [`Self::upload`], for another register blocking (to measure it).
    pub fn upload_blocked(
        gpu: &Gpu,
        label: &str,
        dims: (u32, u32),
        weights: &[f32],
        bias: &[f32],
        activation: &Activation,
        blocking: Blocking,
    ) -> Self {
        // One window (one dispatch) where the matrix fits a binding, offsets 256-byte aligned.
        let limit = gpu.device.limits().max_storage_buffer_binding_size;
        let mut window =
            (limit.min(u32::MAX as u64) as usize / 4) & !(UNIFORM_ALIGN as usize / 4 - 1);
        if Weights::for_adapter(gpu) == Weights::Uniform {
            window = 0;
        }
        let (bias_act, blocking_window) = ((bias, activation), (blocking, window));
        Self::upload_windowed(gpu, label, dims, weights, bias_act, blocking_window)
    }

    /// As [`Self::upload_blocked`], the weights bound in windows of at most `window` floats (a
    /// multiple of 64): a dispatch per window, as where a matrix is larger than a binding may be;
    /// a `window` of 0: 64 KiB uniform windows.
    pub fn upload_windowed(
        gpu: &Gpu,
        label: &str,
        (out_c, in_c): (u32, u32),
        weights: &[f32],
        (bias, activation): (&[f32], &Activation),
        (blocking, window): (Blocking, usize),
    ) -> Self {
        assert!(
            supported(out_c),
            "{out_c} output channels fit the bias buffer"
        );
        assert!(
            blocking.oc_block <= MAX_OC_BLOCK,
            "at most {MAX_OC_BLOCK} channels a block"
        );
        let binding = if window == 0 {
            Weights::Uniform
        } else {
            Weights::Storage
        };
        let (packed, dispatches, span) = match binding {
            Weights::Uniform => {
                let (packed, dispatches) = pack(blocking, out_c, in_c, weights);
                (packed, dispatches, WINDOW_BYTES as usize / 4)
            }
            Weights::Storage => pack_storage(blocking, (out_c, in_c), weights, window),
        };
        let padded = (out_c.div_ceil(blocking.oc_block) * blocking.oc_block) as usize;
        let mut bias_slope = vec![0.0f32; BIAS_SLOPE_FLOATS];
        let n = bias.len().min(out_c as usize);
        bias_slope[..n].copy_from_slice(&bias[..n]);
        if let Activation::PRelu { slopes } = activation {
            bias_slope[padded..padded + out_c as usize].copy_from_slice(&slopes[..out_c as usize]);
        }
        let uniform = wgpu::BufferUsages::UNIFORM;
        let weights = match binding {
            Weights::Uniform => uniform | wgpu::BufferUsages::STORAGE,
            Weights::Storage => wgpu::BufferUsages::STORAGE,
        };
        Self {
            binding,
            blocking,
            out_c,
            in_c,
            activation: activation.encode(),
            weights: gpu.create_buffer_init(label, bytemuck::cast_slice(&packed), weights),
            bias_slope: gpu.create_buffer_init(label, bytemuck::cast_slice(&bias_slope), uniform),
            dispatches,
            window_bytes: span as u64 * 4,
            slope_base: padded as u32 / 4,
        }
    }

    /// The register blocking, and whether the input channels are compiled in.
    pub fn blocking(&self) -> Blocking {
        self.blocking
    }

    /// Binds `src` and `dst` (laid out as `layout` says) and an optional residual into a step.
    pub fn prepare(
        &self,
        cx: Bind,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        layout: Layout,
        residual: Option<(&wgpu::Buffer, Residual)>,
    ) -> Step {
        let binding_limit = cx.gpu.device.limits().max_storage_buffer_binding_size;
        // gemv.wgsl reads a residual of the output's channels only.
        let whole_skip = layout.skip_c >= self.out_c;
        if super::gemv::suits(&layout) && whole_skip && self.weights.size() <= binding_limit {
            return self.prepare_rows(cx, src, dst, layout, residual);
        }
        self.prepare_x(cx, Err(src), dst, layout, residual)
    }

    /// As [`Self::prepare`], x computed by `program` as the kernel loads it (never stored); x
    /// laid out as planes (`Layout::planes`).
    pub fn prepare_program(
        &self,
        cx: Bind,
        program: &InputProgram,
        dst: &wgpu::Buffer,
        layout: Layout,
        residual: Option<(&wgpu::Buffer, Residual)>,
    ) -> Step {
        self.prepare_x(cx, Ok(program), dst, layout, residual)
    }

    /// gemm.wgsl's step reading x from a buffer (`Err`) or through a program (`Ok`).
    fn prepare_x(
        &self,
        cx: Bind,
        x: Result<&InputProgram, &wgpu::Buffer>,
        dst: &wgpu::Buffer,
        layout: Layout,
        residual: Option<(&wgpu::Buffer, Residual)>,
    ) -> Step {
        let (program, inputs) = match x {
            Ok(p) => (Some(p), p.buffers()),
            Err(src) => (None, vec![src]),
        };
        let src = inputs[0];
        let Bind {
            gpu,
            kernels,
            label,
        } = cx;
        let (activation, alpha, beta) = self.activation;
        let kernel = match x {
            // A program's kernel is its own (not shared with other layers): the loop, whose
            // build costs a tenth of the unrolled one's at every start.
            Ok(_) => Blocking {
                inputs: 0,
                ..self.blocking
            },
            Err(_) => self.kernel_blocking(&layout),
        };
        let dispatches = self.dispatches_for(kernel);
        let whole = dispatches.iter().all(|d| d.first && d.last);
        let normalized = program.is_some_and(|p| p.normalize.is_some());
        assert!(whole || !normalized, "{label}: a norm not in one pass");
        let residual_code = residual.map_or(0, |(_, r)| r as u32);
        let epilogue = Epilogue::compiled(whole, residual_code, activation);
        let blocks = dispatches.iter().map(|d| d.blocks).max().unwrap_or(1);
        // Items folded into q where an item has few: then q runs over as many items as every
        // bound buffer holds (the step dispatches only the batch's), so no access leaves them.
        let fold = layout.q_count <= FOLD_MAX_Q;
        let width = match self.width(&layout, kernels.eight_a_load, kernels.storage_loads_loop) {
            // The shifted kernel takes no program: one value a load.
            Width::Shifted(_) if program.is_some() => Width::One,
            w => w,
        };
        // The shifted kernel pads each item's q to a multiple of 8.
        let per_item = match width {
            Width::Shifted(_) => layout.q_count.next_multiple_of(8),
            _ => layout.q_count,
        };
        let q_count = if fold {
            let bytes = kernels.precision.bytes();
            let items = |b: &wgpu::Buffer, item: u32| b.size() / (bytes * item.max(1) as u64);
            let mut capacity = items(src, layout.in_item).min(items(dst, layout.out_item));
            if let Some((r, _)) = residual {
                capacity = capacity.min(items(r, layout.skip_item));
            }
            for (b, s) in program.map_or(&[][..], |p| &p.inputs) {
                capacity = capacity.min(items(b, s.elements() as u32));
            }
            (capacity * per_item as u64).clamp(1, u32::MAX as u64) as u32
        } else {
            layout.q_count
        };
        let mut records = vec![0u8; dispatches.len() * UNIFORM_ALIGN as usize];
        let mut offsets = Vec::with_capacity(dispatches.len());
        for (i, d) in dispatches.iter().enumerate() {
            let params = GemmParams {
                q_count,
                q_item: layout.q_count.max(1),
                in_cs: layout.in_cs,
                in_qs: layout.in_qs,
                in_item: layout.in_item,
                out_cs: layout.out_cs,
                out_qs: layout.out_qs,
                out_item: layout.out_item,
                out_c: self.out_c,
                ic_base: d.ic_base,
                ic_count: d.ic_count,
                oc_base: d.oc_base,
                first: d.first as u32,
                last: d.last as u32,
                activation,
                alpha,
                beta,
                residual: residual_code,
                slope_base: self.slope_base,
                skip_item: layout.skip_item,
                skip_c: layout.skip_c,
                block_stride: d.block_stride / 4,
            };
            let at = i * UNIFORM_ALIGN as usize;
            records[at..at + std::mem::size_of::<GemmParams>()]
                .copy_from_slice(bytemuck::bytes_of(&params));
            offsets.push(vec![at as u32, d.weight_offset as u32]);
        }
        // Every dispatch has `blocks` workgroups in y; those past a dispatch's last block start
        // at or past out_c and store nothing.
        let params = gpu.create_buffer_init(label, &records, wgpu::BufferUsages::UNIFORM);
        let group = group_size(gpu, fold, q_count.div_ceil(self.blocking.pix));
        let (pipeline, bind_layout) = match program {
            Some(program) => {
                let prologue = program.prologue(fold, per_item, kernel.pix);
                let source =
                    super::gemm_program::source(kernel, self.binding, group, width, &prologue);
                let source = super::gemm_epilogue::specialize(source, epilogue);
                kernels.gemm_program(&source, self.binding, prologue.extra_bindings())
            }
            None => (
                kernels.gemm_keyed((kernel, self.binding, group, width, epilogue)),
                match self.binding {
                    Weights::Uniform => kernels.gemm_layout.clone(),
                    Weights::Storage => kernels.gemm_storage_layout.clone(),
                },
            ),
        };
        let mut entries = vec![
            entry(0, window(&params, std::mem::size_of::<GemmParams>() as u64)),
            entry(1, window(&self.weights, self.window_bytes)),
            entry(2, self.bias_slope.as_entire_binding()),
            entry(3, src.as_entire_binding()),
            entry(4, dst.as_entire_binding()),
            // Without a residual the binding is never read; src stands in.
            entry(5, residual.map_or(src, |(r, _)| r).as_entire_binding()),
        ];
        // A program's other inputs.
        for (k, b) in inputs[1..].iter().enumerate() {
            entries.push(entry(6 + k as u32, b.as_entire_binding()));
        }
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &bind_layout,
            entries: &entries,
        });
        let per_group = self.blocking.pix * group;
        let step = Step::with_offsets(
            label,
            pipeline,
            bind_group,
            [per_item.div_ceil(per_group).max(1), blocks],
            1,
            offsets,
            vec![params],
        );
        if fold {
            step.folding_items(per_item, per_group)
        } else {
            step
        }
    }

    /// The blocking of the kernel that runs `layout`: the unrolled one where the layer takes it
    /// and the maps are large ([`UNROLL_MIN_Q`]); else the loop.
    fn kernel_blocking(&self, layout: &Layout) -> Blocking {
        match layout.q_count >= UNROLL_MIN_Q {
            true => self.blocking,
            false => Blocking {
                inputs: 0,
                ..self.blocking
            },
        }
    }

    /// The dispatches that run `kernel`: the packing's (each as many channel blocks as its window
    /// holds), or for the unrolled kernel, whose weight offsets are constants, one a block (each
    /// block's weights start on a 256-byte boundary, where its dispatch binds the window).
    fn dispatches_for(&self, kernel: Blocking) -> Vec<Dispatch> {
        if kernel.inputs == 0 {
            return self.dispatches.clone();
        }
        let ob = kernel.oc_block;
        let mut each = Vec::new();
        for d in &self.dispatches {
            each.extend((0..d.blocks).map(|b| Dispatch {
                oc_base: d.oc_base + b * ob,
                blocks: 1,
                weight_offset: d.weight_offset + u64::from(b * d.block_stride) * 4,
                ..d.clone()
            }));
        }
        each
    }

    /// How this product reads and writes `layout` ([`Layout::width`] with `eight`, the kernels'
    /// `eight_a_load`), the shifted kernel where that is one value a load, [`Self::shifted_fits`]
    /// and `lane_loops` (the kernels' `storage_loads_loop`).
    pub fn width(&self, layout: &Layout, eight: bool, lane_loops: bool) -> Width {
        match layout.width(eight, self.blocking) {
            Width::One if lane_loops && self.shifted_fits(layout, eight) => {
                Width::Shifted(layout.q_count % 8)
            }
            w => w,
        }
    }

    /// Whether the shifted kernel (`gemm_shifted.rs`) takes this product: `eight` (a CPU
    /// adapter, float32), channel planes (x and out NCHW) of 8 to `FOLD_MAX_Q` values (items
    /// folded), items of a multiple of 8 values, 8 q a block, every dispatch's input channels
    /// in whole 8s. `BATCHWISE_GEMM_SHIFTED=off` keeps one value a load (to measure).
    fn shifted_fits(&self, l: &Layout, eight: bool) -> bool {
        let off = std::env::var("BATCHWISE_GEMM_SHIFTED").is_ok_and(|v| v == "off");
        let planes = l.in_qs == 1 && l.out_qs == 1 && l.in_cs == l.q_count && l.out_cs == l.q_count;
        let chunks = self
            .dispatches
            .iter()
            .all(|d| d.ic_base.is_multiple_of(8) && d.ic_count.is_multiple_of(8));
        !off && eight
            && planes
            && (8..=FOLD_MAX_Q).contains(&l.q_count)
            && l.in_item.is_multiple_of(8)
            && self.blocking.pix == 8
            && chunks
    }
}

/// Invocations a workgroup along q: [`WORKGROUP_X`], or on a CPU adapter where items are
/// folded into q (a few hundred q a dispatch), 8: one SIMD pass of llvmpipe, so the last
/// workgroup computes at most 7 clamped copies instead of up to 63; where `invocations` (what
/// the bound buffers hold) fit a dispatch's workgroups that way.
/// `BATCHWISE_GEMM_GROUP=N` sets it (to measure).
fn group_size(gpu: &Gpu, fold: bool, invocations: u32) -> u32 {
    if let Some(n) = std::env::var("BATCHWISE_GEMM_GROUP")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
    {
        return n.clamp(1, 256);
    }
    let fits = invocations.div_ceil(8) <= gpu.limits.max_compute_workgroups_per_dimension;
    if fold && fits && gpu.adapter.device_type == "Cpu" {
        8
    } else {
        WORKGROUP_X
    }
}

/// A window of `size` bytes at the start of `buffer` (its dynamic offset moves it).
fn window(buffer: &wgpu::Buffer, size: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset: 0,
        size: wgpu::BufferSize::new(size),
    })
}

fn entry(binding: u32, resource: wgpu::BindingResource<'_>) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry { binding, resource }
}

/// The bind group layout of gemm.wgsl: params and weights with dynamic offsets, the weights
/// read as `weights` says,
/// and `extra` storage bindings past its own (a program's inputs, `gemm_program`).
pub(crate) fn bind_group_layout(
    device: &wgpu::Device,
    weights: Weights,
    extra: u32,
) -> wgpu::BindGroupLayout {
    let buffer = |binding, ty, dynamic, size: Option<u64>| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: dynamic,
            min_binding_size: size.and_then(wgpu::BufferSize::new),
        },
        count: None,
    };
    let uniform = wgpu::BufferBindingType::Uniform;
    let storage = |read_only| wgpu::BufferBindingType::Storage { read_only };
    let mut entries = vec![
        buffer(
            0,
            uniform,
            true,
            Some(std::mem::size_of::<GemmParams>() as u64),
        ),
        match weights {
            Weights::Uniform => buffer(1, uniform, true, Some(WINDOW_BYTES)),
            Weights::Storage => buffer(1, storage(true), true, Some(16)),
        },
        buffer(2, uniform, false, Some(WINDOW_BYTES)),
        buffer(3, storage(true), false, None),
        buffer(4, storage(false), false, None),
        buffer(5, storage(true), false, None),
    ];
    entries.extend((0..extra).map(|k| buffer(6 + k, storage(true), false, None)));
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("gemm"),
        entries: &entries,
    })
}
