//! Runs an activation inside the convolution before it: ReLU, LeakyReLU, Clip and HardSwish (a `Unary`
//! layer) into a convolution or transposed convolution, PRelu (a `BinaryConst` with one slope
//! per channel, or one for all) into a convolution.
//!
//! Only where the convolution's output feeds nothing else and the convolution has no
//! activation yet; anything else stays a layer of its own.

use crate::model::{Activation, BinaryOp, ItemShape, Layer, LayerOp, Model};

/// Returns the model and how many activations were fused.
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut fused = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let Some((c, activation)) = candidate(&model, i) else {
            i += 1;
            continue;
        };
        let act_layer = model.layers.remove(i);
        let conv = &mut model.layers[c];
        match &mut conv.op {
            LayerOp::Conv2d(s) => s.activation = activation,
            LayerOp::ConvTranspose2d(s) => s.activation = activation,
            _ => unreachable!("candidate() returns convolutions"),
        }
        conv.output = act_layer.output;
        fused += 1;
    }
    (model, fused)
}

/// For the layer at `i`: the convolution it can join (a layer index) and the activation it becomes.
fn candidate(model: &Model, i: usize) -> Option<(usize, Activation)> {
    let layer = &model.layers[i];
    let &[input] = layer.inputs.as_slice() else {
        return None;
    };
    let c = model.producer(input)?;
    if model.readers(input) != 1 {
        return None;
    }
    let (out_c, transposed) = match &model.layers[c].op {
        LayerOp::Conv2d(s) if s.activation == Activation::None => (s.out_c, false),
        LayerOp::ConvTranspose2d(s) if s.activation == Activation::None => (s.out_c, true),
        _ => return None,
    };
    let activation = activation_of(layer, out_c)?;
    // The gather kernel of a transposed convolution has no per-channel slopes.
    if transposed && matches!(activation, Activation::PRelu { .. }) {
        return None;
    }
    Some((c, activation))
}

/// The fused form of `layer` after a convolution of `out_c` channels, where it has one.
fn activation_of(layer: &Layer, out_c: u32) -> Option<Activation> {
    match &layer.op {
        LayerOp::Unary(u) => Activation::from_unary(*u),
        LayerOp::BinaryConst {
            op: BinaryOp::PRelu,
            constant: ItemShape { c, h: 1, w: 1 },
            constant_first: false,
        } if layer.weights.len() == *c as usize => {
            let slopes = match *c {
                1 => vec![layer.weights[0]; out_c as usize],
                c if c == out_c => layer.weights.clone(),
                _ => return None,
            };
            Some(Activation::PRelu { slopes })
        }
        _ => None,
    }
}
