//! Fuses a SimpleGate into the depthwise convolution before it (`LayerOp::Conv2dGated`):
//! NAFNet's blocks run a depthwise 3x3 over `2c` channels, then multiply the two halves of its
//! output (`x1 * x2`, the halves read in place by `fuse_slice`). The depthwise kernel computes
//! channels `k` and `k + c` of a pixel block in one invocation and stores their product, so the
//! `2c`-channel map is never stored nor read back and the gate is no layer of its own.
//!
//! Safe where the gate is a program of one product of the two halves (either order) of one
//! value, with nothing padded; that value is a depthwise convolution's output (`2c` channels)
//! read by nothing else and no model output; and the depthwise shape runs on the generated kernel
//! (`depthwise_conv2d::variant`: its patch fits in registers).

use crate::model::{BinaryOp, ElementwiseStep, LayerOp, Model, Operand};

/// Returns the model and how many gates were fused.
/// `BATCHWISE_FUSE_GATE=off` fuses none (to measure).
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut fused = 0;
    if std::env::var("BATCHWISE_FUSE_GATE").is_ok_and(|v| v == "off") {
        return (model, fused);
    }
    // The channel slices `fuse_slice` read in place still read the map until pruned.
    model = super::prune::apply(model);
    let mut i = 0;
    while i < model.layers.len() {
        let Some(d) = candidate(&model, i) else {
            i += 1;
            continue;
        };
        let gate = model.layers.remove(i);
        let conv = &mut model.layers[d];
        let LayerOp::Conv2d(spec) = conv.op.clone() else {
            unreachable!("candidate() checked for a depthwise convolution")
        };
        conv.op = LayerOp::Conv2dGated(spec);
        conv.output = gate.output;
        conv.name = format!("{} + {}", conv.name, gate.name);
        fused += 1;
    }
    (model, fused)
}

/// For the elementwise layer `i`: the index of the depthwise convolution whose output's halves
/// it multiplies, if it fuses.
fn candidate(model: &Model, i: usize) -> Option<usize> {
    let layer = &model.layers[i];
    let LayerOp::Elementwise(program) = &layer.op else {
        return None;
    };
    let product = matches!(
        program.steps[..],
        [ElementwiseStep::Binary(BinaryOp::Mul, Operand::Input(a), Operand::Input(b))]
            if a != b
    );
    let v = *layer.inputs.first()?;
    let one_value = layer.inputs.len() == 2 && layer.inputs[1] == v;
    let unpadded = (0..2).all(|k| program.padded(k) == 0);
    if !(product && one_value && unpadded) {
        return None;
    }
    let d = model.producer(v)?;
    let LayerOp::Conv2d(spec) = &model.layers[d].op else {
        return None;
    };
    let c = spec.out_c / 2;
    let mut halves = [program.slice(0)?, program.slice(1)?];
    halves.sort();
    let generated = crate::kernels::depthwise_conv2d::variant(spec).is_some();
    let is_output = v == model.output || model.extra_outputs.contains(&v);
    let ok = spec.is_depthwise()
        && spec.out_c == 2 * c
        && halves == [(0, c), (c, c)]
        && generated
        && model.readers(v) == 1
        && !is_output;
    ok.then_some(d)
}

#[cfg(test)]
mod tests {
    use crate::model::{
        Activation, BinaryOp, ElementwiseProgram, ElementwiseStep, Layer, LayerOp, Operand,
    };
    use crate::passes::cpu::{layer_of, max_diff, model, random, run};
    use crate::passes::tests::{conv, conv_layer};

    /// A depthwise 3x3 over 8 channels (with a PRelu, whose slopes differ per half).
    fn depthwise(input: usize, output: usize, seed: u64) -> Layer {
        let mut spec = conv(8, 8, 3);
        spec.groups = 8;
        spec.activation = Activation::PRelu {
            slopes: random(8, seed + 100),
        };
        conv_layer(&spec, input, output, seed)
    }

    /// The product of channels `first` and `second` (each 4 wide) of `input`.
    fn gate(input: usize, output: usize, [first, second]: [u32; 2]) -> Layer {
        let mut program = ElementwiseProgram::new(vec![ElementwiseStep::Binary(
            BinaryOp::Mul,
            Operand::Input(0),
            Operand::Input(1),
        )]);
        program.channel_slices = vec![(first, 4), (second, 4)];
        layer_of(LayerOp::Elementwise(program), vec![input, input], output)
    }

    /// NAFNet's `dw3x3(2c) -> SimpleGate`, the halves in either order, then a 1x1: the gate
    /// fuses, the function is the same (the same products, summed in the same order). A gate
    /// of two slices that are not the halves, or of a map read by another layer too, stays.
    #[test]
    fn a_gate_after_a_depthwise_convolution_runs_inside_it() {
        let x = random(8 * 6 * 7, 3);
        for order in [[0, 4], [4, 0]] {
            let m = model(
                8,
                vec![
                    depthwise(0, 1, 5),
                    gate(1, 2, order),
                    conv_layer(&conv(4, 3, 1), 2, 3, 6),
                ],
                3,
            );
            let (fused, n) = super::apply(m.clone());
            assert_eq!(n, 1, "halves {order:?}");
            assert_eq!(fused.layers.len(), 2);
            let first = &fused.layers[0];
            assert!(matches!(first.op, LayerOp::Conv2dGated(_)));
            assert_eq!((first.inputs.as_slice(), first.output), (&[0][..], 2));
            assert!(max_diff(&run(&m, &x, 6, 7), &run(&fused, &x, 6, 7)) < 1e-6);
        }
        let not_halves = model(8, vec![depthwise(0, 1, 5), gate(1, 2, [0, 2])], 2);
        assert_eq!(super::apply(not_halves).1, 0, "channels 0..4 and 2..6");
        let pool = layer_of(LayerOp::GlobalAvgPool, vec![1], 3);
        let mut shared = model(8, vec![depthwise(0, 1, 5), gate(1, 2, [0, 4]), pool], 3);
        shared.extra_outputs = vec![2];
        assert_eq!(super::apply(shared).1, 0, "the depthwise output read twice");
    }
}
