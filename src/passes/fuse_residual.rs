//! Fuses an Add that follows a dense convolution into it (`LayerOp::Conv2dResidual`): the conv
//! kernel adds the skip after its last input chunk, before or after its activation.
//!
//! Both lowerings' Adds fuse: the free-size `Binary` and the fixed-shape general Add of two
//! operands of one shape.
//!
//! Safe where the convolution's output feeds only the Add and the other operand is computed
//! before the convolution. An activation after the Add (ResNet's conv, add, relu) then fuses too.
//!
//! A depthwise convolution fuses an Add of its own input (remove-background's `x + relu(dw(x))`)
//! where its output is its input's size: its kernel takes each residual value from the patch it
//! loaded (`depthwise_conv2d::Variant::residual`), so the Add costs no load.
//!
//! The other operand may be a Pad that appends zero channels to a value computed before the
//! convolution (BlazeFace's `relu(conv(x) + pad(x))`) where the convolution is a 1x1 on
//! gemm.wgsl, which reads a residual of fewer channels than its output (0 past them): the Pad
//! is then never run.

use crate::model::{Activation, BinaryOp, LayerOp, Model, Residual, TensorOp, ValueId};

/// Returns the model and how many Adds were fused.
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut fused = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let Some(Fusion { conv: c, skip, pad }) = candidate(&model, i) else {
            i += 1;
            continue;
        };
        let add = model.layers.remove(i);
        // The Pad (after the convolution, or before it) is read by the Add alone.
        let c = match pad {
            Some(p) => {
                model.layers.remove(p);
                if p < c { c - 1 } else { c }
            }
            None => c,
        };
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

/// An Add that fuses: the convolution before it (a layer index), the skip operand the
/// convolution reads, and the channel Pad between that and the Add (a layer index), if any.
struct Fusion {
    conv: usize,
    skip: ValueId,
    pad: Option<usize>,
}

/// For the Add at layer `i`: the fusion, if it fuses.
fn candidate(model: &Model, i: usize) -> Option<Fusion> {
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
        let LayerOp::Conv2d(spec) = &model.layers[c].op else {
            return None;
        };
        if model.readers(conv_out) != 1 {
            return None;
        }
        if spec.is_depthwise() {
            // Only its own input (`x + act(dw(x))`), which its kernel reads from its patch.
            use crate::kernels::depthwise_conv2d::{preserves_size, variant};
            let own = skip == model.layers[c].inputs[0] && preserves_size(spec);
            return (own && variant(spec).is_some()).then_some(Fusion {
                conv: c,
                skip,
                pad: None,
            });
        }
        // The skip must exist before the convolution runs.
        let early = |v: ValueId| v == 0 || producer(v).is_some_and(|p| p < c);
        if early(skip) {
            return Some(Fusion {
                conv: c,
                skip,
                pad: None,
            });
        }
        let p = producer(skip)?;
        let LayerOp::Pad(pad) = &model.layers[p].op else {
            return None;
        };
        let gemm = spec.is_pointwise() && crate::kernels::gemm::supported(spec.out_c);
        let padded = super::fuse_pad::appends_zero_channels(pad) && model.readers(skip) == 1;
        let source = model.layers[p].inputs[0];
        (gemm && padded && early(source)).then_some(Fusion {
            conv: c,
            skip: source,
            pad: Some(p),
        })
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
