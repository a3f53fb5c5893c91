//! A 1x1 convolution whose x an elementwise program computes (`LayerOp::Conv2dProgram`):
//! gemm.wgsl's kernels run the program as they load x, so its output is never stored. Each input
//! of the program is laid out as x (read at x's index, through the same load as x: 1, 4 or 8
//! values) or is one value a channel of each item (`c x 1 x 1`: squeeze-and-excitation's
//! scales), read once an input channel. Where all q of an invocation lie in one item (items not
//! folded into q, or folded in whole blocks of q), the steps that read only such values run once
//! an input channel, on a scalar (a sigmoid of a scale, not one a value); the others on each
//! `vec4` of x.

use std::fmt::Write as _;

use super::gemm::{Blocking, Weights, Width};
use crate::model::{ElementwiseProgram, ItemShape, Operand};

/// How an input of the program lies beside x.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// Laid out as x: x's shape.
    Whole,
    /// One value a channel of each item (`c x 1 x 1`), or with `per_channel` false one an item.
    Point { per_channel: bool },
}

impl Source {
    /// How an input of item shape `s` lies beside an x of `x`; None where it is broadcast
    /// otherwise (a row, a column), which the kernels do not read.
    pub fn of(s: ItemShape, x: ItemShape) -> Option<Self> {
        if s == x {
            Some(Source::Whole)
        } else if (s.h, s.w) == (1, 1) && (s.c == x.c || s.c == 1) {
            Some(Source::Point {
                per_channel: s.c == x.c,
            })
        } else {
            None
        }
    }
}

/// The program and its inputs: buffers and item shapes; with `normalize` (an epsilon), its output
/// normalized over the channels at each pixel (`LayerOp::Conv2dProgram`).
pub struct InputProgram<'a> {
    pub program: &'a ElementwiseProgram,
    pub inputs: Vec<(&'a wgpu::Buffer, ItemShape)>,
    pub normalize: Option<f32>,
}

impl InputProgram<'_> {
    /// x's shape: the program's output (its inputs as read, broadcast).
    pub fn shape(&self) -> ItemShape {
        self.program
            .output_shape(&self.stored())
            .expect("the shape inference checked the program's inputs")
    }

    /// The inputs' shapes as stored.
    fn stored(&self) -> Vec<ItemShape> {
        self.inputs.iter().map(|(_, s)| *s).collect()
    }

    /// Input `k`'s shape as the program reads it (a channel slice of it).
    fn read(&self, k: usize) -> ItemShape {
        self.program.read_shape(k, self.inputs[k].1)
    }

    /// The channels an item of the inputs read as x (whole, or a slice of them) is stored with:
    /// the same for all of them (the pass and the shape inference check it), x's item stride.
    pub fn stored_channels(&self) -> u32 {
        let x = self.shape();
        let mut whole = (0..self.inputs.len()).filter(|&k| self.read(k) == x);
        let c = self.inputs[whole.next().expect("an input laid out as x")]
            .1
            .c;
        assert!(
            whole.all(|k| self.inputs[k].1.c == c),
            "inputs read as x stored with as many channels"
        );
        c
    }

    /// What the kernel's source depends on, `folded` where items are folded into q (`q_item`
    /// each), `pix` q an invocation.
    pub fn prologue(&self, folded: bool, q_item: u32, pix: u32) -> Prologue {
        let x = self.shape();
        let sources = (0..self.inputs.len())
            .map(|k| {
                Source::of(self.read(k), x).expect("the pass fused only inputs the kernels read")
            })
            .collect();
        let starts = (0..self.inputs.len())
            .map(|k| self.program.slice(k).map_or(0, |(start, _)| start))
            .collect();
        Prologue {
            program: self.program.clone(),
            sources,
            starts,
            channels: x.c,
            normalize: self.normalize,
            folded,
            straddles: folded && !q_item.is_multiple_of(pix),
        }
    }

    /// The buffers in binding order: the first whole input (gemm.wgsl's `src`), then the rest
    /// from binding 6 ([`Prologue::declarations`]).
    pub fn buffers(&self) -> Vec<&wgpu::Buffer> {
        let x = self.shape();
        let first = (0..self.inputs.len())
            .position(|k| self.read(k) == x)
            .expect("an input laid out as x: the pass and the shape inference check it");
        let mut buffers = vec![self.inputs[first].0];
        for (k, (b, _)) in self.inputs.iter().enumerate() {
            if k != first {
                buffers.push(*b);
            }
        }
        buffers
    }
}

