//! 2-D convolution (`shaders/conv2d.wgsl`): bias, padding, stride, dilation, groups, fused activation.

pub use super::conv2d_operands::{ChannelSlice, Operands};
pub use super::conv2d_variant::{
    DEFAULT_UNROLLED_ROWS, GPU_UNROLLED_ROWS, UNROLLED_ROW_CHOICES, Variant, default_unrolled_rows,
    group_rows_for, rows_from_env,
};
use super::{Bind, Step};
use crate::gpu::{Gpu, TrackedBuffer};
use crate::model::{Activation, Conv2dSpec, Residual};

/// Output channels one invocation computes (4 vec4 accumulators). Keep in sync with conv2d.wgsl.
pub const OC_BLOCK: u32 = 16;
/// Output rows one invocation of the generic kernel computes. Keep in sync with `ROWS` in
/// conv2d.wgsl.
pub const ROWS: u32 = 8;
/// Longest input column the generic kernel caches. Keep in sync with `MAX_COL` in conv2d.wgsl.
const MAX_COL: u32 = 64;
/// The unrolled kernel keeps at most this many input values per column in registers.
pub(super) const MAX_UNROLLED_COL: u32 = 48;
/// The weight window bound for one dispatch: `array<vec4<f32>, 4096>` in conv2d.wgsl.
pub const WEIGHT_WINDOW_BYTES: u64 = 65536;
/// Dynamic uniform offsets are multiples of this (the largest alignment any adapter asks for).
const UNIFORM_ALIGN: u64 = 256;
const WORKGROUP_X: u32 = 16;

impl Conv2dSpec {
    fn blocks_per_group(&self, block: u32) -> u32 {
        (self.out_c / self.groups).div_ceil(block)
    }
}

/// Mirror of `Params` in shaders/conv2d.wgsl: one record per dispatch.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Conv2dParams {
    pub in_c: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub out_c: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub k_w: u32,
    pub stride_w: u32,
    pub dil_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub ic_base: u32,
    pub ic_count: u32,
    pub oc_base: u32,
    pub oc_end: u32,
    pub first: u32,
    pub last: u32,
    pub activation: u32,
    pub alpha: f32,
    pub beta: f32,
    /// 0 none, 1 add the residual then activate, 2 activate then add.
    pub residual: u32,
    pub _pad: [u32; 3],
    pub bias: [f32; 16],
    /// PRelu slopes of the block's channels.
    pub slope: [f32; 16],
}

/// One dispatch: a block of 16 output channels and a chunk of its group's input channels.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    /// First output channel of the block.
    pub oc_base: u32,
    /// One past the last output channel of the block's group.
    pub oc_end: u32,
    /// First input channel (absolute) and count.
    pub ic_base: u32,
    pub ic_count: u32,
    pub first: bool,
    pub last: bool,
    /// Byte offset of the chunk's weights in the packed buffer (a multiple of 256).
    pub weight_offset: u64,
}

/// Weights packed for conv2d.wgsl, with the dispatches that read them.
pub struct PackedConv2d {
    pub weights: Vec<f32>,
    pub chunks: Vec<Chunk>,
    /// Bias per block, 16 values each.
    pub bias: Vec<[f32; 16]>,
    /// PRelu slopes per block, 16 values each (zeros for other activations).
    pub slopes: Vec<[f32; 16]>,
}

/// Input channels per dispatch of `block`-channel blocks: as many as fit the 64 KiB weight window.
pub fn ic_chunk(spec: &Conv2dSpec, block: u32) -> u32 {
    let per_ic = (spec.k_h * spec.k_w * block) as u64 * 4;
    ((WEIGHT_WINDOW_BYTES / per_ic).max(1) as u32).min(spec.in_c / spec.groups)
}

/// Whether conv2d.wgsl can run this shape (its input column fits the private cache).
pub fn supported(spec: &Conv2dSpec) -> Result<(), String> {
    let col = (ROWS - 1) * spec.stride[0] + (spec.k_h - 1) * spec.dilation[0] + 1;
    if col > MAX_COL {
        return Err(format!(
            "a {}x{} kernel with stride {} and dilation {} spans {col} input rows; at most {MAX_COL} \
             are supported",
            spec.k_h, spec.k_w, spec.stride[0], spec.dilation[0]
        ));
    }
    if spec.k_h * spec.k_w * OC_BLOCK * 4 * 4 > WEIGHT_WINDOW_BYTES as u32 {
        return Err(format!(
            "a {}x{} kernel is too large (at most 256 taps)",
            spec.k_h, spec.k_w
        ));
    }
    Ok(())
}

