//! Concats done in place and nearest upsamples fused into convolutions, on the test GPU
//! (lavapipe in CI), against CPU references on random inputs.
//!
//! - The conv2d kernels (direct, narrow, Winograd) reading their input from a channel slice of a
//!   larger buffer, writing into one, and reading it upsampled: the slice equals
//!   `conv2d::reference` of the extracted (and upsampled) input, and every channel outside the
//!   output slice is left as it was (bit for bit).
//! - A dense block (each convolution reads the concatenation of everything before it) and a
//!   convolution after a 4x nearest upsample, through the passes and `BatchRunner`, against the
//!   same layers composed on the CPU; and the placement it ran with (the inputs written in place,
//!   the smaller concatenations slices of the largest, one copy left).
//!
//! Tolerance: |gpu - cpu| <= 1e-4 + 1e-4 * |cpu|, as tests/kernels.rs (f32 sums of at most
//! 64 x 9 products of O(1) terms; an indexing mistake moves outputs by O(0.1)). Winograd: 1e-3,
//! as the bound tests/kernels_winograd.rs derives for these magnitudes (its transforms add
//! terms up to ~10x the direct sum's before they cancel).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::sync::Arc;

use batchwise::engine::BatchRunner;
use batchwise::engine::placement::{self, Slice};
use batchwise::kernels::conv2d::{self, ChannelSlice, Conv2dLayer, Kernel, Operands};
use batchwise::kernels::winograd::Tile;
use batchwise::kernels::{Bind, Precision, resize_nearest};
use batchwise::model::{Activation, BinaryOp, Conv2dSpec, Layer, LayerOp, Model};

fn conv(in_c: u32, out_c: u32, k: u32) -> Conv2dSpec {
    Conv2dSpec {
        in_c,
        out_c,
        k_h: k,
        k_w: k,
        stride: [1, 1],
        pads: [k / 2; 4],
        dilation: [1, 1],
        groups: 1,
        activation: Activation::LeakyRelu { alpha: 0.2 },
    }
}

/// Channels `offset .. offset + count` of each of `n` items of `c` channels of `plane` values.
fn channels(data: &[f32], n: u32, c: u32, plane: u32, offset: u32, count: u32) -> Vec<f32> {
    let plane = plane as usize;
    (0..n as usize)
        .flat_map(|i| {
            let at = (i * c as usize + offset as usize) * plane;
            data[at..at + count as usize * plane].to_vec()
        })
        .collect()
}

struct Case {
    spec: Conv2dSpec,
    kernel: Kernel,
    /// Input channels per item of the source buffer and the input's first one.
    src: (u32, u32),
    /// Output channels per item of the destination buffer and the output's first one.
    dst: (u32, u32),
    upsample: [u32; 2],
    /// Items, and the small input's height and width.
    nhw: (u32, u32, u32),
    /// `src` and `dst` one buffer (a dense block's convolution: it reads a prefix of the
    /// concatenation and writes the slice after it).
    shared: bool,
}

