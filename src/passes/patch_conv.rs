//! A convolution over non-overlapping patches of an image's few channels (kernel = stride, no
//! padding, not dilated or grouped, at most [`MAX_IN_C`] input channels: a ConvNeXt or Swin
//! stem's 4x4 stride 4 from RGB) becomes a SpaceToDepth of its input and a 1x1 convolution over
//! the patches' values, which runs on gemm.wgsl: the same multiply-adds, each output's
//! `k x k x C` taps one row of a product. The direct kernel ran a 4x4 stride-4 stem from 3
//! channels to 48 at 3 GFLOP/s (19 ms a batch of 8 at 160 px; as patches 6.2-6.9 ms). With more
//! channels the direct kernel does as well as the copy and the product together (a 2x2 stride-2
//! 16->32 at 160 px: 14.5-15.5 ms direct, 6.8-7.0 + 8.3-8.8 as patches), so those stay.
//!
//! The 1x1's input channel `(dy * kw + dx) * C + c` (SpaceToDepth's order) takes the weight of
//! input channel `c` at tap `(dy, dx)`; bias and activation stay. `BATCHWISE_PATCH_CONV=off` keeps
//! the direct kernel (to measure).

use crate::kernels::conv2d::runs_on_gemm;
use crate::kernels::gemm;
use crate::model::{Conv2dSpec, Layer, LayerOp, Model};

/// The most input channels a rewritten convolution reads.
pub const MAX_IN_C: u32 = 4;

/// Returns the model and how many convolutions it rewrote.
pub fn apply(mut model: Model) -> (Model, usize) {
    if !enabled() {
        return (model, 0);
    }
    let mut rewritten = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let LayerOp::Conv2d(spec) = &model.layers[i].op else {
            i += 1;
            continue;
        };
        let (block, in_c) = ([spec.k_h, spec.k_w], spec.in_c as usize);
        let taps = (spec.k_h * spec.k_w) as usize;
        let whole = model.layers[i].weights.len() == spec.out_c as usize * in_c * taps;
        let Some(pointwise) = as_pointwise(spec).filter(|_| whole) else {
            i += 1;
            continue;
        };
        let patches = model.value_count;
        model.value_count += 1;
        let input = model.layers[i].inputs[0];
        if let Some(shapes) = &mut model.static_shapes {
            // A fixed-shape model holds every value's shape: the patches' too.
            let s = crate::kernels::space_to_depth::output(shapes[input], block);
            shapes.resize(patches + 1, s);
            shapes[patches] = s;
        }
        let conv = &mut model.layers[i];
        // OIHW -> [out][(dy * kw + dx) * C + c].
        let weights = conv
            .weights
            .chunks(in_c * taps)
            .flat_map(|w| (0..taps).flat_map(move |t| (0..in_c).map(move |c| w[c * taps + t])))
            .collect();
        let space_to_depth = Layer {
            name: format!("{} (patches)", conv.name),
            op: LayerOp::SpaceToDepth(block),
            inputs: vec![conv.inputs[0]],
            output: patches,
            weights: Vec::new(),
            bias: Vec::new(),
        };
        conv.op = LayerOp::Conv2d(pointwise);
        conv.weights = weights;
        conv.inputs[0] = patches;
        model.layers.insert(i, space_to_depth);
        rewritten += 1;
        i += 2;
    }
    (model, rewritten)
}

/// Whether the pass runs (`BATCHWISE_PATCH_CONV=off` keeps the direct kernel).
fn enabled() -> bool {
    std::env::var("BATCHWISE_PATCH_CONV").map_or(true, |v| v != "off")
}

/// Whether [`apply`] rewrites a convolution of `spec` into a SpaceToDepth and a 1x1: the
/// importers accept such a convolution where the direct kernel could not run it (a ViT's
/// 16x16 stride-16 patches span more input rows than conv2d.wgsl holds).
pub fn rewrites(spec: &Conv2dSpec) -> bool {
    enabled() && as_pointwise(spec).is_some()
}

/// The 1x1 convolution over the patches of `spec`, where `spec` convolves non-overlapping
/// patches and that 1x1 runs on gemm.wgsl.
fn as_pointwise(spec: &Conv2dSpec) -> Option<Conv2dSpec> {
    let patches = [spec.k_h, spec.k_w] == spec.stride
        && spec.k_h * spec.k_w > 1
        && spec.pads == [0; 4]
        && spec.dilation == [1, 1]
        && spec.groups == 1
        && spec.in_c <= MAX_IN_C;
    let pointwise = Conv2dSpec {
        in_c: spec.in_c.checked_mul(spec.k_h * spec.k_w)?,
        k_h: 1,
        k_w: 1,
        stride: [1, 1],
        ..spec.clone()
    };
    (patches && runs_on_gemm(&pointwise) && gemm::supported(spec.out_c)).then_some(pointwise)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;
    use crate::passes::cpu::{max_diff, model, random, run};
    use crate::passes::tests::{conv, conv_layer};

    /// A 4x4 stride-4 stem from 3 channels and a 2x2 stride-2 convolution from 4 with a ReLU, on
    /// maps whose sides are not whole blocks (the rows and columns past them dropped on both
    /// sides): a SpaceToDepth and a 1x1 each, the same function within float32 rounding of a
    /// 48-term sum (1e-5). A padded, overlapping or many-channel one stays.
    #[test]
    fn patch_convolutions_run_as_space_to_depth_and_a_1x1() {
        let patch = |in_c, out_c, k| Conv2dSpec {
            stride: [k, k],
            pads: [0; 4],
            ..conv(in_c, out_c, k)
        };
        let relu = Conv2dSpec {
            activation: Activation::LeakyRelu { alpha: 0.0 },
            ..patch(4, 6, 2)
        };
        let before = model(
            3,
            vec![
                conv_layer(&patch(3, 4, 4), 0, 1, 1),
                conv_layer(&relu, 1, 2, 2),
            ],
            2,
        );
        let (after, n) = apply(before.clone());
        assert_eq!(n, 2);
        let ops: Vec<&LayerOp> = after.layers.iter().map(|l| &l.op).collect();
        assert!(
            matches!(
                ops.as_slice(),
                [
                    LayerOp::SpaceToDepth([4, 4]),
                    LayerOp::Conv2d(a),
                    LayerOp::SpaceToDepth([2, 2]),
                    LayerOp::Conv2d(b)
                ] if a.in_c == 48 && a.k_h == 1 && b.in_c == 16 && b.activation == relu.activation
            ),
            "{ops:?}"
        );
        for (h, w) in [(19, 26), (16, 16)] {
            let x = random((3 * h * w) as usize, 4);
            let diff = max_diff(&run(&before, &x, h, w), &run(&after, &x, h, w));
            assert!(diff <= 1e-5, "{h}x{w}: {diff}");
        }
        let padded = Conv2dSpec {
            pads: [1; 4],
            ..patch(3, 8, 2)
        };
        let overlapping = Conv2dSpec {
            stride: [2, 2],
            ..conv(3, 8, 3)
        };
        for spec in [padded, overlapping, patch(8, 6, 2)] {
            let m = model(3, vec![conv_layer(&spec, 0, 1, 1)], 1);
            assert_eq!(apply(m).1, 0);
        }
    }
}