/// Repacks OIHW weights and the bias into the chunked layout conv2d.wgsl reads, in blocks of
/// `block` output channels (16, or 4 or 8 for the narrow variants).
pub fn pack_weights(spec: &Conv2dSpec, weights: &[f32], bias: &[f32], block: u32) -> PackedConv2d {
    let icg = spec.in_c / spec.groups;
    let ocg = spec.out_c / spec.groups;
    let taps = (spec.k_h * spec.k_w) as usize;
    let chunk = ic_chunk(spec, block);
    let blk = block as usize;
    let mut packed: Vec<f32> = Vec::new();
    let mut chunks = Vec::new();
    let mut biases = Vec::new();
    let mut slopes = Vec::new();
    for g in 0..spec.groups {
        for b in 0..spec.blocks_per_group(block) {
            let oc_base = g * ocg + b * block;
            let oc_end = (g + 1) * ocg;
            let mut block_bias = [0.0f32; 16];
            for (j, v) in block_bias.iter_mut().enumerate().take(blk) {
                let oc = oc_base + j as u32;
                if oc < oc_end {
                    *v = bias.get(oc as usize).copied().unwrap_or(0.0);
                }
            }
            biases.push(block_bias);
            let mut block_slopes = [0.0f32; 16];
            if let Activation::PRelu { slopes: s } = &spec.activation {
                for (j, v) in block_slopes.iter_mut().enumerate().take(blk) {
                    let oc = (oc_base + j as u32) as usize;
                    if oc < oc_end as usize {
                        *v = s[oc];
                    }
                }
            }
            slopes.push(block_slopes);
            for ic0 in (0..icg).step_by(chunk as usize) {
                let count = chunk.min(icg - ic0);
                let offset = packed.len().next_multiple_of(UNIFORM_ALIGN as usize / 4);
                packed.resize(offset + count as usize * taps * blk, 0.0);
                for ic in 0..count as usize {
                    for t in 0..taps {
                        for j in 0..blk {
                            let oc = oc_base as usize + j;
                            if oc >= oc_end as usize {
                                continue;
                            }
                            packed[offset + (ic * taps + t) * blk + j] =
                                weights[(oc * icg as usize + ic0 as usize + ic) * taps + t];
                        }
                    }
                }
                chunks.push(Chunk {
                    oc_base,
                    oc_end,
                    ic_base: g * icg + ic0,
                    ic_count: count,
                    first: ic0 == 0,
                    last: ic0 + count == icg,
                    weight_offset: offset as u64 * 4,
                });
            }
        }
    }
    // Every dispatch binds a full window, so the buffer extends a window past the last offset.
    let last = chunks.last().map_or(0, |c| c.weight_offset as usize / 4);
    packed.resize(last + WEIGHT_WINDOW_BYTES as usize / 4, 0.0);
    PackedConv2d {
        weights: packed,
        chunks,
        bias: biases,
        slopes,
    }
}

/// CPU reference: NCHW input of `n` items, OIHW weights. Accumulates in f64.
pub fn reference(
    spec: &Conv2dSpec,
    input: &[f32],
    n: u32,
    in_h: u32,
    in_w: u32,
    weights: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    let (oh, ow) = spec.output_hw(in_h, in_w).expect("kernel fits the input");
    let icg = spec.in_c / spec.groups;
    let ocg = spec.out_c / spec.groups;
    let mut out = vec![0.0f32; (n * spec.out_c * oh * ow) as usize];
    for b in 0..n {
        for oc in 0..spec.out_c {
            let g = oc / ocg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.get(oc as usize).copied().unwrap_or(0.0) as f64;
                    for ic in 0..icg {
                        let c = g * icg + ic;
                        for ky in 0..spec.k_h {
                            let iy = (oy * spec.stride[0] + ky * spec.dilation[0]) as i64
                                - spec.pads[0] as i64;
                            if iy < 0 || iy >= in_h as i64 {
                                continue;
                            }
                            for kx in 0..spec.k_w {
                                let ix = (ox * spec.stride[1] + kx * spec.dilation[1]) as i64
                                    - spec.pads[1] as i64;
                                if ix < 0 || ix >= in_w as i64 {
                                    continue;
                                }
                                let x = input[(((b * spec.in_c + c) * in_h) as i64 + iy) as usize
                                    * in_w as usize
                                    + ix as usize];
                                let w = weights
                                    [(((oc * icg + ic) * spec.k_h + ky) * spec.k_w + kx) as usize];
                                acc += x as f64 * w as f64;
                            }
                        }
                    }
                    out[(((b * spec.out_c + oc) * oh + oy) * ow + ox) as usize] =
                        spec.activation.apply(acc as f32, oc as usize);
                }
            }
        }
    }
    out
}

