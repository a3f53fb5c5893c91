//! The generated convolution variants against the CPU reference, on random inputs, odd sizes and
//! batches, on the test GPU: the narrow conv2d variant (at most 12 output channels a group, not
//! 1x1, `kernels/conv2d_narrow.rs`), the rows kernel of an image's first convolution
//! (`kernels/conv2d_rows.rs`) and the register-blocked depthwise kernel
//! (`kernels/depthwise_conv2d.rs`).
//!
//! Tolerance: |gpu - cpu| <= 1e-4 + 1e-4 * |cpu| in float32, as conv2d's in tests/kernels.rs: the
//! reference accumulates in f64; the GPU sums f32 products of inputs in [-1, 1] and weights scaled
//! by 1/sqrt(fan-in), so outputs and partial sums are O(1). A sum of K terms rounds by about
//! sqrt(K) * 2^-24 ~ 4e-6 for the largest K here (4250: 170 channels x 25 taps, in three weight
//! windows), 25 times under the tolerance, while an indexing mistake moves outputs by O(0.1).
//! Float16: 2e-2 + 1e-2 * |cpu| on inputs and weights rounded to f16 (each product and partial sum
//! rounds to 11 significant bits; K at most 175 in the float16 cases).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use batchwise::kernels::conv2d::{self, Conv2dLayer};
use batchwise::kernels::{Bind, Kernels, Precision, conv2d_narrow};
use batchwise::model::{Activation, Conv2dSpec, Residual};

fn conv(in_c: u32, out_c: u32, k: u32, pad: u32) -> Conv2dSpec {
    Conv2dSpec {
        in_c,
        out_c,
        k_h: k,
        k_w: k,
        stride: [1, 1],
        pads: [pad; 4],
        dilation: [1, 1],
        groups: 1,
        activation: Activation::None,
    }
}

/// The reference with the residual: the convolution without its activation, `skip` added before
/// or after the activation.
fn reference(
    spec: &Conv2dSpec,
    input: &[f32],
    (n, h, w): (u32, u32, u32),
    weights: &[f32],
    bias: &[f32],
    residual: Option<(&[f32], Residual)>,
) -> Vec<f32> {
    let plain = Conv2dSpec {
        activation: Activation::None,
        ..spec.clone()
    };
    let mut out = conv2d::reference(&plain, input, n, h, w, weights, bias);
    let (oh, ow) = spec.output_hw(h, w).unwrap();
    let plane = (oh * ow) as usize;
    for (i, v) in out.iter_mut().enumerate() {
        let oc = i / plane % spec.out_c as usize;
        if let Some((skip, Residual::BeforeActivation)) = residual {
            *v += skip[i];
        }
        *v = spec.activation.apply(*v, oc);
        if let Some((skip, Residual::AfterActivation)) = residual {
            *v += skip[i];
        }
    }
    out
}

#[derive(Clone)]
struct Case {
    seed: u64,
    spec: Conv2dSpec,
    nhw: (u32, u32, u32),
    residual: Option<Residual>,
}

fn check(engine: &batchwise::engine::Engine, kernels: &Kernels, case: Case, half: bool) {
    let Case {
        seed,
        spec,
        nhw: (n, h, w),
        residual,
    } = case;
    let gpu = &engine.gpu;
    let mut rng = common::rng(seed);
    let round = |v: Vec<f32>| -> Vec<f32> {
        if half {
            v.into_iter()
                .map(|x| half::f16::from_f32(x).to_f32())
                .collect()
        } else {
            v
        }
    };
    let fan = spec.in_c / spec.groups * spec.k_h * spec.k_w;
    let input = round(common::random_vec(
        &mut rng,
        (n * spec.in_c * h * w) as usize,
        1.0,
    ));
    let weights = round(common::random_vec(
        &mut rng,
        (spec.out_c * fan) as usize,
        1.0 / (fan as f32).sqrt(),
    ));
    let bias = round(common::random_vec(&mut rng, spec.out_c as usize, 0.5));
    let (oh, ow) = spec.output_hw(h, w).unwrap();
    let len = (n * spec.out_c * oh * ow) as usize;
    let skip = round(common::random_vec(&mut rng, len, 1.0));
    let res = residual.map(|r| (skip.as_slice(), r));
    let expected = reference(&spec, &input, (n, h, w), &weights, &bias, res);
    let layer = Conv2dLayer::upload(gpu, "narrow", spec.clone(), &weights, &bias);
    let to_bytes = |v: &[f32]| -> Vec<u8> {
        if half {
            let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
            bytemuck::cast_slice(&h).to_vec()
        } else {
            bytemuck::cast_slice(v).to_vec()
        }
    };
    let storage = wgpu::BufferUsages::STORAGE;
    let src = gpu.create_buffer_init("src", &to_bytes(&input), storage);
    let skip_buf = gpu.create_buffer_init("skip", &to_bytes(&skip), storage);
    let dst = gpu.create_buffer(
        "dst",
        4 * len as u64,
        storage | wgpu::BufferUsages::COPY_SRC,
    );
    let bind = Bind::new(gpu, kernels, "narrow");
    let r = residual.map(|r| (&*skip_buf, r));
    let step = layer.prepare_with_residual(bind, &src, &dst, h, w, r);
    let bytes = common::run_step(gpu, &step, n, &dst, 4 * len as u64);
    let got: Vec<f32> = if half {
        bytemuck::pod_collect_to_vec::<u8, half::f16>(&bytes[..2 * len])
            .into_iter()
            .map(half::f16::to_f32)
            .collect()
    } else {
        bytemuck::pod_collect_to_vec(&bytes)
    };
    let (abs, rel) = if half { (2e-2, 1e-2) } else { (1e-4, 1e-4) };
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!(
            (g - e).abs() <= abs + rel * e.abs(),
            "{spec:?} {residual:?} on {n}x{h}x{w}: element {i}: gpu {g} vs cpu {e}"
        );
    }
    assert!(
        expected.iter().any(|v| v.abs() > 1e-2),
        "the reference is all near zero"
    );
}