/// The WGSL of gemm.wgsl's product with `prologue`'s program in its loads: `blocking`, the weights
/// bound as `weights` says, `group` invocations a workgroup, x read `width` q a load (the shifted
/// kernel takes no program: one value a load).
pub fn source(
    blocking: Blocking,
    weights: Weights,
    group: u32,
    width: Width,
    prologue: &Prologue,
) -> String {
    match width {
        Width::Four => blocking.wide_source(weights, group, 4, Some(prologue)),
        Width::Eight => blocking.wide_source(weights, group, 8, Some(prologue)),
        Width::One | Width::Shifted(_) => blocking.source_of(weights, group, Some(prologue)),
    }
}

/// What a kernel with a program in its loads is generated from.
#[derive(Clone, Debug, PartialEq)]
pub struct Prologue {
    pub program: ElementwiseProgram,
    pub sources: Vec<Source>,
    /// Per input, the first channel read (a channel slice's start; 0 reads it whole).
    pub starts: Vec<u32>,
    /// x's channels (a point input's per item).
    pub channels: u32,
    /// x normalized over its channels at each pixel, with this epsilon ([`Self::stats`]).
    pub normalize: Option<f32>,
    /// Items folded into q: an invocation's q may lie in another item than `n`.
    pub folded: bool,
    /// Folded, an invocation's q may lie in two items.
    pub straddles: bool,
}

impl Prologue {
    /// The input bound as gemm.wgsl's `src`.
    fn first_whole(&self) -> usize {
        self.sources
            .iter()
            .position(|s| *s == Source::Whole)
            .expect("an input laid out as x: the pass and the shape inference check it")
    }

    /// Input `k`'s array in the WGSL: `src`, or `in{k}` bound from 6.
    fn array(&self, k: usize) -> String {
        match k == self.first_whole() {
            true => "src".into(),
            false => format!("in{k}"),
        }
    }

    /// Storage bindings past gemm.wgsl's.
    pub fn extra_bindings(&self) -> u32 {
        self.sources.len() as u32 - 1
    }

    /// WGSL: the inputs' bindings past gemm.wgsl's (a whole input's elements `element`, as x's),
    /// and the functions the steps call.
    pub fn declarations(&self, element: &str) -> String {
        let mut s = String::new();
        let mut binding = 6;
        for (k, source) in self.sources.iter().enumerate() {
            if k == self.first_whole() {
                continue;
            }
            let element = match source {
                Source::Whole => element,
                Source::Point { .. } => "act",
            };
            let _ = writeln!(
                s,
                "@group(0) @binding({binding}) var<storage, read> in{k}: array<{element}>;"
            );
            binding += 1;
        }
        s + &super::elementwise::functions()
    }

    /// WGSL at the head of `main` (after `q0` and `n`), where an input is one value a channel or
    /// an item: the item of each load of `per` q (1, 4 or 8; `loads` of them) where items are
    /// folded, and the channels of x an item.
    pub fn head(&self, loads: u32, per: u32) -> Vec<String> {
        if !self
            .sources
            .iter()
            .any(|s| matches!(s, Source::Point { .. }))
        {
            return Vec::new();
        }
        let mut lines = vec![format!("    let pc = {}u;", self.channels)];
        for u in 0..loads {
            let item = match self.folded {
                true => format!("n + min(q0 + {}u, p.q_count - {per}u) / p.q_item", per * u),
                false => "n".into(),
            };
            lines.push(format!("    let pi{u} = {item};"));
        }
        lines
    }

