//! Winograd F(m x m, 3 x 3) split in three kernels, as ncnn runs it, for the tiles
//! `Tile::F2Split`, `F4Split` and `F6Split` (`winograd.rs` has the matrices and the fused kernel):
//!
//! 1. the input transform: one invocation per tile, input channel and item loads the tile's
//!    alpha x alpha patch (zero outside the image: the padding) and writes V = B^T d B to the
//!    scratch `V[alpha^2][in_c][q]` (q: the item's m x m output tiles, row-major, then the next
//!    item's: every item the scratch holds side by side in a row `q_stride` long);
//! 2. the products: alpha^2 independent GEMMs `M[t] = U[t] V[t]` (`[out_c x in_c] x [in_c x
//!    q]`), a register-tiled kernel of its own over gemm.wgsl's declarations
//!    (`winograd_sources::products_source`: q contiguous, no per-lane division): U (the weights
//!    transformed once at upload, U = G g G^T) packed per t in gemm's uniform windows, one
//!    dispatch per t and window; matrix t is rows `t x in_c ..` of V and `t x out_c ..` of M;
//! 3. the output transform: one invocation per tile, output channel and item computes
//!    Y = A^T M A and stores its m x m pixels with the fused bias, residual and activation.
//!
//! F(4,3) does 4x fewer multiplies than the direct kernel, F(6,3) 5.06x, F(2,3) 2.25x; the
//! scratch is alpha^2 / m^2 times the input and the output (F(4,3): 2.25x). The engine allocates
//! one V and one M per lane for every layer (`Conv2dLayer::scratch_elements`, counted by the memory
//! planner); a layer prepared without them allocates its own.
//!
//! A large map runs in chunks of its tiles (`WinogradGemm::chunk_tiles`): the three kernels over
//! the first chunk's tiles of every item, then the next chunk's, so the scratch holds one chunk
//! an item (at most `CHUNK_BYTES`, and half what the adapter binds in one buffer). Without chunks
//! one 270 px tile of upscale-photo-2x's 128->256 layer needed a 148 MiB M, more than lavapipe's
//! 128 MiB binding.
//!
//! The kernels are generated (`winograd_sources.rs`: the transforms unrolled over B^T and A^T);
//! `tests/shader_validation.rs` validates them, float32 and float16.

use super::gemm::{self, GemmParams};
use super::winograd::Tile;
use super::winograd_sources::{WORKGROUP_X, input_source, output_source, products_source};
use super::{Bind, Step};
use crate::gpu::{Gpu, TrackedBuffer};
use crate::model::{Activation, Conv2dSpec, Residual};

/// Dynamic uniform offsets are multiples of this (the largest alignment any adapter asks for).
const UNIFORM_ALIGN: usize = 256;
/// gemm.wgsl's weight window (and its bias buffer), in floats.
const WINDOW_FLOATS: usize = 16384;
/// The most bytes an item's V or M holds: larger maps run in chunks of tiles.
pub const CHUNK_BYTES: u64 = 64 << 20;

/// Whether the split kernel runs this convolution: a Winograd shape whose bias and slopes fit
/// the output transform's uniform buffer.
pub fn supported(spec: &Conv2dSpec) -> bool {
    super::winograd::supported(spec) && 2 * spec.out_c.next_multiple_of(4) as usize <= WINDOW_FLOATS
}

/// Tiles an item takes in a row of the scratch for `tiles` of them: whole 8s.
fn row_tiles(tiles: u32) -> u32 {
    tiles.max(1).next_multiple_of(8)
}

/// Mirror of `Params` in [`INPUT_HEAD`].
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct InputParams {
    in_c: u32,
    in_h: u32,
    in_w: u32,
    pad_top: u32,
    pad_left: u32,
    tiles_w: u32,
    tiles: u32,
    v_t: u32,
    src_c: u32,
    src_offset: u32,
    up_y: u32,
    up_x: u32,
    q_stride: u32,
    tile_base: u32,
    _pad: [u32; 2],
}