/// A convolution's weights on the GPU, for the kernel that suits its shape.
pub struct Conv2dLayer {
    pub spec: Conv2dSpec,
    imp: Implementation,
}

enum Implementation {
    /// gemm.wgsl: a 1x1 convolution as a product by its weight matrix.
    Gemm(super::gemm::GemmLayer),
    /// conv2d.wgsl: 16-channel blocks, input-channel chunks; or, with `variant`, the generated
    /// narrow variant's 4- or 8-channel blocks (`conv2d_narrow.rs`) or a Winograd tile's
    /// (`winograd.rs`, the weights transformed).
    Blocked {
        variant: Option<Variant>,
        weights: TrackedBuffer,
        chunks: Vec<Chunk>,
        bias: Vec<[f32; 16]>,
        slopes: Vec<[f32; 16]>,
    },
    /// Winograd split into transforms and products (`winograd_gemm.rs`).
    Split(super::winograd_gemm::WinogradGemm),
    /// depthwise_conv2d.wgsl: one channel per group; bias then PRelu slopes in one buffer; the
    /// generated register-blocked entry point where it fits, else the shader's one-pixel `main`.
    Depthwise {
        depthwise: Option<super::depthwise_conv2d::Variant>,
        /// The variant's pixel block as asked (`Kernel::Narrow`), not chosen per map.
        fixed_block: bool,
        weights: TrackedBuffer,
        bias_slope: TrackedBuffer,
    },
}

/// Whether `spec` runs on gemm.wgsl (uploaded with `Kernel::Auto`, as the engine does for 1x1
/// convolutions): what [`Conv2dLayer::prepare_program`] takes.
pub fn runs_on_gemm(spec: &Conv2dSpec) -> bool {
    spec.is_pointwise()
        && super::conv2d_narrow::variant(spec).is_none()
        && super::gemm::supported(spec.out_c)
}

impl Conv2dSpec {
    /// A 1x1 convolution without stride, padding or groups: a product by the weight matrix.
    pub fn is_pointwise(&self) -> bool {
        self.k_h == 1
            && self.k_w == 1
            && self.stride == [1, 1]
            && self.pads == [0; 4]
            && self.groups == 1
    }
}

/// Which kernel a convolution runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernel {
    /// The fastest for its shape: the narrow variant for at most 8 output channels a group (12
    /// but for 1x1: `conv2d_narrow.rs`), gemm.wgsl for other 1x1, depthwise_conv2d.wgsl for
    /// depthwise, conv2d.wgsl for the rest.
    #[default]
    Auto,
    /// conv2d.wgsl whatever the shape (to measure the others against it).
    Blocked,
    /// The narrow (or, for a depthwise shape, the generated depthwise) variant with `rows x cols`
    /// pixels an invocation where the shape fits it (to measure blockings), else as `Auto`.
    Narrow { rows: u32, cols: u32 },
    /// depthwise_conv2d.wgsl's one-pixel `main` for a depthwise shape (to measure the generated
    /// blocks against it), else as `Auto`.
    DepthwisePerPixel,
    /// Winograd with this tile where the shape allows it (`winograd::supported`), else as `Auto`.
    /// The engine asks for it where autotuning measured it faster (`Kernels::winograd_for`).
    Winograd(super::winograd::Tile),
}

impl Conv2dLayer {
    pub fn upload(gpu: &Gpu, label: &str, spec: Conv2dSpec, weights: &[f32], bias: &[f32]) -> Self {
        Self::upload_with(gpu, label, spec, weights, bias, Kernel::Auto)
    }