fn check(engine: &batchwise::engine::Engine, case: &Case, seed: u64) {
    let Case {
        spec,
        kernel,
        src: (src_c, src_offset),
        dst: (dst_c, dst_offset),
        upsample,
        nhw: (n, h, w),
        shared,
    } = case;
    let (gpu, kernels) = (&engine.gpu, engine.kernels());
    let mut rng = common::rng(seed);
    let fan = spec.in_c * spec.k_h * spec.k_w;
    let root = common::random_vec(&mut rng, (n * src_c * h * w) as usize, 1.0);
    let weights = common::random_vec(
        &mut rng,
        (spec.out_c * fan) as usize,
        1.0 / (fan as f32).sqrt(),
    );
    let bias = common::random_vec(&mut rng, spec.out_c as usize, 0.5);
    let input = channels(&root, *n, *src_c, h * w, *src_offset, spec.in_c);
    let up = resize_nearest::reference(&input, n * spec.in_c, *h, *w, *upsample);
    let (uh, uw) = (h * upsample[0], w * upsample[1]);
    let want = conv2d::reference(spec, &up, *n, uh, uw, &weights, &bias);
    let (oh, ow) = spec.output_hw(uh, uw).unwrap();
    let before = if *shared {
        root.clone()
    } else {
        common::random_vec(&mut rng, (n * dst_c * oh * ow) as usize, 1.0)
    };
    let layer = Conv2dLayer::upload_with(gpu, "case", spec.clone(), &weights, &bias, *kernel);
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let src = gpu.create_buffer_init("src", bytemuck::cast_slice(&root), usage);
    let dst = gpu.create_buffer_init("dst", bytemuck::cast_slice(&before), usage);
    let dst = if *shared { &src } else { &dst };
    let io = Operands {
        src: Some(ChannelSlice {
            item_c: *src_c,
            offset: *src_offset,
        }),
        dst: Some(ChannelSlice {
            item_c: *dst_c,
            offset: *dst_offset,
        }),
        upsample: *upsample,
        skip_c: None,
        gate: false,
    };
    let bind = Bind::new(gpu, kernels, "case");
    let step = layer.prepare_placed(bind, [&src, dst], [*h, *w], None, io);
    let bytes = common::run_step(gpu, &step, *n, dst, 4 * before.len() as u64);
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    let tol = if matches!(kernel, Kernel::Winograd(_)) {
        1e-3
    } else {
        1e-4
    };
    let plane = (oh * ow) as usize;
    for (i, (g, b)) in got.iter().zip(&before).enumerate() {
        let (item, c) = (i / plane / *dst_c as usize, (i / plane) as u32 % dst_c);
        if c < *dst_offset || c >= dst_offset + spec.out_c {
            assert_eq!(
                g.to_bits(),
                b.to_bits(),
                "{spec:?}: channel {c} outside the slice"
            );
            continue;
        }
        let e = want[(item * spec.out_c as usize + (c - dst_offset) as usize) * plane + i % plane];
        assert!(
            (g - e).abs() <= tol + tol * e.abs(),
            "{kernel:?} {spec:?} up {upsample:?}: element {i}: gpu {g} vs cpu {e}"
        );
    }
    assert!(
        want.iter().any(|v| v.abs() > 1e-2),
        "the reference is all near zero"
    );
}

