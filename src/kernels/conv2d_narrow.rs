//! Convolutions with few output channels (at most 12 a group, or few input channels and a large
//! kernel: `MAX_FEW_INPUTS`) on conv2d.wgsl's declarations: a generated entry point whose block is
//! 4, 8 or 12 output channels of `rows x cols` output pixels.
//!
//! conv2d.wgsl's 16-channel block wastes 13 of its 16 accumulators on a 3-channel convolution (the
//! last layer of an upscaler). This variant keeps the same params, bindings, weight window,
//! fused bias, activation and residual (`load_acc` / `store_acc`), with fewer channels and more
//! pixels per invocation: each input value is loaded once per input channel and reused across
//! every kernel tap that reads it, every accumulator a named variable (private arrays indexed in
//! loops stay in memory on llvmpipe).

use super::conv2d::Variant;
use crate::model::Conv2dSpec;

/// The shape of a narrow block and the kernel width it is unrolled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Narrow {
    /// vec4 accumulators per pixel: 1, 2 or 3 (4, 8 or 12 channels; 4 where asked for).
    pub vecs: u32,
    /// Output columns per invocation.
    pub cols: u32,
    pub k_w: u32,
    pub stride_w: u32,
    pub dil_w: u32,
    /// Rows of 8 output columns read and written whole (`conv2d_rows.rs`): an image's first
    /// convolution on maps a multiple of 8 wide; None for a block of pixels.
    pub wide: Option<super::conv2d_rows::Wide>,
}

/// Output channels a group may have for the narrow kernel (more than 8 not for 1x1).
pub const MAX_CHANNELS: u32 = 12;
/// The same where the block is asked for ([`variant_with`]: benches).
const MAX_FORCED_CHANNELS: u32 = 16;
/// More than 12 output channels run narrow too, in blocks of 8 (a dispatch each), where a group
/// has at most `MAX_FEW_INPUTS` input channels, at most `MAX_FEW_INPUT_CHANNELS` output channels
/// and a kernel of at least `MIN_FEW_INPUT_TAPS` taps: an image's first 5x5 convolution (3 -> 24,
/// stride 2: 1.2-1.3x conv2d.wgsl's 16-channel blocks on lavapipe), not a 3x3 one (3 -> 32,
/// stride 2: 0.8x). BENCHMARKS.md, "Depthwise and few-input-channel 1x1".
pub const MAX_FEW_INPUTS: u32 = 4;
pub const MAX_FEW_INPUT_CHANNELS: u32 = 64;
pub const MIN_FEW_INPUT_TAPS: u32 = 25;
/// Output rows x columns an invocation, for 4 channels (one vec4 a pixel), for 8 (two) and for
/// 12 (three): the fastest measured on lavapipe (BENCHMARKS.md, "Kernels" and "Few output
/// channels").
pub const PIXELS_4: (u32, u32) = (4, 4);
pub const PIXELS_8: (u32, u32) = (8, 2);
pub const PIXELS_12: (u32, u32) = (8, 2);
/// The most input rows or columns one invocation keeps in registers.
const MAX_SPAN: u32 = 24;
/// The most kernel taps the unrolled kernel takes (a 7x7 kernel).
const MAX_TAPS: u32 = 49;

impl Narrow {
    /// Output channels a block computes.
    pub fn block(&self) -> u32 {
        4 * self.vecs
    }
}

/// The narrow variant for a shape with at most 8 output channels a group (12; more in blocks of 8
/// for few input channels and a large kernel), or None (conv2d.wgsl's 16-channel block then; a
/// 1x1 convolution runs gemm.wgsl).
pub fn variant(spec: &Conv2dSpec) -> Option<Variant> {
    if spec.is_pointwise() {
        // gemm.wgsl's 4- and 8-channel blocks read and write whole rows (2-3x the narrow block
        // on lavapipe: BENCHMARKS.md, "1x1 convolutions to few channels").
        return None;
    }
    let (rows, cols) = match spec.out_c / spec.groups {
        0..=4 => PIXELS_4,
        5..=8 => PIXELS_8,
        // conv2d.wgsl's 16-channel block wastes a quarter or more of its work there.
        9..=MAX_CHANNELS => PIXELS_12,
        _ if few_inputs(spec) => PIXELS_8,
        _ => return None,
    };
    variant_with(spec, rows, cols)
}