    /// As [`Self::upload`], on the kernel `kernel` names.
    pub fn upload_with(
        gpu: &Gpu,
        label: &str,
        spec: Conv2dSpec,
        weights: &[f32],
        bias: &[f32],
        kernel: Kernel,
    ) -> Self {
        let narrow = match kernel {
            Kernel::Winograd(tile) if tile.split() && super::winograd_gemm::supported(&spec) => {
                let w = super::winograd_gemm::WinogradGemm::upload(
                    gpu, label, &spec, weights, bias, tile,
                );
                let imp = Implementation::Split(w);
                return Self { imp, spec };
            }
            Kernel::Winograd(tile) if !tile.split() && super::winograd::supported(&spec) => {
                let packed = super::winograd::pack(&spec, weights, bias, tile);
                let variant = super::winograd::variant(tile);
                return Self::blocked(gpu, label, spec, packed, Some(variant));
            }
            Kernel::Auto | Kernel::Winograd(_) => super::conv2d_narrow::variant(&spec),
            Kernel::Narrow { rows, cols } => super::conv2d_narrow::variant_with(&spec, rows, cols),
            Kernel::Blocked | Kernel::DepthwisePerPixel => None,
        };
        let auto = kernel != Kernel::Blocked;
        // 1x1 convolutions (none runs narrow) on gemm.wgsl.
        let gemm = narrow.is_none() && auto && spec.is_pointwise();
        if gemm && super::gemm::supported(spec.out_c) {
            let dims = (spec.out_c, spec.in_c);
            let layer =
                super::gemm::GemmLayer::upload(gpu, label, dims, weights, bias, &spec.activation);
            return Self {
                imp: Implementation::Gemm(layer),
                spec,
            };
        }
        if auto && spec.is_depthwise() {
            let c = spec.out_c as usize;
            let mut bias_slope = vec![0.0f32; 2 * c];
            bias_slope[..bias.len().min(c)].copy_from_slice(&bias[..bias.len().min(c)]);
            if let Activation::PRelu { slopes } = &spec.activation {
                bias_slope[c..].copy_from_slice(&slopes[..c]);
            }
            let storage = wgpu::BufferUsages::STORAGE;
            let depthwise = match kernel {
                Kernel::DepthwisePerPixel => None,
                Kernel::Narrow { rows, cols } => {
                    super::depthwise_conv2d::variant_with(&spec, rows, cols)
                }
                _ => super::depthwise_conv2d::variant(&spec),
            }
            .map(|v| {
                let (kind, driver) = (&gpu.adapter.device_type, &gpu.adapter.driver);
                v.taps_for(weights.len(), super::storage_loads_loop(kind, driver))
            });
            let taps = match depthwise.is_some_and(|v| v.uniform_taps) {
                true => {
                    let mut padded = weights.to_vec();
                    padded.resize(super::depthwise_conv2d::UNIFORM_TAPS as usize, 0.0);
                    let usage = storage | wgpu::BufferUsages::UNIFORM;
                    gpu.create_buffer_init(label, bytemuck::cast_slice(&padded), usage)
                }
                false => gpu.create_buffer_init(label, bytemuck::cast_slice(weights), storage),
            };
            return Self {
                imp: Implementation::Depthwise {
                    depthwise,
                    fixed_block: matches!(kernel, Kernel::Narrow { .. }),
                    weights: taps,
                    bias_slope: gpu.create_buffer_init(
                        label,
                        bytemuck::cast_slice(&bias_slope),
                        storage,
                    ),
                },
                spec,
            };
        }
        let block = narrow
            .and_then(|v| v.narrow)
            .map_or(OC_BLOCK, |n| n.block());
        let packed = pack_weights(&spec, weights, bias, block);
        Self::blocked(gpu, label, spec, packed, narrow)
    }

    /// Uploads weights packed for conv2d.wgsl or its generated `variant`.
    fn blocked(
        gpu: &Gpu,
        label: &str,
        spec: Conv2dSpec,
        packed: PackedConv2d,
        variant: Option<Variant>,
    ) -> Self {
        Self {
            imp: Implementation::Blocked {
                variant,
                weights: gpu.create_buffer_init(
                    label,
                    bytemuck::cast_slice(&packed.weights),
                    wgpu::BufferUsages::UNIFORM,
                ),
                chunks: packed.chunks,
                bias: packed.bias,
                slopes: packed.slopes,
            },
            spec,
        }
    }

