//! A CPU interpreter of the image IR's ops the passes rewrite (the kernels' CPU references), so
//! that each pass is tested as "same function before and after" on random inputs.

use crate::kernels::{
    binary, conv_transpose2d, conv2d, depth_to_space, elementwise, resize_nearest,
};
use crate::model::{ItemShape, Layer, LayerOp, Model, Residual, ValueId};

/// Runs `model` on one item `[C, h, w]`; returns the output.
pub fn run(model: &Model, input: &[f32], h: u32, w: u32) -> Vec<f32> {
    let shapes = model.shapes(h, w).expect("shapes");
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); model.value_count];
    values[0] = input.to_vec();
    for l in &model.layers {
        let s = shapes[l.inputs[0]];
        let out = match &l.op {
            LayerOp::Elementwise(program) => {
                let inputs: Vec<(&[f32], ItemShape)> = l
                    .inputs
                    .iter()
                    .map(|&v| (&values[v][..], shapes[v]))
                    .collect();
                elementwise::reference(program, &inputs, shapes[l.output], 1)
            }
            LayerOp::Binary(op) => {
                let (a, b) = (l.inputs[0], l.inputs[1]);
                binary::reference(*op, &values[a], shapes[a], &values[b], shapes[b], 1)
            }
            // One item: its channels one after another.
            LayerOp::Concat => l.inputs.iter().flat_map(|&v| values[v].clone()).collect(),
            LayerOp::Conv2dProgram {
                spec,
                program,
                residual,
                normalize,
            } => {
                let n = l.inputs.len() - usize::from(residual.is_some());
                let inputs: Vec<(&[f32], ItemShape)> = l.inputs[..n]
                    .iter()
                    .map(|&v| (&values[v][..], shapes[v]))
                    .collect();
                let stored: Vec<ItemShape> = inputs.iter().map(|(_, s)| *s).collect();
                let x = program
                    .output_shape(&stored)
                    .expect("a program's inputs broadcast");
                let mut xs = elementwise::reference(program, &inputs, x, 1);
                if let Some(epsilon) = *normalize {
                    let norm = crate::model::AcrossChannels::Normalize { epsilon };
                    xs = crate::kernels::across_channels::reference(norm, &xs, x, 1);
                }
                let op = match residual {
                    Some(r) => LayerOp::Conv2dResidual {
                        spec: spec.clone(),
                        residual: *r,
                    },
                    None => LayerOp::Conv2d(spec.clone()),
                };
                let conv = Layer {
                    op,
                    inputs: [&[l.output][..], &l.inputs[n..]].concat(),
                    ..l.clone()
                };
                let mut with_x = values.clone();
                with_x[l.output] = xs;
                layer(&conv, &with_x, x, shapes[l.output])
            }
            _ => layer(l, &values, s, shapes[l.output]),
        };
        values[l.output] = out;
    }
    values[model.output].clone()
}

