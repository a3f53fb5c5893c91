//! A layer norm over the last axis written out op by op, as `torch.onnx` exports LayerNorm
//! before opset 17 (`mu = ReduceMean(x, -1)`, `d = x - mu`, `Pow(d, 2)` or `d * d`, its
//! `ReduceMean`, `+ eps`, `Sqrt`, `d / ...`), in the fixed-shape lowering becomes one
//! `TensorOp::Normalize` layer (`normalize.wgsl`: a row's sums and its values in one kernel),
//! and the scale (`Mul`) and shift (`Add`) by one value a column after it become the norm's
//! weights. Nine general tensor layers a norm, five of them with per-element index arithmetic,
//! become one. The layers the norm no longer reads are left to `prune`.

use super::normalize_channels::unary;
use crate::kernels::nd_binary;
use crate::model::{BinaryOp, LayerOp, Model, NormSpec, ReduceOp, TensorOp, UnaryOp, ValueId};

/// Returns the model and how many norms it found.
pub fn apply(mut model: Model) -> (Model, usize) {
    if model.static_shapes.is_none() {
        return (model, 0);
    }
    let mut found = 0;
    // Folding removes layers after `i`: the bound is read each time.
    let mut i = 0;
    while i < model.layers.len() {
        i += 1;
        let Some((x, spec)) = norm_of(&model, i - 1) else {
            continue;
        };
        let i = i - 1;
        let len = spec.len as usize;
        let layer = &mut model.layers[i];
        layer.op = LayerOp::Tensor(TensorOp::Normalize(spec));
        layer.inputs = vec![x];
        layer.weights = [vec![1.0; len], vec![0.0; len]].concat();
        found += 1;
        while fold_affine(&mut model, i) {}
    }
    (model, found)
}

/// Where layer `i` is `(x - mu) / sqrt(var + eps)` over `x`'s last axis: `x` and the norm.
fn norm_of(model: &Model, i: usize) -> Option<(ValueId, NormSpec)> {
    let layer = &model.layers[i];
    let (
        LayerOp::Tensor(TensorOp::Binary {
            spec,
            constant: None,
        }),
        &[d, s],
    ) = (&layer.op, layer.inputs.as_slice())
    else {
        return None;
    };
    if spec.op != BinaryOp::Div {
        return None;
    }
    let (x, dims) = centred(model, d)?;
    let [ve] = unary(model, s, |op| op == UnaryOp::Sqrt)?;
    let mut eps = None;
    let [var] = unary(model, ve, |op| match op {
        UnaryOp::Affine { scale, offset } if scale == 1.0 && offset >= 0.0 => {
            eps = Some(offset);
            true
        }
        _ => false,
    })?;
    let (sq, _) = mean_of_rows(model, var)?;
    let squared = &model.layers[model.producer(sq)?];
    let d2 = match (&squared.op, squared.inputs.as_slice()) {
        (LayerOp::Binary(BinaryOp::Mul), &[a, b]) if a == b => a,
        (
            LayerOp::Tensor(TensorOp::Binary {
                spec,
                constant: Some(1),
            }),
            &[a],
        ) if spec.op == BinaryOp::Pow && squared.weights == [2.0] => a,
        _ => return None,
    };
    if centred(model, d2)?.0 != x || spec.dims != dims {
        return None;
    }
    let len = *dims.last()?;
    let norm = NormSpec {
        rows: dims.iter().product::<u32>() / len,
        len,
        channels: 1,
        per_element: true,
        eps: eps?,
    };
    Some((x, norm))
}

/// Where `d` is `x - mean(x, -1)`: `x` and its dims.
fn centred(model: &Model, d: ValueId) -> Option<(ValueId, Vec<u32>)> {
    let sub = &model.layers[model.producer(d)?];
    let (
        LayerOp::Tensor(TensorOp::Binary {
            spec,
            constant: None,
        }),
        &[x, mu],
    ) = (&sub.op, sub.inputs.as_slice())
    else {
        return None;
    };
    let (of, dims) = mean_of_rows(model, mu)?;
    (spec.op == BinaryOp::Sub && of == x && spec.dims == dims).then_some((x, dims))
}

/// Where `v` is the mean over the last axis of a value: that value and its dims.
fn mean_of_rows(model: &Model, v: ValueId) -> Option<(ValueId, Vec<u32>)> {
    let layer = &model.layers[model.producer(v)?];
    let (LayerOp::Tensor(TensorOp::Reduce(spec)), &[x]) = (&layer.op, layer.inputs.as_slice())
    else {
        return None;
    };
    let last = spec.dims.len().checked_sub(1)?;
    (spec.op == ReduceOp::Mean && spec.axes == [last]).then(|| (x, spec.dims.clone()))
}

/// Folds a Mul or Add by one value a column that is the only reader of the norm at `i` into
/// its scales and shifts; whether it did.
fn fold_affine(model: &mut Model, i: usize) -> bool {
    let norm = &model.layers[i];
    let LayerOp::Tensor(TensorOp::Normalize(spec)) = &norm.op else {
        return false;
    };
    let (out, len) = (norm.output, spec.len as usize);
    let Some(r) = model.layers.iter().position(|l| l.inputs == [out]) else {
        return false;
    };
    let reader = &model.layers[r];
    let LayerOp::Tensor(TensorOp::Binary {
        spec: b,
        constant: Some(c),
    }) = &reader.op
    else {
        return false;
    };
    let fits = matches!(b.op, BinaryOp::Mul | BinaryOp::Add)
        && nd_binary::per_column(b, *c) == Some((spec.rows, spec.len))
        && reader.weights.len() == len
        && model.readers(out) == 1;
    if !fits {
        return false;
    }
    let (op, k) = (b.op, reader.weights.clone());
    let reader = model.layers.remove(r);
    let norm = &mut model.layers[if r < i { i - 1 } else { i }];
    let (scales, shifts) = norm.weights.split_at_mut(len);
    for ((s, t), k) in scales.iter_mut().zip(shifts).zip(k) {
        match op {
            BinaryOp::Mul => (*s, *t) = (*s * k, *t * k),
            _ => *t += k,
        }
    }
    norm.output = reader.output;
    true
}
