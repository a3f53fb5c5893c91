//! Fuses a channel Pad into the elementwise layer that reads it: a Pad that only appends zero
//! channels (BlazeFace's skip connection `relu(conv(x) + pad(x))`, 24 -> 28 channels) is never
//! stored; the elementwise kernel reads its input and 0 past the input's own channels
//! (`ElementwiseProgram::padded_channels`). A lone Binary layer becomes a program of one step.
//!
//! Safe where the padded value has that one reader and is no model output.

use crate::model::{
    ElementwiseProgram, ElementwiseStep, LayerOp, Model, Operand, PadMode, PadSpec, ValueId,
};

/// Returns the model and how many Pads were fused.
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut fused = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let Some((k, p)) = candidate(&model, i) else {
            i += 1;
            continue;
        };
        let pad = model.layers.remove(p);
        let LayerOp::Pad(spec) = &pad.op else {
            unreachable!("candidate() checked for a Pad")
        };
        let at = if p < i { i - 1 } else { i };
        let layer = &mut model.layers[at];
        let mut program = program_of(&layer.op);
        program.padded_channels.resize(layer.inputs.len(), 0);
        program.padded_channels[k] = spec.channels[1];
        layer.op = LayerOp::Elementwise(program);
        layer.inputs[k] = pad.inputs[0];
        layer.name = format!("{} + {}", pad.name, layer.name);
        fused += 1;
        // Another input of the same layer may be a Pad too: look at it again.
        i = at;
    }
    (model, fused)
}

/// The program an elementwise layer runs: its own, or a lone Binary layer's step.
pub(super) fn program_of(op: &LayerOp) -> ElementwiseProgram {
    match op {
        LayerOp::Elementwise(program) => program.clone(),
        LayerOp::Binary(op) => ElementwiseProgram::new(vec![ElementwiseStep::Binary(
            *op,
            Operand::Input(0),
            Operand::Input(1),
        )]),
        _ => unreachable!("candidate() checked for an elementwise layer"),
    }
}

/// For the elementwise layer `i`: the input (its index) that a fusable Pad computes, and that
/// Pad's layer index.
fn candidate(model: &Model, i: usize) -> Option<(usize, usize)> {
    let layer = &model.layers[i];
    let padded = |k: usize| match &layer.op {
        LayerOp::Elementwise(program) => program.padded(k),
        _ => 0,
    };
    let elementwise = match &layer.op {
        LayerOp::Elementwise(_) => true,
        LayerOp::Binary(_) => layer.inputs.len() == 2,
        _ => false,
    };
    if !elementwise {
        return None;
    }
    layer.inputs.iter().enumerate().find_map(|(k, &v)| {
        let p = model.producer(v)?;
        let fits = matches!(&model.layers[p].op, LayerOp::Pad(spec) if appends_zero_channels(spec));
        let once = model.readers(v) == 1 && !reads_twice(&layer.inputs, v);
        (fits && once && padded(k) == 0).then_some((k, p))
    })
}

fn reads_twice(inputs: &[ValueId], v: ValueId) -> bool {
    inputs.iter().filter(|&&x| x == v).count() > 1
}

/// A Pad that appends zero channels and nothing else.
pub(super) fn appends_zero_channels(spec: &PadSpec) -> bool {
    spec.mode == PadMode::Constant
        && spec.value == 0.0
        && spec.channels[0] == 0
        && spec.channels[1] > 0
        && spec.height == [0, 0]
        && spec.width == [0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, BinaryOp, Conv2dSpec, ItemShape, UnaryOp};
    use crate::passes::cpu::{channel_pad as pad, layer_of, model, random, run};

    /// BlazeFace's block, `relu(conv(x) + pad(x))` with a 3 -> 5 channel Pad (a program of two
    /// steps), then a lone Sub of two padded values (both Pads fuse into it). Same function
    /// before and after on random inputs, exactly (the kernel adds the same zeros); the Pads gone.
    #[test]
    fn channel_pads_fuse_into_elementwise_layers() {
        let spec = Conv2dSpec {
            in_c: 3,
            out_c: 5,
            k_h: 1,
            k_w: 1,
            stride: [1, 1],
            pads: [0; 4],
            dilation: [1, 1],
            groups: 1,
            activation: Activation::None,
        };
        let mut conv = layer_of(LayerOp::Conv2d(spec), vec![0], 1);
        conv.weights = random(15, 1);
        conv.bias = random(5, 2);
        let relu = LayerOp::Unary(UnaryOp::LeakyRelu { alpha: 0.0 });
        let m = model(
            3,
            vec![
                conv,
                layer_of(pad(2), vec![0], 2),
                layer_of(LayerOp::Binary(BinaryOp::Add), vec![1, 2], 3),
                layer_of(relu, vec![3], 4),
                layer_of(pad(3), vec![4], 5),
                layer_of(pad(5), vec![0], 6),
                layer_of(LayerOp::Binary(BinaryOp::Sub), vec![5, 6], 7),
            ],
            7,
        );
        let (h, w) = (5, 6);
        let x = random((3 * h * w) as usize, 11);
        let before = run(&m, &x, h, w);
        let (fused, _) = crate::passes::fuse_elementwise::apply(m);
        let (fused, count) = apply(fused);
        assert_eq!(count, 3);
        assert!(!fused.layers.iter().any(|l| matches!(l.op, LayerOp::Pad(_))));
        let shapes = fused.shapes(h, w).expect("shapes");
        assert_eq!(shapes[7], ItemShape { c: 8, h, w });
        assert_eq!(
            fused.layers.last().map(|l| l.name.as_str()),
            Some("v6 + v5 + v7")
        );
        assert_eq!(run(&fused, &x, h, w), before);
    }

    /// A Pad read twice, or padding anything but trailing channels with zeros, stays.
    #[test]
    fn other_pads_stay() {
        let add = |a, b, out| layer_of(LayerOp::Binary(BinaryOp::Add), vec![a, b], out);
        let read_twice = model(3, vec![layer_of(pad(2), vec![0], 1), add(1, 1, 2)], 2);
        assert_eq!(apply(read_twice).1, 0);
        let leading = LayerOp::Pad(PadSpec {
            channels: [1, 1],
            height: [0, 0],
            width: [0, 0],
            mode: PadMode::Constant,
            value: 0.0,
        });
        let ones = LayerOp::Pad(PadSpec {
            value: 1.0,
            ..PadSpec {
                channels: [0, 2],
                height: [0, 0],
                width: [0, 0],
                mode: PadMode::Constant,
                value: 0.0,
            }
        });
        for op in [leading, ones] {
            let m = model(
                3,
                vec![
                    layer_of(op, vec![0], 1),
                    layer_of(pad(2), vec![0], 2),
                    add(1, 2, 3),
                ],
                3,
            );
            // Only the plain channel Pad (value 2) fuses.
            let (fused, count) = apply(m);
            assert_eq!(count, 1);
            assert_eq!(fused.layers.len(), 2);
        }
    }
}
