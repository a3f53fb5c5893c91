//! An image's first convolution (at most [`MAX_INPUTS`] input channels, up to 7x7, stride 1 or
//! 2) on rows: an invocation computes `rows` output rows of 8 columns for a block of 4, 8 or 16
//! output channels, the accumulators vec4s of 4 columns. Each row of its input patch is read
//! whole (vec4s, on a CPU adapter pairs of them as `vec4<u64>`: `super::eight`) and each output
//! row of a channel written as 2 vec4s or one `vec4<u64>`, where conv2d.wgsl's one-column kernel
//! and the narrow pixel blocks read and write one value a load: on llvmpipe every load and store
//! with a per-lane address is a pass of a loop over the lanes per component.
//!
//! A 3x3 kernel on at most 3 input channels is unrolled whole (no loop, no early return), so
//! that llvmpipe loads each weight once for all lanes ([`source`]).
//!
//! The sums are float32 in the float16 variant too (`act` is the element type of `src`, `dst` and
//! `skip` alone; float16 sums of up to 196 products lost 3 dB on remove-background's output).
//!
//! It runs on conv2d.wgsl's params, weight windows (packed as the narrow block's, 4 x `vecs`
//! channels, one input-channel chunk) and bindings, with `src`, `dst` and `skip` declared as
//! vectors; the bias, activation and residual are applied as `store_acc` would. Chosen where a
//! layer is prepared ([`rows_for`]): only on maps whose rows allow it.

use super::conv2d::Variant;
use super::conv2d_narrow::Narrow;
use super::shaders::redeclared;

/// Input channels a group may have: the weights of one 16-channel block fit one window (one
/// chunk), so every dispatch starts from the bias and applies the activation.
pub const MAX_INPUTS: u32 = 4;
/// The most kernel rows (over all input channels) the unrolled kernel takes: 3x3 on 3 channels
/// ran 1.24x faster unrolled, 5x5 on 3 channels 1.4x slower (its straight-line code about
/// twice as long), measured on lavapipe (BENCHMARKS.md, "Weights at constant offsets").
const MAX_UNROLLED: u32 = 9;
/// Output rows an invocation.
pub const ROWS: u32 = 2;
/// Output columns an invocation (two vec4s, or one `vec4<u64>`).
const COLS: u32 = 8;

/// How a rows kernel reads and writes: its left padding (compiled in: which vec4 holds each
/// column of the patch), 8 values a load where the input rows allow it, 8 a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Wide {
    pub pad_left: u32,
    /// Input rows read as `vec4<u64>` pairs (rows a multiple of 8 wide).
    pub load8: bool,
    /// Output rows written as `vec4<u64>`.
    pub store8: bool,
    /// The layer's input channels, compiled in with the loops over them and the kernel rows
    /// unrolled, or 0 where they stay loops (`BATCHWISE_CONV_ROWS_UNROLL=off`, to measure).
    pub inputs: u32,
}

