//! Fuses a norm over the channels (`AcrossChannels::Normalize`, a layer norm made by
//! `normalize_channels`, its scale and shift folded into the convolution after it by
//! `fold_affine`) into the 1x1 convolution that reads it (`LayerOp::Conv2dProgram` with
//! `normalize`): gemm.wgsl's kernel sums each pixel's channels in a loop of its own, then
//! normalizes each value as it loads it for the product, so the norm's output is never stored
//! nor read back. NAFNet's blocks and ConvNeXt's begin so: a norm, then a 1x1 to more channels.
//!
//! Safe where the norm's output feeds only that convolution (as its input, not its residual)
//! and is no model output; the convolution runs on gemm.wgsl (`conv2d::runs_on_gemm`) and
//! covers every input channel in each dispatch (`gemm::one_pass`); the epsilon is a finite
//! number, not negative (it is compiled into the kernel).

use crate::model::{AcrossChannels, ElementwiseProgram, LayerOp, Model};

/// Returns the model and how many norms were fused.
/// `BATCHWISE_FUSE_NORM_CONV=off` fuses none (to measure).
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut fused = 0;
    if std::env::var("BATCHWISE_FUSE_NORM_CONV").is_ok_and(|v| v == "off") {
        return (model, fused);
    }
    let mut i = 0;
    while i < model.layers.len() {
        let Some((c, epsilon)) = candidate(&model, i) else {
            i += 1;
            continue;
        };
        let norm = model.layers.remove(i);
        // A program of no steps: x is the norm's input.
        let program = (ElementwiseProgram::new(Vec::new()), Some(epsilon));
        let input = vec![norm.inputs[0]];
        super::fuse_conv_input::into_program(&mut model.layers[c - 1], &norm, program, input);
        fused += 1;
    }
    (model, fused)
}

/// For the norm `i`: the index of the convolution it fuses into and its epsilon, if it fuses.
fn candidate(model: &Model, i: usize) -> Option<(usize, f32)> {
    let layer = &model.layers[i];
    let LayerOp::AcrossChannels(AcrossChannels::Normalize { epsilon }) = layer.op else {
        return None;
    };
    // A norm that applies its own scale and shift (`fold_affine::after_norms`) stays.
    if !layer.weights.is_empty() {
        return None;
    }
    let (c, spec) = super::fuse_conv_input::gemm_reader(model, i)?;
    let compiles = epsilon.is_finite() && epsilon >= 0.0;
    let one_pass = crate::kernels::gemm::one_pass(spec.in_c, spec.out_c);
    (compiles && one_pass).then_some((c, epsilon))
}

#[cfg(test)]
mod tests {
    use crate::model::{AcrossChannels, BinaryOp, LayerOp};
    use crate::passes::cpu::{layer_of, max_diff, model, random, run};
    use crate::passes::tests::{conv, conv_layer};

    /// A NAFNet block's start: a 3x3 to 16 channels, a norm over them, a 1x1 to 16 (with a
    /// residual Add of the 3x3's output when `add`). The norm fuses into the 1x1, the function
    /// the same within float32 rounding. A norm read by a 3x3, or by two layers, stays.
    #[test]
    fn fuse_norm_conv_normalizes_as_the_product_loads() {
        let norm = LayerOp::AcrossChannels(AcrossChannels::Normalize { epsilon: 1e-6 });
        let block = |k: u32, add: bool| {
            let mut layers = vec![
                conv_layer(&conv(3, 16, 3), 0, 1, 3),
                layer_of(norm.clone(), vec![1], 2),
                conv_layer(&conv(16, 16, k), 2, 3, 4),
            ];
            if add {
                layers.push(layer_of(LayerOp::Binary(BinaryOp::Add), vec![3, 1], 4));
            }
            let m = model(3, layers, if add { 4 } else { 3 });
            crate::passes::fuse_residual::apply(m).0
        };
        let x = random(3 * 7 * 9, 8);
        for add in [false, true] {
            let m = block(1, add);
            let (fused, n) = super::apply(m.clone());
            assert_eq!(n, 1, "residual {add}");
            let layer = fused.layers.last().expect("the 1x1");
            assert!(matches!(
                &layer.op,
                LayerOp::Conv2dProgram { residual, normalize: Some(_), program, .. }
                    if residual.is_some() == add && program.steps.is_empty()
            ));
            assert_eq!(layer.inputs[0], 1, "the norm's input");
            assert!(max_diff(&run(&m, &x, 7, 9), &run(&fused, &x, 7, 9)) < 1e-5);
        }
        assert_eq!(super::apply(block(3, false)).1, 0, "a 3x3 after the norm");
        let mut shared = block(1, false);
        shared
            .layers
            .push(layer_of(LayerOp::Binary(BinaryOp::Add), vec![2, 1], 4));
        shared.output = 4;
        shared.value_count = 5;
        assert_eq!(super::apply(shared).1, 0, "a norm read twice");
    }
}