/// Every conv2d.wgsl kernel reads a channel slice, writes one, and reads its input upsampled.
#[test]
fn conv_kernels_read_and_write_channel_slices_and_upsample() {
    let engine = common::engine();
    let case = |spec, kernel, src, dst, upsample, nhw| Case {
        spec,
        kernel,
        src,
        dst,
        upsample,
        nhw,
        shared: false,
    };
    let shared = |spec, kernel, c, dst_offset, nhw| Case {
        src: (c, 0),
        dst: (c, dst_offset),
        shared: true,
        ..case(spec, kernel, (c, 0), (c, 0), [1, 1], nhw)
    };
    let cases = [
        // Direct 16-channel blocks, a dense block's convolution: reads a prefix, writes a slice.
        case(
            conv(20, 16, 3),
            Kernel::Auto,
            (52, 0),
            (48, 16),
            [1, 1],
            (2, 11, 13),
        ),
        // A slice in the middle, two chunks of input channels (5x5 weights fill the window).
        case(
            conv(48, 24, 5),
            Kernel::Auto,
            (64, 8),
            (40, 12),
            [1, 1],
            (2, 9, 10),
        ),
        // The narrow variant (at most 8 output channels), upsampled 4x: a last convolution.
        case(
            conv(6, 3, 3),
            Kernel::Auto,
            (6, 0),
            (3, 0),
            [4, 4],
            (2, 5, 7),
        ),
        case(
            conv(5, 8, 3),
            Kernel::Auto,
            (9, 3),
            (16, 8),
            [2, 3],
            (1, 6, 5),
        ),
        // Direct kernel upsampled, unequal factors.
        case(
            conv(7, 16, 3),
            Kernel::Auto,
            (7, 0),
            (16, 0),
            [3, 2],
            (2, 4, 6),
        ),
        // Winograd tiles read and write through the same declarations.
        case(
            conv(12, 16, 3),
            Kernel::Winograd(Tile::F2),
            (20, 4),
            (32, 16),
            [2, 2],
            (2, 6, 7),
        ),
        case(
            conv(16, 16, 3),
            Kernel::Winograd(Tile::F4),
            (24, 8),
            (48, 0),
            [1, 1],
            (2, 10, 9),
        ),
        // The generic loop kernel (a column too long to unroll: dilation 17).
        case(
            Conv2dSpec {
                dilation: [17, 17],
                pads: [17; 4],
                ..conv(4, 16, 3)
            },
            Kernel::Auto,
            (8, 4),
            (24, 4),
            [2, 2],
            (1, 6, 6),
        ),
        // One buffer: channels 0..20 read, 20..36 written, by each kernel.
        shared(conv(20, 16, 3), Kernel::Auto, 36, 20, (2, 9, 11)),
        shared(conv(20, 4, 3), Kernel::Auto, 24, 20, (2, 9, 11)),
        shared(
            conv(20, 16, 3),
            Kernel::Winograd(Tile::F4),
            36,
            20,
            (2, 9, 11),
        ),
    ];
    for (seed, c) in cases.iter().enumerate() {
        check(&engine, c, seed as u64);
    }
}

fn layer(op: LayerOp, inputs: Vec<usize>, output: usize, seed: u64) -> Layer {
    let (weights, bias) = match &op {
        LayerOp::Conv2d(s) => {
            let mut rng = common::rng(seed);
            let fan = s.in_c * s.k_h * s.k_w;
            (
                common::random_vec(
                    &mut rng,
                    (s.out_c * fan) as usize,
                    1.0 / (fan as f32).sqrt(),
                ),
                common::random_vec(&mut rng, s.out_c as usize, 0.1),
            )
        }
        _ => (Vec::new(), Vec::new()),
    };
    Layer {
        name: format!("v{output}"),
        op,
        inputs,
        output,
        weights,
        bias,
    }
}

/// A dense block after a convolution, a residual Add of its input, a 4x nearest upsample and a
/// convolution after it: the wild upscalers' shape.
fn dense_model() -> Model {
    let concat = |inputs: Vec<usize>, out| layer(LayerOp::Concat, inputs, out, 0);
    let layers = vec![
        layer(LayerOp::Conv2d(conv(3, 8, 3)), vec![0], 1, 1),
        concat(vec![1], 2),
        layer(LayerOp::Conv2d(conv(8, 4, 3)), vec![2], 3, 2),
        concat(vec![1, 3], 4),
        layer(LayerOp::Conv2d(conv(12, 4, 3)), vec![4], 5, 3),
        concat(vec![1, 3, 5], 6),
        layer(LayerOp::Conv2d(conv(16, 4, 3)), vec![6], 7, 4),
        concat(vec![1, 3, 5, 7], 8),
        layer(LayerOp::Conv2d(conv(20, 8, 1)), vec![8], 9, 5),
        // x is read by the Add too: it keeps its own buffer and is copied once.
        layer(LayerOp::Binary(BinaryOp::Add), vec![9, 1], 10, 0),
        layer(LayerOp::ResizeNearest([4, 4]), vec![10], 11, 0),
        layer(LayerOp::Conv2d(conv(8, 3, 3)), vec![11], 12, 6),
    ];
    Model {
        name: "dense".into(),
        input_name: "x".into(),
        output_name: "y".into(),
        input_channels: 3,
        output_channels: 3,
        layers,
        output: 12,
        extra_outputs: Vec::new(),
        image_outputs: Vec::new(),
        value_count: 13,
        opset: 17,
        static_shapes: None,
        nhwc_input: false,
        image_output: false,
    }
}

