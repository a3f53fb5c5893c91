//! Winograd F(m x m, 3 x 3) split in three kernels, as ncnn runs it, for the tiles
//! `Tile::F2Split`, `F4Split` and `F6Split` (`winograd.rs` has the matrices and the fused kernel):
//!
//! 1. the input transform: one invocation per tile, input channel and item loads the tile's
//!    alpha x alpha patch (zero outside the image: the padding) and writes V = B^T d B to the
//!    scratch `V[item][alpha^2][in_c][tiles]` (tiles: the item's m x m output tiles, row-major);
//! 2. the products: alpha^2 independent GEMMs `M[t] = U[t] V[t]` (`[out_c x in_c] x [in_c x
//!    tiles]`) on gemm.wgsl, its register-tiled kernel as is: U (the weights transformed once at
//!    upload, U = G g G^T) packed per t in gemm's uniform windows, one dispatch per t and window;
//!    matrix t is reached through gemm's strides (its input rows from `t x in_c`, its output
//!    channels from `t x out_c`), the bias a zero buffer; into the scratch
//!    `M[item][alpha^2][out_c][tiles]`;
//! 3. the output transform: one invocation per tile, output channel and item computes
//!    Y = A^T M A and stores its m x m pixels with the fused bias, residual and activation.
//!
//! F(4,3) does 4x fewer multiplies than the direct kernel, F(6,3) 5.06x, F(2,3) 2.25x; the
//! scratch is alpha^2 / m^2 times the input and the output (F(4,3): 2.25x). The engine allocates
//! one V and one M per lane for every layer (`Conv2dLayer::scratch_elements`, counted by the memory
//! planner); a layer prepared without them allocates its own.
//!
//! The transforms' `main`s are generated (unrolled over B^T and A^T), over the declarations here;
//! `tests/shader_validation.rs` validates them, float32 and float16.

use super::gemm::{self, GemmParams};
use super::winograd::{Tile, combination};
use super::{Bind, Step};
use crate::gpu::{Gpu, TrackedBuffer};
use crate::model::{Activation, Conv2dSpec, Residual};

/// Dynamic uniform offsets are multiples of this (the largest alignment any adapter asks for).
const UNIFORM_ALIGN: usize = 256;
/// gemm.wgsl's weight window (and its bias buffer), in floats.
const WINDOW_FLOATS: usize = 16384;
/// Invocations per workgroup of the transforms (along the tiles).
const WORKGROUP_X: u32 = 64;

