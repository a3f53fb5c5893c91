//! Which conv2d shader a shape runs (`Variant`): conv2d.wgsl's unrolled kernel, its generic
//! loop, the narrow block or a fused Winograd tile, and the WGSL source of each.

use super::conv2d::{MAX_UNROLLED_COL, ROWS};
use crate::model::Conv2dSpec;

/// Which conv2d shader a shape runs: the unrolled one where its column fits, else the generic one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    pub k_h: u32,
    pub stride_h: u32,
    pub dil_h: u32,
    /// Output rows per invocation; 0 for the generic loop kernel.
    pub rows: u32,
    /// A narrow block (at most 12 channels, several columns) unrolled for its kernel width; None
    /// for conv2d.wgsl's 16 channels of one column.
    pub narrow: Option<super::conv2d_narrow::Narrow>,
    /// A Winograd tile (`winograd.rs`): one tile of `rows x rows` pixels an invocation.
    pub winograd: Option<super::winograd::Tile>,
}

impl Variant {
    /// The variant for a shape with `rows` output rows per invocation where its column fits.
    pub fn for_spec(spec: &Conv2dSpec, rows: u32) -> Self {
        let col = (rows - 1) * spec.stride[0] + (spec.k_h - 1) * spec.dilation[0] + 1;
        Self {
            k_h: spec.k_h,
            stride_h: spec.stride[0],
            dil_h: spec.dilation[0],
            rows: if col <= MAX_UNROLLED_COL { rows } else { 0 },
            narrow: None,
            winograd: None,
        }
    }

    pub fn rows_per_invocation(&self) -> u32 {
        if self.rows == 0 { ROWS } else { self.rows }
    }

    /// WGSL for this variant: conv2d.wgsl as is, or its declarations with an unrolled `main`.
    ///
    /// llvmpipe (and other compilers) keep private arrays indexed in loops in memory; naming every
    /// accumulator and input value keeps them in registers, 4x faster on lavapipe.
    pub fn source(&self) -> String {
        let generic = super::shader("conv2d.wgsl");
        if self.rows == 0 {
            return generic.to_owned();
        }
        let head = &generic[..generic
            .find("@compute")
            .expect("conv2d.wgsl has an entry point")];
        if let Some(narrow) = &self.narrow {
            return super::conv2d_narrow::source(head, self, narrow);
        }
        if let Some(tile) = self.winograd {
            return super::winograd::source(head, tile);
        }
        let (rows, k_h, stride, dil) = (self.rows, self.k_h, self.stride_h, self.dil_h);
        let col = (rows - 1) * stride + (k_h - 1) * dil + 1;
        let mut w = String::from(head);
        let mut line = |l: String| {
            w.push_str(&l);
            w.push('\n');
        };
        line(format!(
            "// Unrolled: {rows} rows, K_H {k_h}, STRIDE_H {stride}, DIL_H {dil}."
        ));
        line("@compute @workgroup_size(16, WG_Y, 1)".into());
        line("fn main(@builtin(global_invocation_id) gid: vec3<u32>) {".into());
        line("    let ox = gid.x;".into());
        line("    if ox >= p.out_w { return; }".into());
        line(format!("    let oy0 = gid.y * {rows}u;"));
        line("    let n = gid.z;".into());
        line("    let out_plane = p.out_h * p.out_w;".into());
        for r in 0..rows {
            for v in 0..4 {
                line(format!("    var a{r}_{v} = vec4<act>(p.bias[{v}]);"));
            }
        }
        line("    if p.first == 0u {".into());
        for r in 0..rows {
            line(format!(
                "        let oy{r} = min(oy0 + {r}u, p.out_h - 1u);"
            ));
            for v in 0..4 {
                line(format!("        a{r}_{v} = load_acc(n, oy{r}, ox, {v}u);"));
            }
        }
        line("    }".into());
        line("    let ix0 = i32(ox * p.stride_w) - i32(p.pad_left);".into());
        line(format!(
            "    let iy0 = i32(oy0 * {stride}u) - i32(p.pad_top);"
        ));
        line("    let src_w = p.in_w / UP_W;".into());
        line("    let in_plane = (p.in_h / UP_H) * src_w;".into());
        line("    let last_row = i32(p.in_h) - 1;".into());
        for j in 0..col {
            line(format!(
                "    let y{j} = iy0 + {j}; let m{j} = y{j} >= 0 && y{j} <= last_row; let r{j} = u32(clamp(y{j}, 0, last_row)) / UP_H * src_w;"
            ));
        }
        line("    for (var ic = 0u; ic < p.ic_count; ic++) {".into());
        line("        let plane = (n * p.in_c + p.ic_base + ic) * in_plane;".into());
        line("        for (var kx = 0u; kx < p.k_w; kx++) {".into());
        line("            let ix = ix0 + i32(kx * p.dil_w);".into());
        line("            if ix < 0 || ix >= i32(p.in_w) { continue; }".into());
        line("            let base = plane + u32(ix) / UP_W;".into());
        for j in 0..col {
            line(format!(
                "            let c{j} = select(act(0.0), src[base + r{j}], m{j});"
            ));
        }
        for ky in 0..k_h {
            line(format!(
                "            let wi{ky} = ((ic * {k_h}u + {ky}u) * p.k_w + kx) * 4u;"
            ));
            for v in 0..4 {
                line(format!(
                    "            let w{ky}_{v} = vec4<act>(weights[wi{ky} + {v}u]);"
                ));
            }
            for r in 0..rows {
                let j = r * stride + ky * dil;
                for v in 0..4 {
                    line(format!("            a{r}_{v} += c{j} * w{ky}_{v};"));
                }
            }
        }
        line("        }".into());
        line("    }".into());
        for r in 0..rows {
            line(format!("    if oy0 + {r}u < p.out_h {{"));
            for v in 0..4 {
                line(format!(
                    "        store_acc(n, oy0 + {r}u, ox, {v}u, a{r}_{v});"
                ));
            }
            line("    }".into());
        }
        line("}".into());
        w
    }
}
