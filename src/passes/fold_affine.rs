//! Folds a per-channel scale or shift after a convolution into its weights and bias: a
//! BatchNormalization (which importers emit as `x * k + (beta - mean * k)`), or any constant
//! Mul / Add of one value per output channel (or one for all) after a convolution. Only where
//! the convolution's output feeds nothing else and the convolution has no activation yet (the
//! fold must come before the activation).
//!
//! And one before a 1x1 convolution (stride 1, no padding, not grouped) that alone reads it: a
//! layer norm's per-channel scale and shift (NAFNet's) folds into the weights that read each
//! channel, `W (g x + b) = (W g) x + W b`. A convolution with padding or a wider kernel would
//! read the shift where it reads padding zeros, so those stay.
//!
//! And one after a norm over the channels (`AcrossChannels::Normalize`) that feeds nothing else:
//! the norm then applies it (the layer's weights are its scales, its bias its shifts), as a
//! layer norm's affine. ConvNeXt's LayerNorm2d before a padded depthwise convolution, which the
//! folds above cannot take.
//!
//! Both lowerings' forms are folded: `BinaryConst` (free sizes) and general tensor ops with a
//! per-channel constant (fixed shapes).

use crate::model::{
    AcrossChannels, Activation, BinaryOp, ItemShape, Layer, LayerOp, Model, TensorOp,
};

/// Returns the model and how many constant layers were folded.
pub fn apply(model: Model) -> (Model, usize) {
    let (mut model, mut folded) = after_convs(model);
    // A scale then a shift before a convolution fold one per sweep, the shift first.
    loop {
        let (m, n) = before_pointwise_convs(model);
        (model, folded) = (m, folded + n);
        if n == 0 {
            break;
        }
    }
    let (model, n) = after_norms(model);
    (model, folded + n)
}

/// One sweep folding the per-channel constants that only a 1x1 convolution reads into it.
fn before_pointwise_convs(mut model: Model) -> (Model, usize) {
    let mut folded = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let Some((c, op, values)) = pointwise_reader(&model, i) else {
            i += 1;
            continue;
        };
        let affine = model.layers.remove(i);
        let c = c - usize::from(c > i);
        let conv = &mut model.layers[c];
        let in_c = values.len();
        let out_c = conv.weights.len() / in_c;
        if conv.bias.is_empty() {
            conv.bias = vec![0.0; out_c];
        }
        // Weights are `[out_c][in_c]`.
        for (o, row) in conv.weights.chunks_mut(in_c).enumerate() {
            match op {
                BinaryOp::Mul => row.iter_mut().zip(&values).for_each(|(w, k)| *w *= k),
                _ => {
                    let shift: f64 = row.iter().zip(&values).map(|(w, b)| (w * b) as f64).sum();
                    conv.bias[o] += shift as f32;
                }
            }
        }
        conv.inputs[0] = affine.inputs[0];
        folded += 1;
    }
    (model, folded)
}

/// For the layer at `i`: the 1x1 convolution that alone reads it and that it folds into, the op
/// (Mul or Add) and one value per input channel of the convolution.
fn pointwise_reader(model: &Model, i: usize) -> Option<(usize, BinaryOp, Vec<f32>)> {
    let layer = &model.layers[i];
    if layer.inputs.len() != 1 || model.readers(layer.output) != 1 {
        return None;
    }
    let conv = model
        .layers
        .iter()
        .position(|l| l.inputs.contains(&layer.output))?;
    let LayerOp::Conv2d(spec) = &model.layers[conv].op else {
        return None;
    };
    let w = model.layers[conv].weights.len();
    if !spec.is_pointwise() || w != (spec.in_c * spec.out_c) as usize {
        return None;
    }
    let bias = model.layers[conv].bias.len();
    if bias != 0 && bias != spec.out_c as usize {
        return None;
    }
    let (op, per_channel) = per_channel_constant(layer, spec.in_c)?;
    let values = match per_channel.len() {
        1 => vec![per_channel[0]; spec.in_c as usize],
        _ => per_channel,
    };
    Some((conv, op, values))
}

/// The per-channel constants after convolutions folded into them.
fn after_convs(model: Model) -> (Model, usize) {
    fold_after(model, conv_channels, |conv, op, values| {
        let out_c = values.len();
        if conv.bias.is_empty() {
            conv.bias = vec![0.0; out_c];
        }
        match op {
            BinaryOp::Mul => {
                // Weights are `[out_c, ...]` (OIHW): each output channel's run scales.
                let per_channel = conv.weights.len() / out_c;
                for (o, w) in conv.weights.chunks_mut(per_channel).enumerate() {
                    w.iter_mut().for_each(|x| *x *= values[o]);
                }
                conv.bias.iter_mut().zip(values).for_each(|(b, k)| *b *= k);
            }
            _ => conv.bias.iter_mut().zip(values).for_each(|(b, s)| *b += s),
        }
    })
}

/// The output channels of a convolution that a constant after it can fold into.
fn conv_channels(conv: &Layer, _: &Layer) -> Option<usize> {
    let LayerOp::Conv2d(spec) = &conv.op else {
        return None;
    };
    let c = spec.out_c as usize;
    let bias = conv.bias.is_empty() || conv.bias.len() == c;
    (spec.activation == Activation::None && bias && conv.weights.len().is_multiple_of(c))
        .then_some(c)
}