/// Mirror of `Params` in [`OUTPUT_HEAD`].
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct OutputParams {
    out_c: u32,
    out_h: u32,
    out_w: u32,
    tiles_w: u32,
    tiles: u32,
    m_t: u32,
    activation: u32,
    alpha: f32,
    beta: f32,
    residual: u32,
    slope_base: u32,
    dst_c: u32,
    dst_offset: u32,
    q_stride: u32,
    tile_base: u32,
    _pad: [u32; 1],
}

/// Where a convolution's input and output lie in their buffers, and how it reads its input:
/// channels per item and first channel of each (a channel slice of a Concat done in place), and
/// the input's nearest upsampling factors (a fused Resize).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub src: (u32, u32),
    pub dst: (u32, u32),
    pub upsample: [u32; 2],
}

impl Placed {
    /// Where conv2d's operands say.
    pub fn of(spec: &Conv2dSpec, io: &super::conv2d::Operands) -> Self {
        Self {
            src: io.src.map_or((spec.in_c, 0), |v| (v.item_c, v.offset)),
            dst: io.dst.map_or((spec.out_c, 0), |v| (v.item_c, v.offset)),
            upsample: io.upsample,
        }
    }
}

/// A 3x3 convolution's transformed weights on the GPU, packed for gemm.wgsl per matrix t.
pub struct WinogradGemm {
    pub tile: Tile,
    spec: Conv2dSpec,
    /// gemm.wgsl's register block for the products.
    blocking: gemm::Blocking,
    weights: TrackedBuffer,
    /// Zeros: gemm.wgsl's bias (the products start from zero).
    zeros: TrackedBuffer,
    /// The output transform's bias, then the PRelu slopes from `slope_base` (in vec4s).
    bias_slope: TrackedBuffer,
    slope_base: u32,
    /// Per gemm dispatch: the matrix t and gemm's dispatch (weight offset in the whole buffer).
    dispatches: Vec<(u32, gemm::Dispatch)>,
    /// The most tiles of an item one pass of the three kernels takes (see the module's docs).
    chunk_tiles: u32,
}

/// The scratch buffers of the split kernel: V and M, of any number of items.
pub struct Scratch<'a> {
    pub v: &'a wgpu::Buffer,
    pub m: &'a wgpu::Buffer,
}