    /// WGSL in the loop over input channels (`ic` of the dispatch's chunk): `x{v}` (`vec4<act>`,
    /// `v < pv`) computed by the program. `load(array, suffix, start)` gives the lines that set
    /// `x{v}{suffix}` from `array` laid out as x from channel `start` of each item on (a slice's
    /// first), each `x{v}` from the loads of [`Self::head`] (`per` q a load).
    /// Normalized over the channels where the prologue says ([`Self::stats`] before the loop).
    pub fn x_lines(
        &self,
        pv: u32,
        per: u32,
        load: &dyn Fn(&str, &str, u32) -> Vec<String>,
    ) -> Vec<String> {
        self.lines_for(pv, per, load, Use::X)
    }

    /// WGSL before the loop over input channels, where x is normalized over its channels: each
    /// q's mean (`nmean{v}`) and reciprocal deviation (`nr{v}`) from a loop of its own over every
    /// channel (`row` the line that sets `row` from `ic`; `load` as [`Self::x_lines`]'s). The
    /// sums are shifted by the first channel's value (`nk{v}`): the variance, `E[d^2] - E[d]^2`
    /// of `d = x - nk`, then loses to rounding what `(mean - nk)^2 / var` says (small where the
    /// first channel is a typical one), not what `mean^2 / var` would. None without a norm.
    pub fn stats(
        &self,
        pv: u32,
        per: u32,
        row: &str,
        load: &dyn Fn(&str, &str, u32) -> Vec<String>,
    ) -> Vec<String> {
        let Some(epsilon) = self.normalize else {
            return Vec::new();
        };
        let c = self.channels;
        let mut lines = Vec::new();
        for v in 0..pv {
            lines.push(format!("    var nk{v} = vec4<f32>(0.0);"));
            lines.push(format!("    var n1_{v} = vec4<f32>(0.0);"));
            lines.push(format!("    var n2_{v} = vec4<f32>(0.0);"));
        }
        lines.push("    {\n        let ic = 0u;".into());
        lines.push(row.into());
        lines.extend(self.lines_for(pv, per, load, Use::Shift));
        lines.push("    }".into());
        lines.push(format!("    for (var ic = 0u; ic < {c}u; ic++) {{"));
        lines.push(row.into());
        lines.extend(self.lines_for(pv, per, load, Use::Sums));
        lines.push("    }".into());
        for v in 0..pv {
            lines.push(format!("    let nm{v} = n1_{v} / {c}.0;"));
            lines.push(format!("    let nmean{v} = nk{v} + nm{v};"));
            lines.push(format!(
                "    let nr{v} = inverseSqrt(max(n2_{v} / {c}.0 - nm{v} * nm{v}, vec4<f32>(0.0)) + {epsilon:?});"
            ));
        }
        lines
    }

    /// The lines of [`Self::x_lines`], what they make of each value of x as `what` says.
    fn lines_for(
        &self,
        pv: u32,
        per: u32,
        load: &dyn Fn(&str, &str, u32) -> Vec<String>,
        what: Use,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        let scalar_points = !self.straddles;
        for (k, source) in self.sources.iter().enumerate() {
            let array = self.array(k);
            match *source {
                Source::Whole => {
                    lines.extend(load(&array, &format!("_i{k}"), self.starts[k]));
                    for v in 0..pv {
                        lines.push(format!("        let xv{k}_{v} = vec4<f32>(x{v}_i{k});"));
                    }
                }
                Source::Point { per_channel } => {
                    let channel = match per_channel {
                        true => " * pc + p.ic_base + ic",
                        false => "",
                    };
                    let value = |item: String| format!("f32({array}[{item}{channel}])");
                    if scalar_points {
                        lines.push(format!("        let c{k} = {};", value("pi0".into())));
                        continue;
                    }
                    for v in 0..pv {
                        let vec = match per {
                            // One q a load: each of the 4 its own item.
                            1 => (0..4)
                                .map(|i| value(format!("pi{}", 4 * v + i)))
                                .collect::<Vec<_>>()
                                .join(", "),
                            _ => value(format!("pi{}", 4 * v / per)),
                        };
                        lines.push(format!("        let c{k}_{v} = vec4<f32>({vec});"));
                    }
                }
            }
        }
        lines.extend(self.steps(pv, what));
        lines
    }