/// The per-channel constants after norms folded into them.
/// `BATCHWISE_AFFINE_NORMS=off` folds none (to measure).
fn after_norms(model: Model) -> (Model, usize) {
    if std::env::var("BATCHWISE_AFFINE_NORMS").is_ok_and(|v| v == "off") {
        return (model, 0);
    }
    fold_after(model, norm_channels, |norm, op, values| {
        if norm.weights.is_empty() {
            norm.weights = vec![1.0; values.len()];
            norm.bias = vec![0.0; values.len()];
        }
        match op {
            BinaryOp::Mul => {
                for (k, v) in values.iter().enumerate() {
                    norm.weights[k] *= v;
                    norm.bias[k] *= v;
                }
            }
            _ => norm.bias.iter_mut().zip(values).for_each(|(b, s)| *b += s),
        }
    })
}

/// The channels of a norm that `constant` after it can fold into: the norm's scales where it
/// has them, else the constant's values (one value for all channels waits for a per-channel
/// constant, which gives the count).
fn norm_channels(norm: &Layer, constant: &Layer) -> Option<usize> {
    let LayerOp::AcrossChannels(AcrossChannels::Normalize { .. }) = norm.op else {
        return None;
    };
    match (norm.weights.len(), constant.weights.len()) {
        (0, 1) => None,
        (0, c) | (c, _) => Some(c),
    }
}

/// `model` with each per-channel constant Mul or Add folded into the layer before it where
/// that layer feeds nothing else and `channels` gives its channel count (from it and the
/// constant's layer); `fold` applies the op and the values to it. Returns how many folded.
fn fold_after(
    mut model: Model,
    channels: impl Fn(&Layer, &Layer) -> Option<usize>,
    fold: impl Fn(&mut Layer, BinaryOp, &[f32]),
) -> (Model, usize) {
    let mut folded = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let Some((p, op, values)) = constant_after(&model, i, &channels) else {
            i += 1;
            continue;
        };
        let affine = model.layers.remove(i);
        let p = p - usize::from(p > i);
        fold(&mut model.layers[p], op, &values);
        model.layers[p].output = affine.output;
        folded += 1;
    }
    (model, folded)
}

/// For the layer at `i`: the layer it folds into, the op (Mul or Add) and one value per channel.
fn constant_after(
    model: &Model,
    i: usize,
    channels: impl Fn(&Layer, &Layer) -> Option<usize>,
) -> Option<(usize, BinaryOp, Vec<f32>)> {
    let layer = &model.layers[i];
    let &[input] = layer.inputs.as_slice() else {
        return None;
    };
    let p = model.producer(input)?;
    if model.readers(input) != 1 {
        return None;
    }
    let c = channels(&model.layers[p], layer)?;
    let (op, per_channel) = per_channel_constant(layer, c as u32)?;
    let values = match per_channel.len() {
        1 => vec![per_channel[0]; c],
        _ => per_channel,
    };
    Some((p, op, values))
}

/// A constant Mul or Add of `layer` with one value per channel of `out_c` (or one for all): as
/// the free-size lowering emits it (`BinaryConst` of shape `[C, 1, 1]`), or as the fixed-shape
/// one does (a general `[.., C, H, W]` op whose constant operand strides only along C).
fn per_channel_constant(layer: &Layer, out_c: u32) -> Option<(BinaryOp, Vec<f32>)> {
    let per_channel = |c: u32| (c == 1 || c == out_c) && layer.weights.len() == c as usize;
    match &layer.op {
        LayerOp::BinaryConst {
            op: op @ (BinaryOp::Mul | BinaryOp::Add),
            constant: ItemShape { c, h: 1, w: 1 },
            ..
        } if per_channel(*c) => Some((*op, layer.weights.clone())),
        LayerOp::Tensor(TensorOp::Binary {
            spec,
            constant: Some(k),
        }) if matches!(spec.op, BinaryOp::Mul | BinaryOp::Add) => {
            let (value, constant) = if *k == 1 {
                (&spec.a_strides, &spec.b_strides)
            } else {
                (&spec.b_strides, &spec.a_strides)
            };
            let r = spec.dims.len();
            // [1.., C, H, W]: the value read whole, the constant along C alone.
            let c_axis = r.checked_sub(3)?;
            let image = spec.dims[..c_axis].iter().all(|&d| d == 1) && spec.dims[c_axis] == out_c;
            let whole =
                (c_axis..r).all(|k| spec.dims[k] == 1 || value[k] == contiguous(&spec.dims, k));
            let along_c = (0..r).all(|k| spec.dims[k] == 1 || (constant[k] != 0) == (k == c_axis));
            (image && whole && along_c && per_channel(out_c))
                .then(|| (spec.op, layer.weights.clone()))
        }
        _ => None,
    }
}

/// The row-major stride of axis `k` of `dims`.
fn contiguous(dims: &[u32], k: usize) -> u32 {
    dims[k + 1..].iter().product()
}