/// Whether the split kernel runs this convolution: a Winograd shape whose bias and slopes fit
/// the output transform's uniform buffer.
pub fn supported(spec: &Conv2dSpec) -> bool {
    super::winograd::supported(spec) && 2 * spec.out_c.next_multiple_of(4) as usize <= WINDOW_FLOATS
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
    _pad: [u32; 3],
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

/// The input transform's declarations; the generated `main` follows.
const INPUT_HEAD: &str =
    "// Winograd input transform (src/kernels/winograd_gemm.rs): V = B^T d B per tile.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    in_c: u32,
    in_h: u32,        // the input as the convolution sees it (upsampled)
    in_w: u32,
    pad_top: u32,
    pad_left: u32,
    tiles_w: u32,     // tiles along a row
    tiles: u32,       // tiles an item
    v_t: u32,         // in_c x tiles: the stride of V between its alpha^2 matrices
    src_c: u32,       // channels an item of `src` holds (the input: a slice of them)
    src_offset: u32,  // the input's first channel in them
    up_y: u32,        // nearest upsampling: `src` holds in_h / up_y x in_w / up_x pixels
    up_x: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> v: array<act>;
";

/// The output transform's declarations; the generated `main` follows.
const OUTPUT_HEAD: &str =
    "// Winograd output transform (src/kernels/winograd_gemm.rs): Y = A^T M A per tile, with
// the fused bias, residual and activation (as conv2d.wgsl).
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    out_c: u32,
    out_h: u32,
    out_w: u32,
    tiles_w: u32,
    tiles: u32,
    m_t: u32,         // out_c x tiles: the stride of M between its alpha^2 matrices
    activation: u32,  // 0 none, 1 leaky relu (alpha; relu is alpha 0), 2 clip(alpha, beta), 3 prelu
    alpha: f32,
    beta: f32,
    residual: u32,    // 0 none, 1 add `skip` then activate, 2 activate then add
    slope_base: u32,  // where the PRelu slopes start in `bias_slope`, in vec4s
    dst_c: u32,       // channels an item of `dst` holds (the output: a slice of them)
    dst_offset: u32,  // the output's first channel in them
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> bias_slope: array<vec4<f32>, 4096>; // bias, then PRelu slopes
@group(0) @binding(2) var<storage, read> m: array<act>;
@group(0) @binding(3) var<storage, read_write> dst: array<act>;
@group(0) @binding(4) var<storage, read> skip: array<act>; // the residual (a fused Add)

fn activate(x: act, oc: u32) -> act {
    switch p.activation {
        case 1u: { return select(x * act(p.alpha), x, x >= act(0.0)); }
        case 2u: { return clamp(x, act(p.alpha), act(p.beta)); }
        case 3u: {
            let s = act(bias_slope[p.slope_base + oc / 4u][oc % 4u]);
            return select(x * s, x, x >= act(0.0));
        }
        default: { return x; }
    }
}

// Stores output pixel (oy, ox) of channel oc of item n: bias, residual, activation.
fn put(n: u32, oc: u32, oy: u32, ox: u32, y: act, bias: act) {
    if oy >= p.out_h || ox >= p.out_w { return; }
    let at = ((n * p.out_c + oc) * p.out_h + oy) * p.out_w + ox;
    var x = y + bias;
    if p.residual == 1u { x += skip[at]; }
    x = activate(x, oc);
    if p.residual == 2u { x += skip[at]; }
    dst[((n * p.dst_c + p.dst_offset + oc) * p.out_h + oy) * p.out_w + ox] = x;
}
";

/// WGSL of the input transform for `tile`.
pub fn input_source(tile: Tile) -> String {
    let (m, a) = (tile.m() as usize, tile.alpha() as usize);
    let (bt, _, _) = tile.matrices();
    let mut w = String::from(INPUT_HEAD);
    let mut line = |l: String| {
        w.push_str(&l);
        w.push('\n');
    };
    line(format!("// F({m}x{m}, 3x3): alpha {a}."));
    line(format!("@compute @workgroup_size({WORKGROUP_X}, 1, 1)"));
    line("fn main(@builtin(global_invocation_id) gid: vec3<u32>) {".into());
    line("    let tile = gid.x;".into());
    line("    if tile >= p.tiles { return; }".into());
    line("    let ic = gid.y;".into());
    line("    let n = gid.z;".into());
    line(format!(
        "    let iy = i32(tile / p.tiles_w * {m}u) - i32(p.pad_top);"
    ));
    line(format!(
        "    let ix = i32(tile % p.tiles_w * {m}u) - i32(p.pad_left);"
    ));
    line("    let src_w = p.in_w / p.up_x;".into());
    line("    let plane = (n * p.src_c + p.src_offset + ic) * (p.in_h / p.up_y) * src_w;".into());
    line("    let last_y = i32(p.in_h) - 1;".into());
    line("    let last_x = i32(p.in_w) - 1;".into());
    for i in 0..a {
        line(format!(
            "    let y{i} = iy + {i}; let my{i} = y{i} >= 0 && y{i} <= last_y; let ry{i} = u32(clamp(y{i}, 0, last_y)) / p.up_y * src_w;"
        ));
        line(format!(
            "    let x{i} = ix + {i}; let mx{i} = x{i} >= 0 && x{i} <= last_x; let cx{i} = u32(clamp(x{i}, 0, last_x)) / p.up_x;"
        ));
    }
    for r in 0..a {
        for c in 0..a {
            line(format!(
                "    let d{r}_{c} = select(act(0.0), src[plane + ry{r} + cx{c}], my{r} && mx{c});"
            ));
        }
    }
    // t = B^T d (rows), then V = t B (B[k][c] = B^T[c][k]).
    for r in 0..a {
        for c in 0..a {
            let e = combination(&bt[r * a..(r + 1) * a], |k| format!("d{k}_{c}"));
            line(format!("    let t{r}_{c} = {e};"));
        }
    }
    line("    let base = n * p.v_t * ".to_owned() + &format!("{}u + ic * p.tiles + tile;", a * a));
    for r in 0..a {
        for c in 0..a {
            let e = combination(&bt[c * a..(c + 1) * a], |k| format!("t{r}_{k}"));
            line(format!("    v[base + {}u * p.v_t] = {e};", r * a + c));
        }
    }
    line("}".into());
    w
}

/// WGSL of the output transform for `tile`.
pub fn output_source(tile: Tile) -> String {
    let (m, a) = (tile.m() as usize, tile.alpha() as usize);
    let (_, _, at) = tile.matrices();
    let mut w = String::from(OUTPUT_HEAD);
    let mut line = |l: String| {
        w.push_str(&l);
        w.push('\n');
    };
    line(format!("// F({m}x{m}, 3x3): alpha {a}."));
    line(format!("@compute @workgroup_size({WORKGROUP_X}, 1, 1)"));
    line("fn main(@builtin(global_invocation_id) gid: vec3<u32>) {".into());
    line("    let tile = gid.x;".into());
    line("    if tile >= p.tiles { return; }".into());
    line("    let oc = gid.y;".into());
    line("    let n = gid.z;".into());
    line(format!("    let oy = tile / p.tiles_w * {m}u;"));
    line(format!("    let ox = tile % p.tiles_w * {m}u;"));
    line(format!(
        "    let base = n * p.m_t * {}u + oc * p.tiles + tile;",
        a * a
    ));
    for t in 0..a * a {
        line(format!("    let m{t} = m[base + {t}u * p.m_t];"));
    }
    // s = A^T M (rows), then Y = s A.
    for i in 0..m {
        for c in 0..a {
            let e = combination(&at[i * a..(i + 1) * a], |j| format!("m{}", j * a + c));
            line(format!("    let s{i}_{c} = {e};"));
        }
    }
    line("    let bias = act(bias_slope[oc / 4u][oc % 4u]);".into());
    for i in 0..m {
        for j in 0..m {
            let e = combination(&at[j * a..(j + 1) * a], |c| format!("s{i}_{c}"));
            line(format!("    put(n, oc, oy + {i}u, ox + {j}u, {e}, bias);"));
        }
    }
    line("}".into());
    w
}

/// A 3x3 convolution's transformed weights on the GPU, packed for gemm.wgsl per matrix t.
pub struct WinogradGemm {
    pub tile: Tile,
    spec: Conv2dSpec,
    weights: TrackedBuffer,
    /// Zeros: gemm.wgsl's bias (the products start from zero).
    zeros: TrackedBuffer,
    /// The output transform's bias, then the PRelu slopes from `slope_base` (in vec4s).
    bias_slope: TrackedBuffer,
    slope_base: u32,
    /// Per gemm dispatch: the matrix t and gemm's dispatch (weight offset in the whole buffer).
    dispatches: Vec<(u32, gemm::Dispatch)>,
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
        // [oc][ic][t] -> per t [oc][ic].
        let u = super::winograd::transform_weights(weights, tile);
        let mut packed: Vec<f32> = Vec::new();
        let mut dispatches = Vec::new();
        for t in 0..a2 {
            let ut: Vec<f32> = (0..oc * ic).map(|i| u[i * a2 + t]).collect();
            let (p, ds) = gemm::pack(gemm::BLOCKING, spec.out_c, spec.in_c, &ut);
            // gemm pads each packing a window past its last offset; keep what its dispatches read.
            let used = ds
                .iter()
                .map(|d| {
                    let ob = gemm::BLOCKING.oc_block as usize;
                    d.weight_offset as usize / 4 + (d.blocks * d.ic_count) as usize * ob
                })
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
        Self {
            tile,
            spec: spec.clone(),
            weights: gpu.create_buffer_init(label, bytemuck::cast_slice(&packed), uniform),
            zeros: gpu.create_buffer_init(label, &vec![0u8; WINDOW_FLOATS * 4], uniform),
            bias_slope: gpu.create_buffer_init(label, bytemuck::cast_slice(&bias_slope), uniform),
            slope_base: padded as u32 / 4,
            dispatches,
        }
    }

    /// Output tiles of an item (along a row, in all) for an `out_h x out_w` output.
    fn tiles(&self, out_h: u32, out_w: u32) -> (u32, u32) {
        let m = self.tile.m();
        let tw = out_w.div_ceil(m);
        (tw, tw * out_h.div_ceil(m))
    }

    /// Elements an item of V and of M holds for an `out_h x out_w` output.
    pub fn scratch_elements(&self, out_h: u32, out_w: u32) -> [u64; 2] {
        let (_, tiles) = self.tiles(out_h, out_w);
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
        let input = InputParams {
            in_c: s.in_c,
            in_h,
            in_w,
            pad_top: s.pads[0],
            pad_left: s.pads[1],
            tiles_w,
            tiles,
            v_t: s.in_c * tiles,
            src_c: placed.src.0,
            src_offset: placed.src.1,
            up_y: placed.upsample[0],
            up_x: placed.upsample[1],
        };
        let groups = tiles.div_ceil(WORKGROUP_X);
        let pipeline = kernels.generated("winograd input", &input_source(self.tile));
        let first = super::step(
            gpu,
            label,
            &pipeline,
            &input,
            &[src, scratch.v],
            [groups, s.in_c],
            1,
        );
        let products = self.products(cx, &scratch, tiles, a2);
        let (activation, alpha, beta) = s.activation.encode();
        let output = OutputParams {
            out_c: s.out_c,
            out_h,
            out_w,
            tiles_w,
            tiles,
            m_t: s.out_c * tiles,
            activation,
            alpha,
            beta,
            residual: residual.map_or(0, |(_, r)| r as u32),
            slope_base: self.slope_base,
            dst_c: placed.dst.0,
            dst_offset: placed.dst.1,
            _pad: [0; 3],
        };
        let pipeline = kernels.generated("winograd output", &output_source(self.tile));
        // Without a residual the binding is never read; M stands in.
        let skip = residual.map_or(scratch.m, |(r, _)| r);
        let buffers = [&*self.bias_slope, scratch.m, dst, skip];
        let last = super::step(
            gpu,
            label,
            &pipeline,
            &output,
            &buffers,
            [groups, s.out_c],
            1,
        );
        first.then(vec![products, last]).keeping(own)
    }

    /// The alpha^2 products M[t] = U[t] V[t] on gemm.wgsl: one dispatch per t and window. The
    /// items are folded into q (their tiles side by side): a batch of small maps still fills
    /// gemm's workgroups of 512 q.
    fn products(&self, cx: Bind, scratch: &Scratch, tiles: u32, a2: u32) -> Step {
        let Bind {
            gpu,
            kernels,
            label,
        } = cx;
        let s = &self.spec;
        // q runs over every item the scratch holds (the step dispatches only the batch's).
        let item_bytes = |c: u32| (a2 * c * tiles).max(1) as u64 * kernels.precision.bytes();
        let capacity = (scratch.v.size() / item_bytes(s.in_c))
            .min(scratch.m.size() / item_bytes(s.out_c))
            .max(1);
        let q_count = (capacity * tiles as u64).clamp(1, u32::MAX as u64) as u32;
        let mut records = vec![0u8; self.dispatches.len() * UNIFORM_ALIGN];
        let mut offsets = Vec::with_capacity(self.dispatches.len());
        for (i, (t, d)) in self.dispatches.iter().enumerate() {
            let params = GemmParams {
                q_count,
                q_item: tiles.max(1),
                in_cs: tiles,
                in_qs: 1,
                in_item: a2 * s.in_c * tiles,
                out_cs: tiles,
                out_qs: 1,
                out_item: a2 * s.out_c * tiles,
                // Channel t x out_c + oc of M is oc of matrix t; the block stops at its end.
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
        let per_group = gemm::BLOCKING.pix * gemm::WORKGROUP_X;
        Step::with_offsets(
            label,
            kernels.gemm(gemm::BLOCKING),
            bind_group,
            [tiles.div_ceil(per_group), blocks.unwrap_or(1)],
            1,
            offsets,
            vec![params],
        )
        .folding_items(tiles, per_group)
    }
}