fn cases() -> Vec<Case> {
    let mut rng = common::rng(40);
    let mut prelu = |c| Activation::PRelu {
        slopes: common::random_vec(&mut rng, c, 0.5),
    };
    let leaky = Activation::LeakyRelu { alpha: 0.1 };
    let case = |seed, spec, nhw, residual| Case {
        seed,
        spec,
        nhw,
        residual,
    };
    vec![
        // An upscaler's last layer: 3x3 16->3, padded, odd sizes off the 4x4 pixel block.
        case(1, conv(16, 3, 3, 1), (2, 19, 13), None),
        // 8 channels (two vec4s a pixel), leaky ReLU, the residual added before it.
        case(
            2,
            Conv2dSpec {
                activation: leaky.clone(),
                ..conv(12, 8, 3, 1)
            },
            (3, 11, 17),
            Some(Residual::BeforeActivation),
        ),
        // 5 channels with PRelu and the residual after it; 5x5 unpadded.
        case(
            3,
            Conv2dSpec {
                activation: prelu(5),
                ..conv(7, 5, 5, 0)
            },
            (2, 14, 9),
            Some(Residual::AfterActivation),
        ),
        // 1 channel, 1x1 with a stride (a 1x1 without one runs gemm.wgsl), clip.
        case(
            4,
            Conv2dSpec {
                activation: Activation::Clip {
                    min: -0.4,
                    max: 0.5,
                },
                stride: [2, 1],
                ..conv(9, 1, 1, 0)
            },
            (2, 7, 10),
            None,
        ),
        // Stride 2 with asymmetric pads, dilation, a 1x3 kernel.
        case(
            5,
            Conv2dSpec {
                stride: [2, 2],
                pads: [1, 2, 2, 1],
                ..conv(6, 4, 3, 0)
            },
            (2, 15, 12),
            None,
        ),
        case(
            6,
            Conv2dSpec {
                dilation: [2, 3],
                pads: [2, 3, 2, 3],
                ..conv(5, 6, 3, 0)
            },
            (1, 13, 16),
            Some(Residual::BeforeActivation),
        ),
        case(
            7,
            Conv2dSpec {
                k_h: 1,
                pads: [0, 1, 0, 1],
                ..conv(4, 2, 3, 0)
            },
            (3, 5, 11),
            None,
        ),
        // Grouped: 3 output channels a group, two groups.
        case(
            8,
            Conv2dSpec {
                groups: 2,
                activation: leaky,
                ..conv(8, 6, 3, 1)
            },
            (2, 9, 10),
            None,
        ),
        // More input channels than a weight window holds (25 taps x 8 channels: 81 a window):
        // three chunks accumulate, the residual and PRelu after the last.
        case(
            9,
            Conv2dSpec {
                activation: prelu(7),
                ..conv(170, 7, 5, 2)
            },
            (2, 6, 7),
            Some(Residual::BeforeActivation),
        ),
        // Few input channels, a 5x5 kernel and more than 8 output channels: blocks of 8, the
        // last one partly empty (20 channels), stride 2 (an image's first convolution).
        case(
            10,
            Conv2dSpec {
                stride: [2, 2],
                activation: Activation::LeakyRelu { alpha: 0.2 },
                ..conv(3, 24, 5, 2)
            },
            (2, 17, 19),
            None,
        ),
        case(
            11,
            conv(4, 20, 5, 2),
            (1, 9, 11),
            Some(Residual::AfterActivation),
        ),
        // 12 channels (three vec4s a pixel, an upscaler's last layer before DepthToSpace), in
        // two weight windows, odd sizes off the 8x2 pixel block, the residual before LeakyRelu.
        case(
            12,
            Conv2dSpec {
                activation: Activation::LeakyRelu { alpha: 0.2 },
                ..conv(160, 12, 3, 1)
            },
            (3, 13, 9),
            Some(Residual::BeforeActivation),
        ),
        // 11 channels in groups of 11 (a partial last vec4), 3x3 unpadded, PRelu.
        case(
            13,
            Conv2dSpec {
                activation: prelu(11),
                ..conv(20, 11, 3, 0)
            },
            (2, 12, 11),
            None,
        ),
    ]
}

#[test]
fn narrow_conv2d_matches_reference() {
    let engine = common::engine();
    let kernels = Kernels::new(&engine.gpu);
    for case in cases() {
        assert!(conv2d_narrow::variant(&case.spec).is_some(), "runs narrow");
        check(&engine, &kernels, case, false);
    }
}