fn layer(l: &Layer, values: &[Vec<f32>], s: ItemShape, out: ItemShape) -> Vec<f32> {
    let x = &values[l.inputs[0]];
    match &l.op {
        LayerOp::Conv2d(spec) => conv2d::reference(spec, x, 1, s.h, s.w, &l.weights, &l.bias),
        LayerOp::Conv2dGated(spec) => {
            let y = conv2d::reference(spec, x, 1, s.h, s.w, &l.weights, &l.bias);
            let (first, second) = y.split_at(y.len() / 2);
            first.iter().zip(second).map(|(a, b)| a * b).collect()
        }
        LayerOp::ResizeNearest(f) => resize_nearest::reference(x, s.c, s.h, s.w, *f),
        LayerOp::ResizeFilter(spec) => {
            crate::kernels::resize_filter::reference(spec, x, s.c, s.h, s.w)
        }
        LayerOp::Conv2dUpsampled { spec, factor } => {
            let up = resize_nearest::reference(x, s.c, s.h, s.w, *factor);
            let (h, w) = (s.h * factor[0], s.w * factor[1]);
            conv2d::reference(spec, &up, 1, h, w, &l.weights, &l.bias)
        }
        LayerOp::Conv2dResidual { spec, residual } => {
            let plain = crate::model::Conv2dSpec {
                activation: crate::model::Activation::None,
                ..spec.clone()
            };
            let y = conv2d::reference(&plain, x, 1, s.h, s.w, &l.weights, &l.bias);
            // A residual of fewer channels than the output adds 0 past them.
            let skip = &values[l.inputs[1]];
            let plane = (out.h * out.w) as usize;
            y.iter()
                .enumerate()
                .map(|(i, &y)| {
                    let k = skip.get(i).copied().unwrap_or(0.0);
                    let c = i / plane;
                    match residual {
                        Residual::BeforeActivation => spec.activation.apply(y + k, c),
                        Residual::AfterActivation => spec.activation.apply(y, c) + k,
                    }
                })
                .collect()
        }
        LayerOp::ConvTranspose2d(spec) => {
            conv_transpose2d::reference(spec, x, 1, s.h, s.w, &l.weights, &l.bias)
        }
        LayerOp::DepthToSpace(spec) => depth_to_space::reference(spec, x, 1, s.c, s.h, s.w),
        LayerOp::SpaceToDepth(block) => crate::kernels::space_to_depth::reference(x, 1, s, *block),
        LayerOp::Unary(op) => x.iter().map(|&v| op.apply(v)).collect(),
        LayerOp::Binary(op) => {
            let y = &values[l.inputs[1]];
            x.iter().zip(y).map(|(&a, &b)| op.apply(a, b)).collect()
        }
        LayerOp::BinaryConst {
            op,
            constant,
            constant_first,
        } => {
            let at = |i: usize| {
                let (c, rest) = (i / (s.h * s.w) as usize, i % (s.h * s.w) as usize);
                let (y, xx) = (rest / s.w as usize, rest % s.w as usize);
                let pick = |d: u32, v: usize| if d == 1 { 0 } else { v };
                (pick(constant.c, c) * constant.h as usize + pick(constant.h, y))
                    * constant.w as usize
                    + pick(constant.w, xx)
            };
            x.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let k = l.weights[at(i)];
                    if *constant_first {
                        op.apply(k, v)
                    } else {
                        op.apply(v, k)
                    }
                })
                .collect()
        }
        LayerOp::Pad(spec) => crate::kernels::pad::reference(spec, x, 1, s),
        LayerOp::GlobalAvgPool => x
            .chunks((s.h * s.w) as usize)
            .map(|plane| plane.iter().sum::<f32>() / plane.len() as f32)
            .collect(),
        LayerOp::AcrossChannels(op) => {
            let mut y = crate::kernels::across_channels::reference(*op, x, s, 1);
            if !l.weights.is_empty() {
                let affine: Vec<f32> = l.weights.iter().chain(&l.bias).copied().collect();
                crate::kernels::across_channels::affine_reference(&mut y, s, &affine);
            }
            y
        }
        LayerOp::SliceChannels { start, count } => {
            let plane = (s.h * s.w) as usize;
            x[*start as usize * plane..(start + count) as usize * plane].to_vec()
        }
        other => panic!("the pass tests do not run {}", other.kind()),
    }
}

/// A model over `layers` with value 0 the input of `input_channels` and `output` its result.
pub fn model(input_channels: u32, layers: Vec<Layer>, output: ValueId) -> Model {
    let value_count = layers.iter().map(|l| l.output + 1).max().unwrap_or(1);
    Model {
        name: "test".into(),
        input_name: "x".into(),
        output_name: "y".into(),
        input_channels,
        output_channels: 0,
        layers,
        output,
        extra_outputs: Vec::new(),
        image_outputs: Vec::new(),
        value_count,
        opset: 17,
        static_shapes: None,
        nhwc_input: false,
        image_output: false,
    }
}

/// A Pad appending `channels` zero channels (BlazeFace's skip connections).
pub fn channel_pad(channels: u32) -> LayerOp {
    LayerOp::Pad(crate::model::PadSpec {
        channels: [0, channels],
        height: [0, 0],
        width: [0, 0],
        mode: crate::model::PadMode::Constant,
        value: 0.0,
    })
}

pub fn layer_of(op: LayerOp, inputs: Vec<ValueId>, output: ValueId) -> Layer {
    Layer {
        name: format!("v{output}"),
        op,
        inputs,
        output,
        weights: Vec::new(),
        bias: Vec::new(),
    }
}

/// Deterministic values in [-1, 1) (a small LCG: no test depends on a seed's luck).
pub fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