/// The rows variant of `variant` (conv2d.wgsl's 16-channel block or a narrow one of at most 16
/// channels, weights packed alike) for an `in_w`-wide input and `out_w`-wide output, or None
/// where it does not apply: groups of at most [`MAX_INPUTS`] input channels, stride 1 or 2 along
/// x, no dilation, no fused upsample, both widths a multiple of 8 (the output's) and 4 (the
/// input's), on a CPU adapter (`on_cpu`: measured on lavapipe only; its 64 vec4 accumulators an
/// invocation would crowd a GPU's registers). `eight`: the kernels move 8 values a load
/// (`Kernels::eight_a_load`). `BATCHWISE_CONV_WIDE_ROWS=off` keeps the variant (to measure).
pub fn rows_for(
    variant: Variant,
    spec: &crate::model::Conv2dSpec,
    [in_w, out_w]: [u32; 2],
    upsample: [u32; 2],
    [on_cpu, eight]: [bool; 2],
) -> Option<Variant> {
    let off = !on_cpu || std::env::var("BATCHWISE_CONV_WIDE_ROWS").is_ok_and(|v| v == "off");
    let looped = std::env::var("BATCHWISE_CONV_ROWS_UNROLL").is_ok_and(|v| v == "off");
    let vecs = match variant.narrow {
        Some(n) if n.wide.is_none() => n.vecs,
        None if variant.winograd.is_none() => 4,
        _ => return None,
    };
    let fits = spec.in_c / spec.groups <= MAX_INPUTS
        && spec.groups == 1
        && spec.dilation == [1, 1]
        && (1..=2).contains(&spec.stride[1])
        && spec.k_h <= 7
        && spec.k_w <= 7
        && upsample == [1, 1]
        && out_w.is_multiple_of(COLS)
        && in_w.is_multiple_of(4);
    (!off && fits).then(|| Variant {
        k_h: spec.k_h,
        stride_h: spec.stride[0],
        dil_h: 1,
        rows: ROWS,
        narrow: Some(Narrow {
            vecs,
            cols: COLS,
            k_w: spec.k_w,
            stride_w: spec.stride[1],
            dil_w: 1,
            wide: Some(Wide {
                pad_left: spec.pads[1],
                load8: eight && in_w.is_multiple_of(8),
                store8: eight,
                inputs: if looped || spec.in_c * spec.k_h > MAX_UNROLLED {
                    0
                } else {
                    spec.in_c
                },
            }),
        }),
        winograd: None,
    })
}

/// WGSL: conv2d.wgsl's declarations (`head`: params, bindings, `activate`) with the vector
/// bindings and the rows `main`.
///
/// With the input channels compiled in (`wide.inputs`), the loops over them and over the kernel
/// rows are unrolled and nothing returns early: every weight is then read at a constant offset
/// outside any control flow, which llvmpipe loads once for all lanes (a uniform load in a loop
/// or after a branch is a gather, lane by lane).
pub fn source(head: &str, v: &Variant, n: &Narrow, wide: Wide) -> String {
    let mut w = declarations(head, wide);
    let mut line = |l: String| {
        w.push_str(&l);
        w.push('\n');
    };
    let (rows, k_h, sh) = (v.rows, v.k_h, v.stride_h);
    let (k_w, vecs) = (n.k_w, n.vecs);
    let channels = 4 * vecs;
    line(format!(
        "// Rows: {channels} channels of {rows}x{COLS} pixels, kernel {k_h}x{k_w}, stride {sh}x{}, {wide:?}.",
        n.stride_w
    ));
    line("@compute @workgroup_size(16, WG_Y, 1)".into());
    line("fn main(@builtin(global_invocation_id) gid: vec3<u32>) {".into());
    if wide.inputs == 0 {
        line(format!("    let ox0 = gid.x * {COLS}u;"));
        line("    if ox0 >= p.out_w { return; }".into());
        line("    let live = true;".into());
    } else {
        // Lanes past the map compute the last block again and store nothing.
        line(format!("    let live = gid.x * {COLS}u < p.out_w;"));
        line(format!(
            "    let ox0 = min(gid.x * {COLS}u, p.out_w - {COLS}u);"
        ));
    }
    line(format!("    let oy0 = gid.y * {rows}u;"));
    line("    let n = gid.z;".into());
    // Accumulator of output row r, channel o, columns 4h .. 4h + 3; in `held` at (r, o, h).
    let acc = |r: u32, o: u32, h: u32| format!("a{r}_{o}_{h}");
    let all = || {
        (0..rows).flat_map(move |r| (0..channels).flat_map(move |o| (0..2).map(move |h| (r, o, h))))
    };
    for (r, o, h) in all() {
        let bias = format!("p.bias[{}][{}]", o / 4, o % 4);
        line(format!("    var {} = vec4<f32>({bias});", acc(r, o, h)));
    }
    line(format!(
        "    let iy0 = i32(oy0 * {sh}u) - i32(p.pad_top);\n    let last_row = i32(p.in_h) - 1;\n    \
         let row4 = p.in_w / 4u;\n    let q_base = i32(ox0 * {}u / 4u);\n    let last_q = i32(row4) - 1;",
        n.stride_w
    ));
    let plane =
        |ic: &str| format!("        let plane = (n * p.in_c + p.ic_base + {ic}) * p.in_h * row4;");
    if wide.inputs == 0 {
        // The loop over kernel rows stays a loop (an unrolled one took lavapipe seconds to
        // compile): each kernel row's weights, then for each output row its input row, read
        // whole, and its products.
        line("    for (var ic = 0u; ic < p.ic_count; ic++) {".into());
        line(plane("ic"));
        line(format!("        for (var ky = 0u; ky < {k_h}u; ky++) {{"));
        let wi = format!("(ic * {k_h}u + ky) * {}u", k_w * vecs);
        line(kernel_row(v, n, wide, "ky", &|at| format!("{wi} + {at}u")));
        line("        }".into());
        line("    }".into());
    } else {
        for (ic, ky) in (0..wide.inputs).flat_map(|ic| (0..k_h).map(move |ky| (ic, ky))) {
            line("    {".into());
            line(plane(&format!("{ic}u")));
            let wi = (ic * k_h + ky) * k_w * vecs;
            line(kernel_row(v, n, wide, &format!("{ky}u"), &|at| {
                format!("{}u", wi + at)
            }));
            line("    }".into());
        }
    }
    line(format!(
        "    var held: array<vec4<f32>, {}>;",
        rows * channels * 2
    ));
    for (i, (r, o, h)) in all().enumerate() {
        line(format!("    held[{i}] = {};", acc(r, o, h)));
    }
    line("    if !live { return; }".into());
    line(format!(
        "    for (var i = 0u; i < {}u; i++) {{",
        rows * channels
    ));
    line(format!(
        "        store_row(n, oy0 + i / {channels}u, ox0, i % {channels}u, held[2u * i], held[2u * i + 1u]);"
    ));
    line("    }\n}".into());
    w
}

