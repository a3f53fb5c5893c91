//! Fuses an elementwise layer into the 1x1 convolution that reads it
//! (`LayerOp::Conv2dProgram`): gemm.wgsl computes each input value of the convolution from the
//! program's inputs as it loads it, so the elementwise output is never stored nor read back.
//! Squeeze-and-excitation's `x * sigmoid(g)` before its projection and a decoder's `x * g + y`
//! are such layers: a pass over a whole feature map each, the map written and read again; so is
//! NAFNet's feed-forward SimpleGate, the product of a map's two halves (channel slices that
//! `fuse_slice` read in place), read by a 1x1: the product reads the halves of the map.
//!
//! Safe where the elementwise output feeds only that convolution (as its input, not its
//! residual) and is no model output; the convolution runs on gemm.wgsl
//! (`conv2d::runs_on_gemm`); each program input, as the program reads it (a slice of it), has
//! the output's shape or is one value a channel or an item (`gemm_program::Source`: checked on
//! the model's fixed shapes, or on the input sizes of a few that a free-size model takes; the
//! shape inference checks it again at every size); the inputs read as the output are stored with
//! as many channels (the kernel's item stride); no channel Pad is fused in; and the inputs fit the
//! bindings an adapter offers (`MAX_INPUTS`).

use crate::kernels::gemm_program::Source;
use crate::model::{
    Conv2dSpec, ElementwiseProgram, ElementwiseStep, ItemShape, Layer, LayerOp, Model, Operand,
    ValueId,
};

/// The most program inputs fused: with gemm.wgsl's own storage bindings (weights, x, output,
/// residual) within the 8 every adapter offers a shader.
pub const MAX_INPUTS: usize = 4;

/// Returns the model and how many elementwise layers were fused.
/// `BATCHWISE_FUSE_CONV_INPUT=off` fuses none (to measure).
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut fused = 0;
    if std::env::var("BATCHWISE_FUSE_CONV_INPUT").is_ok_and(|v| v == "off") {
        return (model, fused);
    }
    let shapes = probe_shapes(&model);
    let mut i = 0;
    while i < model.layers.len() {
        let Some(c) = candidate(&model, &shapes, i) else {
            i += 1;
            continue;
        };
        let (program, inputs) = whole_first(
            program_of(&model.layers[i].op).expect("candidate() checked the op"),
            &model.layers[i].inputs,
            &shapes[0],
        );
        let elementwise = model.layers.remove(i);
        into_program(
            &mut model.layers[c - 1],
            &elementwise,
            (program, None),
            inputs,
        );
        fused += 1;
    }
    (model, fused)
}

/// Makes the 1x1 convolution `conv` (with or without a residual) compute `program` of `inputs`
/// (normalized over the channels with `normalize`'s epsilon) as it loads its input: `layer`'s
/// output, which it reads no more.
pub(super) fn into_program(
    conv: &mut Layer,
    layer: &Layer,
    (program, normalize): (ElementwiseProgram, Option<f32>),
    mut inputs: Vec<ValueId>,
) {
    let (spec, residual) = match conv.op.clone() {
        LayerOp::Conv2d(spec) => (spec, None),
        LayerOp::Conv2dResidual { spec, residual } => (spec, Some(residual)),
        _ => unreachable!("the pass checked for a 1x1 convolution (`gemm_reader`)"),
    };
    conv.op = LayerOp::Conv2dProgram {
        spec,
        program,
        residual,
        normalize,
    };
    inputs.extend_from_slice(&conv.inputs[1..]);
    conv.inputs = inputs;
    conv.name = format!("{} + {}", layer.name, conv.name);
}

/// The program and its inputs reordered so that the first is read as the output (the
/// convolution's first input then has its input's shape, or more channels of which it reads a
/// slice).
fn whole_first(
    mut program: ElementwiseProgram,
    inputs: &[ValueId],
    shapes: &[ItemShape],
) -> (ElementwiseProgram, Vec<ValueId>) {
    let stored: Vec<ItemShape> = inputs.iter().map(|&v| shapes[v]).collect();
    let x = program
        .output_shape(&stored)
        .expect("candidate() checked the program's shapes");
    let k = (0..inputs.len())
        .position(|k| program.read_shape(k, stored[k]) == x)
        .expect("candidate() checked for an input read as the output");
    let swap = |o: Operand| match o {
        Operand::Input(0) => Operand::Input(k as u32),
        Operand::Input(j) if j as usize == k => Operand::Input(0),
        o => o,
    };
    for step in &mut program.steps {
        *step = match *step {
            ElementwiseStep::Unary(op, a) => ElementwiseStep::Unary(op, swap(a)),
            ElementwiseStep::Binary(op, a, b) => ElementwiseStep::Binary(op, swap(a), swap(b)),
        };
    }
    if !program.channel_slices.is_empty() {
        program.channel_slices.resize(inputs.len(), (0, 0));
        program.channel_slices.swap(0, k);
    }
    let mut inputs = inputs.to_vec();
    inputs.swap(0, k);
    (program, inputs)
}

