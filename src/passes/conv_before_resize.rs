//! A 1x1 convolution after a bilinear or nearest Resize runs before it, on the small input:
//! `conv(resize(x)) == resize(conv(x))`, since a 1x1 convolution mixes channels pixel by pixel
//! and such a resize mixes pixels channel by channel with weights that sum to 1 (the bias passes
//! through). The convolution then does `1 / (scale_h * scale_w)` of its work and the Resize moves
//! the convolution's output channels instead of its input's (MediaPipe's selfie segmentation: a
//! Resize of 128 channels followed by a 1x1 convolution to 24 becomes one of 24).
//!
//! Safe where the Resize's output has that one reader and is no model output, and the
//! convolution has no activation (an activation does not commute with interpolation).

use crate::model::{Activation, Filter, LayerOp, Model, ValueId};

/// Returns the model and how many convolutions were moved before their Resize.
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut moved = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let Some(r) = resize_before(&model, i) else {
            i += 1;
            continue;
        };
        // resize -> conv becomes conv (to a new value) -> resize, at the Resize's place.
        let small: ValueId = model.value_count;
        model.value_count += 1;
        let mut conv = model.layers.remove(i);
        let resize = &mut model.layers[r];
        let out = conv.output;
        conv.inputs[0] = resize.inputs[0];
        conv.output = small;
        resize.inputs[0] = small;
        resize.output = out;
        model.layers.insert(r, conv);
        moved += 1;
        i += 1;
    }
    (model, moved)
}

/// For the convolution at layer `i`: the index of the Resize it can run before.
fn resize_before(model: &Model, i: usize) -> Option<usize> {
    let conv = &model.layers[i];
    let LayerOp::Conv2d(spec) = &conv.op else {
        return None;
    };
    let pointwise = spec.k_h == 1
        && spec.k_w == 1
        && spec.stride == [1, 1]
        && spec.pads == [0; 4]
        && spec.groups == 1
        && spec.activation == Activation::None;
    let &[v] = conv.inputs.as_slice() else {
        return None;
    };
    let r = model.producer(v)?;
    let interpolates = match &model.layers[r].op {
        LayerOp::ResizeFilter(s) => matches!(s.filter, Filter::Linear | Filter::Nearest(_)),
        LayerOp::ResizeNearest(_) => true,
        _ => false,
    };
    (pointwise && interpolates && model.readers(v) == 1).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Conv2dSpec, Coords, ResizeFilterSpec, Target, UnaryOp};
    use crate::passes::cpu::{layer_of, max_diff, model, random, run};

    fn conv1x1(in_c: u32, out_c: u32, input: ValueId, output: ValueId) -> crate::model::Layer {
        let spec = Conv2dSpec {
            in_c,
            out_c,
            k_h: 1,
            k_w: 1,
            stride: [1, 1],
            pads: [0; 4],
            dilation: [1, 1],
            groups: 1,
            activation: Activation::None,
        };
        let mut l = layer_of(LayerOp::Conv2d(spec), vec![input], output);
        l.weights = random((in_c * out_c) as usize, output as u64);
        l.bias = random(out_c as usize, output as u64 + 7);
        l
    }

    fn bilinear(scale: f32) -> LayerOp {
        LayerOp::ResizeFilter(ResizeFilterSpec {
            target: Target::Scale([scale, scale]),
            coords: Coords::HalfPixel,
            filter: Filter::Linear,
        })
    }

    /// Selfie segmentation's decoder step: a 2x bilinear Resize of 6 channels, a 1x1 convolution
    /// to 3, read by an Add; and a nearest 2x Resize then a 1x1 convolution. Same function before
    /// and after on random inputs (within float32 rounding of a 6-term sum and 4 taps: 1e-5), the
    /// convolutions now before their Resize and on the small input.
    #[test]
    fn pointwise_convolutions_run_before_the_resize() {
        let m = model(
            6,
            vec![
                layer_of(bilinear(2.0), vec![0], 1),
                conv1x1(6, 3, 1, 2),
                layer_of(LayerOp::ResizeNearest([2, 2]), vec![0], 3),
                conv1x1(6, 3, 3, 4),
                layer_of(LayerOp::Binary(crate::model::BinaryOp::Add), vec![2, 4], 5),
            ],
            5,
        );
        let x = random(6 * 5 * 7, 3);
        let before = run(&m, &x, 5, 7);
        let (moved, count) = apply(m);
        assert_eq!(count, 2);
        let shapes = moved.shapes(5, 7).expect("shapes");
        for l in moved
            .layers
            .iter()
            .filter(|l| matches!(l.op, LayerOp::Conv2d(_)))
        {
            assert_eq!((shapes[l.inputs[0]].h, shapes[l.inputs[0]].w), (5, 7));
        }
        assert!(max_diff(&before, &run(&moved, &x, 5, 7)) < 1e-5);
    }

    /// A convolution with an activation, a 3x3 one, or a Resize read twice stay as they are.
    #[test]
    fn others_stay() {
        let mut relu = conv1x1(4, 2, 1, 2);
        if let LayerOp::Conv2d(spec) = &mut relu.op {
            spec.activation = Activation::LeakyRelu { alpha: 0.0 };
        }
        let m = model(4, vec![layer_of(bilinear(2.0), vec![0], 1), relu], 2);
        assert_eq!(apply(m).1, 0);
        let read_twice = model(
            4,
            vec![
                layer_of(bilinear(2.0), vec![0], 1),
                conv1x1(4, 4, 1, 2),
                layer_of(LayerOp::Binary(crate::model::BinaryOp::Add), vec![1, 2], 3),
            ],
            3,
        );
        assert_eq!(apply(read_twice).1, 0);
        let unary = model(
            4,
            vec![
                layer_of(bilinear(2.0), vec![0], 1),
                layer_of(LayerOp::Unary(UnaryOp::Abs), vec![1], 2),
            ],
            2,
        );
        assert_eq!(apply(unary).1, 0);
    }
}
