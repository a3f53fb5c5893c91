//! Which conv2d shader a shape runs (`Variant`): conv2d.wgsl's unrolled kernel, its generic
//! loop, the narrow block or a fused Winograd tile, and the WGSL source of each; and the rows
//! and workgroup rows an invocation on an adapter, before and after autotuning.

use super::conv2d::{MAX_UNROLLED_COL, ROWS};
use crate::gpu::Gpu;
use crate::model::Conv2dSpec;

/// Output rows per invocation of the unrolled kernel before autotuning, on a CPU's Vulkan: best
/// on lavapipe.
pub const DEFAULT_UNROLLED_ROWS: u32 = 16;
/// The same on a GPU: an NVIDIA H200's `batchwise tune` measured 4 rows 0.73 ms, 8 rows 0.84 ms
/// and 16 rows 10.0 ms (BENCHMARKS.md, "The first GPU run": each invocation's 16 rows of 16
/// channels are more registers than a GPU thread holds).
pub const GPU_UNROLLED_ROWS: u32 = 4;

/// The rows an invocation before autotuning on an adapter of `device_type` (wgpu's, as
/// `GpuSummary::device_type` names it).
pub fn default_unrolled_rows(device_type: &str) -> u32 {
    if device_type == "Cpu" {
        DEFAULT_UNROLLED_ROWS
    } else {
        GPU_UNROLLED_ROWS
    }
}
/// The row counts autotuning measures.
pub const UNROLLED_ROW_CHOICES: &[u32] = &[4, 8, 16];
/// Invocations along y in a conv2d workgroup on this adapter: `BATCHWISE_CONV_GROUP_ROWS` (1, 2
/// or 4), else 1 on a CPU's Vulkan (lavapipe runs a workgroup's invocations on its 8 SIMD lanes,
/// and 16 are plenty) and 2 on a GPU: workgroups of 16 columns alone leave half of each 32-wide
/// SIMD group (an NVIDIA warp) idle.
pub fn group_rows_for(gpu: &Gpu) -> u32 {
    let env = std::env::var("BATCHWISE_CONV_GROUP_ROWS").ok();
    match env.and_then(|v| v.parse::<u32>().ok()) {
        Some(rows) => rows.clamp(1, 4),
        None if gpu.adapter.device_type == "Cpu" => 1,
        None => 2,
    }
}

/// `BATCHWISE_CONV_ROWS=N` fixes the row count (no autotuning).
pub fn rows_from_env() -> Option<u32> {
    std::env::var("BATCHWISE_CONV_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| (1..=32).contains(&r))
}

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
        let block = Accumulators {
            block: Block {
                rows,
                cols: 1,
                vecs: 4,
                ox: "ox",
            },
            names: (0..rows)
                .flat_map(|r| (0..4).map(move |v| format!("a{r}_{v}")))
                .collect(),
        };
        line(block.load());
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
        line(block.store());
        line("}".into());
        w
    }
}

/// A generated kernel's register block: `vecs` vec4s (4 output channels each) of `rows x cols`
/// output pixels from row `oy0` and the column the WGSL value `ox` names.
///
/// Its values are read back (an earlier input chunk's sum) and stored in a loop over a private
/// array `held` (row, column, vec4 in that order), not a call each: a call each unrolls into
/// hundreds of guarded loads and stores (the residual's too), which Mesa's lavapipe took 2-9 s to
/// compile per kernel, where the loop takes under 0.1 s and runs as fast (once an invocation,
/// outside the loop over input channels; BENCHMARKS.md, "Kernel compile time on lavapipe").
pub(crate) struct Block<'a> {
    pub rows: u32,
    pub cols: u32,
    pub vecs: u32,
    pub ox: &'a str,
}

impl Block<'_> {
    /// Values in the block.
    pub fn len(&self) -> u32 {
        self.rows * self.cols * self.vecs
    }

    /// Where the value of row `r`, column `c` and vec4 `v` lies in `held`.
    pub fn index(&self, r: u32, c: u32, v: u32) -> u32 {
        (r * self.cols + c) * self.vecs + v
    }

    /// WGSL: the private array the loops read and write.
    pub fn held(&self) -> String {
        format!("    var held: array<vec4<act>, {}>;", self.len())
    }

    /// WGSL: the loop over the block, each value's row `r`, column `c` and vec4 `v`, then `body`.
    fn each(&self, body: &[&str]) -> Vec<String> {
        let (count, cols, vecs) = (self.len(), self.cols, self.vecs);
        let mut w = vec![
            format!("    for (var i = 0u; i < {count}u; i++) {{"),
            format!(
                "        let r = i / {}u; let c = (i / {vecs}u) % {cols}u; let v = i % {vecs}u;",
                cols * vecs
            ),
        ];
        w.extend(body.iter().map(|l| format!("        {l}")));
        w.push("    }".into());
        w
    }

    /// WGSL: `function(n, oy, ox, v, value)` for each value of `held` inside the output.
    pub fn store_held(&self, function: &str) -> String {
        let ox = self.ox;
        let inside = format!("if oy0 + r < p.out_h && {ox} + c < p.out_w {{");
        let write = format!("    {function}(n, oy0 + r, {ox} + c, v, held[i]);");
        self.each(&[&inside, &write, "}"]).join("\n")
    }
}

/// A [`Block`] held in named accumulators (`names`, in `held`'s order), read back and stored
/// through conv2d.wgsl's `load_acc` and `store_acc`.
pub(crate) struct Accumulators<'a> {
    pub block: Block<'a>,
    pub names: Vec<String>,
}

impl Accumulators<'_> {
    /// WGSL: where `p.first == 0`, each accumulator read back from `dst` (its row and column
    /// clamped into the output, as an invocation past the edge computes the edge's).
    pub fn load(&self) -> String {
        let b = &self.block;
        debug_assert_eq!(self.names.len() as u32, b.len());
        let read = format!(
            "held[i] = load_acc(n, min(oy0 + r, p.out_h - 1u), min({} + c, p.out_w - 1u), v);",
            b.ox
        );
        let mut w = vec!["    if p.first == 0u {".to_owned(), b.held()];
        w.extend(b.each(&[&read]));
        w.extend(
            (self.names.iter().enumerate()).map(|(i, name)| format!("    {name} = held[{i}];")),
        );
        w.push("    }".into());
        w.join("\n")
    }

    /// WGSL: each accumulator inside the output stored (with the residual and activation after
    /// the last chunk).
    pub fn store(&self) -> String {
        let mut w = vec![self.block.held()];
        w.extend(
            (self.names.iter().enumerate()).map(|(i, name)| format!("    held[{i}] = {name};")),
        );
        w.push(self.block.store_held("store_acc"));
        w.join("\n")
    }
}