/// A group of at most [`MAX_FEW_INPUTS`] input channels and [`MAX_FEW_INPUT_CHANNELS`] output
/// channels, with a kernel of at least [`MIN_FEW_INPUT_TAPS`] taps: blocks of 8 channels.
fn few_inputs(spec: &Conv2dSpec) -> bool {
    spec.in_c / spec.groups <= MAX_FEW_INPUTS
        && spec.out_c / spec.groups <= MAX_FEW_INPUT_CHANNELS
        && spec.k_h * spec.k_w >= MIN_FEW_INPUT_TAPS
}

/// As [`variant`], with `rows x cols` output pixels an invocation.
pub fn variant_with(spec: &Conv2dSpec, rows: u32, cols: u32) -> Option<Variant> {
    let ocg = spec.out_c / spec.groups;
    let span_h = (rows - 1) * spec.stride[0] + (spec.k_h - 1) * spec.dilation[0] + 1;
    let span_w = (cols - 1) * spec.stride[1] + (spec.k_w - 1) * spec.dilation[1] + 1;
    let fits = (ocg <= MAX_FORCED_CHANNELS || few_inputs(spec))
        && !spec.is_depthwise()
        && span_h <= MAX_SPAN
        && span_w <= MAX_SPAN
        && spec.k_h * spec.k_w <= MAX_TAPS;
    fits.then(|| Variant {
        k_h: spec.k_h,
        stride_h: spec.stride[0],
        dil_h: spec.dilation[0],
        rows,
        narrow: Some(Narrow {
            vecs: if ocg > MAX_CHANNELS && few_inputs(spec) {
                2
            } else {
                ocg.div_ceil(4)
            },
            cols,
            k_w: spec.k_w,
            stride_w: spec.stride[1],
            dil_w: spec.dilation[1],
            wide: None,
        }),
        winograd: None,
    })
}

/// WGSL: conv2d.wgsl's declarations (`head`) with an unrolled narrow `main`.
pub fn source(head: &str, v: &Variant, n: &Narrow) -> String {
    if let Some(wide) = n.wide {
        return super::conv2d_rows::source(head, v, n, wide);
    }
    let (rows, k_h, sh, dh) = (v.rows, v.k_h, v.stride_h, v.dil_h);
    let (vecs, cols, k_w, sw, dw) = (n.vecs, n.cols, n.k_w, n.stride_w, n.dil_w);
    let span_h = (rows - 1) * sh + (k_h - 1) * dh + 1;
    let span_w = (cols - 1) * sw + (k_w - 1) * dw + 1;
    let mut w = String::from(head);
    let mut line = |l: String| {
        w.push_str(&l);
        w.push('\n');
    };
    line(format!(
        "// Narrow: {} channels of {rows}x{cols} pixels, kernel {k_h}x{k_w}, stride {sh}x{sw}, \
         dilation {dh}x{dw}.",
        4 * vecs
    ));
    line("@compute @workgroup_size(16, WG_Y, 1)".into());
    line("fn main(@builtin(global_invocation_id) gid: vec3<u32>) {".into());
    line(format!("    let ox0 = gid.x * {cols}u;"));
    line("    if ox0 >= p.out_w { return; }".into());
    line(format!("    let oy0 = gid.y * {rows}u;"));
    line("    let n = gid.z;".into());
    let acc = |r: u32, c: u32, v: u32| format!("a{r}_{c}_{v}");
    for r in 0..rows {
        for c in 0..cols {
            for v in 0..vecs {
                line(format!(
                    "    var {} = vec4<act>(p.bias[{v}]);",
                    acc(r, c, v)
                ));
            }
        }
    }
    let block = super::conv2d_variant::Accumulators {
        block: super::conv2d_variant::Block {
            rows,
            cols,
            vecs,
            ox: "ox0",
        },
        names: (0..rows)
            .flat_map(|r| (0..cols).flat_map(move |c| (0..vecs).map(move |v| acc(r, c, v))))
            .collect(),
    };
    line(block.load());
    line(input_loop(sh, sw, span_h, span_w));
    line(format!("        let wi = ic * {}u;", k_h * k_w * vecs));
    for ky in 0..k_h {
        for kx in 0..k_w {
            for v in 0..vecs {
                let at = (ky * k_w + kx) * vecs + v;
                line(format!(
                    "        let w{ky}_{kx}_{v} = vec4<act>(weights[wi + {at}u]);"
                ));
            }
        }
    }
    // One input column at a time: loaded once, added into every output column that reads it.
    for jx in 0..span_w {
        let readers = column_readers(jx, k_w, sw, dw, cols);
        if readers.is_empty() {
            continue;
        }
        line("        {".into());
        for j in 0..span_h {
            line(format!(
                "            let c{j} = select(act(0.0), src[plane + ry{j} + cx{jx}], \
                 my{j} && mx{jx});"
            ));
        }
        for &(kx, c) in &readers {
            for ky in 0..k_h {
                for r in 0..rows {
                    let j = r * sh + ky * dh;
                    for v in 0..vecs {
                        line(format!(
                            "            {} += c{j} * w{ky}_{kx}_{v};",
                            acc(r, c, v)
                        ));
                    }
                }
            }
        }
        line("        }".into());
    }
    line("    }".into());
    line(block.store());
    line("}".into());
    w
}