/// WGSL: the products of kernel row `ky` (an expression) of one input channel (`plane`): its
/// weights (window offset `weight(kx * vecs + b)`), then for each output row its input row, read
/// whole, and the products into the accumulators.
fn kernel_row(
    v: &Variant,
    n: &Narrow,
    wide: Wide,
    ky: &str,
    weight: &dyn Fn(u32) -> String,
) -> String {
    let mut w = String::new();
    let mut line = |l: String| {
        w.push_str(&l);
        w.push('\n');
    };
    let (rows, sh) = (v.rows, v.stride_h);
    let (k_w, sw, vecs) = (n.k_w, n.stride_w, n.vecs);
    let channels = 4 * vecs;
    let span_w = (COLS - 1) * sw + k_w;
    for (kx, b) in (0..k_w).flat_map(|kx| (0..vecs).map(move |b| (kx, b))) {
        line(format!(
            "        let w{kx}_{b} = weights[{}];",
            weight(kx * vecs + b)
        ));
    }
    for r in 0..rows {
        line("        {".into());
        line(format!(
            "            let y = iy0 + i32({}u + {ky}); let my = y >= 0 && y <= last_row; \
             let ry = u32(clamp(y, 0, last_row)) * row4;",
            r * sh
        ));
        line(row_loads(span_w, wide));
        // The 4 outputs of each half read columns kx, kx + sw, ..: one vec4 a kernel column.
        for (kx, h) in (0..k_w).flat_map(|kx| (0..2).map(move |h| (kx, h))) {
            let x: Vec<String> = (0..4)
                .map(|c| format!("x{}", kx + sw * (4 * h + c)))
                .collect();
            line(format!(
                "            let s{kx}_{h} = vec4<f32>({});",
                x.join(", ")
            ));
            for o in 0..channels {
                let lane = ["x", "y", "z", "w"][o as usize % 4];
                let w = format!("w{kx}_{}.{lane}", o / 4);
                line(format!("            a{r}_{o}_{h} += s{kx}_{h} * {w};"));
            }
        }
        line("        }".into());
    }
    w
}