/// Workgroups of 2 and 4 blocks of rows (`WG_Y`, what a GPU runs), on lavapipe: conv2d.wgsl's
/// unrolled 16-channel kernel (heights that leave the last workgroup's rows partly outside, a
/// 5x5 kernel), the generic loop kernel (a dilation too tall to unroll), the narrow blocks and a
/// residual. Same tolerances as above.
#[test]
fn workgroups_of_several_row_blocks_match_reference() {
    let engine = common::engine();
    let kernels = Kernels::new(&engine.gpu);
    for rows in [2, 4] {
        kernels.set_conv_group_rows(rows);
        let blocked = [
            (
                61,
                conv(20, 24, 3, 1),
                (2, 13, 9),
                Some(Residual::BeforeActivation),
            ),
            (62, conv(16, 40, 5, 2), (1, 21, 9), None),
            (
                63,
                Conv2dSpec {
                    dilation: [9, 1],
                    activation: Activation::LeakyRelu { alpha: 0.1 },
                    ..conv(8, 32, 3, 9)
                },
                (1, 21, 5),
                None,
            ),
        ];
        let blocked = blocked.into_iter().map(|(seed, spec, nhw, residual)| Case {
            seed,
            spec,
            nhw,
            residual,
        });
        for case in blocked.chain(cases().into_iter().take(2)) {
            check(&engine, &kernels, case, false);
        }
    }
}

/// Depthwise shapes: 3x3 padded on odd sizes off the 4x4 pixel block, PRelu, stride 2 with
/// asymmetric pads, 5x5 with dilation, many channels on small maps, and a dilation too tall for
/// the generated kernel (the shader's one-pixel `main`).
fn depthwise_cases() -> Vec<Case> {
    let mut rng = common::rng(41);
    let dw = |c, k, pad| Conv2dSpec {
        groups: c,
        ..conv(c, c, k, pad)
    };
    let case = |seed, spec, nhw| Case {
        seed,
        spec,
        nhw,
        residual: None,
    };
    vec![
        case(
            21,
            Conv2dSpec {
                activation: Activation::LeakyRelu { alpha: 0.1 },
                ..dw(6, 3, 1)
            },
            (3, 19, 13),
        ),
        case(
            22,
            Conv2dSpec {
                activation: Activation::PRelu {
                    slopes: common::random_vec(&mut rng, 5, 0.5),
                },
                ..dw(5, 3, 1)
            },
            (2, 10, 37),
        ),
        case(
            23,
            Conv2dSpec {
                stride: [2, 2],
                pads: [1, 1, 2, 2],
                activation: Activation::Clip { min: 0.0, max: 6.0 },
                ..dw(4, 3, 0)
            },
            (2, 15, 12),
        ),
        case(
            24,
            Conv2dSpec {
                dilation: [2, 1],
                pads: [4, 2, 4, 2],
                ..dw(3, 5, 0)
            },
            (2, 11, 9),
        ),
        // Many channels on small maps: several channels' column blocks share a workgroup, the
        // last slice of channels partly empty (37 and 21 channels).
        case(
            26,
            Conv2dSpec {
                activation: Activation::Clip { min: 0.0, max: 6.0 },
                ..dw(37, 5, 2)
            },
            (3, 7, 7),
        ),
        case(
            27,
            Conv2dSpec {
                stride: [2, 2],
                ..dw(21, 3, 1)
            },
            (2, 14, 14),
        ),
        // Stride 2 on odd widths (one value a load).
        case(
            28,
            Conv2dSpec {
                stride: [2, 2],
                pads: [1, 0, 0, 1],
                ..dw(3, 3, 0)
            },
            (2, 9, 27),
        ),
        // More taps (700 x 25) than the uniform binding holds: read from storage.
        case(29, dw(700, 5, 2), (1, 7, 7)),
        case(
            25,
            Conv2dSpec {
                dilation: [17, 1],
                pads: [17, 1, 17, 1],
                ..dw(2, 3, 0)
            },
            (2, 20, 9),
        ),
    ]
}

