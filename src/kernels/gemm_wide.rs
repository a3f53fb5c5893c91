//! gemm.wgsl's product reading x and writing out 4 q a load or store (`vec4`), or 8 on a CPU
//! adapter (`vec4<u64>`, `super::eight`), where the layout allows it (`gemm::Layout::width`): a
//! 1x1 convolution over NCHW maps whose pixels a multiple of 4 (8). Few input channels (16 to
//! 32) on large maps are bound by the per-lane loads and stores, not by the multiply-adds: on
//! llvmpipe each component of a load or store is a pass of a loop over the lanes, so the more
//! values a component carries, the fewer passes.

use super::gemm::{Blocking, Weights};
use super::gemm_program::Prologue;
use super::shaders::redeclared;

/// The wide kernel's addressing: q (a multiple of 4, clamped to the last 4 of the dispatch) of
/// item z as a vec4 index, and the store of 4 q of one channel.
const WIDE_HELPERS: &str = "
fn q4_at(z: u32, q: u32, item: u32) -> u32 {
    let c = min(q, p.q_count - 4u);
    return ((z + c / p.q_item) * item + c % p.q_item) / 4u;
}

fn skip_wide(oc: u32, skip4: u32) -> vec4<act> {
    if oc >= p.skip_c {
        return vec4<act>(0.0);
    }
    return skip[skip4 + oc * (p.out_cs / 4u)];
}

fn store_wide(oc: u32, q0: u32, at4: u32, skip4: u32, acc: vec4<act>) {
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
            v += skip_wide(oc, skip4);
        }
        v = activate(v, oc);
        if p.residual == 2u {
            v += skip_wide(oc, skip4);
        }
    }
    dst[at] = v;
}
";

/// The same for 8 q a `vec4<u64>` (float32 only): `q8_at` and `store_wide8` (the first and
/// last 4 q of one channel).
const WIDE8_HELPERS: &str = "
fn q8_at(z: u32, q: u32, item: u32) -> u32 {
    let c = min(q, p.q_count - 8u);
    return ((z + c / p.q_item) * item + c % p.q_item) / 8u;
}

fn skip_wide8(oc: u32, skip8: u32) -> vec4<u64> {
    if oc >= p.skip_c {
        return vec4<u64>();
    }
    return skip[skip8 + oc * (p.out_cs / 8u)];
}

fn store_wide8(oc: u32, q0: u32, at8: u32, skip8: u32, acc_lo: vec4<f32>, acc_hi: vec4<f32>) {
    if oc >= p.out_c || q0 >= p.q_count {
        return;
    }
    let at = at8 + oc * (p.out_cs / 8u);
    var lo = acc_lo;
    var hi = acc_hi;
    if p.first == 0u {
        let d = dst[at];
        lo += lo8(d);
        hi += hi8(d);
    }
    if p.last != 0u {
        if p.residual == 1u {
            let s = skip_wide8(oc, skip8);
            lo += lo8(s);
            hi += hi8(s);
        }
        lo = activate(lo, oc);
        hi = activate(hi, oc);
        if p.residual == 2u {
            let s = skip_wide8(oc, skip8);
            lo += lo8(s);
            hi += hi8(s);
        }
    }
    dst[at] = pack8(lo, hi);
}
";

impl Blocking {
    /// As [`Self::source_grouped`], reading x and writing out 4 q a load or store (`vec4`), for
    /// the layouts [`super::gemm::Layout::wide`] allows.
    pub fn source_wide(&self, weights: Weights, group: u32) -> String {
        self.wide_source(weights, group, 4, None)
    }

    /// As [`Self::source_wide`], 8 q a load or store (`vec4<u64>`; float32, `pix` a multiple
    /// of 8): [`super::gemm::Width::Eight`].
    pub fn source_wide8(&self, weights: Weights, group: u32) -> String {
        self.wide_source(weights, group, 8, None)
    }

    /// The wide product moving `per` (4 or 8) q a load or store, x computed by `prologue`'s
    /// program where there is one.
    pub(super) fn wide_source(
        &self,
        weights: Weights,
        group: u32,
        per: u32,
        prologue: Option<&Prologue>,
    ) -> String {
        let full = self.source_grouped(weights, group);
        let head = &full[..full
            .find("// Where q (clamped")
            .expect("gemm.wgsl declares q_at")];
        let element = if per == 8 { "vec4<u64>" } else { "vec4<act>" };
        let mut w = head.to_owned();
        for name in ["src", "dst", "skip"] {
            w = redeclared(&w, name, element);
        }
        let (ob, pix) = (self.oc_block, self.pix);
        assert!(pix.is_multiple_of(per), "whole loads a block");
        let loads = pix / per;
        let mut line = |l: String| {
            w.push_str(&l);
            w.push('\n');
        };
        if per == 8 {
            line(super::eight::HELPERS.into());
            line(WIDE8_HELPERS.into());
        } else {
            line(WIDE_HELPERS.into());
        }
        if let Some(prologue) = prologue {
            line(prologue.declarations(element));
        }
        line(format!(
            "// Unrolled: {ob} channels x {pix} q per invocation, {per} q a load."
        ));
        self.main_head(&mut line, group);
        for u in 0..loads {
            line(format!(
                "    let at{u} = q{per}_at(n, q0 + {}u, p.in_item);",
                per * u
            ));
        }
        if let Some(prologue) = prologue {
            prologue.head(loads, per).into_iter().for_each(&mut line);
        }
        line(format!("    let cs = p.in_cs / {per}u;"));
        line("    let x0 = p.ic_base * cs;".into());
        let mut body = String::new();
        let mut push = |l: String| {
            body.push_str(&l);
            body.push('\n');
        };
        let row = "        let row = x0 + ic * cs;";
        push(row.into());
        let load = |array: &str, suffix: &str, start: u32| -> Vec<String> {
            let row = match start {
                0 => "row".to_string(),
                s => format!("row + {s}u * cs"),
            };
            (0..loads)
                .map(|u| match per {
                    8 => format!(
                        "        let xx{u}{suffix} = {array}[{row} + at{u}]; let x{}{suffix} = lo8(xx{u}{suffix}); let x{}{suffix} = hi8(xx{u}{suffix});",
                        2 * u,
                        2 * u + 1
                    ),
                    _ => format!("        let x{u}{suffix} = {array}[{row} + at{u}];"),
                })
                .collect()
        };
        let lines = match prologue {
            Some(prologue) => prologue.x_lines(pix / 4, per, &load),
            None => load("src", "", 0),
        };
        lines.into_iter().for_each(&mut push);
        self.products(&mut push);
        if let Some(prologue) = prologue {
            let stats = prologue.stats(pix / 4, per, row, &load);
            stats.into_iter().for_each(&mut line);
        }
        self.input_channels(&mut line, &body);
        for u in 0..loads {
            line(format!(
                "    let out{u} = q{per}_at(n, q0 + {}u, p.out_item);",
                per * u
            ));
            line(format!(
                "    let skip{u} = q{per}_at(n, q0 + {}u, p.skip_item);",
                per * u
            ));
        }
        let store = if per == 8 {
            "store_wide8"
        } else {
            "store_wide"
        };
        self.stores(&mut line, store, per);
        line("}".into());
        w
    }
}
