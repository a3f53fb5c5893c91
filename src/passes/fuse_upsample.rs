//! Fuses a nearest upsample by whole factors into the convolutions that read it
//! (`LayerOp::Conv2dUpsampled`): each reads input pixel `(y / f, x / f)` of the small value, so
//! the upsampled one (16x the pixels for a 4x upscaler's last convolutions) is never computed
//! nor stored.
//!
//! Safe where every reader of the upsampled value is a convolution that runs on conv2d.wgsl or
//! its generated variants (dense, not 1x1: those run on gemm.wgsl, which reads its input
//! through strides with no upsampling) reading it as its input, and it is no model output.

use crate::model::{LayerOp, Model};

/// Returns the model and how many upsamples were fused.
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut fused = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let LayerOp::ResizeNearest(factor) = model.layers[i].op else {
            i += 1;
            continue;
        };
        let up = model.layers[i].output;
        if !fusable(&model, up) {
            i += 1;
            continue;
        }
        let resize = model.layers.remove(i);
        for l in &mut model.layers[i..] {
            if l.inputs.first() != Some(&up) {
                continue;
            }
            let LayerOp::Conv2d(spec) = l.op.clone() else {
                unreachable!("fusable() checked every reader")
            };
            l.op = LayerOp::Conv2dUpsampled { spec, factor };
            l.inputs[0] = resize.inputs[0];
            l.name = format!("{} + {}", resize.name, l.name);
        }
        fused += 1;
    }
    (model, fused)
}

/// Whether every reader of `up` is a convolution the fused kernel runs, reading it as its input.
fn fusable(model: &Model, up: usize) -> bool {
    if up == model.output || model.extra_outputs.contains(&up) {
        return false;
    }
    let readers: Vec<_> = model
        .layers
        .iter()
        .filter(|l| l.inputs.contains(&up))
        .collect();
    !readers.is_empty()
        && readers.iter().all(|l| {
            l.inputs == [up]
                && matches!(&l.op, LayerOp::Conv2d(s)
                    if !s.is_depthwise()
                        && !s.is_pointwise()
                        && crate::kernels::conv2d::supported(s).is_ok())
        })
}