/// Depthwise shapes whose rows the generated kernel reads and writes 4 values at a time (both
/// widths a multiple of 4), with the block chosen per map: 3x3 (2x8 blocks, rows past the map),
/// stride 2, 5x5 with PRelu (4x8), a dilation with 3 columns of left padding, no left padding,
/// a 16x16 map (one 8x8 block a quarter) and a 12x12 one (6x6 blocks, not wide), batches > 1.
fn depthwise_wide_cases() -> Vec<Case> {
    let mut rng = common::rng(43);
    let dw = |c, k, pad| Conv2dSpec {
        groups: c,
        ..conv(c, c, k, pad)
    };
    let case = |seed, spec, nhw| Case {
        seed,
        spec,
        nhw,
        residual: None,
    };
    vec![
        case(
            31,
            Conv2dSpec {
                activation: Activation::LeakyRelu { alpha: 0.1 },
                ..dw(6, 3, 1)
            },
            (2, 9, 24),
        ),
        case(
            32,
            Conv2dSpec {
                stride: [2, 2],
                pads: [1, 1, 0, 0],
                activation: Activation::Clip { min: 0.0, max: 6.0 },
                ..dw(5, 3, 0)
            },
            (2, 11, 40),
        ),
        case(
            33,
            Conv2dSpec {
                activation: Activation::PRelu {
                    slopes: common::random_vec(&mut rng, 3, 0.5),
                },
                ..dw(3, 5, 2)
            },
            (1, 10, 20),
        ),
        case(
            34,
            Conv2dSpec {
                dilation: [1, 3],
                pads: [1, 3, 1, 3],
                ..dw(4, 3, 0)
            },
            (2, 6, 28),
        ),
        case(
            35,
            Conv2dSpec {
                pads: [0, 0, 0, 2],
                ..dw(2, 3, 0)
            },
            (3, 7, 20),
        ),
        case(36, dw(9, 3, 1), (2, 16, 16)),
        case(37, dw(20, 5, 2), (2, 12, 12)),
        // Stride 2 with one column of left padding (the left column of a block is the last
        // value of a vec4, loaded alone): an odd height (rows past the map), 3 items; then
        // padding on the left and bottom only.
        case(
            38,
            Conv2dSpec {
                stride: [2, 2],
                activation: Activation::Clip { min: 0.0, max: 6.0 },
                ..dw(7, 3, 1)
            },
            (3, 13, 48),
        ),
        case(
            39,
            Conv2dSpec {
                stride: [2, 2],
                pads: [0, 1, 1, 0],
                ..dw(4, 3, 0)
            },
            (2, 20, 40),
        ),
        // Stride 2 onto a map 14 wide: read 4 values a load, written one a store (2x8 blocks,
        // the last 6 wide).
        case(
            40,
            Conv2dSpec {
                stride: [2, 2],
                activation: Activation::LeakyRelu { alpha: 0.2 },
                ..dw(6, 3, 1)
            },
            (2, 13, 28),
        ),
        // ConvNeXt's 7x7 on a map of two and a quarter 8x16 blocks (on a CPU adapter), an
        // odd height.
        case(41, dw(4, 7, 3), (2, 11, 36)),
    ]
}

/// Depthwise shapes on maps whose rows are 2 mod 4 wide (14, 10: classify's late 3x3s and 5x5s),
/// read 4 values a load from the 4-value grid in blocks of 2 whole rows
/// (`depthwise_conv2d::Variant::rows_off_grid`): 3x3 and 5x5, padding on the top 0 (rows start
/// on the other parity) and 1 and 2, heights off the block, batches, stride 2 from rows twice
/// as wide (28 onto 14, 20 onto 10); in float32 and float16 (the
/// tolerances of `check`). A row read with the other offset fails: its values are 2 columns off.
#[test]
fn depthwise_on_rows_off_the_grid_matches_reference() {
    use batchwise::kernels::depthwise_conv2d;
    let engine = common::engine();
    let dw = |c, k, pads, activation| Conv2dSpec {
        groups: c,
        pads,
        activation,
        ..conv(c, c, k, 0)
    };
    let s2 = |spec| Conv2dSpec {
        stride: [2, 2],
        ..spec
    };
    let leaky = Activation::LeakyRelu { alpha: 0.1 };
    let case = |seed, spec, nhw| Case {
        seed,
        spec,
        nhw,
        residual: None,
    };
    let cases = [
        case(81, dw(5, 3, [1; 4], leaky.clone()), (2, 14, 14)),
        case(82, dw(4, 5, [2; 4], Activation::HardSwish), (1, 14, 14)),
        case(83, dw(3, 3, [0, 1, 2, 1], leaky), (3, 6, 10)),
        case(84, dw(6, 3, [1; 4], Activation::None), (2, 10, 18)),
        // Stride 2 from rows a multiple of 4 wide onto rows 2 mod 4 (28 px onto 14).
        case(85, s2(dw(5, 3, [1; 4], Activation::HardSwish)), (2, 12, 28)),
        case(86, s2(dw(3, 5, [2; 4], Activation::None)), (1, 9, 20)),
    ];
    let kernels = Kernels::new(&engine.gpu);
    for case in cases.clone() {
        let (_, h, w) = case.nhw;
        let s = &case.spec;
        let (oh, ow) = s.output_hw(h, w).unwrap();
        let v = depthwise_conv2d::variant(s).expect("generated");
        let chosen = v
            .for_map(
                w,
                oh,
                ow,
                s.pads[1],
                common::adapter_kind(&engine, &kernels),
            )
            .off_grid_rows([h, w], ow, [s.pads[0], s.pads[1]]);
        assert_eq!(chosen.rows_off_grid, Some([s.pads[0], s.pads[1]]), "{s:?}");
        check(&engine, &kernels, case, false);
    }
    if common::has_float16(&engine) {
        let kernels = Kernels::with_precision(&engine.gpu, Precision::F16);
        for case in cases {
            check(&engine, &kernels, case, true);
        }
    }
}