    /// Binds `src` (input, `in_h x in_w`) and `dst` into a step.
    pub fn prepare(
        &self,
        cx: Bind,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        in_h: u32,
        in_w: u32,
    ) -> Step {
        let Bind {
            gpu,
            kernels,
            label,
        } = cx;
        self.prepare_with_residual(Bind::new(gpu, kernels, label), src, dst, in_h, in_w, None)
    }

    /// As [`Self::prepare`], adding `residual` (a tensor of the output's shape) after the last
    /// input chunk: before the activation, or after it (`Residual::AfterActivation`).
    pub fn prepare_with_residual(
        &self,
        cx: Bind,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        in_h: u32,
        in_w: u32,
        residual: Option<(&wgpu::Buffer, Residual)>,
    ) -> Step {
        let io = Operands::default();
        self.prepare_placed(cx, [src, dst], [in_h, in_w], residual, io)
    }

    /// A split Winograd layer run in chunks of at most `tiles` tiles an item (see
    /// `winograd_gemm.rs`); another kernel as it is.
    pub fn with_winograd_chunk(self, tiles: u32) -> Self {
        match self.imp {
            Implementation::Split(w) => Self {
                imp: Implementation::Split(w.with_chunk_tiles(tiles)),
                spec: self.spec,
            },
            _ => self,
        }
    }

    /// Elements an item of the split Winograd's scratch (V, M) holds for an `out_h x out_w`
    /// output: zeros for the other kernels.
    pub fn scratch_elements(&self, out_h: u32, out_w: u32) -> [u64; 2] {
        match &self.imp {
            Implementation::Split(w) => w.scratch_elements(out_h, out_w),
            _ => [0, 0],
        }
    }

    /// As [`Self::prepare_with_residual`], with the operands where `io` says (`in_h x in_w`:
    /// the input as `src` holds it, before any upsampling). Channel slices and upsampling are
    /// for conv2d.wgsl and its variants and the split Winograd only (not gemm nor depthwise: the
    /// engine never asks), and an output slice takes no residual.
    pub fn prepare_placed(
        &self,
        cx: Bind,
        buffers: [&wgpu::Buffer; 2],
        size: [u32; 2],
        residual: Option<(&wgpu::Buffer, Residual)>,
        io: Operands,
    ) -> Step {
        self.prepare_placed_with_scratch(cx, buffers, size, residual, io, None)
    }

    /// The step of a convolution that [`runs_on_gemm`] of `program`'s output
    /// (`LayerOp::Conv2dProgram`): x computed from the program's inputs as the kernel loads it,
    /// with a residual of `skip_c` channels where fewer than the output's.
    pub fn prepare_program(
        &self,
        cx: Bind,
        program: &super::gemm::InputProgram,
        dst: &wgpu::Buffer,
        residual: Option<(&wgpu::Buffer, Residual)>,
        skip_c: Option<u32>,
    ) -> Step {
        let Implementation::Gemm(g) = &self.imp else {
            panic!("{}: a program's convolution runs on gemm.wgsl", cx.label)
        };
        let x = program.shape();
        let mut layout = super::gemm::Layout::planes(self.spec.in_c, self.spec.out_c, x.h * x.w);
        // x's items lie as its inputs': a slice's input stores more channels than x has.
        layout.in_item = program.stored_channels() * x.h * x.w;
        if let Some(c) = skip_c {
            layout = layout.with_skip_channels(c);
        }
        g.prepare_program(cx, program, dst, layout, residual)
    }

