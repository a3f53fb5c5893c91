//! Fuses an Add that follows a dense convolution into it (`LayerOp::Conv2dResidual`): the conv
//! kernel adds the skip after its last input chunk, before or after its activation.
//!
//! Both lowerings' Adds fuse: the free-size `Binary` and the fixed-shape general Add of two
//! operands of one shape.
//!
//! Safe where the convolution's output feeds only the Add and the other operand is computed
//! before the convolution. An activation after the Add (ResNet's conv, add, relu) then fuses too.

use crate::model::{Activation, BinaryOp, LayerOp, Model, Residual, TensorOp, ValueId};

/// Returns the model and how many Adds were fused.
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut fused = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let Some((c, skip)) = candidate(&model, i) else {
            i += 1;
            continue;
        };
        let add = model.layers.remove(i);
        let conv = &mut model.layers[c];
        let LayerOp::Conv2d(spec) = conv.op.clone() else {
            unreachable!("candidate() checked for a dense convolution")
        };
        // An activation already fused came before the Add.
        let residual = if spec.activation == Activation::None {
            Residual::BeforeActivation
        } else {
            Residual::AfterActivation
        };
        conv.op = LayerOp::Conv2dResidual { spec, residual };
        conv.inputs.push(skip);
        conv.output = add.output;
        conv.name = format!("{} + {}", conv.name, add.name);
        fused += 1;
        fuse_following_activation(&mut model, c);
    }
    (model, fused)
}

/// For the Add at layer `i`: the convolution before it (a layer index) and the skip operand.
fn candidate(model: &Model, i: usize) -> Option<(usize, ValueId)> {
    let layer = &model.layers[i];
    let &[a, b] = layer.inputs.as_slice() else {
        return None;
    };
    if a == b || !is_plain_add(&layer.op) {
        return None;
    }
    let producer = |v: ValueId| model.layers[..i].iter().position(|l| l.output == v);
    [(a, b), (b, a)].into_iter().find_map(|(conv_out, skip)| {
        let c = producer(conv_out)?;
        let dense = matches!(&model.layers[c].op, LayerOp::Conv2d(s) if !s.is_depthwise());
        // The skip must exist before the convolution runs.
        let early = skip == 0 || producer(skip).is_some_and(|p| p < c);
        (dense && early && model.readers(conv_out) == 1).then_some((c, skip))
    })
}

/// An Add of two values of one shape: the free-size lowering's `Binary` (its shapes are checked
/// when the model's shapes are inferred), or the fixed-shape lowering's general Add whose two
/// operands are read whole, element for element (no broadcasting).
fn is_plain_add(op: &LayerOp) -> bool {
    match op {
        LayerOp::Binary(BinaryOp::Add) => true,
        LayerOp::Tensor(TensorOp::Binary {
            spec,
            constant: None,
        }) if spec.op == BinaryOp::Add => {
            let dims = &spec.dims;
            (0..dims.len()).all(|k| {
                let whole: u32 = dims[k + 1..].iter().product();
                dims[k] == 1 || (spec.a_strides[k] == whole && spec.b_strides[k] == whole)
            })
        }
        _ => false,
    }
}

/// A ReLU / LeakyReLU / Clip reading only the sum of the fused layer `c` joins it, after the Add.
fn fuse_following_activation(model: &mut Model, c: usize) {
    let out = model.layers[c].output;
    let Some(j) = model.layers.iter().position(|l| l.inputs == [out]) else {
        return;
    };
    if model.readers(out) != 1 {
        return;
    }
    let LayerOp::Unary(u) = model.layers[j].op else {
        return;
    };
    let Some(act) = Activation::from_unary(u) else {
        return;
    };
    if let LayerOp::Conv2dResidual {
        spec,
        residual: Residual::BeforeActivation,
    } = &mut model.layers[c].op
    {
        spec.activation = act;
        let act_layer = model.layers.remove(j);
        model.layers[c].output = act_layer.output;
    }
}