/// conv2d.wgsl's params, bindings and `activate` (`head` up to `load_acc`, which reads `dst` one
/// value at a time), `src`, `dst` and `skip` declared as vectors, and `store_row`.
fn declarations(head: &str, wide: Wide) -> String {
    let cut = head
        .find("// The accumulator of output row")
        .expect("conv2d.wgsl declares load_acc after activate");
    let element = |eight: bool| if eight { "vec4<u64>" } else { "vec4<act>" };
    let mut w = redeclared(&head[..cut], "src", element(wide.load8));
    w = redeclared(&w, "dst", element(wide.store8));
    w = redeclared(&w, "skip", "vec4<act>");
    if wide.load8 || wide.store8 {
        w.push_str(super::eight::HELPERS);
    }
    w.push_str(&store_function(wide.store8));
    w
}

/// WGSL: a patch row's `span_w` columns (row `ry`, inside the image where `my`) as named values
/// `x{col}`, read whole (`row_loads`). Column `col` is input column `ox0 * sw - pad_left + col`
/// (`ox0 * sw` is a multiple of 8, so `q_base`, its vec4, is even).
fn row_loads(span_w: u32, wide: Wide) -> String {
    let mut w = String::new();
    let mut push = |l: String| {
        w.push_str("            ");
        w.push_str(&l);
        w.push('\n');
    };
    let loads = super::row_loads::plan(span_w, wide.pad_left, |_| true, wide.load8);
    for (k, load) in loads.iter().enumerate() {
        push(format!(
            "let q{k} = q_base + {}; let m{k} = my && q{k} >= 0 && q{k} <= last_q; \
             let at{k} = plane + ry + u32(clamp(q{k}, 0, last_q));",
            load.d
        ));
        push(load.values(
            &format!("at{k}"),
            &format!("m{k}"),
            wide.load8,
            &format!("v{k}"),
        ));
        for &(c, _, _) in &load.columns {
            push(format!("let x{c} = {};", load.value(c, &format!("v{k}"))));
        }
    }
    w
}

/// WGSL: `store_row`, writing output row `oy` of channel `oc_base + o` at columns `ox0 ..
/// ox0 + 7` (`lo`, `hi`) with the residual and activation applied as conv2d.wgsl's `store_acc`
/// does after the last chunk (the only one: at most 4 input channels).
fn store_function(store8: bool) -> String {
    let write = if store8 {
        "dst[at / 8u] = pack8(a, b);"
    } else {
        "dst[at / 4u] = a;\n    dst[at / 4u + 1u] = b;"
    };
    format!(
        "
fn activate_channel(v: vec4<act>, o: u32) -> vec4<act> {{
    if p.activation == 3u {{
        let s = act(p.slope[o / 4u][o % 4u]);
        return select(v * s, v, v >= vec4<act>(0.0));
    }}
    return activate(v, o / 4u);
}}

fn store_row(n: u32, oy: u32, ox0: u32, o: u32, lo: vec4<f32>, hi: vec4<f32>) {{
    let oc = p.oc_base + o;
    if oc >= p.oc_end || oy >= p.out_h {{
        return;
    }}
    let at = ((n * p.out_c + oc) * p.out_h + oy) * p.out_w + ox0;
    var a = vec4<act>(lo);
    var b = vec4<act>(hi);
    if p.residual == 1u {{
        a += skip[at / 4u];
        b += skip[at / 4u + 1u];
    }}
    a = activate_channel(a, o);
    b = activate_channel(b, o);
    if p.residual == 2u {{
        a += skip[at / 4u];
        b += skip[at / 4u + 1u];
    }}
    {write}
}}
"
    )
}
