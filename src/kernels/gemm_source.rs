//! gemm.wgsl's generated `main` (`gemm::Blocking`): the accumulators of a register block
//! unrolled into named variables (a private array indexed in a loop stays in memory on
//! llvmpipe), one value a load of x and out; `gemm_wide.rs` and `gemm_shifted.rs` build their
//! loads on the same pieces (`main_head_at`, `products`, `stores`).

use super::gemm::{Blocking, WORKGROUP_X, Weights};
use super::gemm_program::Prologue;

pub(super) const LANES: [&str; 4] = ["x", "y", "z", "w"];

impl Blocking {
    /// WGSL for this blocking: gemm.wgsl's declarations with an unrolled `main`.
    pub fn source(&self) -> String {
        self.source_with(Weights::Uniform)
    }

    /// The loop over input channels every generated product kernel runs (gemm's and the split
    /// Winograd's): for each, the `pix` values at `at0..` of its row of `src` (rows `in_cs`
    /// apart from `ic_base`) and the `oc_block` weights of the workgroup's block, multiplied into
    /// the accumulators `a{o}_{v}`.
    pub(super) fn products_loop(&self, line: &mut impl FnMut(String)) {
        self.products_loop_with(line, None);
    }

    /// As [`Self::products_loop`], x computed by `prologue`'s program where there is one.
    fn products_loop_with(&self, line: &mut impl FnMut(String), prologue: Option<&Prologue>) {
        let pv = self.pix / 4;
        line("    let x0 = p.ic_base * p.in_cs;".into());
        let mut body = String::new();
        let mut push = |l: String| {
            body.push_str(&l);
            body.push('\n');
        };
        let row = "        let row = x0 + ic * p.in_cs;";
        push(row.into());
        let load = |array: &str, suffix: &str, start: u32| -> Vec<String> {
            let row = match start {
                0 => "row".to_string(),
                s => format!("row + {s}u * p.in_cs"),
            };
            (0..pv)
                .map(|v| {
                    let q = |i: u32| format!("{array}[{row} + at{}]", 4 * v + i);
                    format!(
                        "        let x{v}{suffix} = vec4<act>({}, {}, {}, {});",
                        q(0),
                        q(1),
                        q(2),
                        q(3)
                    )
                })
                .collect()
        };
        let lines = match prologue {
            Some(prologue) => prologue.x_lines(pv, 1, &load),
            None => load("src", "", 0),
        };
        lines.into_iter().for_each(&mut push);
        self.products(&mut push);
        if let Some(prologue) = prologue {
            prologue
                .stats(pv, 1, row, &load)
                .into_iter()
                .for_each(&mut *line);
        }
        self.input_channels(line, &body);
    }

    /// WGSL: `body` (lines of the input channel `ic` of the dispatch's chunk, its block's
    /// weights from `w0`) for every input channel: a loop, or where the inputs are compiled in
    /// ([`Blocking::inputs`]) a scope each, `ic` a constant and `w0` 0 (one block a dispatch),
    /// so that every weight offset is a constant.
    pub(super) fn input_channels(&self, line: &mut impl FnMut(String), body: &str) {
        let body = body.trim_end().to_owned();
        if self.inputs == 0 {
            line("    let w0 = wid.y * p.block_stride;".into());
            line("    for (var ic = 0u; ic < p.ic_count; ic++) {".into());
            line(body);
            line("    }".into());
            return;
        }
        line("    let w0 = 0u;".into());
        for ic in 0..self.inputs {
            line(format!("    {{\n        let ic = {ic}u;"));
            line(body.clone());
            line("    }".into());
        }
    }

    /// WGSL, inside the loop over input channels: the block's weights of input channel `ic`
    /// (`w0` its first), multiplied by `x{v}` into the accumulators `a{o}_{v}`.
    pub(super) fn products(&self, line: &mut impl FnMut(String)) {
        let (ob, pix) = (self.oc_block, self.pix);
        let (wv, pv) = (ob / 4, pix / 4);
        line(format!("        let wi = w0 + ic * {wv}u;"));
        for b in 0..wv {
            line(format!("        let w{b} = vec4<act>(weights[wi + {b}u]);"));
        }
        for o in 0..ob {
            for v in 0..pv {
                line(format!(
                    "        a{o}_{v} += x{v} * w{}.{};",
                    o / 4,
                    LANES[o as usize % 4]
                ));
            }
        }
    }

    /// WGSL: `main`'s head, `group` invocations a workgroup along q: the invocation's first q
    /// (`q0`), item, channel block (`oc0`) and its accumulators `a{o}_{v}` set to the bias.
    pub(super) fn main_head(&self, line: &mut impl FnMut(String), group: u32) {
        self.main_head_at(line, group, &format!("gid.x * {}u", self.pix));
    }

