//! `bench --profile`: each layer's GPU time in one batch, with its op, shapes, rate and share.

use anyhow::Result;
use serde::Serialize;

use crate::engine::{BatchRunner, StepTime};
use crate::model::{ItemShape, Layer, LayerOp, Model};

/// One row of a profile: a model layer (all its dispatches), or the pixel pack / unpack.
#[derive(Clone, Debug, Serialize)]
pub struct ProfileRow {
    /// The layer's index in the model; None for pack and unpack.
    pub layer: Option<usize>,
    /// The node's name in the model file (the step's label for pack and unpack).
    pub name: String,
    /// The op with its parameters, e.g. `Conv 3x3 64->64 LeakyRelu`.
    pub op: String,
    /// The item's input and output shapes, `CxHxW`.
    pub input: String,
    pub output: String,
    pub dispatches: usize,
    /// Workgroups over all its dispatches (one batch).
    pub workgroups: u64,
    pub ms: f64,
    /// Multiply-adds x 2 per second, for layers that multiply (convolutions, matmuls).
    pub gflops: Option<f64>,
    /// This row's share of the summed time.
    pub share: f64,
    /// The kernels of a layer that runs several in a chain (the split Winograd's transforms and
    /// products), each timed on its own; empty for a layer of one kernel.
    pub phases: Vec<Phase>,
}

/// One kernel of a layer's chain.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub kernel: String,
    pub dispatches: usize,
    pub ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub batch_size: u32,
    /// The per-layer times summed (each step timed in a pass of its own).
    pub total_ms: f64,
    /// Multiply-adds x 2 per second over the whole batch.
    pub gflops: f64,
    pub rows: Vec<ProfileRow>,
}

/// Times one batch of `items` on `runner`, whose tiles are `h x w` items of `model`.
pub fn profile(
    runner: &BatchRunner,
    model: &Model,
    items: u32,
    (h, w): (u32, u32),
) -> Result<Profile> {
    let times = runner.profile(items)?;
    let items = items.clamp(1, runner.items_per_lane);
    let shapes = model.shapes(h, w)?;
    let total_ms: f64 = times.iter().map(|t| t.ms).sum();
    let mut rows: Vec<ProfileRow> = Vec::new();
    for t in &times {
        match rows.last_mut() {
            Some(last) if t.layer.is_some() && last.layer == t.layer => {
                last.ms += t.ms;
                last.dispatches += t.dispatches;
                last.workgroups += t.workgroups;
                last.phases.extend(phases(t));
            }
            _ => rows.push(row(model, &shapes, t)),
        }
    }
    // A layer that runs no step of its own (a Concat done in place: its inputs were written
    // into its buffer) still gets its row, after the layer before it, at no cost.
    for i in 0..model.layers.len() {
        if rows.iter().any(|r| r.layer == Some(i)) {
            continue;
        }
        let before = rows.iter().rposition(|r| r.layer.is_some_and(|l| l < i));
        let at = before.map_or(rows.len().min(1), |p| p + 1);
        let free = StepTime {
            layer: Some(i),
            label: String::new(),
            dispatches: 0,
            workgroups: 0,
            ms: 0.0,
            phases: Vec::new(),
        };
        let mut row = row(model, &shapes, &free);
        row.op.push_str(" (in place, no dispatch)");
        rows.insert(at, row);
    }
    let mut macs = 0u64;
    for r in &mut rows {
        r.share = r.ms / total_ms.max(1e-12);
        if let Some(l) = r.layer.map(|i| &model.layers[i]) {
            let m = l.macs(&shapes) * items as u64;
            macs += m;
            r.gflops = (m > 0).then(|| 2.0 * m as f64 / (r.ms.max(1e-9) * 1e6));
        }
    }
    Ok(Profile {
        batch_size: items,
        total_ms,
        gflops: 2.0 * macs as f64 / (total_ms.max(1e-9) * 1e6),
        rows,
    })
}

fn row(model: &Model, shapes: &[ItemShape], t: &StepTime) -> ProfileRow {
    let shape = |v: Option<usize>| {
        v.and_then(|v| shapes.get(v))
            .map_or("-".into(), |s| format!("{}x{}x{}", s.c, s.h, s.w))
    };
    let layer = t.layer.map(|i| &model.layers[i]);
    // Not a layer: the pack, which writes the model's input, or an unpack, which reads its output.
    let io = Some(if t.label.starts_with("unpack") {
        model.output
    } else {
        0
    });
    ProfileRow {
        layer: t.layer,
        name: layer.map_or(t.label.clone(), |l| l.name.clone()),
        op: layer.map_or(t.label.clone(), describe),
        input: shape(layer.map_or(io, |l| l.inputs.first().copied())),
        output: shape(layer.map_or(io, |l| Some(l.output))),
        dispatches: t.dispatches,
        workgroups: t.workgroups,
        ms: t.ms,
        gflops: None,
        share: 0.0,
        phases: phases(t),
    }
}

fn phases(t: &StepTime) -> Vec<Phase> {
    t.phases
        .iter()
        .map(|(kernel, dispatches, ms)| Phase {
            kernel: kernel.clone(),
            dispatches: *dispatches,
            ms: *ms,
        })
        .collect()
}

