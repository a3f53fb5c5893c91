//! gemm.wgsl's product reading x and writing out 4 q a load or store (`vec4`), where the
//! layout allows it (`gemm::Layout::wide`): a 1x1 convolution over NCHW maps whose pixels a
//! multiple of 4. Few input channels (16 to 32) on large maps are bound by the per-lane loads and
//! stores, not by the multiply-adds: 4 values a pass of llvmpipe's loop over the lanes, not 1.

use super::gemm::{Blocking, Weights};

/// The wide kernel's addressing: q (a multiple of 4, clamped to the last 4 of the dispatch) of
/// item z as a vec4 index, and the store of 4 q of one channel.
const WIDE_HELPERS: &str = "
fn q4_at(z: u32, q: u32, item: u32) -> u32 {
    let c = min(q, p.q_count - 4u);
    return ((z + c / p.q_item) * item + c % p.q_item) / 4u;
}

fn store_wide(oc: u32, q0: u32, at4: u32, acc: vec4<act>) {
    if oc >= p.out_c || q0 >= p.q_count {
        return;
    }
    let at = at4 + oc * (p.out_cs / 4u);
    var v = acc;
    if p.first == 0u {
        v += dst[at];
    }
    if p.last != 0u {
        if p.residual == 1u {
            v += skip[at];
        }
        v = activate(v, oc);
        if p.residual == 2u {
            v += skip[at];
        }
    }
    dst[at] = v;
}
";

impl Blocking {
    /// As [`Self::source_grouped`], reading x and writing out 4 q a load or store (`vec4`), for
    /// the layouts [`super::gemm::Layout::wide`] allows. On llvmpipe a load or store whose
    /// address differs per lane is a loop over the lanes; a vec4 takes one pass of it for 4
    /// values.
    pub fn source_wide(&self, weights: Weights, group: u32) -> String {
        let full = self.source_grouped(weights, group);
        let head = &full[..full
            .find("// Where q (clamped")
            .expect("gemm.wgsl declares q_at")];
        let mut w = head
            .replace(
                "var<storage, read> src: array<act>;",
                "var<storage, read> src: array<vec4<act>>;",
            )
            .replace(
                "var<storage, read_write> dst: array<act>;",
                "var<storage, read_write> dst: array<vec4<act>>;",
            )
            .replace(
                "var<storage, read> skip: array<act>;",
                "var<storage, read> skip: array<vec4<act>>;",
            );
        let (ob, pix) = (self.oc_block, self.pix);
        let (wv, pv) = (ob / 4, pix / 4);
        let mut line = |l: String| {
            w.push_str(&l);
            w.push('\n');
        };
        line(WIDE_HELPERS.into());
        line(format!(
            "// Unrolled: {ob} channels x {pix} q per invocation, 4 q a load."
        ));
        self.main_head(&mut line, group);
        for v in 0..pv {
            line(format!(
                "    let at{v} = q4_at(n, q0 + {}u, p.in_item);",
                4 * v
            ));
        }
        line("    let cs4 = p.in_cs / 4u;".into());
        line("    let x0 = p.ic_base * cs4;".into());
        line(format!("    let w0 = wid.y * p.ic_count * {wv}u;"));
        line("    for (var ic = 0u; ic < p.ic_count; ic++) {".into());
        line("        let row = x0 + ic * cs4;".into());
        for v in 0..pv {
            line(format!("        let x{v} = src[row + at{v}];"));
        }
        self.products(&mut line);
        line("    }".into());
        for v in 0..pv {
            line(format!(
                "    let out{v} = q4_at(n, q0 + {}u, p.out_item);",
                4 * v
            ));
        }
        self.stores(&mut line, "store_wide");
        line("}".into());
        w
    }
}