/// Depthwise shapes on small maps taken whole, a few channels' planes an invocation read and
/// written 4 values a load (`depthwise_conv2d::Variant::planes`): 7 x 7 (4 planes fill whole
/// vec4s), 3x3 and 5x5, stride 2 onto 4 x 4, a map 5 x 7 padded unevenly, PRelu, batches; float32
/// and float16 (the tolerances of `check`). 6 channels of 7 x 7 do not split into groups of 4
/// and keep the blocked kernel. A value read from the wrong place in its vec4 fails.
#[test]
fn depthwise_whole_planes_match_reference() {
    use batchwise::kernels::depthwise_conv2d;
    let engine = common::engine();
    let mut rng = common::rng(90);
    let dw = |c, k, stride, pads, activation| Conv2dSpec {
        groups: c,
        stride: [stride; 2],
        pads,
        activation,
        ..conv(c, c, k, 0)
    };
    let case = |seed, spec, nhw| Case {
        seed,
        spec,
        nhw,
        residual: None,
    };
    let clip = Activation::Clip {
        min: -0.5,
        max: 0.5,
    };
    let prelu = Activation::PRelu {
        slopes: common::random_vec(&mut rng, 8, 0.5),
    };
    let cases = [
        (case(91, dw(8, 3, 1, [1; 4], clip), (2, 7, 7)), true),
        (
            case(92, dw(4, 5, 1, [2; 4], Activation::HardSwish), (3, 7, 7)),
            true,
        ),
        (case(93, dw(8, 3, 2, [1; 4], prelu), (2, 7, 7)), true),
        (
            case(94, dw(4, 3, 1, [0, 1, 2, 1], Activation::None), (1, 5, 7)),
            true,
        ),
        (
            case(95, dw(6, 3, 1, [1; 4], Activation::None), (2, 7, 7)),
            false,
        ),
    ];
    let kernels = Kernels::new(&engine.gpu);
    for (case, whole) in cases.clone() {
        let (_, h, w) = case.nhw;
        let s = &case.spec;
        let (oh, ow) = s.output_hw(h, w).unwrap();
        let chosen = depthwise_conv2d::variant(s).expect("generated").for_layer(
            s,
            [h, w, oh, ow],
            common::adapter_kind(&engine, &kernels),
        );
        assert_eq!(chosen.planes.is_some(), whole, "{s:?}");
        check(&engine, &kernels, case, false);
    }
    if common::has_float16(&engine) {
        let kernels = Kernels::with_precision(&engine.gpu, Precision::F16);
        for (case, _) in cases {
            check(&engine, &kernels, case, true);
        }
    }
}

#[test]
fn depthwise_wide_matches_reference() {
    use batchwise::kernels::depthwise_conv2d;
    let engine = common::engine();
    let kernels = Kernels::new(&engine.gpu);
    let eight = kernels.eight_a_load;
    assert_eq!(eight, engine.gpu.adapter.device_type == "Cpu");
    let (mut loads8, mut stores8, mut big) = (Vec::new(), Vec::new(), Vec::new());
    for case in depthwise_wide_cases() {
        let v = depthwise_conv2d::variant(&case.spec).expect("generated");
        let (_, h, w) = case.nhw;
        let (oh, ow) = case.spec.output_hw(h, w).unwrap();
        let chosen = v.for_map(
            w,
            oh,
            ow,
            case.spec.pads[1],
            common::adapter_kind(&engine, &kernels),
        );
        // Every case but the 12x12 map's is read 4 values a load.
        assert_eq!(chosen.wide.is_some(), w != 12, "{chosen:?}");
        // With one column of left padding a 3x3 block's left column is loaded alone (the last
        // value of a vec4, or the high word of a vec4<u64>'s last component).
        let alone = case.spec.k_w == 3 && case.spec.pads[1] == 1 && chosen.wide.is_some();
        let source = chosen.source();
        let loaded_alone = source.contains("][3]), my0") || source.contains("][3] >> 32u)), my0");
        assert_eq!(loaded_alone, alone, "{chosen:?}");
        // Written 4 a store where the output rows are a multiple of 4 wide.
        assert_eq!(chosen.store4, ow % 4 == 0 && w != 12, "{chosen:?}");
        if chosen.load8 {
            loads8.push(case.seed);
        }
        if (chosen.rows, chosen.cols) == (8, 16) {
            big.push(case.seed);
        }
        if chosen.store8 {
            stores8.push(case.seed);
        }
        check(&engine, &kernels, case, false);
    }
    // On a CPU adapter the rows a multiple of 8 wide move 8 values a load or store.
    // On a CPU adapter the stride-1 maps read 4 a load and wider than 16 take blocks of 8x16.
    if engine.gpu.adapter.device_type == "Cpu" {
        assert_eq!(big, [31, 33, 34, 35, 41]);
    }
    if eight {
        assert_eq!(loads8, [31, 32, 36, 38, 39]);
        assert_eq!(stores8, [31, 36, 38]);
    }
}