impl WinogradGemm {
    /// Transforms the OIHW weights of `spec` (U = G g G^T, in f64 rounded once) and uploads them
    /// packed per matrix, with the bias and the activation's slopes.
    pub fn upload(
        gpu: &Gpu,
        label: &str,
        spec: &Conv2dSpec,
        weights: &[f32],
        bias: &[f32],
        tile: Tile,
    ) -> Self {
        let a2 = (tile.alpha() * tile.alpha()) as usize;
        let (oc, ic) = (spec.out_c as usize, spec.in_c as usize);
        // gemm's blocking for the output channels: 32 x 8 where they are a multiple of 32 (16x8,
        // 16x16, 32x4 and 64x4 measured no faster there: BENCHMARKS.md, "Winograd"), else the
        // block that pads them least (a 32-channel block computed 16 of 32 for nothing for a
        // dense block's 16: BENCHMARKS.md, "The Winograd products blocked for their channels").
        let blocking = gemm::products_blocking(spec.out_c);
        // [oc][ic][t] -> per t [oc][ic].
        let u = super::winograd::transform_weights(weights, tile);
        let mut packed: Vec<f32> = Vec::new();
        let mut dispatches = Vec::new();
        for t in 0..a2 {
            let ut: Vec<f32> = (0..oc * ic).map(|i| u[i * a2 + t]).collect();
            let (p, ds) = gemm::pack(blocking, spec.out_c, spec.in_c, &ut);
            // gemm pads each packing a window past its last offset; keep what its dispatches read.
            let used = ds
                .iter()
                .map(|d| d.weight_offset as usize / 4 + (d.blocks * d.block_stride) as usize)
                .max()
                .unwrap_or(0);
            let base = packed.len().next_multiple_of(UNIFORM_ALIGN / 4);
            packed.resize(base, 0.0);
            packed.extend_from_slice(&p[..used]);
            dispatches.extend(ds.into_iter().map(|d| {
                let weight_offset = d.weight_offset + base as u64 * 4;
                (t as u32, gemm::Dispatch { weight_offset, ..d })
            }));
        }
        let last = dispatches
            .iter()
            .map(|(_, d)| d.weight_offset as usize / 4)
            .max()
            .unwrap_or(0);
        packed.resize(last + WINDOW_FLOATS, 0.0);
        let padded = oc.next_multiple_of(4);
        let mut bias_slope = vec![0.0f32; WINDOW_FLOATS];
        let n = bias.len().min(oc);
        bias_slope[..n].copy_from_slice(&bias[..n]);
        if let Activation::PRelu { slopes } = &spec.activation {
            bias_slope[padded..padded + oc].copy_from_slice(&slopes[..oc]);
        }
        let uniform = wgpu::BufferUsages::UNIFORM;
        let bytes_per_tile = (a2 * oc.max(ic) * 4) as u64;
        // `BATCHWISE_WINOGRAD_CHUNK_KIB` sets the chunk's bytes, to measure others.
        let chunk_bytes = std::env::var("BATCHWISE_WINOGRAD_CHUNK_KIB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(CHUNK_BYTES, |kib| kib << 10);
        let budget = chunk_bytes.min(gpu.limits.max_storage_buffer_binding_size / 2);
        let chunk_tiles = (budget / bytes_per_tile).clamp(1, u32::MAX as u64) as u32;
        Self {
            tile,
            spec: spec.clone(),
            blocking,
            weights: gpu.create_buffer_init(label, bytemuck::cast_slice(&packed), uniform),
            zeros: gpu.create_buffer_init(label, &vec![0u8; WINDOW_FLOATS * 4], uniform),
            bias_slope: gpu.create_buffer_init(label, bytemuck::cast_slice(&bias_slope), uniform),
            slope_base: padded as u32 / 4,
            dispatches,
            chunk_tiles,
        }
    }

    /// This layer run in chunks of at most `tiles` tiles an item (tests cut small maps this way).
    pub fn with_chunk_tiles(self, tiles: u32) -> Self {
        Self {
            chunk_tiles: tiles.max(1),
            ..self
        }
    }

    /// Output tiles of an item (along a row, in all) for an `out_h x out_w` output.
    fn tiles(&self, out_h: u32, out_w: u32) -> (u32, u32) {
        let m = self.tile.m();
        let tw = out_w.div_ceil(m);
        (tw, tw * out_h.div_ceil(m))
    }

    /// Elements an item of V and of M holds for an `out_h x out_w` output: one chunk's tiles,
    /// in whole 8s (the rows' length, so that the products move 8 q a load where they can).
    pub fn scratch_elements(&self, out_h: u32, out_w: u32) -> [u64; 2] {
        let tiles = row_tiles(self.tiles(out_h, out_w).1.min(self.chunk_tiles));
        let a2 = (self.tile.alpha() * self.tile.alpha()) as u64;
        [self.spec.in_c, self.spec.out_c].map(|c| a2 * c as u64 * tiles as u64)
    }

    /// The three kernels' steps, chained into one, over `scratch` (or buffers of their own):
    /// the input (`in_h x in_w` as `src` holds it, before any upsampling) and the output where
    /// `placed` says (a residual only for a whole output).
    pub fn prepare(
        &self,
        cx: Bind,
        [src, dst]: [&wgpu::Buffer; 2],
        [in_h, in_w]: [u32; 2],
        residual: Option<(&wgpu::Buffer, Residual)>,
        scratch: Option<Scratch>,
        placed: Placed,
    ) -> Step {
        let Bind {
            gpu,
            kernels,
            label,
        } = cx;
        let s = &self.spec;
        assert!(
            residual.is_none() || placed.dst == (s.out_c, 0),
            "a residual is for a whole output"
        );
        let (in_h, in_w) = (in_h * placed.upsample[0], in_w * placed.upsample[1]);
        let (out_h, out_w) = s
            .output_hw(in_h, in_w)
            .expect("shapes were checked at load");
        let (tiles_w, tiles) = self.tiles(out_h, out_w);
        let a2 = self.tile.alpha() * self.tile.alpha();
        let bytes = kernels.precision.bytes();
        // Without the engine's scratch, buffers of its own for as many items as `dst` holds.
        let own: Vec<TrackedBuffer> = if scratch.is_some() {
            Vec::new()
        } else {
            let items = dst.size() / (bytes * (placed.dst.0 * out_h * out_w).max(1) as u64);
            let usage = wgpu::BufferUsages::STORAGE;
            self.scratch_elements(out_h, out_w)
                .into_iter()
                .map(|e| {
                    let size = (e * bytes * items.max(1)).next_multiple_of(4);
                    gpu.create_buffer(label, size, usage)
                })
                .collect()
        };
        let scratch = match scratch {
            Some(s) => s,
            None => Scratch {
                v: &own[0],
                m: &own[1],
            },
        };
        // Every item the scratch holds has a chunk's tiles in a row of V and M (q contiguous),
        // the rows in whole 8s.
        let chunk = tiles.min(self.chunk_tiles);
        let item_bytes = |c: u32| (a2 * c * row_tiles(chunk)) as u64 * bytes;
        let capacity = (scratch.v.size() / item_bytes(s.in_c))
            .min(scratch.m.size() / item_bytes(s.out_c))
            .max(1);
        let q_stride = (capacity * row_tiles(chunk) as u64).min(u32::MAX as u64 & !7) as u32;
        let upsampled = placed.upsample != [1, 1];
        // 8 q a load on a CPU adapter (`BATCHWISE_WINOGRAD_WIDE=off`: one, to measure).
        let wide = kernels.eight_a_load
            && std::env::var("BATCHWISE_WINOGRAD_WIDE").map_or(true, |v| v != "off");
        let per = if wide { 8 } else { 1 };
        let input_pipeline =
            kernels.generated("winograd input", &input_source(self.tile, upsampled));
        let (activation, alpha, beta) = s.activation.encode();
        // The output's residual and activation compiled in (`gemm::Epilogue`).
        let residual_code = residual.map_or(0, |(_, r)| r as u32);
        let epilogue = super::gemm::Epilogue::compiled(true, residual_code, activation);
        let output_source = super::gemm_epilogue::specialize(output_source(self.tile), epilogue);
        let output_pipeline = kernels.generated("winograd output", &output_source);
        // Without a residual the binding is never read; M stands in.
        let skip = residual.map_or(scratch.m, |(r, _)| r);
        // Each kernel labelled by its phase (`bench --profile` times them apart).
        let tile = self.tile;
        let mut steps = Vec::new();
        for tile_base in (0..tiles).step_by(chunk as usize) {
            let count = chunk.min(tiles - tile_base);
            let groups = count.div_ceil(WORKGROUP_X);
            let input = InputParams {
                in_c: s.in_c,
                in_h,
                in_w,
                pad_top: s.pads[0],
                pad_left: s.pads[1],
                tiles_w,
                tiles: count,
                v_t: s.in_c * q_stride,
                src_c: placed.src.0,
                src_offset: placed.src.1,
                up_y: placed.upsample[0],
                up_x: placed.upsample[1],
                q_stride,
                tile_base,
                _pad: [0; 2],
            };
            steps.push(super::step(
                gpu,
                &format!("winograd {tile:?} input"),
                &input_pipeline,
                &input,
                &[src, scratch.v],
                [groups, s.in_c],
                1,
            ));
            steps.push(self.products(cx, &scratch, [count, q_stride], per));
            let output = OutputParams {
                out_c: s.out_c,
                out_h,
                out_w,
                tiles_w,
                tiles: count,
                m_t: s.out_c * q_stride,
                activation,
                alpha,
                beta,
                residual: residual_code,
                slope_base: self.slope_base,
                dst_c: placed.dst.0,
                dst_offset: placed.dst.1,
                q_stride,
                tile_base,
                _pad: [0; 1],
            };
            let buffers = [&*self.bias_slope, scratch.m, dst, skip];
            steps.push(super::step(
                gpu,
                &format!("winograd {tile:?} output"),
                &output_pipeline,
                &output,
                &buffers,
                [groups, s.out_c],
                1,
            ));
        }
        let first = steps.remove(0);
        first.then(steps).keeping(own)
    }

    /// The alpha^2 products M[t] = U[t] V[t] (`products_source`, over gemm.wgsl's bindings): one
    /// dispatch per t and weight window, q over the batch's items (their tiles side by side in
    /// each row of V and M, `q_stride` apart): a batch of small maps still fills the workgroups.
    /// `tiles`: q an item takes in a row (its chunk's tiles); `per`: q a load (1, or 8 on a
    /// CPU adapter, `products_source`).
    fn products(&self, cx: Bind, scratch: &Scratch, [tiles, q_stride]: [u32; 2], per: u32) -> Step {
        let Bind {
            gpu,
            kernels,
            label,
        } = cx;
        let s = &self.spec;
        let mut records = vec![0u8; self.dispatches.len() * UNIFORM_ALIGN];
        let mut offsets = Vec::with_capacity(self.dispatches.len());
        for (i, (t, d)) in self.dispatches.iter().enumerate() {
            let params = GemmParams {
                q_count: q_stride,
                q_item: q_stride,
                in_cs: q_stride,
                in_qs: 1,
                in_item: 0,
                out_cs: q_stride,
                out_qs: 1,
                out_item: 0,
                // Row t x out_c + oc of M is oc of matrix t; the block stops at its end.
                out_c: (t + 1) * s.out_c,
                ic_base: t * s.in_c + d.ic_base,
                ic_count: d.ic_count,
                oc_base: t * s.out_c + d.oc_base,
                first: d.first as u32,
                last: d.last as u32,
                activation: 0,
                alpha: 0.0,
                beta: 0.0,
                residual: 0,
                slope_base: 0,
                skip_item: 0,
                skip_c: 0,
                block_stride: d.block_stride / 4,
            };
            let at = i * UNIFORM_ALIGN;
            records[at..at + std::mem::size_of::<GemmParams>()]
                .copy_from_slice(bytemuck::bytes_of(&params));
            offsets.push(vec![at as u32, d.weight_offset as u32]);
        }
        let params = gpu.create_buffer_init(label, &records, wgpu::BufferUsages::UNIFORM);
        let window = |buffer, size: usize| {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset: 0,
                size: wgpu::BufferSize::new(size as u64),
            })
        };
        let resources = [
            window(&params, std::mem::size_of::<GemmParams>()),
            window(&self.weights, WINDOW_FLOATS * 4),
            self.zeros.as_entire_binding(),
            scratch.v.as_entire_binding(),
            scratch.m.as_entire_binding(),
            // The residual binding is never read; V stands in.
            scratch.v.as_entire_binding(),
        ];
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .into_iter()
            .enumerate()
            .map(|(binding, resource)| wgpu::BindGroupEntry {
                binding: binding as u32,
                resource,
            })
            .collect();
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &kernels.gemm_layout,
            entries: &entries,
        });
        let blocks = self.dispatches.iter().map(|(_, d)| d.blocks).max();
        let per_group = self.blocking.pix * gemm::WORKGROUP_X;
        // No residual and no activation (the output transform applies them), compiled in.
        let whole = self.dispatches.iter().all(|(_, d)| d.first && d.last);
        let epilogue = gemm::Epilogue::compiled(whole, 0, 0);
        let source = products_source(self.blocking, per);
        let source = super::gemm_epilogue::specialize(source, epilogue);
        Step::with_offsets(
            &format!("winograd {:?} products", self.tile),
            kernels.generated_gemm("winograd products", &source),
            bind_group,
            [tiles.div_ceil(per_group), blocks.unwrap_or(1)],
            1,
            offsets,
            vec![params],
        )
        .folding_items(tiles, per_group)
    }
}