/// The layer's op as a program: a fused one as it is (without channel Pads; channel slices
/// read in place), a single elementwise op as a program of one step.
fn program_of(op: &LayerOp) -> Option<ElementwiseProgram> {
    match op {
        LayerOp::Elementwise(p) if p.padded_channels.iter().all(|&c| c == 0) => Some(p.clone()),
        LayerOp::Binary(op) => Some(ElementwiseProgram::new(vec![ElementwiseStep::Binary(
            *op,
            Operand::Input(0),
            Operand::Input(1),
        )])),
        LayerOp::Unary(op) => Some(ElementwiseProgram::new(vec![ElementwiseStep::Unary(
            *op,
            Operand::Input(0),
        )])),
        _ => None,
    }
}

/// The value shapes the sources are checked on: the model's fixed ones, or its shapes at the
/// input sizes it takes of a few (a free-size model's broadcasts must hold at each; a model may
/// take one size only, its Resizes to fixed sizes); none where it takes none of them.
pub(super) fn probe_shapes(model: &Model) -> Vec<Vec<ItemShape>> {
    if let Some(shapes) = &model.static_shapes {
        return vec![shapes.clone()];
    }
    let sizes = [
        (64, 64),
        (96, 160),
        (224, 224),
        (256, 256),
        (320, 240),
        (512, 512),
    ];
    sizes
        .iter()
        .filter_map(|&(h, w)| model.shapes(h, w).ok())
        .collect()
}

/// For layer `i`: the 1x1 convolution on gemm.wgsl that is the one reader of its output, reading
/// it as its input (not its residual), its index and spec; None where the output is a model
/// output or has other readers.
pub(super) fn gemm_reader(model: &Model, i: usize) -> Option<(usize, &Conv2dSpec)> {
    let out = model.layers[i].output;
    let is_output = out == model.output || model.extra_outputs.contains(&out);
    if is_output || model.readers(out) != 1 {
        return None;
    }
    let c = i
        + 1
        + model.layers[i + 1..]
            .iter()
            .position(|l| l.inputs.contains(&out))?;
    let conv = &model.layers[c];
    let (LayerOp::Conv2d(spec) | LayerOp::Conv2dResidual { spec, .. }) = &conv.op else {
        return None;
    };
    let reads_as_input = conv.inputs[0] == out && !conv.inputs[1..].contains(&out);
    (reads_as_input && crate::kernels::conv2d::runs_on_gemm(spec)).then_some((c, spec))
}

/// For the elementwise layer `i`: the index of the convolution it fuses into, if it fuses.
fn candidate(model: &Model, shapes: &[Vec<ItemShape>], i: usize) -> Option<usize> {
    let layer = &model.layers[i];
    let program = program_of(&layer.op)?;
    let out = layer.output;
    let (c, spec) = gemm_reader(model, i)?;
    if layer.inputs.len() > MAX_INPUTS || shapes.is_empty() {
        return None;
    }
    let sources_read = shapes.iter().all(|shapes| {
        let x = shapes[out];
        let stored: Vec<ItemShape> = layer.inputs.iter().map(|&v| shapes[v]).collect();
        let sources: Option<Vec<Source>> = (0..stored.len())
            .map(|k| Source::of(program.read_shape(k, stored[k]), x))
            .collect();
        // Every input read as x is stored with as many channels (x's item stride).
        let mut whole = (0..stored.len()).filter(|&k| program.read_shape(k, stored[k]) == x);
        let first = whole.next().map(|k| stored[k].c);
        let strides = first.is_some_and(|c| whole.all(|k| stored[k].c == c));
        x.c == spec.in_c && strides && sources.is_some()
    });
    sources_read.then_some(c)
}

#[cfg(test)]
mod tests {
    use crate::model::{
        BinaryOp, ElementwiseProgram, ElementwiseStep, Layer, LayerOp, Model, Operand, UnaryOp,
    };
    use crate::passes::cpu::{layer_of, max_diff, model, random, run};
    use crate::passes::tests::conv_layer;