/// A depthwise convolution with its own input as its residual (`x + act(dw(x))`, the fused
/// Add of `passes::fuse_residual`), each value taken from the patch the kernel loads: 3x3 and
/// 5x5, before and after the activation, on maps read 8 values a load (32 wide), 4 (20), one
/// (12 wide: 6x6 blocks), heights off the block, batches; float32 (same tolerance as above).
/// A residual taken from the wrong patch column or row fails: it is the neighbour's value.
#[test]
fn depthwise_own_input_residual_matches_reference() {
    use batchwise::kernels::depthwise_conv2d;
    let engine = common::engine();
    let gpu = &engine.gpu;
    let kernels = Kernels::new(gpu);
    let dw = |c, k, activation| Conv2dSpec {
        groups: c,
        activation,
        ..conv(c, c, k, k / 2)
    };
    let leaky = Activation::LeakyRelu { alpha: 0.1 };
    let clip = Activation::Clip {
        min: -0.5,
        max: 0.5,
    };
    let (after, before) = (Residual::AfterActivation, Residual::BeforeActivation);
    for (seed, spec, (n, h, w), residual) in [
        (71, dw(6, 3, leaky.clone()), (2, 9, 32), after),
        (72, dw(5, 3, clip.clone()), (1, 7, 20), before),
        (73, dw(4, 5, leaky), (2, 12, 12), after),
        (74, dw(3, 3, clip.clone()), (3, 11, 12), before),
        // Rows 2 mod 4 wide, read 4 values a load from the grid (`rows_off_grid`).
        (75, dw(4, 3, Activation::None), (2, 14, 14), after),
        (76, dw(3, 5, clip.clone()), (1, 6, 10), before),
        // Whole planes of 7 x 7 maps, 4 channels an invocation (`planes`).
        (77, dw(8, 3, clip), (2, 7, 7), after),
        (78, dw(4, 5, Activation::HardSwish), (1, 7, 7), before),
    ] {
        assert!(depthwise_conv2d::preserves_size(&spec));
        let mut rng = common::rng(seed);
        let input = common::random_vec(&mut rng, (n * spec.in_c * h * w) as usize, 1.0);
        let taps = (spec.out_c * spec.k_h * spec.k_w) as usize;
        let weights = &common::random_vec(&mut rng, taps, 0.5);
        let bias = common::random_vec(&mut rng, spec.out_c as usize, 0.5);
        let expected = reference(
            &spec,
            &input,
            (n, h, w),
            weights,
            &bias,
            Some((&input, residual)),
        );
        let layer = Conv2dLayer::upload(gpu, "dw", spec.clone(), weights, &bias);
        let storage = wgpu::BufferUsages::STORAGE;
        let src = gpu.create_buffer_init("src", bytemuck::cast_slice(&input), storage);
        let bytes = 4 * expected.len() as u64;
        let dst = gpu.create_buffer("dst", bytes, storage | wgpu::BufferUsages::COPY_SRC);
        let bind = Bind::new(gpu, &kernels, "dw");
        let step = layer.prepare_with_residual(bind, &src, &dst, h, w, Some((&src, residual)));
        let got: Vec<f32> =
            bytemuck::pod_collect_to_vec(&common::run_step(gpu, &step, n, &dst, bytes));
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - e).abs() <= 1e-4 + 1e-4 * e.abs(),
                "{spec:?} {residual:?} on {n}x{h}x{w}: element {i}: gpu {g} vs cpu {e}"
            );
        }
    }
}

#[test]
fn depthwise_conv2d_matches_reference() {
    use batchwise::kernels::depthwise_conv2d;
    let engine = common::engine();
    let kernels = Kernels::new(&engine.gpu);
    let cases = depthwise_cases();
    let generated = cases
        .iter()
        .filter(|c| depthwise_conv2d::variant(&c.spec).is_some())
        .count();
    assert_eq!(generated, cases.len() - 1, "all but the last are generated");
    // Where storage loads are lane loops (Mesa 22's lavapipe) the taps of all but the
    // 700-channel case are read from the uniform binding; elsewhere none.
    let adapter = &engine.gpu.adapter;
    let on_cpu = batchwise::kernels::storage_loads_loop(&adapter.device_type, &adapter.driver);
    let uniform: Vec<u64> = cases
        .iter()
        .filter_map(|c| {
            let taps = (c.spec.out_c * c.spec.k_h * c.spec.k_w) as usize;
            let v = depthwise_conv2d::variant(&c.spec)?.taps_for(taps, on_cpu);
            v.uniform_taps.then_some(c.seed)
        })
        .collect();
    let expected: &[u64] = if on_cpu {
        &[21, 22, 23, 24, 26, 27, 28]
    } else {
        &[]
    };
    assert_eq!(uniform, expected);
    for case in cases {
        check(&engine, &kernels, case, false);
    }
}

#[test]
fn narrow_conv2d_float16_matches_reference() {
    let engine = common::engine();
    if !engine
        .gpu
        .device
        .features()
        .contains(wgpu::Features::SHADER_F16)
    {
        eprintln!("skipped: the adapter has no SHADER_F16");
        return;
    }
    let kernels = Kernels::with_precision(&engine.gpu, Precision::F16);
    for case in cases().into_iter().take(4) {
        check(&engine, &kernels, case, true);
    }
    // More than 8 output channels of few input channels, in blocks of 8.
    for case in cases().into_iter().filter(|c| c.spec.out_c > 8) {
        check(&engine, &kernels, case, true);
    }
    for case in depthwise_cases().into_iter().take(2) {
        check(&engine, &kernels, case, true);
    }
    for case in depthwise_wide_cases().into_iter().take(3) {
        check(&engine, &kernels, case, true);
    }
}

