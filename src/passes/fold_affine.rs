//! Folds a per-channel scale or shift after a convolution into its weights and bias: a
//! BatchNormalization (which importers emit as `x * k + (beta - mean * k)`), or any constant
//! Mul / Add of one value per output channel (or one for all) after a convolution.
//!
//! Only where the convolution's output feeds nothing else and the convolution has no
//! activation yet (the fold must come before the activation).

use crate::model::{Activation, BinaryOp, ItemShape, LayerOp, Model};

/// Returns the model and how many constant layers were folded.
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut folded = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let Some((c, op, values)) = candidate(&model, i) else {
            i += 1;
            continue;
        };
        let affine = model.layers.remove(i);
        let conv = &mut model.layers[c];
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
                conv.bias.iter_mut().zip(&values).for_each(|(b, k)| *b *= k);
            }
            _ => conv.bias.iter_mut().zip(&values).for_each(|(b, s)| *b += s),
        }
        conv.output = affine.output;
        folded += 1;
    }
    (model, folded)
}

/// For the layer at `i`: the convolution it folds into, the op (Mul or Add) and one value per
/// output channel.
fn candidate(model: &Model, i: usize) -> Option<(usize, BinaryOp, Vec<f32>)> {
    let layer = &model.layers[i];
    let LayerOp::BinaryConst {
        op: op @ (BinaryOp::Mul | BinaryOp::Add),
        constant: ItemShape { c, h: 1, w: 1 },
        ..
    } = layer.op
    else {
        return None;
    };
    let &[input] = layer.inputs.as_slice() else {
        return None;
    };
    let conv = model.producer(input)?;
    if model.readers(input) != 1 || layer.weights.len() != c as usize {
        return None;
    }
    let LayerOp::Conv2d(spec) = &model.layers[conv].op else {
        return None;
    };
    if spec.activation != Activation::None
        || (!model.layers[conv].bias.is_empty()
            && model.layers[conv].bias.len() != spec.out_c as usize)
        || !model.layers[conv]
            .weights
            .len()
            .is_multiple_of(spec.out_c as usize)
    {
        return None;
    }
    let values = match c {
        1 => vec![layer.weights[0]; spec.out_c as usize],
        c if c == spec.out_c => layer.weights.clone(),
        _ => return None,
    };
    Some((conv, op, values))
}