    /// The steps: scalar ones (`t{j}`: only point values, where those are one an invocation) once, the
    /// rest (`s{j}_{v}`) on each vec4; then what `what` makes of each vec4 of x (a program of no
    /// steps: its first input).
    fn steps(&self, pv: u32, what: Use) -> Vec<String> {
        let steps = &self.program.steps;
        let mut scalar = vec![false; steps.len()];
        let point = |k: u32| matches!(self.sources[k as usize], Source::Point { .. });
        let is_scalar = |o: Operand, scalar: &[bool]| match o {
            Operand::Input(k) => !self.straddles && point(k),
            Operand::Step(j) => scalar[j as usize],
        };
        let mut lines = Vec::new();
        for (j, step) in steps.iter().enumerate() {
            let operands = match *step {
                crate::model::ElementwiseStep::Unary(_, a) => vec![a],
                crate::model::ElementwiseStep::Binary(_, a, b) => vec![a, b],
            };
            scalar[j] = operands.iter().all(|&o| is_scalar(o, &scalar));
            if scalar[j] {
                let name = |o: Operand| match o {
                    Operand::Input(k) => format!("c{k}"),
                    Operand::Step(i) => format!("t{i}"),
                };
                let expr = super::elementwise::step_expr(step, name, false);
                lines.push(format!("        let t{j} = {expr};"));
            }
        }
        for v in 0..pv {
            for (j, step) in steps.iter().enumerate() {
                if scalar[j] {
                    continue;
                }
                let name = |o: Operand| match o {
                    Operand::Input(k) => match self.sources[k as usize] {
                        Source::Whole => format!("xv{k}_{v}"),
                        Source::Point { .. } if self.straddles => format!("c{k}_{v}"),
                        Source::Point { .. } => format!("vec4<f32>(c{k})"),
                    },
                    Operand::Step(i) if scalar[i as usize] => format!("vec4<f32>(t{i})"),
                    Operand::Step(i) => format!("s{i}_{v}"),
                };
                let expr = super::elementwise::step_expr(step, name, true);
                lines.push(format!("        let s{j}_{v} = {expr};"));
            }
            let value = match steps.len().checked_sub(1) {
                None => format!("xv0_{v}"),
                Some(last) if scalar[last] => format!("vec4<f32>(t{last})"),
                Some(last) => format!("s{last}_{v}"),
            };
            lines.push(match (what, self.normalize) {
                (Use::X, None) => format!("        let x{v} = vec4<act>({value});"),
                (Use::X, Some(_)) => {
                    format!("        let x{v} = vec4<act>(({value} - nmean{v}) * nr{v});")
                }
                (Use::Shift, _) => format!("        nk{v} = {value};"),
                (Use::Sums, _) => format!(
                    "        let nd{v} = {value} - nk{v}; n1_{v} += nd{v}; n2_{v} += nd{v} * nd{v};"
                ),
            });
        }
        lines
    }
}

/// What [`Prologue::lines_for`] makes of each vec4 of x.
#[derive(Clone, Copy)]
enum Use {
    /// `x{v}`, the product's input (normalized where the prologue says).
    X,
    /// The shift of the norm's sums: `nk{v}`, x's first channel.
    Shift,
    /// The norm's sums: `n1_{v}` and `n2_{v}`.
    Sums,
}

impl super::Kernels {
    /// A generated gemm kernel with a program in its loads (`gemm_program`), compiled once per
    /// source, and its bind group layout: gemm.wgsl's with `extra` storage bindings from 6.
    pub fn gemm_program(
        &self,
        source: &str,
        weights: Weights,
        extra: u32,
    ) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
        let (group, layout) = self
            .gemm_program_layouts
            .lock()
            .expect("gemm layouts lock")
            .entry((weights, extra))
            .or_insert_with(|| {
                let group = super::gemm::bind_group_layout(&self.device, weights, extra);
                let layout = self
                    .device
                    .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                        label: Some("gemm program"),
                        bind_group_layouts: &[Some(&group)],
                        immediate_size: 0,
                    });
                (group, layout)
            })
            .clone();
        let pipeline = super::cached(&self.elementwise, source.to_owned(), || {
            self.pipeline("gemm program", Some(&layout), source.to_owned(), &[])
        });
        (pipeline, group)
    }
}