/// An image's first convolution on rows of 8 output columns (`kernels/conv2d_rows.rs`): 3x3 and
/// 5x5 stride 2 (classify's, remove-background's and detect-faces' first layers), 7x7 stride 1
/// with PRelu and a residual, 32 channels (two 16-channel blocks) with the residual after the
/// activation, asymmetric padding; on this adapter's loads (8 values where it moves 8), on vec4s
/// (`eight_a_load` off) and in float16; unrolled (3x3 on at most 3 channels) and looped. Same
/// tolerances as above.
#[test]
fn rows_conv2d_matches_reference() {
    use batchwise::kernels::conv2d_rows;
    let engine = common::engine();
    let mut rng = common::rng(44);
    let hard_swish = Activation::HardSwish;
    let cases = [
        (
            60,
            Conv2dSpec {
                stride: [2, 2],
                activation: hard_swish,
                ..conv(3, 16, 3, 1)
            },
            (2, 17, 48),
            None,
        ),
        (
            61,
            Conv2dSpec {
                stride: [2, 2],
                activation: Activation::Clip { min: 0.0, max: 6.0 },
                ..conv(3, 24, 5, 2)
            },
            (1, 16, 32),
            None,
        ),
        (
            62,
            Conv2dSpec {
                activation: Activation::PRelu {
                    slopes: common::random_vec(&mut rng, 8, 0.5),
                },
                ..conv(4, 8, 7, 3)
            },
            (2, 10, 16),
            Some(Residual::BeforeActivation),
        ),
        (
            63,
            Conv2dSpec {
                activation: Activation::LeakyRelu { alpha: 0.1 },
                ..conv(3, 32, 3, 1)
            },
            (1, 8, 24),
            Some(Residual::AfterActivation),
        ),
        (
            64,
            Conv2dSpec {
                stride: [2, 2],
                pads: [0, 1, 1, 0],
                ..conv(1, 5, 3, 0)
            },
            (2, 11, 32),
            None,
        ),
    ];
    // Both the unrolled kernels (3x3 on at most 3 channels) and the looped ones run.
    let mut unrolled = [false, false];
    for eight in [true, false] {
        let mut kernels = Kernels::new(&engine.gpu);
        kernels.eight_a_load &= eight;
        for (seed, spec, nhw, residual) in cases.clone() {
            let (_, h, w) = nhw;
            let (_, ow) = spec.output_hw(h, w).unwrap();
            let variant = conv2d::Variant::for_spec(&spec, 8);
            let rows = conv2d_rows::rows_for(variant, &spec, [w, ow], [1, 1], [true, eight]);
            let wide = rows.and_then(|v| v.narrow?.wide);
            assert!(wide.is_some(), "{spec:?} runs on rows");
            unrolled[usize::from(wide.is_some_and(|w| w.inputs > 0))] = true;
            // Not on a GPU (unmeasured there; its accumulators would crowd the registers).
            let on_gpu = conv2d_rows::rows_for(variant, &spec, [w, ow], [1, 1], [false, eight]);
            assert!(on_gpu.is_none());
            check(
                &engine,
                &kernels,
                Case {
                    seed,
                    spec,
                    nhw,
                    residual,
                },
                false,
            );
        }
    }
    assert_eq!(unrolled, [true, true], "both kinds of rows kernel ran");
    // Float16 storage, float32 sums: the float16 tolerance.
    if engine
        .gpu
        .device
        .features()
        .contains(wgpu::Features::SHADER_F16)
    {
        let kernels = Kernels::with_precision(&engine.gpu, Precision::F16);
        for (seed, spec, nhw, residual) in cases.iter().take(3).cloned() {
            let case = Case {
                seed,
                spec,
                nhw,
                residual,
            };
            check(&engine, &kernels, case, true);
        }
    }
    // Rows not a multiple of 8 outputs wide keep the other kernels.
    let spec = Conv2dSpec {
        stride: [2, 2],
        ..conv(3, 16, 3, 1)
    };
    let variant = conv2d::Variant::for_spec(&spec, 8);
    assert!(conv2d_rows::rows_for(variant, &spec, [44, 22], [1, 1], [true, true]).is_none());
}