    /// As [`Self::prepare_placed`], on shared `scratch` for the split Winograd (without, it
    /// allocates its own).
    pub fn prepare_placed_with_scratch(
        &self,
        cx: Bind,
        [src, dst]: [&wgpu::Buffer; 2],
        [in_h, in_w]: [u32; 2],
        residual: Option<(&wgpu::Buffer, Residual)>,
        io: Operands,
        scratch: Option<super::winograd_gemm::Scratch>,
    ) -> Step {
        if let Implementation::Split(w) = &self.imp {
            let placed = super::winograd_gemm::Placed::of(&self.spec, &io);
            return w.prepare(cx, [src, dst], [in_h, in_w], residual, scratch, placed);
        }
        let Bind {
            gpu,
            kernels,
            label,
        } = cx;
        let s = &self.spec;
        let (in_h, in_w) = (in_h * io.upsample[0], in_w * io.upsample[1]);
        let (out_h, out_w) = s
            .output_hw(in_h, in_w)
            .expect("shapes were checked at load");
        self.check_operands(src, residual, &io);
        let (src_c, src_offset) = io.src.map_or((s.in_c, 0), |v| (v.item_c, v.offset));
        let (dst_c, dst_offset) = io.dst.map_or((s.out_c, 0), |v| (v.item_c, v.offset));
        let (activation, alpha, beta) = s.activation.encode();
        let residual_code = residual.map_or(0, |(_, r)| r as u32);
        let (weights, chunks, bias, slopes, narrow) = match &self.imp {
            Implementation::Gemm(g) => {
                let mut layout = super::gemm::Layout::planes(s.in_c, s.out_c, in_h * in_w);
                if let Some(c) = io.skip_c {
                    layout = layout.with_skip_channels(c);
                }
                return g.prepare(Bind::new(gpu, kernels, label), src, dst, layout, residual);
            }
            Implementation::Split(_) => unreachable!("prepared above"),
            Implementation::Depthwise {
                weights,
                bias_slope,
                depthwise,
                fixed_block,
            } => {
                let buffers = [src, &**weights, &**bias_slope, dst];
                let bind = Bind::new(gpu, kernels, label);
                let sizes = [in_h, in_w, out_h, out_w];
                assert!(
                    depthwise.is_some() || !io.gate,
                    "a gated depthwise convolution runs on the generated kernel"
                );
                let gated =
                    depthwise.map(|v| super::depthwise_conv2d::Variant { gate: io.gate, ..v });
                let adapter = [gpu.adapter.device_type == "Cpu", kernels.eight_a_load];
                let variant = gated.map(|v| match fixed_block {
                    true => v.wide_for(in_w, out_w, s.pads[1], kernels.eight_a_load),
                    false => v.for_layer(s, sizes, adapter),
                });
                let variant = match residual {
                    Some((_, r)) => Some(super::depthwise_conv2d::Variant {
                        residual: Some(r),
                        ..variant.expect("a depthwise residual runs on the generated kernel")
                    }),
                    None => variant,
                };
                return super::depthwise_conv2d::step(bind, s, variant, &buffers, sizes);
            }
            Implementation::Blocked {
                variant,
                weights,
                chunks,
                bias,
                slopes,
            } => (weights, chunks, bias, slopes, variant),
        };
        let variant = narrow.unwrap_or_else(|| Variant::for_spec(s, kernels.conv_rows()));
        // An image's first convolution on rows that allow it: whole rows a load and store.
        let widths = [in_w, out_w];
        let adapter = [gpu.adapter.device_type == "Cpu", kernels.eight_a_load];
        let variant = super::conv2d_rows::rows_for(variant, s, widths, io.upsample, adapter)
            .unwrap_or(variant);
        let (block, cols) = match (variant.narrow, variant.winograd) {
            (Some(n), _) => (n.block(), n.cols),
            (None, Some(t)) => (t.block(), t.m() * t.tiles()),
            (None, None) => (OC_BLOCK, 1),
        };
        let bpg = s.blocks_per_group(block);
        let chunks_per_block = chunks.len() as u32 / (s.groups * bpg);
        let mut records = vec![0u8; chunks.len() * UNIFORM_ALIGN as usize];
        let mut offsets = Vec::with_capacity(chunks.len());
        for (i, c) in chunks.iter().enumerate() {
            let params = Conv2dParams {
                in_c: src_c,
                in_h,
                in_w,
                out_c: dst_c,
                out_h,
                out_w,
                k_w: s.k_w,
                stride_w: s.stride[1],
                dil_w: s.dilation[1],
                pad_top: s.pads[0],
                pad_left: s.pads[1],
                ic_base: c.ic_base + src_offset,
                ic_count: c.ic_count,
                oc_base: c.oc_base + dst_offset,
                oc_end: c.oc_end + dst_offset,
                first: c.first as u32,
                last: c.last as u32,
                activation,
                alpha,
                beta,
                residual: residual_code,
                _pad: [0; 3],
                bias: bias[i / chunks_per_block as usize],
                slope: slopes[i / chunks_per_block as usize],
            };
            let at = i * UNIFORM_ALIGN as usize;
            records[at..at + std::mem::size_of::<Conv2dParams>()]
                .copy_from_slice(bytemuck::bytes_of(&params));
            offsets.push(vec![at as u32, c.weight_offset as u32]);
        }
        let params = gpu.create_buffer_init(label, &records, wgpu::BufferUsages::UNIFORM);
        // One buffer as input and output: a slice read, another written (a dense block's).
        let in_place = src == dst;
        let layout = kernels.conv2d_layout(in_place);
        // Without a residual its binding is never read; src stands in.
        let skip = residual.map_or(src, |(r, _)| r);
        let bind_group = bind_group(gpu, label, layout, [&params, weights], [src, dst, skip]);
        let whole = chunks.iter().all(|c| c.first && c.last);
        let epilogue = super::gemm::Epilogue::compiled(whole, residual_code, activation);
        Step::with_offsets(
            label,
            kernels.conv2d_with(variant, io.upsample, in_place, epilogue),
            bind_group,
            [
                out_w.div_ceil(WORKGROUP_X * cols),
                out_h.div_ceil(variant.rows_per_invocation() * kernels.conv_group_rows()),
            ],
            1,
            offsets,
            vec![params],
        )
    }
}

