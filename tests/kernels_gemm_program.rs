//! gemm.wgsl with an elementwise program in its loads (`LayerOp::Conv2dProgram`,
//! `kernels::gemm_program`) against the CPU references of the program and the product, on random
//! inputs, on the test GPU (lavapipe in CI).
//!
//! Tolerance as the 1x1 convolutions' in tests/kernels.rs: |gpu - cpu| <= 1e-4 + 1e-4 |cpu|
//! (up to 40 f32 products a sum here, weights scaled by 1/sqrt(fan-in); the program's ops are
//! the elementwise kernel's own, within an ulp or two of the f64 reference). A norm fused in
//! (`normalize`) takes its variance from one pass of sums shifted by the first channel's value:
//! relative to the variance it loses about `(1 + (mean - x0)^2 / var) 2^-24` (a few 1e-7 here,
//! the first channel a typical one), well within the tolerance after the 1/sqrt.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use batchwise::kernels::conv2d::{self, Conv2dLayer};
use batchwise::kernels::gemm::{self, InputProgram};
use batchwise::kernels::{Bind, Kernels, across_channels, elementwise};
use batchwise::model::{
    AcrossChannels, Activation, BinaryOp, Conv2dSpec, ElementwiseProgram, ElementwiseStep,
    ItemShape, Operand, Residual, UnaryOp,
};

fn conv(in_c: u32, out_c: u32, activation: Activation) -> Conv2dSpec {
    Conv2dSpec {
        in_c,
        out_c,
        k_h: 1,
        k_w: 1,
        stride: [1, 1],
        pads: [0; 4],
        dilation: [1, 1],
        groups: 1,
        activation,
    }
}

use ElementwiseStep::{Binary, Unary};
use Operand::{Input, Step};

/// Squeeze-and-excitation's scale: `x * sigmoid(g)`, g one value a channel.
fn scale() -> ElementwiseProgram {
    ElementwiseProgram::new(vec![
        Unary(UnaryOp::Sigmoid, Input(1)),
        Binary(BinaryOp::Mul, Input(0), Step(0)),
    ])
}

/// A decoder's `g * x + y`, the one-value-a-channel g first (x is not input 0).
fn scale_add() -> ElementwiseProgram {
    ElementwiseProgram::new(vec![
        Binary(BinaryOp::Mul, Input(0), Input(1)),
        Binary(BinaryOp::Add, Step(0), Input(2)),
    ])
}

/// NAFNet's SimpleGate: the product of the two halves of a map of `2 c` channels (channel
/// slices read in place), the second half first; with `scaled`, times a third input (one value a
/// channel).
fn gate(c: u32, scaled: bool) -> ElementwiseProgram {
    let mut steps = vec![Binary(BinaryOp::Mul, Input(0), Input(1))];
    if scaled {
        steps.push(Binary(BinaryOp::Mul, Step(0), Input(2)));
    }
    let mut program = ElementwiseProgram::new(steps);
    program.channel_slices = vec![(c, c), (0, c)];
    program
}

