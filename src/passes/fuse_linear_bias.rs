//! A constant added to every row of a product by a constant matrix (a transformer's Linear
//! layer exported as MatMul, then Add of its bias) becomes the product's bias: gemm.wgsl starts
//! each output from it (`kernels::linear`), and the general tensor Add (a pass over the output,
//! per-element index arithmetic) goes.
//!
//! Only where the product runs on gemm.wgsl ([`linear::rows`]), the Add is its output's only
//! reader, and the constant holds one value per output column, broadcast over the rows.

use crate::kernels::{linear, nd_binary};
use crate::model::{BinaryOp, LayerOp, Model, TensorOp};

/// Returns the model and how many biases were fused.
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut fused = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let Some(product) = candidate(&model, i) else {
            i += 1;
            continue;
        };
        let add = model.layers.remove(i);
        let product = &mut model.layers[product];
        product.bias = add.weights;
        product.output = add.output;
        fused += 1;
    }
    (model, fused)
}

/// For the layer at `i`: the product whose bias it is (a layer index).
fn candidate(model: &Model, i: usize) -> Option<usize> {
    let layer = &model.layers[i];
    let LayerOp::Tensor(TensorOp::Binary {
        spec,
        constant: Some(c),
    }) = &layer.op
    else {
        return None;
    };
    let &[input] = layer.inputs.as_slice() else {
        return None;
    };
    let p = model.producer(input)?;
    let product = &model.layers[p];
    let LayerOp::Tensor(TensorOp::MatMul {
        spec: m,
        constant_b: true,
    }) = &product.op
    else {
        return None;
    };
    let rows = linear::rows(m)?;
    let per_column = nd_binary::per_column(spec, *c) == Some((rows, m.n));
    let fits = spec.op == BinaryOp::Add
        && per_column
        && layer.weights.len() == m.n as usize
        && product.bias.is_empty()
        && model.readers(input) == 1;
    fits.then_some(p)
}