impl Conv2dLayer {
    /// The operands `prepare_placed_with_scratch` takes: a depthwise convolution's residual its
    /// own input (read from its patch); slices and upsampling for conv2d.wgsl's kernels, a
    /// residual for whole outputs, one of fewer channels for gemm.wgsl.
    fn check_operands(
        &self,
        src: &wgpu::Buffer,
        residual: Option<(&wgpu::Buffer, Residual)>,
        io: &Operands,
    ) {
        let s = &self.spec;
        let own_input = |r: &wgpu::Buffer| r == src && super::depthwise_conv2d::preserves_size(s);
        assert!(
            residual.is_none_or(|(r, _)| !s.is_depthwise() || own_input(r)),
            "a depthwise convolution's residual is its own input"
        );
        let blocked = matches!(self.imp, Implementation::Blocked { .. });
        let depthwise = matches!(self.imp, Implementation::Depthwise { .. });
        assert!(
            !io.gate || (depthwise && residual.is_none()),
            "a gate is for a depthwise convolution without a residual"
        );
        let placed = Operands {
            skip_c: None,
            gate: false,
            ..*io
        };
        assert!(
            (placed == Operands::default() || blocked) && (residual.is_none() || io.dst.is_none()),
            "slices and upsampling are for conv2d.wgsl's kernels, a residual for whole outputs"
        );
        assert!(
            io.skip_c.is_none() || matches!(self.imp, Implementation::Gemm(_)),
            "a residual of fewer channels is for gemm.wgsl"
        );
    }
}

/// conv2d.wgsl's bind group: one record of `params` and one window of `weights` (both moved by
/// dynamic offsets), the input, the output and the residual.
fn bind_group(
    gpu: &Gpu,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    [params, weights]: [&wgpu::Buffer; 2],
    [src, dst, skip]: [&wgpu::Buffer; 3],
) -> wgpu::BindGroup {
    let window = |binding, buffer, size| wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: 0,
            size: wgpu::BufferSize::new(size),
        }),
    };
    let whole = |binding, buffer| wgpu::BindGroupEntry {
        binding,
        resource: wgpu::Buffer::as_entire_binding(buffer),
    };
    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout,
        entries: &[
            window(0, params, std::mem::size_of::<Conv2dParams>() as u64),
            window(1, weights, WEIGHT_WINDOW_BYTES),
            whole(2, src),
            whole(3, dst),
            whole(4, skip),
        ],
    })
}

/// The bind group layout of conv2d.wgsl: params and weights with dynamic offsets. `in_place`:
/// `src` and `skip` read-write too, so that one buffer can be bound as `src` and `dst` (a
/// convolution reading a channel slice of a Concat done in place and writing another slice of
/// it: wgpu refuses a buffer bound read-only and read-write in one dispatch).
pub(crate) fn bind_group_layout(device: &wgpu::Device, in_place: bool) -> wgpu::BindGroupLayout {
    let uniform = |binding, size: u64| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: wgpu::BufferSize::new(size),
        },
        count: None,
    };
    let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("conv2d"),
        entries: &[
            uniform(0, std::mem::size_of::<Conv2dParams>() as u64),
            uniform(1, WEIGHT_WINDOW_BYTES),
            storage(2, !in_place),
            storage(3, false),
            storage(4, !in_place),
        ],
    })
}
