//! Fuses a channel slice into the elementwise layer that reads it: a Split's halves (NAFNet's
//! SimpleGate, `x1 * x2` of the two halves of a map) are never copied out; the elementwise
//! kernel reads each from its channels of the whole input (`ElementwiseProgram::channel_slices`).
//! A lone Binary layer becomes a program of one step.
//!
//! Safe where the slice has that one reader and is no model output, and is read as the layer's
//! output shape (whole planes, as many channels) at every probed input size.

use crate::model::{ItemShape, LayerOp, Model};

/// Returns the model and how many slices were fused.
pub fn apply(mut model: Model) -> (Model, usize) {
    let shapes = super::fuse_conv_input::probe_shapes(&model);
    if shapes.is_empty() {
        return (model, 0);
    }
    let mut fused = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let Some((k, p)) = candidate(&model, &shapes, i) else {
            i += 1;
            continue;
        };
        let slice = model.layers[p].clone();
        let LayerOp::SliceChannels { start, count } = slice.op else {
            unreachable!("candidate() checked for a slice")
        };
        let layer = &mut model.layers[i];
        let mut program = super::fuse_pad::program_of(&layer.op);
        program.channel_slices.resize(layer.inputs.len(), (0, 0));
        program.channel_slices[k] = (start, count);
        layer.op = LayerOp::Elementwise(program);
        layer.inputs[k] = slice.inputs[0];
        layer.name = format!("{} + {}", slice.name, layer.name);
        fused += 1;
        // Another input of the same layer may be a slice too: look at it again. The slice's
        // own layer, read by nothing now, is left to `prune`.
    }
    (model, fused)
}

/// For the elementwise layer `i`: the input (its index) that a fusable slice computes, and the
/// slice's layer index.
fn candidate(model: &Model, shapes: &[Vec<ItemShape>], i: usize) -> Option<(usize, usize)> {
    let layer = &model.layers[i];
    let program = match &layer.op {
        LayerOp::Elementwise(program) => Some(program),
        LayerOp::Binary(_) if layer.inputs.len() == 2 => None,
        _ => return None,
    };
    layer.inputs.iter().enumerate().find_map(|(k, &v)| {
        let p = model.producer(v)?;
        let LayerOp::SliceChannels { .. } = model.layers[p].op else {
            return None;
        };
        let free = program.is_none_or(|pr| pr.padded(k) == 0 && pr.slice(k).is_none());
        let is_output = v == model.output || model.extra_outputs.contains(&v);
        let once = model.readers(v) == 1 && !is_output;
        // Read as the output's shape: whole planes, as many channels.
        let as_output = shapes.iter().all(|s| s[v] == s[layer.output]);
        (free && once && as_output).then_some((k, p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BinaryOp;
    use crate::passes::cpu::{layer_of, max_diff, model, random, run};

    /// A SimpleGate: the two halves of a 6-channel map multiplied, then a per-channel scale
    /// broadcast over the map (a program of two steps); both slices fuse, the function is the
    /// same (exact: the same products). A slice of 2 channels broadcast against 3 stays.
    #[test]
    fn a_gates_halves_are_read_in_place() {
        let slice = |start, input, output| {
            layer_of(
                LayerOp::SliceChannels { start, count: 3 },
                vec![input],
                output,
            )
        };
        let before = model(
            6,
            vec![
                slice(0, 0, 1),
                slice(3, 0, 2),
                layer_of(LayerOp::Binary(BinaryOp::Mul), vec![1, 2], 3),
                layer_of(LayerOp::GlobalAvgPool, vec![0], 4),
                slice(1, 4, 5),
                layer_of(LayerOp::Binary(BinaryOp::Add), vec![3, 5], 6),
            ],
            6,
        );
        let (after, fused) = apply(before.clone());
        let after = crate::passes::prune::apply(after);
        // The gate's two halves; the pooled slice is read broadcast, not as the output's shape.
        assert_eq!(fused, 2);
        assert_eq!(after.layers.len(), 4, "{:?}", after.layers);
        let x = random(6 * 5 * 8, 3);
        let (a, b) = (run(&before, &x, 5, 8), run(&after, &x, 5, 8));
        assert_eq!(max_diff(&a, &b), 0.0);
    }
}