/// WGSL: where each input row and column of an invocation's `span_h x span_w` patch lies and
/// whether it is inside the image (else padding): `ry{j}` (row offsets), `cx{j}` (columns),
/// `my{j}` / `mx{j}`; then the loop over the chunk's input channels up to its first line
/// (`plane`), left open.
pub(crate) fn input_loop(sh: u32, sw: u32, span_h: u32, span_w: u32) -> String {
    let mut w = format!(
        "    let ix0 = i32(ox0 * {sw}u) - i32(p.pad_left);\n    \
         let iy0 = i32(oy0 * {sh}u) - i32(p.pad_top);\n    \
         let last_row = i32(p.in_h) - 1;\n    let last_col = i32(p.in_w) - 1;\n"
    );
    for j in 0..span_h {
        w.push_str(&format!(
            "    let y{j} = iy0 + {j}; let my{j} = y{j} >= 0 && y{j} <= last_row; \
             let ry{j} = u32(clamp(y{j}, 0, last_row)) / UP_H * (p.in_w / UP_W);\n"
        ));
    }
    for j in 0..span_w {
        w.push_str(&format!(
            "    let x{j} = ix0 + {j}; let mx{j} = x{j} >= 0 && x{j} <= last_col; \
             let cx{j} = u32(clamp(x{j}, 0, last_col)) / UP_W;\n"
        ));
    }
    w.push_str("    let in_plane = (p.in_h / UP_H) * (p.in_w / UP_W);\n");
    w.push_str("    for (var ic = 0u; ic < p.ic_count; ic++) {\n");
    w.push_str("        let plane = (n * p.in_c + p.ic_base + ic) * in_plane;\n");
    w
}

/// The (kernel column, output column) pairs of a block of `cols` output columns that read its
/// input column `j` (counted from the block's first), for a kernel `k_w` wide.
pub(crate) fn column_readers(
    j: u32,
    k_w: u32,
    stride: u32,
    dil: u32,
    cols: u32,
) -> Vec<(u32, u32)> {
    (0..k_w)
        .filter_map(|kx| {
            let d = j.checked_sub(kx * dil)?;
            (d % stride == 0 && d / stride < cols).then_some((kx, d / stride))
        })
        .collect()
}