    fn conv(in_c: u32, out_c: u32, k: u32, input: usize, output: usize, seed: u64) -> Layer {
        conv_layer(
            &crate::passes::tests::conv(in_c, out_c, k),
            input,
            output,
            seed,
        )
    }

    /// Squeeze-and-excitation on a 16-channel input (value 0): `g = conv(gap(x))`, then
    /// `sigmoid(g) * x` (the one-value-a-channel scale first), projected by a 1x1 to 24
    /// channels, with a residual Add of another 1x1's output after it when `add`.
    fn squeeze_excite(project: u32, add: bool) -> Model {
        use ElementwiseStep::{Binary, Unary};
        use Operand::{Input, Step};
        let program = ElementwiseProgram::new(vec![
            Unary(UnaryOp::Sigmoid, Input(0)),
            Binary(BinaryOp::Mul, Step(0), Input(1)),
        ]);
        let mut layers = vec![
            layer_of(LayerOp::GlobalAvgPool, vec![0], 1),
            conv(16, 24, 1, 0, 5, 7),
            conv(16, 16, 1, 1, 2, 3),
            layer_of(LayerOp::Elementwise(program), vec![2, 0], 3),
            conv(16, 24, project, 3, 4, 5),
        ];
        if add {
            layers.push(layer_of(LayerOp::Binary(BinaryOp::Add), vec![4, 5], 6));
        }
        model(16, layers, if add { 6 } else { 4 })
    }

    /// The scale fuses into the 1x1 projection (and its residual), the function the same within
    /// float32 rounding of a 16-term sum; x becomes the layer's first input. A 3x3 projection, or
    /// a scale read by another layer too, keeps its layer.
    #[test]
    fn fuse_conv_input_fuses_a_scale_into_the_projection() {
        let x = random(16 * 9 * 7, 99);
        for add in [false, true] {
            let m = squeeze_excite(1, add);
            let m = crate::passes::fuse_residual::apply(m).0;
            let (fused, n) = super::apply(m.clone());
            assert_eq!(n, 1, "residual {add}");
            let layer = fused.layers.last().expect("the projection");
            assert!(matches!(
                &layer.op,
                LayerOp::Conv2dProgram { residual, .. } if residual.is_some() == add
            ));
            assert_eq!(layer.inputs[..2], [0, 2], "x first, then the scale");
            assert!(max_diff(&run(&m, &x, 9, 7), &run(&fused, &x, 9, 7)) < 1e-5);
        }
        assert_eq!(super::apply(squeeze_excite(3, false)).1, 0);
        let mut shared = squeeze_excite(1, false);
        shared
            .layers
            .push(layer_of(LayerOp::Binary(BinaryOp::Add), vec![3, 0], 6));
        shared.output = 6;
        shared.value_count = 7;
        assert_eq!(super::apply(shared).1, 0);
    }

    /// NAFNet's feed-forward gate: a 1x1 16 -> 32, the product of its two halves (slices read in
    /// place by `fuse_slice`), a 1x1 16 -> 24 of the product. The gate fuses into the second
    /// 1x1, which reads the halves of the 32-channel map (the function the same within float32
    /// rounding). A half multiplied by a 16-channel map stored apart (another item stride) keeps
    /// its layer.
    #[test]
    fn fuse_conv_input_reads_a_gates_halves_in_place() {
        let slice =
            |start, output| layer_of(LayerOp::SliceChannels { start, count: 16 }, vec![1], output);
        let gated = |other: usize| {
            let layers = vec![
                conv(16, 32, 1, 0, 1, 4),
                slice(16, 2),
                slice(0, 3),
                layer_of(LayerOp::Binary(BinaryOp::Mul), vec![2, other], 4),
                conv(16, 24, 1, 4, 5, 6),
            ];
            let m = crate::passes::fuse_slice::apply(model(16, layers, 5)).0;
            crate::passes::prune::apply(m)
        };
        let x = random(16 * 6 * 8, 5);
        let m = gated(3);
        let (fused, n) = super::apply(m.clone());
        assert_eq!(n, 1);
        let layer = fused.layers.last().expect("the projection");
        let LayerOp::Conv2dProgram { program, .. } = &layer.op else {
            panic!("{:?}", layer.op)
        };
        assert_eq!(layer.inputs, [1, 1]);
        assert_eq!(program.channel_slices, [(16, 16), (0, 16)]);
        assert!(max_diff(&run(&m, &x, 6, 8), &run(&fused, &x, 6, 8)) < 1e-5);
        assert_eq!(
            super::apply(gated(0)).1,
            0,
            "a half times the 16-channel input"
        );
    }
}