/// The model's layers one by one on the CPU, for `n` items of `h x w`.
fn cpu_run(model: &Model, input: &[f32], n: u32, h: u32, w: u32) -> Vec<f32> {
    let shapes = model.shapes(h, w).unwrap();
    let mut values = vec![Vec::new(); model.value_count];
    values[0] = input.to_vec();
    for l in &model.layers {
        let s = shapes[l.inputs[0]];
        let item = |v: usize| (shapes[v].elements()) as usize;
        values[l.output] = match &l.op {
            LayerOp::Conv2d(spec) => {
                conv2d::reference(spec, &values[l.inputs[0]], n, s.h, s.w, &l.weights, &l.bias)
            }
            LayerOp::Concat => (0..n as usize)
                .flat_map(|i| {
                    l.inputs
                        .iter()
                        .flat_map(|&v| values[v][i * item(v)..(i + 1) * item(v)].to_vec())
                        .collect::<Vec<_>>()
                })
                .collect(),
            LayerOp::Binary(BinaryOp::Add) => {
                let (a, b) = (&values[l.inputs[0]], &values[l.inputs[1]]);
                a.iter().zip(b).map(|(x, y)| x + y).collect()
            }
            LayerOp::ResizeNearest(f) => {
                resize_nearest::reference(&values[l.inputs[0]], n * s.c, s.h, s.w, *f)
            }
            other => panic!("not in this test: {}", other.kind()),
        };
    }
    values[model.output].clone()
}

/// The dense block runs in place: the passes alias the one-input Concat and run the convolution
/// over the upsample as phases of its input,
/// the placement writes x1..x3 into the largest concatenation (the smaller ones its slices) and
/// copies x once; the batch equals the CPU's layer by layer.
#[test]
fn dense_block_runs_in_place_and_matches_the_cpu() {
    let (n, h, w) = (2, 12, 10);
    let original = dense_model();
    let (model, counts) = batchwise::passes::run(original.clone());
    assert_eq!(counts.aliased_concats, 1);
    assert_eq!(counts.upsample_phases, 1);
    let shapes = model.shapes(h, w).unwrap();
    let plan = placement::plan(&model, &shapes);
    let at = |root, offset| Some(Slice { root, offset });
    assert_eq!(plan.slice[1], None, "x is read by the Add: its own buffer");
    assert_eq!(
        (plan.slice[3], plan.slice[5], plan.slice[7]),
        (at(8, 8), at(8, 12), at(8, 16))
    );
    assert_eq!(
        (plan.slice[4], plan.slice[6], plan.slice[8]),
        (at(8, 0), at(8, 0), None)
    );
    let concat_copies: Vec<Vec<bool>> = plan.copies.into_iter().filter(|c| !c.is_empty()).collect();
    assert_eq!(
        concat_copies,
        [vec![true, false], vec![false, false, false], vec![false; 4]],
        "x copied by the first concatenation only"
    );
    let mut rng = common::rng(7);
    let input = common::random_vec(&mut rng, (n * 3 * h * w) as usize, 1.0);
    let want = cpu_run(&original, &input, n, h, w);
    let engine = common::engine();
    let model = Arc::new(model);
    let gpu_model = engine.load(model.clone()).unwrap();
    let runner = BatchRunner::float_input(&engine, &gpu_model, n, h, w).unwrap();
    let got = runner.run_floats(&input, n).unwrap().remove(0);
    assert_eq!(got.len(), want.len());
    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - e).abs() <= 1e-4 + 1e-4 * e.abs(),
            "element {i}: gpu {g} vs cpu {e}"
        );
    }
    // Float16 activations take the same slices (and the read-write layout's float16 shaders):
    // within 2e-2 of the largest output (11-bit significands through six layers of sums of up to
    // 180 products, each rounded once: ~1e-3 relative a layer).
    let gpu_half = engine.load_with(model, Precision::F16).unwrap();
    let runner = BatchRunner::float_input(&engine, &gpu_half, n, h, w).unwrap();
    let half = runner.run_floats(&input, n).unwrap().remove(0);
    let largest = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = half
        .iter()
        .zip(&want)
        .fold(0.0f32, |m, (g, e)| m.max((g - e).abs()));
    assert!(worst <= 2e-2 * largest, "float16: {worst} of {largest}");
}

