//! The split Winograd's generated kernels (`winograd_gemm.rs` binds them): the input transform,
//! the products and the output transform, each unrolled for its tile or register block.
//!
//! The scratch is laid out so that the products' q (an item's tiles, then the next item's) is
//! contiguous: `V[t][in_c][q]` and `M[t][out_c][q]`, with `q = item x tiles + tile` and a row
//! stride (`q_stride`) of every item the scratch holds. No kernel divides per lane but the
//! transforms' one `tile / tiles_w` (an integer division is a per-lane loop on llvmpipe); the
//! input transform of a convolution without a fused upsample does not divide by its factors.

use super::gemm::Blocking;
use super::shaders::redeclared;
use super::winograd::{Tile, combination};

/// Invocations per workgroup of the transforms (along the tiles).
pub const WORKGROUP_X: u32 = 64;

/// The input transform's declarations; the generated `main` follows.
const INPUT_HEAD: &str =
    "// Winograd input transform (src/kernels/winograd_sources.rs): V = B^T d B per tile.
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
    v_t: u32,         // in_c x q_stride: the stride of V between its alpha^2 matrices
    src_c: u32,       // channels an item of `src` holds (the input: a slice of them)
    src_offset: u32,  // the input's first channel in them
    up_y: u32,        // nearest upsampling: `src` holds in_h / up_y x in_w / up_x pixels
    up_x: u32,
    q_stride: u32,    // V's stride between input channels: tiles x the items it holds
    tile_base: u32,   // the first of the item's tiles this chunk transforms (`tiles` of them)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> v: array<act>;
";

/// The output transform's declarations; the generated `main` follows.
const OUTPUT_HEAD: &str =
    "// Winograd output transform (src/kernels/winograd_sources.rs): Y = A^T M A per tile,
// with the fused bias, residual and activation (as conv2d.wgsl).
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    out_c: u32,
    out_h: u32,
    out_w: u32,
    tiles_w: u32,
    tiles: u32,
    m_t: u32,         // out_c x q_stride: the stride of M between its alpha^2 matrices
    activation: u32,  // 0 none, 1 leaky relu (alpha; relu is alpha 0), 2 clip(alpha, beta), 3 prelu
    alpha: f32,
    beta: f32,
    residual: u32,    // 0 none, 1 add `skip` then activate, 2 activate then add
    slope_base: u32,  // where the PRelu slopes start in `bias_slope`, in vec4s
    dst_c: u32,       // channels an item of `dst` holds (the output: a slice of them)
    dst_offset: u32,  // the output's first channel in them
    q_stride: u32,    // M's stride between output channels: tiles x the items it holds
    tile_base: u32,   // the first of the item's tiles this chunk transforms (`tiles` of them)
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
        case 4u: { return x * clamp(x / act(6.0) + act(0.5), act(0.0), act(1.0)); }
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

/// Appends `l` and a newline to `w`.
fn push(w: &mut String, l: &str) {
    w.push_str(l);
    w.push('\n');
}