/// A depthwise convolution with the SimpleGate after it (`depthwise_conv2d::Variant::gate`, the
/// layer `passes::fuse_gate` makes): output channel `k` is `act(dw_k) * act(dw_{k + c})`, on
/// maps read 8 values a load (32 wide), 4 (20; 28 onto 14 at stride 2), one (12 and 14 wide,
/// whose ungated kernels read rows off the grid; 7 x 7, whose take whole planes), 5x5, dilation
/// 2, PRelu (each half its own slopes), more channels than an x row of invocations covers,
/// batches; float32 and float16 (the tolerances of `check`: a product of two O(1) values each
/// within ~1e-5 of the reference in float32 stays 10 times under it). A half read from the wrong
/// plane, taps or slopes fails: the other half's values are unrelated.
#[test]
fn depthwise_gate_matches_reference() {
    use batchwise::kernels::depthwise_conv2d;
    let engine = common::engine();
    let gpu = &engine.gpu;
    let mut rng = common::rng(200);
    let dw = |c: u32, k, stride, dil, activation| Conv2dSpec {
        groups: 2 * c,
        stride: [stride; 2],
        dilation: [dil; 2],
        activation,
        ..conv(2 * c, 2 * c, k, k / 2 * dil)
    };
    let prelu = Activation::PRelu {
        slopes: common::random_vec(&mut rng, 8, 0.5),
    };
    let leaky = Activation::LeakyRelu { alpha: 0.1 };
    let clip = Activation::Clip {
        min: -0.5,
        max: 0.5,
    };
    let cases = [
        (201, dw(4, 3, 1, 1, prelu), (2, 9, 32)),
        (202, dw(3, 3, 1, 1, leaky.clone()), (1, 7, 20)),
        (203, dw(5, 5, 1, 1, clip), (2, 12, 12)),
        (204, dw(2, 3, 1, 1, Activation::None), (2, 14, 14)),
        (205, dw(4, 3, 1, 1, Activation::HardSwish), (3, 7, 7)),
        (206, dw(3, 3, 2, 1, Activation::None), (1, 28, 28)),
        (207, dw(2, 3, 1, 2, leaky), (1, 10, 24)),
        (208, dw(20, 3, 1, 1, Activation::None), (1, 8, 16)),
    ];
    let mut precisions = vec![(Kernels::new(gpu), false)];
    if common::has_float16(&engine) {
        precisions.push((Kernels::with_precision(gpu, Precision::F16), true));
    }
    for (kernels, half) in &precisions {
        let half = *half;
        let round = |v: Vec<f32>| -> Vec<f32> {
            match half {
                true => v
                    .into_iter()
                    .map(|x| half::f16::from_f32(x).to_f32())
                    .collect(),
                false => v,
            }
        };
        let mut widths = Vec::new();
        for (seed, spec, (n, h, w)) in cases.clone() {
            let (oh, ow) = spec.output_hw(h, w).unwrap();
            let chosen = depthwise_conv2d::Variant {
                gate: true,
                ..depthwise_conv2d::variant(&spec).expect("generated")
            }
            .for_layer(
                &spec,
                [h, w, oh, ow],
                common::adapter_kind(&engine, kernels),
            );
            assert!(chosen.planes.is_none() && chosen.rows_off_grid.is_none());
            widths.push((chosen.wide.is_some(), chosen.load8));
            let mut rng = common::rng(seed);
            let input = round(common::random_vec(
                &mut rng,
                (n * spec.in_c * h * w) as usize,
                1.0,
            ));
            let taps = (spec.out_c * spec.k_h * spec.k_w) as usize;
            let weights = round(common::random_vec(&mut rng, taps, 0.5));
            let bias = round(common::random_vec(&mut rng, spec.out_c as usize, 0.5));
            let both = reference(&spec, &input, (n, h, w), &weights, &bias, None);
            // Per item, the first half of its channels times the second.
            let half_item = (spec.out_c / 2 * oh * ow) as usize;
            let expected: Vec<f32> = both
                .chunks(2 * half_item)
                .flat_map(|item| {
                    let (a, b) = item.split_at(half_item);
                    a.iter().zip(b).map(|(a, b)| a * b).collect::<Vec<_>>()
                })
                .collect();
            let layer = Conv2dLayer::upload(gpu, "gated", spec.clone(), &weights, &bias);
            let to_bytes = |v: &[f32]| -> Vec<u8> {
                match half {
                    true => bytemuck::cast_slice(
                        &v.iter()
                            .map(|&x| half::f16::from_f32(x))
                            .collect::<Vec<_>>(),
                    )
                    .to_vec(),
                    false => bytemuck::cast_slice(v).to_vec(),
                }
            };
            let storage = wgpu::BufferUsages::STORAGE;
            let src = gpu.create_buffer_init("src", &to_bytes(&input), storage);
            let bytes = 4 * expected.len() as u64;
            let dst = gpu.create_buffer("dst", bytes, storage | wgpu::BufferUsages::COPY_SRC);
            let gate = conv2d::Operands {
                gate: true,
                ..Default::default()
            };
            let bind = Bind::new(gpu, kernels, "gated");
            let step = layer.prepare_placed(bind, [&src, &dst], [h, w], None, gate);
            let out = common::run_step(gpu, &step, n, &dst, bytes);
            let got: Vec<f32> = match half {
                true => bytemuck::pod_collect_to_vec::<u8, half::f16>(&out[..bytes as usize / 2])
                    .into_iter()
                    .map(half::f16::to_f32)
                    .collect(),
                false => bytemuck::pod_collect_to_vec(&out),
            };
            let (abs, rel) = if half { (2e-2, 1e-2) } else { (1e-4, 1e-4) };
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    (g - e).abs() <= abs + rel * e.abs(),
                    "{spec:?} on {n}x{h}x{w}, float16 {half}: element {i}: gpu {g} vs cpu {e}"
                );
            }
        }
        // Rows read 4 values a load (8 on a CPU adapter in float32) and one value a load.
        let eight = kernels.eight_a_load;
        assert!(widths.contains(&(true, eight)) && widths.contains(&(true, false)));
        assert!(widths.contains(&(false, false)));
    }
}