/// detect-faces' heads: each transpose to NHWC writes its anchors' values straight into its
/// Concat's buffer (`nchw_to_nhwc::prepare_into`), so neither Concat copies anything (the
/// model's output is checked against onnxruntime's by `batchwise check` and the golden tests).
#[test]
fn detect_faces_heads_write_their_concats_in_place() {
    let choice = batchwise::builtin::resolve("detect-faces", &Default::default()).unwrap();
    let model = &choice.model;
    let shapes = model.shapes(128, 128).unwrap();
    let plan = placement::plan(model, &shapes);
    let concats: Vec<usize> = (0..model.layers.len())
        .filter(|&i| matches!(model.layers[i].op, LayerOp::Concat))
        .collect();
    assert_eq!(concats.len(), 2);
    for i in concats {
        let l = &model.layers[i];
        assert!(plan.copies[i].iter().all(|&c| !c), "{} copies", l.name);
        for &v in &l.inputs {
            let p = model.producer(v).expect("computed");
            assert!(matches!(model.layers[p].op, LayerOp::ToNhwc), "{}", l.name);
            assert!(plan.slice[v].is_some(), "{} input {v} in place", l.name);
        }
    }
}

/// The wild user upscaler (tests/fixtures/user): the convolution after its 4x Resize runs as 16
/// phases of the Resize's input then DepthToSpace, each dense block copies one input of its
/// Concats (x, which the block's residual Add reads too) instead of 224 channels, and an item of
/// a 96 px tile (64 + context) needs 20.8 MiB of activations: 31 with the upsampled value stored
/// and every Concat copied; 14.7 with the upsample fused into the convolution, where the phases
/// and their DepthToSpace are not both live, but that convolution's split Winograd scratch held
/// the upsampled input transformed (46 MiB an item in all now, 75 then: BENCHMARKS.md).
#[test]
fn the_wild_upscaler_runs_its_concats_in_place_and_its_resize_as_phases() {
    let path = common::fixture("user/wild_upscaler_4x.onnx");
    let choice = batchwise::builtin::resolve(path.to_str().unwrap(), &Default::default()).unwrap();
    let model = &choice.model;
    let count = |f: fn(&LayerOp) -> bool| model.layers.iter().filter(|l| f(&l.op)).count();
    assert_eq!(count(|op| matches!(op, LayerOp::ResizeNearest(_))), 0);
    assert_eq!(count(|op| matches!(op, LayerOp::Conv2dUpsampled { .. })), 0);
    assert_eq!(count(|op| matches!(op, LayerOp::DepthToSpace(_))), 1);
    assert_eq!(
        count(|op| matches!(op, LayerOp::Concat)),
        6,
        "cat(x) aliased"
    );
    let shapes = model.shapes(96, 96).unwrap();
    let plan = placement::plan(model, &shapes);
    let copied = plan.copies.iter().flatten().filter(|&&c| c).count();
    assert_eq!(copied, 2, "one input copied per block");
    let item = batchwise::engine::memory::ItemBytes::of(
        model,
        96,
        96,
        Precision::F32,
        batchwise::kernels::pack::PixelDepth::Eight,
    )
    .unwrap();
    assert!(item.total() < 22 << 20, "{} bytes an item", item.total());
}