/// WGSL of the input transform for `tile`; `upsampled`: the input is read through a nearest
/// upsampling by `p.up_y x p.up_x` (without it, no division by them is emitted).
pub fn input_source(tile: Tile, upsampled: bool) -> String {
    let (m, a) = (tile.m() as usize, tile.alpha() as usize);
    let (bt, _, _) = tile.matrices();
    let mut w = String::from(INPUT_HEAD);
    let mut line = |l: String| push(&mut w, &l);
    line(format!(
        "// F({m}x{m}, 3x3): alpha {a}; upsampled: {upsampled}."
    ));
    line(format!("@compute @workgroup_size({WORKGROUP_X}, 1, 1)"));
    line("fn main(@builtin(global_invocation_id) gid: vec3<u32>) {".into());
    line("    let tile = gid.x;".into());
    line("    if tile >= p.tiles { return; }".into());
    line("    let ic = gid.y;".into());
    line("    let n = gid.z;".into());
    line("    let g = p.tile_base + tile;".into());
    line("    let ty = g / p.tiles_w;".into());
    line(format!("    let iy = i32(ty * {m}u) - i32(p.pad_top);"));
    line(format!(
        "    let ix = i32((g - ty * p.tiles_w) * {m}u) - i32(p.pad_left);"
    ));
    let (div_y, div_x) = if upsampled {
        (" / p.up_y", " / p.up_x")
    } else {
        ("", "")
    };
    line(format!("    let src_w = p.in_w{div_x};"));
    line(format!(
        "    let plane = (n * p.src_c + p.src_offset + ic) * (p.in_h{div_y}) * src_w;"
    ));
    line("    let last_y = i32(p.in_h) - 1;".into());
    line("    let last_x = i32(p.in_w) - 1;".into());
    for i in 0..a {
        line(format!(
            "    let y{i} = iy + {i}; let my{i} = y{i} >= 0 && y{i} <= last_y; let ry{i} = u32(clamp(y{i}, 0, last_y)){div_y} * src_w;"
        ));
        line(format!(
            "    let x{i} = ix + {i}; let mx{i} = x{i} >= 0 && x{i} <= last_x; let cx{i} = u32(clamp(x{i}, 0, last_x)){div_x};"
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
    line("    let base = ic * p.q_stride + n * p.tiles + tile;".into());
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
    let mut line = |l: String| push(&mut w, &l);
    line(format!("// F({m}x{m}, 3x3): alpha {a}."));
    line(format!("@compute @workgroup_size({WORKGROUP_X}, 1, 1)"));
    line("fn main(@builtin(global_invocation_id) gid: vec3<u32>) {".into());
    line("    let tile = gid.x;".into());
    line("    if tile >= p.tiles { return; }".into());
    line("    let oc = gid.y;".into());
    line("    let n = gid.z;".into());
    line("    let g = p.tile_base + tile;".into());
    line("    let ty = g / p.tiles_w;".into());
    line(format!("    let oy = ty * {m}u;"));
    line(format!("    let ox = (g - ty * p.tiles_w) * {m}u;"));
    line("    let base = oc * p.q_stride + n * p.tiles + tile;".into());
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

const LANES: [&str; 4] = ["x", "y", "z", "w"];

/// WGSL of the products `M[t] = U[t] V[t]` for `blocking`: gemm.wgsl's declarations (its params,
/// weight windows and bindings) with a `main` of its own for the scratch's contiguous q: an
/// invocation computes `oc_block` channels of `pix` consecutive q, read and written at
/// `row + q` (no per-lane division). `per`: q a load or store, 1 (q clamped to the last for
/// reading, stores from the last on dropped) or 8 (`vec4<u64>`, float32 on a CPU adapter:
/// `Kernels::eight_a_load`; the scratch's rows are whole 8s, so an invocation's q are all in its
/// row or all past it). Of gemm's params it reads `q_count` (every q the scratch holds), `in_cs`
/// and `out_cs` (the rows' stride: `q_stride`), `ic_base`, `ic_count`, `oc_base`, `out_c` and
/// `first` (0: add to what M holds, for input channels past one window).
pub fn products_source(blocking: Blocking, per: u32) -> String {
    let generic = super::shader("gemm.wgsl");
    let head = &generic[..generic
        .find("@compute")
        .expect("gemm.wgsl has an entry point")];
    let (ob, pix) = (blocking.oc_block, blocking.pix);
    assert!(ob % 4 == 0 && pix % 4 == 0, "blocks of whole vec4s");
    let mut w = String::from(head);
    if per == 8 {
        assert!(pix % 8 == 0, "whole loads a block");
        // gemm.wgsl's own load and store helpers are over `act` elements.
        let helpers = w
            .find("// Where q (clamped")
            .expect("gemm.wgsl declares q_at");
        w.truncate(helpers);
        w = redeclared(&redeclared(&w, "src", "vec4<u64>"), "dst", "vec4<u64>");
        w.push_str(super::eight::HELPERS);
    }
    let mut line = |l: String| push(&mut w, &l);
    line(format!(
        "// Winograd products (src/kernels/winograd_sources.rs): {ob} channels x {pix} q per invocation, {per} q a load."
    ));
    if per == 1 {
        line(
            "// What M holds at `at` before this chunk of input channels (zero for the first)."
                .into(),
        );
        line("fn prior(at: u32) -> act {".into());
        line("    if p.first != 0u { return act(0.0); }".into());
        line("    return dst[at];".into());
        line("}".into());
    }
    line(format!(
        "@compute @workgroup_size({}, 1, 1)",
        super::gemm::WORKGROUP_X
    ));
    line("fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {".into());
    line(format!("    let q0 = gid.x * {pix}u;"));
    line(format!("    let oc0 = p.oc_base + wid.y * {ob}u;"));
    for o in 0..ob {
        for v in 0..pix / 4 {
            line(format!("    var a{o}_{v} = vec4<act>(0.0);"));
        }
    }
    match per {
        8 => wide_products(blocking, &mut line),
        _ => one_a_load_products(blocking, &mut line),
    }
    line("}".into());
    w
}

/// `main`'s products and stores, one q a load or store.
fn one_a_load_products(blocking: Blocking, line: &mut impl FnMut(String)) {
    let (ob, pix) = (blocking.oc_block, blocking.pix);
    line("    let last = p.q_count - 1u;".into());
    for i in 0..pix {
        line(format!("    let at{i} = min(q0 + {i}u, last);"));
    }
    blocking.products_loop(line);
    for o in 0..ob {
        line(format!("    if oc0 + {o}u < p.out_c {{"));
        line(format!("        let r = (oc0 + {o}u) * p.out_cs;"));
        for v in 0..pix / 4 {
            for i in 0..4 {
                let q = 4 * v + i;
                line(format!("        if q0 + {q}u <= last {{"));
                line(format!(
                    "            dst[r + q0 + {q}u] = a{o}_{v}.{} + prior(r + q0 + {q}u);",
                    LANES[i as usize]
                ));
                line("        }".into());
            }
        }
        line("    }".into());
    }
}

/// `main`'s products and stores, 8 q a `vec4<u64>` (`q_count`, `in_cs` and `out_cs` multiples
/// of 8): x{2u} and x{2u + 1} are the lower and upper 4 q of load u.
fn wide_products(blocking: Blocking, line: &mut impl FnMut(String)) {
    let (ob, pix) = (blocking.oc_block, blocking.pix);
    let loads = pix / 8;
    for u in 0..loads {
        line(format!(
            "    let at{u} = min(q0 + {}u, p.q_count - 8u) / 8u;",
            8 * u
        ));
    }
    line("    let cs = p.in_cs / 8u;".into());
    line("    let x0 = p.ic_base * cs;".into());
    let mut body = String::new();
    let mut push = |l: String| {
        body.push_str(&l);
        body.push('\n');
    };
    push("        let row = x0 + ic * cs;".into());
    for u in 0..loads {
        push(format!(
            "        let xx{u} = src[row + at{u}]; let x{} = lo8(xx{u}); let x{} = hi8(xx{u});",
            2 * u,
            2 * u + 1
        ));
    }
    blocking.products(&mut push);
    blocking.input_channels(line, &body);
    for o in 0..ob {
        line(format!("    if oc0 + {o}u < p.out_c {{"));
        line(format!(
            "        let r = (oc0 + {o}u) * (p.out_cs / 8u) + q0 / 8u;"
        ));
        for u in 0..loads {
            line(format!("        if q0 + {}u < p.q_count {{", 8 * u));
            line(format!("            var lo = a{o}_{};", 2 * u));
            line(format!("            var hi = a{o}_{};", 2 * u + 1));
            line("            if p.first == 0u {".into());
            line(format!("                let d = dst[r + {u}u];"));
            line("                lo += lo8(d);".into());
            line("                hi += hi8(d);".into());
            line("            }".into());
            line(format!("            dst[r + {u}u] = pack8(lo, hi);"));
            line("        }".into());
        }
        line("    }".into());
    }
}