    /// As [`Self::main_head`], `q0` the WGSL expression `q0`.
    pub(super) fn main_head_at(&self, line: &mut impl FnMut(String), group: u32, q0: &str) {
        let (ob, pix) = (self.oc_block, self.pix);
        let (wv, pv) = (ob / 4, pix / 4);
        line(format!("@compute @workgroup_size({group}, 1, 1)"));
        line("fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {".into());
        line(format!("    let q0 = {q0};"));
        line("    let n = gid.z;".into());
        line(format!("    let oc0 = p.oc_base + wid.y * {ob}u;"));
        for b in 0..wv {
            line(format!("    let b{b} = start(oc0 + {}u);", b * 4));
        }
        for o in 0..ob {
            for v in 0..pv {
                line(format!(
                    "    var a{o}_{v} = vec4<act>(b{}.{});",
                    o / 4,
                    LANES[o as usize % 4]
                ));
            }
        }
    }

    /// As [`Self::source`], the weights read as `weights` says.
    pub fn source_with(&self, weights: Weights) -> String {
        self.source_grouped(weights, WORKGROUP_X)
    }

    /// As [`Self::source_with`], `group` invocations a workgroup along q.
    pub fn source_grouped(&self, weights: Weights, group: u32) -> String {
        self.source_of(weights, group, None)
    }

    /// As [`Self::source_grouped`], x computed by `prologue`'s program where there is one.
    pub(super) fn source_of(
        &self,
        weights: Weights,
        group: u32,
        prologue: Option<&Prologue>,
    ) -> String {
        let generic = super::shader("gemm.wgsl");
        let head = &generic[..generic
            .find("@compute")
            .expect("gemm.wgsl has an entry point")];
        let head = match weights {
            Weights::Uniform => head.to_owned(),
            Weights::Storage => {
                let uniform = "var<uniform> weights: array<vec4<f32>, 4096>;";
                assert!(
                    head.contains(uniform),
                    "gemm.wgsl declares its weights window"
                );
                head.replace(uniform, "var<storage, read> weights: array<vec4<f32>>;")
            }
        };
        let (ob, pix) = (self.oc_block, self.pix);
        assert!(ob % 4 == 0 && pix % 4 == 0, "blocks of whole vec4s");
        let pv = pix / 4;
        let mut w = head;
        if let Some(prologue) = prologue {
            w += &prologue.declarations("act");
        }
        let mut line = |l: String| {
            w.push_str(&l);
            w.push('\n');
        };
        line(format!(
            "// Unrolled: {ob} channels x {pix} q per invocation."
        ));
        self.main_head(&mut line, group);
        for i in 0..pix {
            line(format!(
                "    let at{i} = q_at(n, q0 + {i}u, p.in_item, p.in_qs);"
            ));
        }
        if let Some(prologue) = prologue {
            prologue.head(pix, 1).into_iter().for_each(&mut line);
        }
        self.products_loop_with(&mut line, prologue);
        for v in 0..pv {
            line(format!("    let out{v} = out_at(n, q0 + {}u);", 4 * v));
            line(format!("    let skip{v} = skip_at(n, q0 + {}u);", 4 * v));
        }
        self.stores(&mut line, "store4", 4);
        line("}".into());
        w
    }

    /// WGSL: `function(oc0 + o, q0 + 4v, out{v}, skip{v}, a{o}_{v})` for every accumulator, a
    /// call each. With `per` 8 (8 q a store) each call takes two: `function(oc0 + o, q0 + 8u,
    /// out{u}, skip{u}, a{o}_{2u}, a{o}_{2u + 1})`. With the stores' branches compiled in
    /// (`gemm::Epilogue`) a call is short: unrolled, lavapipe builds the kernel faster from an
    /// empty cache and runs it up to 1.2x faster than a loop over private arrays of the
    /// accumulators (`held{v}[o]`, an index llvmpipe reads lane by lane), though its passes at
    /// every start take longer (BENCHMARKS.md, "The stores unrolled").
    /// `BATCHWISE_GEMM_STORES=loop` keeps the loop (to measure).
    pub(super) fn stores(&self, line: &mut impl FnMut(String), function: &str, per: u32) {
        let (ob, pv) = (self.oc_block, self.pix / 4);
        let vecs = per / 4;
        // The calls of channel `o` (a WGSL expression), `acc(v)` its accumulator of vec4 v.
        let calls = |o: &str, acc: &dyn Fn(u32) -> String, indent: &str| -> Vec<String> {
            (0..pv / vecs)
                .map(|u| {
                    let args: Vec<String> = (0..vecs).map(|k| acc(vecs * u + k)).collect();
                    let (q, args) = (per * u, args.join(", "));
                    format!("{indent}{function}(oc0 + {o}, q0 + {q}u, out{u}, skip{u}, {args});")
                })
                .collect()
        };
        if !std::env::var("BATCHWISE_GEMM_STORES").is_ok_and(|v| v == "loop") {
            for o in 0..ob {
                calls(&format!("{o}u"), &|v| format!("a{o}_{v}"), "    ")
                    .into_iter()
                    .for_each(&mut *line);
            }
            return;
        }
        for v in 0..pv {
            line(format!("    var held{v}: array<vec4<act>, {ob}>;"));
            for o in 0..ob {
                line(format!("    held{v}[{o}] = a{o}_{v};"));
            }
        }
        line(format!("    for (var o = 0u; o < {ob}u; o++) {{"));
        calls("o", &|v| format!("held{v}[o]"), "        ")
            .into_iter()
            .for_each(&mut *line);
        line("    }".into());
    }
}
