//! gemm.wgsl's product over channel planes whose size is not a multiple of 4 (7 x 7 = 49 pixels:
//! a classifier's last 1x1 convolutions), reading x 8 values a `vec4<u64>` (a CPU adapter,
//! float32; `gemm::Width::Shifted`).
//!
//! Plane `ic` starts at `ic x P`, off the 8-value grid for most channels, so a load of 8 values
//! there cannot be aligned. But over 8 consecutive channels `8m + r` the offsets past the
//! aligned `8m x P` are `r x P`, and `r x P mod 8` depends only on `r` and `P mod 8`: with that
//! baked into the kernel, channel `r`'s 8 values are a static pick from the two aligned
//! `vec4<u64>` loads around them. Each invocation computes 8 q of one item, starting on a
//! multiple of 8 within it (the items are folded into x, each padded to a multiple of 8 q); the
//! q past the plane are computed from the next plane's values and never stored. Outputs are
//! stored one value at a time (their planes are off the grid too), by gemm.wgsl's `store4`. On
//! Mesa 22's llvmpipe every load is a loop over the lanes: 2 passes for 8 values of a channel
//! instead of 8, the layers 1.1x (BENCHMARKS.md, "Fused channel Pads, wide data movement, 7x7
//! maps and CPU resizing"); slower on Mesa 25, so only there (`kernels::storage_loads_loop`).

use super::gemm::{Blocking, Weights};
use super::gemm_source::LANES;
use super::shaders::redeclared;

/// The store of 4 q (`j`.. of the item's plane at `at`, its residual at `sk`) of channel `oc`:
/// gemm.wgsl's `store4`, which stores the q below `q_count` of a dispatch; those past the plane
/// (`q_item`) are past it here.
const STORE: &str = "
fn store_shifted(oc: u32, j: u32, at: u32, sk: u32, acc: vec4<act>) {
    let i = vec4<u32>(0u, 1u, 2u, 3u);
    store4(oc, p.q_count - p.q_item + j, vec4<u32>(at) + i, vec4<u32>(sk) + i, acc);
}
";

impl Blocking {
    /// The product over planes of `P` pixels, `shift = P mod 8`, reading x 8 values a load
    /// (module docs); `pix` must be 8.
    pub fn source_shifted(&self, weights: Weights, group: u32, shift: u32) -> String {
        let full = self.source_grouped(weights, group);
        let head = &full[..full.find("// Unrolled:").expect("a generated main")];
        assert!(self.pix == 8, "8 q an invocation");
        let mut w = redeclared(head, "src", "vec4<u64>");
        let mut line = |l: String| {
            w.push_str(&l);
            w.push('\n');
        };
        line(super::eight::HELPERS.into());
        line(STORE.into());
        line(format!(
            "// Unrolled: {} channels x 8 q per invocation, planes of P = {shift} mod 8.",
            self.oc_block
        ));
        // x runs over the items (folded), each padded to p8 q: q0 is the first q within the item.
        let p8 = "((p.q_item + 7u) / 8u * 8u)";
        let qv = "min(gid.x * 8u, p.q_count - 8u)";
        self.main_head_at(&mut line, group, &format!("{qv} % {p8}"));
        line(format!("    let item = n + {qv} / {p8};"));
        line("    let g = p.in_cs;".into());
        line("    let xb = (item * p.in_item + p.ic_base * g + q0) / 8u;".into());
        line("    let w0 = wid.y * p.block_stride;".into());
        line("    for (var m = 0u; m < p.ic_count / 8u; m++) {".into());
        line("        let base = xb + m * g;".into());
        for r in 0..8u32 {
            let sh = (r * shift) % 8;
            line("        {".into());
            line(format!("        let ic = 8u * m + {r}u;"));
            line(format!(
                "        let y = src[base + ({r}u * g - {sh}u) / 8u]; let f0 = lo8(y); let f1 = hi8(y);"
            ));
            if sh > 0 {
                line(format!(
                    "        let z = src[base + ({r}u * g - {sh}u) / 8u + 1u]; let f2 = lo8(z); let f3 = hi8(z);"
                ));
            }
            let pick = |k: u32| format!("f{}.{}", k / 4, LANES[(k % 4) as usize]);
            for v in 0..2u32 {
                let values: Vec<String> = (0..4).map(|i| pick(sh + 4 * v + i)).collect();
                line(format!(
                    "        let x{v} = vec4<act>({});",
                    values.join(", ")
                ));
            }
            self.products(&mut line);
            line("        }".into());
        }
        line("    }".into());
        for v in 0..2u32 {
            line(format!(
                "    let out{v} = item * p.out_item + q0 + {}u;",
                4 * v
            ));
            line(format!(
                "    let skip{v} = item * p.skip_item + q0 + {}u;",
                4 * v
            ));
        }
        self.stores(&mut line, "store_shifted", 4);
        line("}".into());
        w
    }
}