/// The op of `l` with what decides its kernel and cost.
pub fn describe(l: &Layer) -> String {
    let conv = |s: &crate::model::Conv2dSpec, extra: &str| {
        let mut text = format!("Conv {}x{} {}->{}", s.k_h, s.k_w, s.in_c, s.out_c);
        if s.is_depthwise() {
            text = format!("depthwise Conv {}x{} {}", s.k_h, s.k_w, s.in_c);
        } else if s.groups > 1 {
            text += &format!(" groups {}", s.groups);
        }
        if s.stride != [1, 1] {
            text += &format!(" stride {}", s.stride[0]);
        }
        if s.dilation != [1, 1] {
            text += &format!(" dilation {}", s.dilation[0]);
        }
        if !matches!(s.activation, crate::model::Activation::None) {
            text += &format!(" {}", activation_name(&s.activation));
        }
        text + extra
    };
    match &l.op {
        LayerOp::Conv2d(s) => conv(s, ""),
        LayerOp::Conv2dResidual { spec, .. } => conv(spec, " + Add"),
        LayerOp::Conv2dGated(spec) => conv(spec, " + gate"),
        LayerOp::Conv2dProgram {
            spec,
            residual,
            normalize,
            program,
        } => {
            let add = if residual.is_some() { " + Add" } else { "" };
            let ops = match program.steps.is_empty() {
                true => "",
                false => "fused elementwise ops + ",
            };
            let norm = match normalize {
                Some(_) => "a norm over channels + ",
                None => "",
            };
            format!("{ops}{norm}{}", conv(spec, add))
        }
        LayerOp::Conv2dUpsampled { spec, factor } => {
            format!(
                "Resize nearest x{}x{} + {}",
                factor[0],
                factor[1],
                conv(spec, "")
            )
        }
        LayerOp::ConvTranspose2d(s) => format!(
            "ConvTranspose {}x{} {}->{} stride {}",
            s.k_h, s.k_w, s.in_c, s.out_c, s.stride[0]
        ),
        LayerOp::ResizeNearest([h, w]) => format!("Resize nearest x{h}x{w}"),
        LayerOp::Binary(op) => format!("{op:?}"),
        LayerOp::BinaryConst { op, .. } => format!("{op:?} constant"),
        LayerOp::Unary(op) => short(&format!("{op:?}")),
        LayerOp::Tensor(op) => tensor_op(op, !l.bias.is_empty()),
        other => other.kind().to_owned(),
    }
}

/// A general tensor op by what sets its cost: a product's sizes, a reduction's axes.
fn tensor_op(op: &crate::model::TensorOp, bias: bool) -> String {
    use crate::model::TensorOp;
    match op {
        TensorOp::Copy(parts) if parts.len() > 1 => format!("Copy of {} parts", parts.len()),
        TensorOp::Copy(_) => "Copy".into(),
        TensorOp::Binary { spec, constant } => {
            let constant = if constant.is_some() { " constant" } else { "" };
            format!("{:?}{constant}, broadcast", spec.op)
        }
        TensorOp::Reduce(spec) => format!("Reduce{:?} over axes {:?}", spec.op, spec.axes),
        TensorOp::Softmax(spec) => format!("Softmax over {}", spec.len),
        TensorOp::MatMul { spec, constant_b } => {
            let batch: u32 = spec.batch.iter().product();
            let times = if batch > 1 {
                format!("{batch} x ")
            } else {
                String::new()
            };
            let b = if *constant_b { "constant " } else { "" };
            let bias = if bias { " + bias" } else { "" };
            let (m, k, n) = (spec.m, spec.k, spec.n);
            format!("MatMul {times}{m}x{k} by {b}{k}x{n}{bias}")
        }
        TensorOp::Normalize(spec) => format!("Norm over {}", spec.len),
    }
}

fn activation_name(a: &crate::model::Activation) -> String {
    let text = format!("{a:?}");
    text.split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The first words of a long debug text.
fn short(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s += "...";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_op_is_cut_and_activations_are_named() {
        assert_eq!(short("abc"), "abc");
        assert_eq!(short(&"x".repeat(50)), format!("{}...", "x".repeat(40)));
        let leaky = crate::model::Activation::LeakyRelu { alpha: 0.2 };
        assert_eq!(activation_name(&leaky), "LeakyRelu");
    }

    #[test]
    fn tensor_ops_are_named_by_their_sizes() {
        use crate::model::{MatMulSpec, TensorOp};
        let linear = TensorOp::MatMul {
            spec: MatMulSpec::matmul(&[1, 197, 192], &[192, 768]).unwrap(),
            constant_b: true,
        };
        assert_eq!(
            tensor_op(&linear, true),
            "MatMul 197x192 by constant 192x768 + bias"
        );
        let scores = TensorOp::MatMul {
            spec: MatMulSpec::matmul(&[1, 3, 197, 64], &[1, 3, 64, 197]).unwrap(),
            constant_b: false,
        };
        assert_eq!(tensor_op(&scores, false), "MatMul 3 x 197x64 by 64x197");
    }
}