/// Cases: the program, its inputs' channel counts as stored (0: x's channels; a map or one value
/// where `point`), output channels, items, map, residual, and the epsilon of a norm over x's
/// channels (`normalize`). Maps of 16 x 16 and 12 x 12 fold their items into q (8 q a load on a
/// CPU adapter); 5 x 7 and 9 x 7 fold them one value a load, an invocation's q in two items;
/// 48 x 48 and 40 x 60 are an item a workgroup row. The normalized cases' inputs are offset by 3
/// (a mean far from 0, as a residual stream's) and scaled per channel, so the norm's sums and
/// their shift are exercised; x normalized is within a few units, as the others' x.
#[test]
fn gemm_with_a_program_in_its_loads_matches_reference() {
    let engine = common::engine();
    let kernels = Kernels::new(&engine.gpu);
    let gpu = &engine.gpu;
    let leaky = Activation::LeakyRelu { alpha: 0.1 };
    let hard_max = ElementwiseProgram::new(vec![
        Unary(UnaryOp::HardSwish, Input(0)),
        Binary(BinaryOp::Max, Step(0), Input(1)),
    ]);
    let per_item = ElementwiseProgram::new(vec![
        Binary(BinaryOp::Sub, Input(0), Input(1)),
        Unary(UnaryOp::Tanh, Step(0)),
    ]);
    let after = Some(Residual::AfterActivation);
    let before = Some(Residual::BeforeActivation);
    let mut widths = std::collections::HashSet::new();
    let none = || ElementwiseProgram::new(Vec::new());
    let eps = Some(1e-5);
    #[rustfmt::skip]
    let cases = [
        (1, scale(), vec![(0, false), (0, true)], conv(32, 16, leaky.clone()), 3, (16, 16), after, None),
        (2, scale(), vec![(0, false), (0, true)], conv(16, 24, Activation::None), 2, (48, 48), None, None),
        (3, scale(), vec![(0, false), (0, true)], conv(20, 17, Activation::HardSwish), 3, (5, 7), before, None),
        (4, scale_add(), vec![(0, true), (0, false), (0, false)], conv(16, 16, leaky.clone()), 2, (12, 12), None, None),
        (5, scale_add(), vec![(0, true), (0, false), (0, false)], conv(16, 32, leaky.clone()), 2, (40, 60), after, None),
        (6, per_item, vec![(0, false), (1, true)], conv(24, 40, Activation::None), 4, (9, 7), before, None),
        (7, hard_max, vec![(0, false), (0, false)], conv(8, 32, Activation::None), 2, (20, 20), None, None),
        (8, gate(16, false), vec![(32, false), (32, false)], conv(16, 32, Activation::None), 3, (16, 16), after, None),
        (9, gate(8, true), vec![(16, false), (16, false), (0, true)], conv(8, 24, Activation::None), 3, (5, 7), None, None),
        (10, gate(16, false), vec![(32, false), (32, false)], conv(16, 16, Activation::HardSwish), 2, (40, 60), before, None),
        (11, none(), vec![(0, false)], conv(16, 32, Activation::None), 3, (16, 16), after, eps),
        (12, none(), vec![(0, false)], conv(24, 16, leaky), 2, (5, 7), None, eps),
        (13, none(), vec![(0, false)], conv(16, 24, Activation::None), 2, (48, 48), before, eps),
        (14, gate(16, false), vec![(32, false), (32, false)], conv(16, 16, Activation::None), 2, (12, 12), None, eps),
        (15, scale(), vec![(0, false), (0, true)], conv(20, 17, Activation::None), 3, (9, 7), after, Some(0.0)),
    ];
    for (seed, program, inputs, spec, n, (h, w), residual, normalize) in cases {
        let mut rng = common::rng(seed);
        let (ic, oc) = (spec.in_c, spec.out_c);
        let shapes: Vec<ItemShape> = inputs
            .iter()
            .map(|&(c, point)| ItemShape {
                c: if c == 0 { ic } else { c },
                h: if point { 1 } else { h },
                w: if point { 1 } else { w },
            })
            .collect();
        // Amplitude 4: HardSwish's three pieces, sigmoid's tails.
        let mut data: Vec<Vec<f32>> = shapes
            .iter()
            .map(|s| common::random_vec(&mut rng, (n as u64 * s.elements()) as usize, 4.0))
            .collect();
        if normalize.is_some() {
            let plane = (h * w) as usize;
            for (d, s) in data.iter_mut().zip(&shapes) {
                let c = s.c as usize;
                for (i, v) in d.iter_mut().enumerate() {
                    *v = 3.0 + *v * (1.0 + (i / plane % c) as f32 / c as f32);
                }
            }
        }
        let weights = common::random_vec(&mut rng, (oc * ic) as usize, 1.0 / (ic as f32).sqrt());
        let bias = common::random_vec(&mut rng, oc as usize, 0.5);
        let skip = common::random_vec(&mut rng, (n * oc * h * w) as usize, 1.0);
        let x_shape = ItemShape { c: ic, h, w };
        let with_shapes: Vec<(&[f32], ItemShape)> = data
            .iter()
            .map(|d| &d[..])
            .zip(shapes.iter().copied())
            .collect();
        let mut x = elementwise::reference(&program, &with_shapes, x_shape, n);
        if let Some(epsilon) = normalize {
            let norm = AcrossChannels::Normalize { epsilon };
            x = across_channels::reference(norm, &x, x_shape, n);
        }
        let layout = gemm::Layout::planes(ic, oc, h * w);
        let skip_ref = residual.map(|r| (&skip[..], r));
        let expected = gemm::reference(
            &layout,
            (oc, ic),
            &weights,
            &bias,
            &spec.activation,
            skip_ref,
            &x,
            n,
        );
        widths.insert(layout.width(kernels.eight_a_load, gemm::blocking_for(oc)));
        assert!(conv2d::runs_on_gemm(&spec), "case {seed}");
        let layer = Conv2dLayer::upload(gpu, "test", spec.clone(), &weights, &bias);
        let buffers: Vec<_> = data.iter().map(|d| storage(gpu, d)).collect();
        let program_input = InputProgram {
            program: &program,
            inputs: buffers.iter().map(|b| &**b).zip(shapes).collect(),
            normalize,
        };
        let dst = gpu.create_buffer(
            "test output",
            4 * expected.len() as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let skip_buf = storage(gpu, &skip);
        let bind = Bind::new(gpu, &kernels, "test");
        let res = residual.map(|r| (&*skip_buf, r));
        let step = layer.prepare_program(bind, &program_input, &dst, res, None);
        let bytes = common::run_step(gpu, &step, n, &dst, 4 * expected.len() as u64);
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        for (i, (g, c)) in got.iter().zip(&expected).enumerate() {
            let tol = 1e-4 + 1e-4 * c.abs();
            assert!(
                (g - c).abs() <= tol,
                "case {seed} at {i}: gpu {g} cpu {c} ({spec:?} on {n}x{h}x{w}, norm {normalize:?})"
            );
        }
    }
    // One value a load and the wide loads (8 a `vec4<u64>` on a CPU adapter) both ran.
    let wide = match kernels.eight_a_load {
        true => gemm::Width::Eight,
        false => gemm::Width::Four,
    };
    assert!(widths.contains(&gemm::Width::One) && widths.contains(&wide));
}

fn storage(gpu: &batchwise::gpu::Gpu, data: &[f32]) -> batchwise::gpu::TrackedBuffer {
    gpu.create_buffer_init(
        "test input",
        bytemuck::cast_slice(data),
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    )
}
