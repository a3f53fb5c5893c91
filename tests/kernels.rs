//! Each WGSL kernel against its CPU reference, on random inputs, on the test GPU (lavapipe in CI).
//!
//! Tolerances:
//! - conv2d / conv_transpose2d: |gpu - cpu| <= 1e-4 + 1e-4 * |cpu|. The reference accumulates in
//!   f64; the GPU sums up to ~1200 f32 products (inputs in [-1, 1], weights scaled by 1/sqrt(fan-in),
//!   so outputs are O(1)). Rounding error of an f32 sum of K terms grows like sqrt(K) * 2^-24 on
//!   average and K * 2^-24 ~ 7e-5 at worst; 1e-4 covers the worst case and still catches any
//!   indexing mistake, which moves outputs by O(0.1).
//! - pack: 1e-6 absolute: one multiply-add per value, which the GPU may fuse (1 ulp of 1.0).
//! - unpack: bytes equal, except that a value within an ulp of a rounding boundary may round either
//!   way (fused multiply-add), so at most 1 level and at most 0.1% of values.

#![allow(
    clippy::needless_pass_by_value,
    reason = "each check takes a spec built at its call"
)]
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use batchwise::engine::Engine;
use batchwise::gpu::Gpu;
use batchwise::kernels::Bind;
use batchwise::kernels::conv_transpose2d::{self, ConvTranspose2dLayer};
use batchwise::kernels::conv2d::{self, Conv2dLayer};
use batchwise::kernels::pack::{self, PixelDepth, PixelMapping};
use batchwise::kernels::{Kernels, Step, unpack};
use batchwise::model::Activation;
use batchwise::model::Conv2dSpec;
use batchwise::model::ConvTranspose2dSpec;
use batchwise::model::Residual;
use rand::Rng;

fn storage(gpu: &Gpu, data: &[f32]) -> batchwise::gpu::TrackedBuffer {
    gpu.create_buffer_init(
        "test input",
        bytemuck::cast_slice(data),
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    )
}

fn output(gpu: &Gpu, len: usize) -> batchwise::gpu::TrackedBuffer {
    gpu.create_buffer(
        "test output",
        4 * len as u64,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    )
}

fn run(gpu: &Gpu, step: &Step, items: u32, out: &wgpu::Buffer, len: usize) -> Vec<u8> {
    common::run_step(gpu, step, items, out, 4 * len as u64)
}

fn assert_close(gpu_out: &[f32], cpu_out: &[f32], what: &str) {
    assert_eq!(gpu_out.len(), cpu_out.len());
    for (i, (g, c)) in gpu_out.iter().zip(cpu_out).enumerate() {
        let tol = 1e-4 + 1e-4 * c.abs();
        assert!(
            (g - c).abs() <= tol,
            "{what}: element {i}: gpu {g} vs cpu {c} (tolerance {tol})"
        );
    }
    assert!(
        cpu_out.iter().any(|v| v.abs() > 1e-2),
        "{what}: the reference is all near zero, so the test proves nothing"
    );
}

struct Setup {
    engine: Engine,
    kernels: Kernels,
}

fn setup() -> Setup {
    let engine = common::engine();
    let kernels = Kernels::new(&engine.gpu);
    Setup { engine, kernels }
}

#[allow(clippy::too_many_arguments)]
fn check_conv2d(s: &Setup, seed: u64, spec: Conv2dSpec, n: u32, h: u32, w: u32) {
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(seed);
    let fan_in = (spec.in_c / spec.groups * spec.k_h * spec.k_w) as f32;
    // HardSwish has three pieces (0 below -3, x above 3, x (x + 3) / 6 between): inputs 4x
    // larger put outputs in all three.
    let amplitude = if spec.activation == Activation::HardSwish {
        4.0
    } else {
        1.0
    };
    let input = common::random_vec(&mut rng, (n * spec.in_c * h * w) as usize, amplitude);
    let weights = common::random_vec(
        &mut rng,
        (spec.out_c * spec.in_c / spec.groups * spec.k_h * spec.k_w) as usize,
        1.0 / fan_in.sqrt(),
    );
    let bias = common::random_vec(&mut rng, spec.out_c as usize, 0.5);
    let expected = conv2d::reference(&spec, &input, n, h, w, &weights, &bias);
    let layer = Conv2dLayer::upload(gpu, "test", spec.clone(), &weights, &bias);
    let src = storage(gpu, &input);
    let dst = output(gpu, expected.len());
    let step = layer.prepare(Bind::new(gpu, &s.kernels, "test"), &src, &dst, h, w);
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&run(gpu, &step, n, &dst, expected.len()));
    assert_close(&got, &expected, &format!("conv2d {spec:?} on {n}x{h}x{w}"));
}

/// HardSwish fused into each kind of convolution kernel: a 1x1 (gemm), a 3x3 (conv2d) and a
/// depthwise 3x3 on vec4 rows; inputs large enough for all three of its pieces (see
/// `check_conv2d`).
#[test]
fn conv2d_with_hard_swish_matches_reference() {
    let s = setup();
    let hard_swish = |spec: Conv2dSpec| Conv2dSpec {
        activation: Activation::HardSwish,
        ..spec
    };
    check_conv2d(&s, 18, hard_swish(conv(32, 24, 1)), 2, 9, 9);
    check_conv2d(
        &s,
        19,
        hard_swish(Conv2dSpec {
            pads: [1; 4],
            ..conv(8, 16, 3)
        }),
        2,
        9,
        10,
    );
    check_conv2d(
        &s,
        20,
        hard_swish(Conv2dSpec {
            groups: 16,
            pads: [1; 4],
            ..conv(16, 16, 3)
        }),
        2,
        12,
        16,
    );
}

fn conv(in_c: u32, out_c: u32, k: u32) -> Conv2dSpec {
    Conv2dSpec {
        in_c,
        out_c,
        k_h: k,
        k_w: k,
        stride: [1, 1],
        pads: [0; 4],
        dilation: [1, 1],
        groups: 1,
        activation: Activation::None,
    }
}

#[test]
fn conv2d_matches_reference() {
    let s = setup();
    // The shape of waifu2x's layers: 3x3, no padding, leaky ReLU, odd sizes, batch of 3.
    check_conv2d(
        &s,
        1,
        Conv2dSpec {
            activation: Activation::LeakyRelu { alpha: 0.1 },
            ..conv(3, 16, 3)
        },
        3,
        19,
        13,
    );
    // Channel counts that are not multiples of the 16-channel block.
    check_conv2d(&s, 2, conv(20, 37, 3), 2, 11, 17);
    // Stride 2, asymmetric pads (TF SAME style), 5x5, clip activation.
    check_conv2d(
        &s,
        3,
        Conv2dSpec {
            stride: [2, 2],
            pads: [1, 2, 2, 1],
            activation: Activation::Clip { min: 0.0, max: 0.6 },
            ..conv(8, 24, 5)
        },
        2,
        15,
        12,
    );
    // Dilation, 1x1 and non-square kernels.
    check_conv2d(
        &s,
        4,
        Conv2dSpec {
            dilation: [2, 3],
            pads: [2, 3, 2, 3],
            ..conv(6, 10, 3)
        },
        1,
        14,
        16,
    );
    check_conv2d(&s, 5, conv(32, 16, 1), 2, 9, 9);
    // More input channels than one 64 KiB weight window holds: three chunks accumulate in turn,
    // and the activation applies only after the last.
    check_conv2d(
        &s,
        9,
        Conv2dSpec {
            activation: Activation::LeakyRelu { alpha: 0.1 },
            pads: [1; 4],
            ..conv(240, 20, 3)
        },
        2,
        7,
        6,
    );
    check_conv2d(
        &s,
        6,
        Conv2dSpec {
            k_h: 1,
            k_w: 3,
            pads: [0, 1, 0, 1],
            ..conv(5, 7, 1)
        },
        1,
        8,
        10,
    );
    // A dilation so tall the input column does not fit the unrolled kernel: the generic one runs.
    check_conv2d(
        &s,
        10,
        Conv2dSpec {
            dilation: [17, 1],
            pads: [17, 1, 17, 1],
            ..conv(4, 8, 3)
        },
        1,
        20,
        9,
    );
    // PRelu with a slope per channel, across two 16-channel blocks.
    let mut rng = common::rng(99);
    check_conv2d(
        &s,
        15,
        Conv2dSpec {
            pads: [1; 4],
            activation: Activation::PRelu {
                slopes: common::random_vec(&mut rng, 20, 0.5),
            },
            ..conv(8, 20, 3)
        },
        2,
        9,
        10,
    );
    // Depthwise (its own kernel): TF-SAME asymmetric pads with ReLU6, dilation with PRelu.
    check_conv2d(
        &s,
        16,
        Conv2dSpec {
            groups: 24,
            stride: [2, 2],
            pads: [1, 1, 2, 2],
            activation: Activation::Clip { min: 0.0, max: 6.0 },
            ..conv(24, 24, 5)
        },
        2,
        13,
        12,
    );
    let mut rng = common::rng(98);
    check_conv2d(
        &s,
        17,
        Conv2dSpec {
            groups: 5,
            dilation: [2, 1],
            pads: [2, 1, 2, 1],
            activation: Activation::PRelu {
                slopes: common::random_vec(&mut rng, 5, 0.5),
            },
            ..conv(5, 5, 3)
        },
        1,
        9,
        8,
    );
    // Grouped and depthwise.
    check_conv2d(
        &s,
        7,
        Conv2dSpec {
            groups: 4,
            pads: [1; 4],
            ..conv(8, 12, 3)
        },
        2,
        10,
        9,
    );
    check_conv2d(
        &s,
        8,
        Conv2dSpec {
            groups: 12,
            pads: [1; 4],
            stride: [2, 2],
            activation: Activation::LeakyRelu { alpha: 0.0 },
            ..conv(12, 12, 3)
        },
        2,
        13,
        11,
    );
}

fn check_conv_transpose2d(s: &Setup, seed: u64, spec: ConvTranspose2dSpec, n: u32, h: u32, w: u32) {
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(seed);
    let fan_in = (spec.in_c / spec.groups * spec.k_h * spec.k_w) as f32;
    let input = common::random_vec(&mut rng, (n * spec.in_c * h * w) as usize, 1.0);
    let weights = common::random_vec(
        &mut rng,
        (spec.in_c * spec.out_c / spec.groups * spec.k_h * spec.k_w) as usize,
        2.0 / fan_in.sqrt(),
    );
    let bias = common::random_vec(&mut rng, spec.out_c as usize, 0.5);
    let expected = conv_transpose2d::reference(&spec, &input, n, h, w, &weights, &bias);
    let layer = ConvTranspose2dLayer::upload(gpu, "test", spec.clone(), &weights, &bias);
    let src = storage(gpu, &input);
    let dst = output(gpu, expected.len());
    let step = layer.prepare(Bind::new(gpu, &s.kernels, "test"), &src, &dst, h, w);
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&run(gpu, &step, n, &dst, expected.len()));
    assert_close(
        &got,
        &expected,
        &format!("conv_transpose2d {spec:?} on {n}x{h}x{w}"),
    );
}

fn deconv(in_c: u32, out_c: u32, k: u32, stride: u32, pad: u32) -> ConvTranspose2dSpec {
    ConvTranspose2dSpec {
        in_c,
        out_c,
        k_h: k,
        k_w: k,
        stride: [stride; 2],
        pads: [pad; 4],
        dilation: [1, 1],
        output_padding: [0, 0],
        groups: 1,
        activation: Activation::None,
    }
}

#[test]
fn conv_transpose2d_matches_reference() {
    let s = setup();
    // waifu2x's last layer: 4x4, stride 2, pad 3, 3 output channels.
    check_conv_transpose2d(&s, 11, deconv(32, 3, 4, 2, 3), 3, 12, 9);
    // 2x2 stride 2 (segmentation decoders), channels not a multiple of 4, activation.
    check_conv_transpose2d(
        &s,
        12,
        ConvTranspose2dSpec {
            activation: Activation::LeakyRelu { alpha: 0.2 },
            ..deconv(6, 7, 2, 2, 0)
        },
        2,
        7,
        5,
    );
    // Stride 3 with asymmetric pads, output padding, dilation and groups.
    check_conv_transpose2d(
        &s,
        13,
        ConvTranspose2dSpec {
            pads: [1, 0, 2, 1],
            output_padding: [1, 2],
            ..deconv(4, 5, 3, 3, 0)
        },
        1,
        6,
        7,
    );
    check_conv_transpose2d(
        &s,
        14,
        ConvTranspose2dSpec {
            dilation: [2, 2],
            groups: 2,
            ..deconv(4, 6, 3, 1, 1)
        },
        2,
        5,
        6,
    );
}

fn run_f32(gpu: &Gpu, step: &Step, items: u32, out: &wgpu::Buffer, len: usize) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&run(gpu, step, items, out, len))
}

/// SpaceToDepth (a patch convolution's input) moves values: exact, on the scalar kernel (sides
/// off the vec4 grid, rows and columns past a whole block dropped) and the wide one (blocks 2
/// and 4 wide), two items.
#[test]
fn space_to_depth_matches_reference() {
    use batchwise::kernels::space_to_depth;
    use batchwise::model::ItemShape;
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(39);
    let n = 2u32;
    for (c, h, w, block, wide) in [
        (3, 19, 26, [4, 4], false),
        (16, 20, 16, [2, 2], true),
        (5, 12, 32, [2, 4], true),
        (2, 8, 24, [4, 4], false),
    ] {
        let shape = ItemShape { c, h, w };
        assert_eq!(space_to_depth::wide(shape, block), wide);
        let x = common::random_vec(&mut rng, (n as u64 * shape.elements()) as usize, 1.0);
        let expected = space_to_depth::reference(&x, n, shape, block);
        let src = storage(gpu, &x);
        let dst = output(gpu, expected.len());
        let step =
            space_to_depth::prepare(Bind::new(gpu, &s.kernels, "s2d"), block, &src, &dst, shape);
        assert_eq!(
            run_f32(gpu, &step, n, &dst, expected.len()),
            expected,
            "{shape:?} {block:?}"
        );
    }
}

/// Data movement is exact: these kernels copy values.
#[test]
fn depth_to_space_matches_reference() {
    use batchwise::kernels::depth_to_space;
    use batchwise::model::DepthToSpaceSpec;
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(31);
    for (spec, c, h, w) in [
        (
            DepthToSpaceSpec {
                block: [4, 4],
                crd: true,
                crop: [0, 0],
            },
            48,
            5,
            7,
        ),
        (
            DepthToSpaceSpec {
                block: [2, 2],
                crd: false,
                crop: [0, 0],
            },
            12,
            6,
            3,
        ),
        (
            DepthToSpaceSpec {
                block: [2, 3],
                crd: false,
                crop: [1, 2],
            },
            18,
            4,
            5,
        ),
        // 2x2 blocks on rows a multiple of 4 wide: the wide kernel, both orders.
        (
            DepthToSpaceSpec {
                block: [2, 2],
                crd: false,
                crop: [0, 0],
            },
            12,
            5,
            12,
        ),
        (
            DepthToSpaceSpec {
                block: [2, 2],
                crd: true,
                crop: [0, 0],
            },
            8,
            3,
            8,
        ),
        // 4x4 blocks (a 4x upsample's convolution as phases), 3x4 and 1x2.
        (
            DepthToSpaceSpec {
                block: [4, 4],
                crd: false,
                crop: [0, 0],
            },
            32,
            3,
            8,
        ),
        (
            DepthToSpaceSpec {
                block: [4, 4],
                crd: true,
                crop: [0, 0],
            },
            16,
            2,
            4,
        ),
        (
            DepthToSpaceSpec {
                block: [3, 4],
                crd: false,
                crop: [0, 0],
            },
            24,
            2,
            8,
        ),
        (
            DepthToSpaceSpec {
                block: [1, 2],
                crd: true,
                crop: [0, 0],
            },
            6,
            3,
            4,
        ),
    ] {
        let (_, oh, ow) = spec.output_chw(c, h, w).unwrap();
        let wide = depth_to_space::wide_for(&spec, [h, w], [oh, ow]);
        let [bh, bw] = spec.block;
        let wide_block = bh <= 4 && (bw == 2 || bw == 4) && spec.crop == [0, 0];
        assert_eq!(wide, w % 4 == 0 && wide_block, "{spec:?}");
        let n = 2;
        let input = common::random_vec(&mut rng, (n * c * h * w) as usize, 1.0);
        let expected = depth_to_space::reference(&spec, &input, n, c, h, w);
        let src = storage(gpu, &input);
        let dst = output(gpu, expected.len());
        let step = depth_to_space::prepare(
            Bind::new(gpu, &s.kernels, "d2s"),
            &spec,
            &src,
            &dst,
            c,
            h,
            w,
        );
        assert_eq!(
            run_f32(gpu, &step, n, &dst, expected.len()),
            expected,
            "{spec:?}"
        );
    }
}

#[test]
fn resize_nearest_matches_reference() {
    use batchwise::kernels::resize_nearest;
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(32);
    for (scale, c, h, w) in [([4, 4], 3, 5, 7), ([2, 3], 2, 4, 3), ([3, 1], 1, 9, 17)] {
        let n = 2;
        let input = common::random_vec(&mut rng, (n * c * h * w) as usize, 1.0);
        let expected = resize_nearest::reference(&input, n * c, h, w, scale);
        let src = storage(gpu, &input);
        let dst = output(gpu, expected.len());
        let step = resize_nearest::prepare(
            Bind::new(gpu, &s.kernels, "resize"),
            scale,
            &src,
            &dst,
            c,
            h,
            w,
        );
        assert_eq!(run_f32(gpu, &step, n, &dst, expected.len()), expected);
    }
}

/// One rounding per element on both sides (IEEE add/sub/mul are exact-rounded; division too,
/// though some drivers approximate it), so the tolerance is 1 ulp-scale: 1e-6 relative.
#[test]
fn binary_matches_reference_with_broadcasting() {
    use batchwise::kernels::binary;
    use batchwise::model::BinaryOp;
    use batchwise::model::ItemShape;
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(33);
    let shape = |c, h, w| ItemShape { c, h, w };
    for (op, sa, sb) in [
        (BinaryOp::Add, shape(3, 5, 7), shape(3, 5, 7)),
        (BinaryOp::Sub, shape(4, 6, 5), shape(4, 1, 1)),
        (BinaryOp::Mul, shape(1, 6, 5), shape(3, 6, 1)),
        (BinaryOp::Div, shape(2, 3, 4), shape(1, 1, 4)),
        (BinaryOp::PRelu, shape(3, 4, 5), shape(3, 1, 1)),
    ] {
        let n = 2;
        let a = common::random_vec(&mut rng, (n as u64 * sa.elements()) as usize, 1.0);
        let mut b = common::random_vec(&mut rng, (n as u64 * sb.elements()) as usize, 1.0);
        b.iter_mut().for_each(|v| *v += 2.0f32.copysign(*v)); // away from zero for Div
        let expected = binary::reference(op, &a, sa, &b, sb, n);
        let (ba, bb) = (storage(gpu, &a), storage(gpu, &b));
        let dst = output(gpu, expected.len());
        let step = binary::prepare(
            Bind::new(gpu, &s.kernels, "binary"),
            op,
            &ba,
            sa,
            &bb,
            sb,
            &dst,
        );
        let got = run_f32(gpu, &step, n, &dst, expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert!(
                (g - e).abs() <= 1e-6 * e.abs().max(1.0),
                "{op:?}: {g} vs {e}"
            );
        }
    }
}

/// Bilinear and bicubic interpolation against an f64 reference: at most 16 weighted taps in f32,
/// 2e-6 absolute for values in [-1, 1].
#[test]
fn resize_filter_matches_reference() {
    use batchwise::kernels::resize_filter::{self};
    use batchwise::model::{Coords, Filter, NearestMode, ResizeFilterSpec, Target};
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(37);
    let (n, c, h, w) = (2u32, 3u32, 7u32, 5u32);
    let input = common::random_vec(&mut rng, (n * c * h * w) as usize, 1.0);
    for spec in [
        (Target::Scale([2.0, 2.0]), Coords::HalfPixel, Filter::Linear),
        (Target::Size([16, 9]), Coords::HalfPixel, Filter::Linear),
        (Target::Size([3, 11]), Coords::AlignCorners, Filter::Linear),
        (
            Target::Scale([1.5, 0.5]),
            Coords::Asymmetric,
            Filter::Linear,
        ),
        (
            Target::Size([14, 1]),
            Coords::PytorchHalfPixel,
            Filter::Linear,
        ),
        // Bicubic: the 2x downscale of upscale-anime-2x, an upscale and align_corners.
        (
            Target::Scale([0.5, 0.5]),
            Coords::HalfPixel,
            Filter::Cubic {
                a: -0.75,
                exclude_outside: false,
            },
        ),
        (
            Target::Size([13, 8]),
            Coords::HalfPixel,
            Filter::Cubic {
                a: -0.5,
                exclude_outside: true,
            },
        ),
        (
            Target::Size([9, 4]),
            Coords::AlignCorners,
            Filter::Cubic {
                a: -0.75,
                exclude_outside: false,
            },
        ),
        // Keep-aspect-ratio sizes and half_pixel_symmetric.
        (
            Target::Fit {
                size: [10, 10],
                not_smaller: false,
            },
            Coords::HalfPixelSymmetric,
            Filter::Linear,
        ),
        (
            Target::Fit {
                size: [4, 4],
                not_smaller: true,
            },
            Coords::HalfPixel,
            Filter::Nearest(NearestMode::RoundPreferFloor),
        ),
        // Nearest with ONNX's rounding modes, by sizes and by non-whole scales.
        (
            Target::Size([10, 3]),
            Coords::HalfPixel,
            Filter::Nearest(NearestMode::RoundPreferFloor),
        ),
        (
            Target::Scale([0.6, 1.7]),
            Coords::Asymmetric,
            Filter::Nearest(NearestMode::Floor),
        ),
        (
            Target::Size([11, 9]),
            Coords::AlignCorners,
            Filter::Nearest(NearestMode::RoundPreferCeil),
        ),
        (
            Target::Size([12, 7]),
            Coords::HalfPixel,
            Filter::Nearest(NearestMode::Ceil),
        ),
    ]
    .map(|(target, coords, filter)| ResizeFilterSpec {
        target,
        coords,
        filter,
    }) {
        let expected = resize_filter::reference(&spec, &input, n * c, h, w);
        let src = storage(gpu, &input);
        let dst = output(gpu, expected.len());
        let step = resize_filter::prepare(
            Bind::new(gpu, &s.kernels, "resize"),
            &spec,
            &src,
            &dst,
            c,
            h,
            w,
        );
        let got = run_f32(gpu, &step, n, &dst, expected.len());
        let worst = common::max_abs_diff(&got, &expected);
        assert!(worst <= 2e-6, "{spec:?}: max diff {worst}");
    }
}

/// Bilinear over planes taller than resize_filter.wgsl's `linear` rows per invocation (8): up by 2 and 4
/// (rows reused between outputs), a non-whole scale, a downscale and a one-row input, and up by 2
/// on resize2x.wgsl, against the same f64 reference: 2 taps per axis in f32, 2e-6 absolute for
/// values in [-1, 1].
#[test]
fn resize_linear_rows_match_reference() {
    use batchwise::kernels::resize_filter;
    use batchwise::model::{Coords, Filter, ResizeFilterSpec, Target};
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(43);
    for (n, c, h, w, target, coords) in [
        (
            2u32,
            3u32,
            37u32,
            45u32,
            Target::Scale([2.0, 2.0]),
            Coords::HalfPixel,
        ),
        (1, 2, 19, 13, Target::Scale([4.0, 4.0]), Coords::HalfPixel),
        (1, 2, 23, 17, Target::Size([53, 30]), Coords::AlignCorners),
        (2, 1, 40, 33, Target::Scale([0.5, 0.5]), Coords::HalfPixel),
        (1, 3, 1, 9, Target::Size([12, 18]), Coords::Asymmetric),
        // Up by 2 with half_pixel coordinates on rows a multiple of 4 wide: resize2x.wgsl (8
        // values a store on a CPU adapter), by scales and by sizes, one-row and one-vec4 inputs.
        (2, 3, 9, 12, Target::Scale([2.0, 2.0]), Coords::HalfPixel),
        (
            1,
            2,
            6,
            16,
            Target::Size([12, 32]),
            Coords::PytorchHalfPixel,
        ),
        (2, 1, 1, 8, Target::Scale([2.0, 2.0]), Coords::HalfPixel),
        (1, 2, 5, 4, Target::Scale([2.0, 2.0]), Coords::HalfPixel),
    ] {
        let spec = ResizeFilterSpec {
            target,
            coords,
            filter: Filter::Linear,
        };
        let by_two = matches!(target, Target::Scale([2.0, 2.0]) | Target::Size([12, 32]));
        assert_eq!(
            batchwise::kernels::resize2x::applies(&spec, h, w),
            by_two && w % 4 == 0,
            "{spec:?} on {h}x{w}"
        );
        let input = common::random_vec(&mut rng, (n * c * h * w) as usize, 1.0);
        let expected = resize_filter::reference(&spec, &input, n * c, h, w);
        let src = storage(gpu, &input);
        let dst = output(gpu, expected.len());
        let step = resize_filter::prepare(
            Bind::new(gpu, &s.kernels, "resize"),
            &spec,
            &src,
            &dst,
            c,
            h,
            w,
        );
        let got = run_f32(gpu, &step, n, &dst, expected.len());
        let worst = common::max_abs_diff(&got, &expected);
        assert!(worst <= 2e-6, "{spec:?} on {h}x{w}: max diff {worst}");
    }
}

/// Block and flat copies move values: exact.
#[test]
fn copy_block_matches_reference() {
    use batchwise::kernels::copy_block::{self, Block};
    use batchwise::model::ItemShape;
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(41);
    let n = 2;
    let src_shape = ItemShape { c: 3, h: 6, w: 7 };
    let dst_shape = ItemShape { c: 4, h: 9, w: 8 };
    // A plain block, a strided one (Slice with steps) and one walking backwards (negative steps).
    for (src_offset, src_step, size) in [
        ([1, 2, 3], [1, 1, 1], [2, 3, 4]),
        ([0, 1, 0], [2, 2, 3], [2, 3, 3]),
        ([2, 5, 6], [-1, -2, -3], [2, 3, 2]),
    ] {
        let block = Block {
            src: src_shape,
            src_offset,
            src_step,
            dst: dst_shape,
            dst_offset: [2, 4, 1],
            size,
        };
        let input = common::random_vec(&mut rng, (n as u64 * src_shape.elements()) as usize, 1.0);
        let before = common::random_vec(&mut rng, (n as u64 * dst_shape.elements()) as usize, 1.0);
        let mut expected = before.clone();
        copy_block::reference(&block, &input, &mut expected, n);
        let src = storage(gpu, &input);
        let dst = storage(gpu, &before);
        let step = copy_block::prepare(Bind::new(gpu, &s.kernels, "block"), &block, &src, &dst);
        assert_eq!(
            run_f32(gpu, &step, n, &dst, expected.len()),
            expected,
            "{block:?}"
        );
    }

    // Flat: 3 x 700 x 1 elements per item as one run (crosses the 1024-element rows).
    let flat_src = ItemShape { c: 3, h: 700, w: 1 };
    let flat_dst = ItemShape {
        c: 2100,
        h: 1,
        w: 1,
    };
    let input = common::random_vec(&mut rng, (n as u64 * flat_src.elements()) as usize, 1.0);
    let src = storage(gpu, &input);
    let dst = output(gpu, input.len());
    let step = copy_block::prepare_flat(
        Bind::new(gpu, &s.kernels, "flat"),
        flat_src,
        flat_dst,
        &src,
        &dst,
    );
    assert_eq!(run_f32(gpu, &step, n, &dst, input.len()), input);
}

/// A transpose copies values: exact.
#[test]
fn nchw_to_nhwc_matches_reference() {
    use batchwise::kernels::nchw_to_nhwc;
    use batchwise::model::ItemShape;
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(40);
    let shape = ItemShape { c: 6, h: 5, w: 7 };
    let n = 2;
    let input = common::random_vec(&mut rng, (n as u64 * shape.elements()) as usize, 1.0);
    let expected = nchw_to_nhwc::reference(&input, n, shape);
    let src = storage(gpu, &input);
    let dst = output(gpu, expected.len());
    let step = nchw_to_nhwc::prepare(Bind::new(gpu, &s.kernels, "nhwc"), &src, &dst, shape);
    assert_eq!(run_f32(gpu, &step, n, &dst, expected.len()), expected);
    // Into a Concat's buffer (items of 250 values, this output from 37): the rest untouched.
    let (item, offset) = (250usize, 37usize);
    let dst = output(gpu, n as usize * item);
    let bind = Bind::new(gpu, &s.kernels, "nhwc");
    let slice = Some((item as u32, offset as u32));
    let step = nchw_to_nhwc::prepare_into(bind, &src, &dst, shape, slice);
    let got = run_f32(gpu, &step, n, &dst, n as usize * item);
    let each = shape.elements() as usize;
    for b in 0..n as usize {
        let at = b * item + offset;
        assert_eq!(
            got[at..at + each],
            expected[b * each..(b + 1) * each],
            "item {b}"
        );
        assert!(
            got[b * item..at]
                .iter()
                .chain(&got[at + each..(b + 1) * item])
                .all(|&v| v == 0.0)
        );
    }
}

/// Padding copies values: exact.
#[test]
fn pad_matches_reference() {
    use batchwise::kernels::pad::{self};
    use batchwise::model::ItemShape;
    use batchwise::model::{PadMode, PadSpec};
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(38);
    let shape = ItemShape { c: 3, h: 5, w: 4 };
    let n = 2;
    let input = common::random_vec(&mut rng, (n as u64 * shape.elements()) as usize, 1.0);
    for spec in [
        // BlazeFace's channel padding.
        PadSpec {
            channels: [0, 4],
            height: [0, 0],
            width: [0, 0],
            mode: PadMode::Constant,
            value: 0.0,
        },
        PadSpec {
            channels: [1, 0],
            height: [2, 1],
            width: [0, 3],
            mode: PadMode::Constant,
            value: 0.5,
        },
        PadSpec {
            channels: [0, 0],
            height: [3, 2],
            width: [2, 3],
            mode: PadMode::Edge,
            value: 0.0,
        },
        PadSpec {
            channels: [0, 0],
            height: [4, 3],
            width: [3, 3],
            mode: PadMode::Reflect,
            value: 0.0,
        },
    ] {
        let expected = pad::reference(&spec, &input, n, shape);
        let src = storage(gpu, &input);
        let dst = output(gpu, expected.len());
        let step = pad::prepare(Bind::new(gpu, &s.kernels, "pad"), &spec, &src, &dst, shape);
        assert_eq!(
            run_f32(gpu, &step, n, &dst, expected.len()),
            expected,
            "{spec:?}"
        );
    }
}

/// Edge clamp copies values: exact. Items whose tile lies inside the image, reaches past each
/// border (negative corner, past the far side), at scale 2 with lost pixels, with pixels cut off
/// each border, and with no geometry.
#[test]
fn edge_clamp_matches_reference() {
    use batchwise::kernels::edge_clamp::{self, Geometry};
    use batchwise::model::{EdgeClampSpec, ItemShape};
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(61);
    let shape = ItemShape { c: 3, h: 13, w: 17 };
    let geometry: Vec<Geometry> = vec![
        [-3, -4, 20, 9],
        [5, 2, 9, 30],
        [0, 0, 0, 0],
        [-1, 6, 8, 8],
        [2, -2, 40, 40],
    ];
    let n = geometry.len() as u32;
    let input = common::random_vec(&mut rng, (n as u64 * shape.elements()) as usize, 1.0);
    let geometry_buffer = gpu.create_buffer_init(
        "geometry",
        bytemuck::cast_slice(&geometry),
        wgpu::BufferUsages::STORAGE,
    );
    for spec in [
        EdgeClampSpec {
            scale: 1,
            lost: 0,
            cut: 0,
        },
        EdgeClampSpec {
            scale: 2,
            lost: 3,
            cut: 0,
        },
        EdgeClampSpec {
            scale: 2,
            lost: 1,
            cut: 2,
        },
        // Padding (a step padding its own input on a whole image): a negative cut, and pixels
        // before the tile's first (a negative lost).
        EdgeClampSpec {
            scale: 2,
            lost: -1,
            cut: -3,
        },
        EdgeClampSpec {
            scale: 1,
            lost: 2,
            cut: -2,
        },
    ] {
        let expected = edge_clamp::reference(spec, &input, &geometry, shape);
        assert_ne!(expected, input, "{spec:?}: some items must be clamped");
        assert_eq!(
            expected.len() as u64,
            n as u64 * spec.output(shape).elements()
        );
        let src = storage(gpu, &input);
        let dst = output(gpu, expected.len());
        let bind = Bind::new(gpu, &s.kernels, "edge clamp");
        let step = edge_clamp::prepare(bind, spec, &src, &dst, &geometry_buffer, shape);
        assert_eq!(
            run_f32(gpu, &step, n, &dst, expected.len()),
            expected,
            "{spec:?}"
        );
    }
}

/// Padding a tile that holds its whole image replicates the image's edge: the reference against
/// a padding written out by hand (image 4x3 at scale 1, its tile 6x5 from (-1, -1), padded by 2).
#[test]
fn edge_clamp_pads_a_whole_image_with_its_edge() {
    use batchwise::kernels::edge_clamp;
    use batchwise::model::{EdgeClampSpec, ItemShape};
    let (w, h) = (4i64, 3i64);
    let shape = ItemShape { c: 1, h: 5, w: 6 };
    // Tile pixel (x, y) is image pixel (x - 1, y - 1); outside the image it holds junk.
    let input: Vec<f32> = (0..30)
        .map(|i| {
            let (x, y) = (i % 6 - 1, i / 6 - 1);
            match (0..w).contains(&x) && (0..h).contains(&y) {
                true => (10 * y + x) as f32,
                false => -1.0,
            }
        })
        .collect();
    let spec = EdgeClampSpec {
        scale: 1,
        lost: 0,
        cut: -2,
    };
    let got = edge_clamp::reference(spec, &input, &[[-1, -1, 4, 3]], shape);
    // Output pixel (x, y) is image pixel (x - 3, y - 3), clamped into the image.
    let expected: Vec<f32> = (0..9 * 10)
        .map(|i| {
            let (x, y) = ((i % 10 - 3).clamp(0, w - 1), (i / 10 - 3).clamp(0, h - 1));
            (10 * y + x) as f32
        })
        .collect();
    assert_eq!(got, expected);
}

/// Max is exact; averages of at most 9 values in f32 against f64: 1e-6.
#[test]
fn pool2d_matches_reference() {
    use batchwise::kernels::pool2d::{self};
    use batchwise::model::Pool2dSpec;
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(39);
    let (n, c, h, w) = (2u32, 3u32, 9u32, 8u32);
    let input = common::random_vec(&mut rng, (n * c * h * w) as usize, 1.0);
    let base = Pool2dSpec {
        average: false,
        k: [2, 2],
        stride: [2, 2],
        pads: [0; 4],
        dilation: [1, 1],
        ceil_mode: false,
        count_include_pad: false,
    };
    for spec in [
        base.clone(),
        Pool2dSpec {
            k: [3, 3],
            pads: [1, 1, 1, 1],
            ceil_mode: true,
            ..base.clone()
        },
        Pool2dSpec {
            average: true,
            k: [3, 2],
            stride: [2, 1],
            pads: [1, 0, 1, 1],
            ..base.clone()
        },
        Pool2dSpec {
            average: true,
            count_include_pad: true,
            k: [3, 3],
            pads: [1; 4],
            ceil_mode: true,
            ..base.clone()
        },
        Pool2dSpec {
            dilation: [2, 2],
            k: [2, 2],
            stride: [1, 1],
            ..base.clone()
        },
    ] {
        let expected = pool2d::reference(&spec, &input, n * c, h, w);
        let src = storage(gpu, &input);
        let dst = output(gpu, expected.len());
        let step = pool2d::prepare(
            Bind::new(gpu, &s.kernels, "pool"),
            &spec,
            &src,
            &dst,
            c,
            h,
            w,
        );
        let got = run_f32(gpu, &step, n, &dst, expected.len());
        let worst = common::max_abs_diff(&got, &expected);
        assert!(worst <= 1e-6, "{spec:?}: max diff {worst}");
    }
    // 2x2 at stride 2 on planes of a width a multiple of 8: pool2x2.wgsl, 4 outputs an invocation
    // (max exact; the mean's f32 sums of 4 within 1e-6 of the f64 reference as above).
    let (h, w) = (6u32, 24u32);
    let input = common::random_vec(&mut rng, (n * c * h * w) as usize, 1.0);
    for average in [false, true] {
        let spec = Pool2dSpec {
            average,
            ..base.clone()
        };
        assert!(pool2d::is_2x2(&spec, h, w) && !pool2d::is_2x2(&spec, 9, 8));
        let expected = pool2d::reference(&spec, &input, n * c, h, w);
        let src = storage(gpu, &input);
        let dst = output(gpu, expected.len());
        let cx = Bind::new(gpu, &s.kernels, "pool 2x2");
        let step = pool2d::prepare(cx, &spec, &src, &dst, c, h, w);
        let got = run_f32(gpu, &step, n, &dst, expected.len());
        let worst = common::max_abs_diff(&got, &expected);
        assert!(worst <= 1e-6, "{spec:?} on {h}x{w}: max diff {worst}");
    }
}

/// Activations against f64 references, each a one-step elementwise program (as a lone Unary layer
/// runs): items of 189 values (one an invocation) and of 188 (4 an invocation, `is_vec4`).
/// exp/tanh on GPUs are accurate to a few ulp (WGSL allows more for large inputs), and erf is a
/// polynomial good to 1.5e-7, so 2e-6 absolute plus 1e-5 relative; an error in a formula moves
/// values by far more.
#[test]
fn unary_matches_reference() {
    use batchwise::kernels::elementwise;
    use batchwise::model::{ElementwiseProgram, ElementwiseStep, ItemShape, Operand, UnaryOp};
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(34);
    let n = 2u32;
    for (op, len) in UnaryOp::all()
        .into_iter()
        .flat_map(|op| [(op, 189u32), (op, 188), (op, 184)])
    {
        // Each op on inputs where it is defined; sin and cos within [-pi, pi], where WGSL bounds
        // their error (2^-11 absolute).
        let input: Vec<f32> = common::random_vec(&mut rng, (n * len) as usize, 4.0)
            .into_iter()
            .map(|x| match op {
                UnaryOp::Log | UnaryOp::Sqrt => x.abs() + 0.05,
                UnaryOp::Sin | UnaryOp::Cos => x * 0.75,
                _ => x,
            })
            .collect();
        let tolerance = |e: f32| match op {
            UnaryOp::Sin | UnaryOp::Cos => 4.9e-4,
            _ => 2e-6 + 1e-5 * e.abs(),
        };
        let expected: Vec<f32> = input.iter().map(|&x| op.apply(x)).collect();
        let src = storage(gpu, &input);
        let dst = output(gpu, expected.len());
        let program = ElementwiseProgram::new(vec![ElementwiseStep::Unary(op, Operand::Input(0))]);
        let shape = ItemShape { c: len, h: 1, w: 1 };
        assert_eq!(
            elementwise::is_vec4(&program, &[shape], shape),
            len % 4 == 0
        );
        // 8 values an invocation on a CPU adapter (lavapipe) for 184, 4 for 188, 1 for 189.
        let eight = s.kernels.eight_a_load;
        let per = elementwise::per_invocation(&program, &[shape], shape, eight);
        let want = match len {
            _ if eight && len % 8 == 0 => 8,
            _ if len % 4 == 0 => 4,
            _ => 1,
        };
        assert_eq!(per, want, "values an invocation on {len}");
        let cx = Bind::new(gpu, &s.kernels, "unary");
        let step = elementwise::prepare(cx, &program, &[(&src, shape)], shape, &dst);
        let got = run_f32(gpu, &step, n, &dst, expected.len());
        for (x, (g, e)) in input.iter().zip(got.iter().zip(&expected)) {
            assert!(
                (g - e).abs() <= tolerance(*e),
                "{op:?}({x}) on {len}: {g} vs {e}"
            );
        }
    }
}

/// A fused elementwise program (generated kernel) against its CPU reference, for every unary op
/// between binary ops, inputs broadcast per channel and per plane, one value and 4 an
/// invocation: the same tolerance as `unary_matches_reference` (each op rounds once in f32, as
/// the reference's steps do), 2^-11 for sin / cos.
#[test]
fn fused_elementwise_matches_reference() {
    use batchwise::kernels::elementwise;
    use batchwise::model::{
        BinaryOp, ElementwiseProgram, ElementwiseStep, ItemShape, Operand, UnaryOp,
    };
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(35);
    let n = 2u32;
    // Planes of 35 pixels (one an invocation), of 12 (4 an invocation: `is_vec4`) and of 24 (8 on
    // a CPU adapter: `per_invocation`).
    let planes = [(5, 7), (2, 6), (4, 6)];
    for (op, (h, w)) in UnaryOp::all()
        .into_iter()
        .flat_map(|op| planes.map(|p| (op, p)))
    {
        let out = ItemShape { c: 3, h, w };
        let shapes = [
            out,
            ItemShape { c: 3, h: 1, w: 1 },
            ItemShape { c: 1, h, w },
        ];
        let (i, st) = (Operand::Input, Operand::Step);
        let program = ElementwiseProgram::new(vec![
            ElementwiseStep::Binary(BinaryOp::Mul, i(0), i(1)),
            ElementwiseStep::Unary(op, st(0)),
            ElementwiseStep::Binary(BinaryOp::Sub, st(1), i(2)),
            ElementwiseStep::Binary(BinaryOp::Max, st(2), st(1)),
        ]);
        assert_eq!(elementwise::is_vec4(&program, &shapes, out), h * w % 4 == 0);
        let per = elementwise::per_invocation(&program, &shapes, out, s.kernels.eight_a_load);
        assert_eq!(per == 8, s.kernels.eight_a_load && h * w % 8 == 0);
        let data: Vec<Vec<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(k, sh)| {
                let v = common::random_vec(&mut rng, (n as u64 * sh.elements()) as usize, 2.0);
                v.into_iter()
                    .map(|x| match (op, k) {
                        (UnaryOp::Log | UnaryOp::Sqrt, 0 | 1) => x.abs() + 0.05,
                        (UnaryOp::Sin | UnaryOp::Cos, 0 | 1) => x * 0.85,
                        _ => x,
                    })
                    .collect()
            })
            .collect();
        let inputs: Vec<(&[f32], ItemShape)> = data
            .iter()
            .zip(shapes)
            .map(|(d, sh)| (&d[..], sh))
            .collect();
        let expected = elementwise::reference(&program, &inputs, out, n);
        let buffers: Vec<_> = data.iter().map(|d| storage(gpu, d)).collect();
        let bound: Vec<(&wgpu::Buffer, ItemShape)> = buffers
            .iter()
            .zip(shapes)
            .map(|(b, sh)| (&**b, sh))
            .collect();
        let dst = output(gpu, expected.len());
        let step = elementwise::prepare(
            Bind::new(gpu, &s.kernels, "fused"),
            &program,
            &bound,
            out,
            &dst,
        );
        let got = run_f32(gpu, &step, n, &dst, expected.len());
        let tolerance = |e: f32| match op {
            UnaryOp::Sin | UnaryOp::Cos => 4.9e-4,
            _ => 2e-6 + 1e-5 * e.abs(),
        };
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= tolerance(*e), "{op:?}: {g} vs {e}");
        }
    }
}

/// Pow of negative bases by whole exponents (NAFNet's `(x - mean).pow(2)`): defined, the sign
/// of an odd power kept, in a fused program (one, 4 and 8 values an invocation) and in the
/// kernel of a constant operand (binary.wgsl); WGSL's pow alone is exp2(y * log2(x)), NaN for a
/// negative x. 1e-5 relative, as `nd_binary_matches_reference` (pow is exp2 and log2 in f32).
#[test]
fn pow_takes_negative_bases_with_whole_exponents() {
    use batchwise::kernels::{binary, elementwise};
    use batchwise::model::{BinaryOp, ElementwiseProgram, ElementwiseStep, ItemShape, Operand};
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(36);
    let n = 2u32;
    let exponents = ItemShape { c: 3, h: 1, w: 1 };
    // The constant shared by the items (binary.wgsl), and one per item (the fused program).
    let e = storage(gpu, &[2.0, 3.0, -1.0]);
    let per_item = storage(gpu, &[2.0, 3.0, -1.0, 2.0, 3.0, -1.0]);
    for (h, w) in [(5, 7), (2, 6), (4, 6)] {
        let out = ItemShape { c: 3, h, w };
        let x = common::random_vec(&mut rng, (n as u64 * out.elements()) as usize, 2.0);
        let expected: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| v.powf([2.0, 3.0, -1.0][i / (h * w) as usize % 3]))
            .collect();
        assert!(expected.iter().all(|v| v.is_finite()));
        let bx = storage(gpu, &x);
        let program = ElementwiseProgram::new(vec![ElementwiseStep::Binary(
            BinaryOp::Pow,
            Operand::Input(0),
            Operand::Input(1),
        )]);
        let dst = output(gpu, expected.len());
        let inputs = [(&*bx, out), (&*per_item, exponents)];
        let fused = elementwise::prepare(
            Bind::new(gpu, &s.kernels, "pow"),
            &program,
            &inputs,
            out,
            &dst,
        );
        let dst2 = output(gpu, expected.len());
        let constant = binary::prepare_shared(
            Bind::new(gpu, &s.kernels, "pow"),
            BinaryOp::Pow,
            (&bx, out, false),
            (&e, exponents, true),
            &dst2,
        );
        for (kernel, step, dst) in [("fused", &fused, &dst), ("binary", &constant, &dst2)] {
            let got = run_f32(gpu, step, n, dst, expected.len());
            for (g, e) in got.iter().zip(&expected) {
                assert!(
                    (g - e).abs() <= 1e-5 * e.abs(),
                    "{kernel} {h}x{w}: {g} vs {e}"
                );
            }
        }
    }
}

/// Across the channels at each pixel (`LayerOp::AcrossChannels`): every reduction over 5
/// channels and the norm over them, on planes of 35 pixels (one an invocation) and 24 (4), two
/// items, random inputs, against the f64 reference: 1e-5 relative plus 1e-5 absolute (sums of 5
/// values in f32, a square root; products and exponentials relative only). The norm also with a
/// random scale and shift per channel.
#[test]
fn across_channels_matches_reference() {
    use batchwise::kernels::across_channels;
    use batchwise::model::{AcrossChannels, ItemShape, ReduceOp};
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(54);
    let n = 2u32;
    let ops = ReduceOp::ALL
        .map(AcrossChannels::Reduce)
        .into_iter()
        .chain([AcrossChannels::Normalize { epsilon: 1e-5 }]);
    for (op, (h, w)) in ops.flat_map(|op| [(5, 7), (4, 6)].map(|p| (op, p))) {
        let shape = ItemShape { c: 5, h, w };
        assert_eq!(across_channels::per_invocation(shape) == 4, h * w % 4 == 0);
        let input: Vec<f32> =
            common::random_vec(&mut rng, (n as u64 * shape.elements()) as usize, 1.0)
                .into_iter()
                .map(|x| match op {
                    AcrossChannels::Reduce(ReduceOp::LogSum) => x.abs() + 0.1,
                    AcrossChannels::Reduce(ReduceOp::Prod) => 0.8 + 0.4 * x.abs(),
                    _ => x,
                })
                .collect();
        let expected = across_channels::reference(op, &input, shape, n);
        let src = storage(gpu, &input);
        let dst = output(gpu, expected.len());
        let label = "across channels";
        let bind = || Bind::new(gpu, &s.kernels, label);
        let step = across_channels::prepare(bind(), op, &src, &dst, shape, None);
        let got = run_f32(gpu, &step, n, &dst, expected.len());
        let relative = matches!(
            op,
            AcrossChannels::Reduce(ReduceOp::Prod | ReduceOp::LogSumExp)
        );
        let check = |got: &[f32], expected: &[f32], what: &str| {
            for (g, e) in got.iter().zip(expected) {
                let tol = 1e-5 * e.abs() + if relative { 0.0 } else { 1e-5 };
                assert!((g - e).abs() <= tol, "{op:?} {what} {h}x{w}: {g} vs {e}");
            }
        };
        check(&got, &expected, "");
        // The norm with its own scale and shift per channel (a layer norm's affine).
        if let AcrossChannels::Normalize { .. } = op {
            let affine = common::random_vec(&mut rng, 2 * shape.c as usize, 1.5);
            let mut expected = expected.clone();
            across_channels::affine_reference(&mut expected, shape, &affine);
            let affine = storage(gpu, &affine);
            let step = across_channels::prepare(bind(), op, &src, &dst, shape, Some(&affine));
            check(
                &run_f32(gpu, &step, n, &dst, expected.len()),
                &expected,
                "affine",
            );
        }
    }
}

/// Fused channel slices (`channel_slices`): a SimpleGate, the first 3 channels of a 6-channel
/// map times the last 3, read in place, on planes of 35 (one value an invocation), 12 (4) and
/// 24 (8 on a CPU adapter), two items; against products computed here: exact (one product per
/// element, on both sides in f32).
#[test]
fn fused_elementwise_reads_channel_slices_in_place() {
    use batchwise::kernels::elementwise;
    use batchwise::model::{BinaryOp, ElementwiseProgram, ElementwiseStep, ItemShape, Operand};
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(38);
    let n = 2usize;
    for (h, w) in [(5u32, 7u32), (3, 4), (4, 6)] {
        let plane = (h * w) as usize;
        let (stored, out) = (ItemShape { c: 6, h, w }, ItemShape { c: 3, h, w });
        let x = common::random_vec(&mut rng, n * 6 * plane, 1.0);
        let expected: Vec<f32> = (0..n * 3 * plane)
            .map(|i| {
                let (item, rest) = (i / (3 * plane), i % (3 * plane));
                let at = item * 6 * plane + rest;
                x[at] * x[at + 3 * plane]
            })
            .collect();
        let mut program = ElementwiseProgram::new(vec![ElementwiseStep::Binary(
            BinaryOp::Mul,
            Operand::Input(0),
            Operand::Input(1),
        )]);
        program.channel_slices = vec![(0, 3), (3, 3)];
        let bx = storage(gpu, &x);
        let dst = output(gpu, expected.len());
        let inputs = [(&*bx, stored), (&*bx, stored)];
        let step = elementwise::prepare(
            Bind::new(gpu, &s.kernels, "gate"),
            &program,
            &inputs,
            out,
            &dst,
        );
        let got = run_f32(gpu, &step, n as u32, &dst, expected.len());
        assert_eq!(got, expected, "{h}x{w}");
        let refs = [(&x[..], stored), (&x[..], stored)];
        assert_eq!(
            elementwise::reference(&program, &refs, out, n as u32),
            expected
        );
    }
}

/// Fused channel Pads (`padded_channels`): BlazeFace's `relu(y + pad(x))` with x of 5 of the
/// output's 7 channels (also on planes of 24 pixels, 4 values an invocation), and a padded input
/// broadcast along its rows (1 own channel of 4); and the flat kernel; against the CPU reference: one add and a ReLU per element in f32, as the
/// reference computes them: exact.
#[test]
fn fused_elementwise_reads_padded_channels_as_zeros() {
    use batchwise::kernels::elementwise;
    use batchwise::model::{
        BinaryOp, ElementwiseProgram, ElementwiseStep, ItemShape, Operand, UnaryOp,
    };
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(38);
    let n = 3u32;
    let (i, st) = (Operand::Input, Operand::Step);
    let relu = UnaryOp::LeakyRelu { alpha: 0.0 };
    for (shapes, padded, out) in [
        (
            vec![
                ItemShape { c: 7, h: 9, w: 11 },
                ItemShape { c: 5, h: 9, w: 11 },
            ],
            vec![0, 2],
            ItemShape { c: 7, h: 9, w: 11 },
        ),
        (
            vec![
                ItemShape { c: 1, h: 1, w: 13 },
                ItemShape { c: 4, h: 6, w: 13 },
            ],
            vec![3, 0],
            ItemShape { c: 4, h: 6, w: 13 },
        ),
        // The first case on planes of 24 pixels: 4 values an invocation (`is_vec4`).
        (
            vec![
                ItemShape { c: 7, h: 4, w: 6 },
                ItemShape { c: 5, h: 4, w: 6 },
            ],
            vec![0, 2],
            ItemShape { c: 7, h: 4, w: 6 },
        ),
        // Nothing padded or broadcast: the flat kernel (`elementwise::is_flat`).
        (
            vec![ItemShape { c: 3, h: 7, w: 9 }; 2],
            vec![0, 0],
            ItemShape { c: 3, h: 7, w: 9 },
        ),
    ] {
        let flat = elementwise::is_flat(&ElementwiseProgram::new(Vec::new()), &shapes, out)
            && padded == [0, 0];
        assert_eq!(flat, shapes[0] == shapes[1]);
        let program = ElementwiseProgram {
            steps: vec![
                ElementwiseStep::Binary(BinaryOp::Add, i(0), i(1)),
                ElementwiseStep::Unary(relu, st(0)),
            ],
            padded_channels: padded.clone(),
            channel_slices: Vec::new(),
        };
        let data: Vec<Vec<f32>> = shapes
            .iter()
            .map(|sh| common::random_vec(&mut rng, (n as u64 * sh.elements()) as usize, 1.0))
            .collect();
        let inputs: Vec<(&[f32], ItemShape)> = data
            .iter()
            .zip(&shapes)
            .map(|(d, sh)| (&d[..], *sh))
            .collect();
        let expected = elementwise::reference(&program, &inputs, out, n);
        // The padded channels are zeros: past them the output is relu(the other input).
        let plane = (out.h * out.w) as usize;
        let k = usize::from(padded[0] == 0);
        let own = shapes[k].c as usize;
        let other = &data[1 - k];
        for (at, e) in expected.iter().enumerate() {
            let c = at / plane % out.c as usize;
            if c >= own && shapes[1 - k] == out {
                assert_eq!(*e, other[at].max(0.0));
            }
        }
        let buffers: Vec<_> = data.iter().map(|d| storage(gpu, d)).collect();
        let bound: Vec<(&wgpu::Buffer, ItemShape)> = buffers
            .iter()
            .zip(&shapes)
            .map(|(b, sh)| (&**b, *sh))
            .collect();
        let dst = output(gpu, expected.len());
        let step = elementwise::prepare(
            Bind::new(gpu, &s.kernels, "padded"),
            &program,
            &bound,
            out,
            &dst,
        );
        let got = run_f32(gpu, &step, n, &dst, expected.len());
        assert_eq!(got, expected, "padded {padded:?}");
    }
}

/// Means of random planes against an f64 reference, with both entry points: one invocation per
/// plane (`main`) and a workgroup per plane (`plane`: 64 partial sums added in a tree; a plane of
/// 127x129, not a multiple of 64, and one smaller than 64). f32 sums of n values in [-1, 1] err
/// by at most about n * 2^-24 * max |partial sum|: 1e-6 on the mean for both.
#[test]
fn global_avg_pool_matches_reference() {
    use batchwise::kernels::global_avg_pool::{self, Entry, PLANE_MIN_PIXELS};
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(36);
    // Planes of an odd count (one value a load), a multiple of 4 (4 a load: 5 x 12) and of 8 (8
    // on a CPU adapter, else 4).
    let cases = [
        (3u32, 70u32, 63u32),
        (2, 5, 127 * 129),
        (2, 3, PLANE_MIN_PIXELS),
        (3, 9, 5 * 12),
        (2, 70, 16 * 16),
    ];
    let eight = s.kernels.eight_a_load;
    let loads: Vec<u32> = cases
        .iter()
        .map(|&(_, _, px)| global_avg_pool::per_load(px, eight))
        .collect();
    let wide = if eight { 8 } else { 4 };
    assert_eq!(loads, [1, 1, wide, 4, wide]);
    let entries = [Entry::Loop, Entry::Plane];
    for ((n, c, pixels), entry) in cases.into_iter().flat_map(|c| entries.map(|e| (c, e))) {
        let input = common::random_vec(&mut rng, (n * c * pixels) as usize, 1.0);
        let expected = global_avg_pool::reference(&input, pixels as usize);
        let src = storage(gpu, &input);
        let dst = output(gpu, expected.len());
        let cx = Bind::new(gpu, &s.kernels, "gap");
        let step = global_avg_pool::prepare_entry(cx, &src, &dst, c, pixels, entry);
        let got = run_f32(gpu, &step, n, &dst, expected.len());
        let worst = common::max_abs_diff(&got, &expected);
        assert!(worst <= 1e-6, "{entry:?}, {pixels} px: max diff {worst}");
    }
}

#[test]
fn copy_channels_matches_reference() {
    use batchwise::kernels::copy_channels::{self, ChannelCopy};
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(35);
    // Concat's second input into channels 3..7 of 9, and a Split's slice of channels 2..5 of 7;
    // a detector's flattened heads (8192 channels of 1x1) and a run of several dispatch rows;
    // planes of 30 values (one a load), 12 (4: `per_load`) and 24000 (8 on a CPU adapter).
    let copy = |src_c, src_offset, dst_c, dst_offset, count| ChannelCopy {
        src_c,
        src_offset,
        dst_c,
        dst_offset,
        count,
    };
    for (copy, (n, h, w)) in [
        (copy(4, 0, 9, 3, 4), (2u32, 5u32, 6u32)),
        (copy(7, 2, 3, 0, 3), (2, 5, 6)),
        (copy(8192, 0, 14336, 6144, 8192), (3, 1, 1)),
        (copy(5, 1, 4, 1, 3), (2, 150, 160)),
        (copy(6, 3, 5, 1, 3), (2, 3, 4)),
    ] {
        let per = copy_channels::per_load(h * w, s.kernels.eight_a_load);
        assert_eq!(
            per == 4,
            h * w == 12 || (h * w == 24000 && !s.kernels.eight_a_load)
        );
        let plane = (h * w) as usize;
        let src_data = common::random_vec(&mut rng, (n * copy.src_c) as usize * plane, 1.0);
        let before = common::random_vec(&mut rng, (n * copy.dst_c) as usize * plane, 1.0);
        let mut expected = before.clone();
        copy_channels::reference(copy, &src_data, &mut expected, n, plane);
        let src = storage(gpu, &src_data);
        let dst = storage(gpu, &before);
        let step =
            copy_channels::prepare(Bind::new(gpu, &s.kernels, "copy"), copy, &src, &dst, h, w);
        assert_eq!(
            run_f32(gpu, &step, n, &dst, expected.len()),
            expected,
            "{copy:?}"
        );
    }
}

#[test]
fn pack_matches_reference() {
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(21);
    let tiles = 5;
    let maps = [
        PixelMapping::UNIT,
        PixelMapping {
            scale: [2.0 / 255.0, 1.5 / 255.0, 1.0 / 128.0],
            offset: [-1.0, -0.5, -127.0 / 128.0],
            bgr: true,
        },
    ];
    // Tiles of an odd count of pixels (one a load), a multiple of 4 (4 a load: 12 x 15) and of 8
    // (8 a load on a CPU adapter, else 4: 24 x 16); 16-bit pixels one a load.
    let eight = s.kernels.eight_a_load;
    let cases = [
        (37 * 29, PixelDepth::Eight, 1),
        (12 * 15, PixelDepth::Eight, 4),
        (24 * 16, PixelDepth::Eight, if eight { 8 } else { 4 }),
        (24 * 16, PixelDepth::Sixteen, 1),
        (37 * 29, PixelDepth::Sixteen, 1),
    ];
    for (pixels, depth, per) in cases {
        assert_eq!(pack::per_invocation(pixels as u32, depth, eight), per);
        let src: Vec<u32> = (0..pixels * tiles * depth.words())
            .map(|_| rng.random())
            .collect();
        for map in maps {
            let expected = pack::reference(&src, pixels, &map, depth);
            let src_buf = gpu.create_buffer_init(
                "pixels",
                bytemuck::cast_slice(&src),
                wgpu::BufferUsages::STORAGE,
            );
            let dst = output(gpu, expected.len());
            let step = pack::prepare(
                Bind::new(gpu, &s.kernels, "pack"),
                &src_buf,
                &dst,
                pixels as u32,
                tiles as u32,
                &map,
                depth,
            );
            let got: Vec<f32> =
                bytemuck::pod_collect_to_vec(&run(gpu, &step, tiles as u32, &dst, expected.len()));
            // One rounding of a product and a sum (and a division by 257 for 16-bit).
            let worst = common::max_abs_diff(&got, &expected);
            assert!(
                worst <= 1e-5,
                "pack {pixels} {depth:?} {map:?}: max diff {worst}"
            );
        }
    }
}

#[test]
fn unpack_matches_reference() {
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(22);
    let (pixels, tiles) = (41 * 23, 4);
    // Values spread beyond both mappings' ranges so clamping is exercised at both ends.
    let src: Vec<f32> = (0..4 * pixels * tiles)
        .map(|_| rng.random_range(-1.2f32..1.2))
        .collect();
    let maps = [
        PixelMapping::UNIT,
        PixelMapping {
            scale: [2.0 / 255.0; 3],
            offset: [-1.0; 3],
            bgr: true,
        },
    ];
    // RGB, grey (one channel in R, G and B) and RGBA (the fourth channel is alpha).
    for (channels, depth, map) in [3, 1, 4].into_iter().flat_map(|c| {
        [PixelDepth::Eight, PixelDepth::Sixteen]
            .into_iter()
            .flat_map(move |d| maps.map(|m| (c, d, m)))
    }) {
        let src = &src[..channels * pixels * tiles];
        let out_map = unpack::inverse(&map);
        let expected = unpack::reference(src, pixels, channels, &out_map, depth);
        let src_buf = storage(gpu, src);
        let dst = output(gpu, expected.len());
        let step = unpack::prepare(
            Bind::new(gpu, &s.kernels, "unpack"),
            &src_buf,
            &dst,
            unpack::Unpacked::new(pixels as u32, tiles as u32, channels as u32),
            &out_map,
            depth,
        );
        let bytes = run(gpu, &step, tiles as u32, &dst, expected.len());
        // Channel values: bytes, or 16-bit halves.
        let values = |words: &[u32]| -> Vec<i32> {
            match depth {
                PixelDepth::Eight => words
                    .iter()
                    .flat_map(|w| w.to_le_bytes().map(i32::from))
                    .collect(),
                PixelDepth::Sixteen => words
                    .iter()
                    .flat_map(|w| [(w & 0xffff) as i32, (w >> 16) as i32])
                    .collect(),
            }
        };
        let got = values(&bytemuck::pod_collect_to_vec::<u8, u32>(&bytes));
        let want = values(&expected);
        // Round half to even on both sides; a product computed with or without a fused
        // multiply-add can land on the other side of a half: off by one at most, rarely.
        let mut off_by_one = 0;
        for (g, e) in got.iter().zip(&want) {
            let d = (g - e).abs();
            assert!(d <= 1, "unpack {channels} {depth:?} {map:?}: {g} vs {e}");
            off_by_one += d as usize;
        }
        assert!(
            off_by_one * 1000 <= got.len(),
            "unpack {channels} {depth:?} {map:?}: {off_by_one} values off by one"
        );
        let top = match depth {
            PixelDepth::Eight => 255,
            PixelDepth::Sixteen => 65535,
        };
        assert!(got.contains(&0) && got.contains(&top));
    }
}

/// Strided copies move values: exact. A 5-D transpose with a reversed axis (negative stride),
/// written at an offset into a larger output, and a constant (item stride 0) broadcast to every
/// item.
#[test]
fn nd_copy_matches_reference() {
    use batchwise::kernels::nd_copy::{self};
    use batchwise::model::CopySpec;
    use batchwise::model::contiguous_strides;
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(51);
    let dims = [2u32, 3, 4, 5, 6];
    let len: u32 = dims.iter().product();
    let strides: Vec<i64> = contiguous_strides(&dims)
        .iter()
        .map(|&x| x as i64)
        .collect();
    // Output axes: (4, 2, 0, 3 reversed, 1) of the input.
    let perm = [4usize, 2, 0, 3, 1];
    let out_dims: Vec<u32> = perm.iter().map(|&p| dims[p]).collect();
    let mut src_strides: Vec<i64> = perm.iter().map(|&p| strides[p]).collect();
    src_strides[3] = -src_strides[3];
    let spec = CopySpec {
        dims: out_dims.clone(),
        src_strides,
        src_offset: 4 * strides[3],
        dst_strides: contiguous_strides(&out_dims)
            .iter()
            .map(|&x| x as i64)
            .collect(),
        dst_offset: 7,
    };
    let out_len = len + 7;
    for (items, src_item) in [(3u32, len), (2, 0)] {
        let input = common::random_vec(&mut rng, (len * items.max(1)) as usize, 1.0);
        let src = storage(gpu, &input);
        let dst = storage(gpu, &vec![0.0; (out_len * items) as usize]);
        let step = nd_copy::prepare(
            Bind::new(gpu, &s.kernels, "nd_copy"),
            &spec,
            &src,
            src_item,
            &dst,
            out_len,
        );
        let got = run_f32(gpu, &step, items, &dst, (out_len * items) as usize);
        for i in 0..items as usize {
            let mut want = vec![0.0; out_len as usize];
            let from = if src_item == 0 { 0 } else { i * len as usize };
            spec.reference(&input[from..from + len as usize], &mut want);
            let at = i * out_len as usize;
            assert_eq!(&got[at..at + out_len as usize], &want[..], "item {i}");
        }
    }
}

/// Copies whose axes merge to one (a contiguous run, reversed: no division in the kernel) or two
/// (a 2-D transpose) and a single element: exact, each at an offset.
#[test]
fn nd_copy_of_few_axes_matches_reference() {
    use batchwise::kernels::nd_copy::{self};
    use batchwise::model::CopySpec;
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(54);
    let spec = |dims: &[u32], src_strides: &[i64], src_offset, dst_strides: &[i64]| CopySpec {
        dims: dims.to_vec(),
        src_strides: src_strides.to_vec(),
        src_offset,
        dst_strides: dst_strides.to_vec(),
        dst_offset: 3,
    };
    let len = 60u32;
    for spec in [
        spec(&[1, 4, 10], &[0, 10, 1], 5, &[0, 10, 1]),
        spec(&[50], &[-1], 55, &[1]),
        spec(&[6, 10], &[1, 6], 0, &[10, 1]),
        spec(&[1, 1], &[0, 0], 17, &[0, 0]),
    ] {
        let items = 2u32;
        let out_len = len + 3;
        let input = common::random_vec(&mut rng, (len * items) as usize, 1.0);
        let src = storage(gpu, &input);
        let dst = storage(gpu, &vec![0.0; (out_len * items) as usize]);
        let bind = Bind::new(gpu, &s.kernels, "nd_copy");
        let step = nd_copy::prepare(bind, &spec, &src, len, &dst, out_len);
        let got = run_f32(gpu, &step, items, &dst, (out_len * items) as usize);
        for i in 0..items as usize {
            let mut want = vec![0.0; out_len as usize];
            spec.reference(&input[i * len as usize..(i + 1) * len as usize], &mut want);
            let at = i * out_len as usize;
            assert_eq!(
                &got[at..at + out_len as usize],
                &want[..],
                "{spec:?}, item {i}"
            );
        }
    }
}

/// One f32 operation per element against the same operation in f32: exact but for pow, which
/// WGSL computes as exp2(y * log2(x)): 1e-5 relative.
#[test]
fn nd_binary_matches_reference() {
    use batchwise::kernels::nd_binary::{self};
    use batchwise::model::BinaryOp;
    use batchwise::model::NdBinarySpec;
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(52);
    let items = 2u32;
    // Broadcast both ways (4 dims in the kernel), the same shapes (1: no division), a bias over
    // the last axis (2), one element (0).
    let shapes: [(&[u32], &[u32]); 4] = [
        (&[2, 1, 4, 3, 5], &[3, 4, 1, 5]),
        (&[1, 7, 9], &[1, 7, 9]),
        (&[2, 5, 8], &[8]),
        (&[1, 1], &[1]),
    ];
    for (op, (a_dims, b_dims)) in BinaryOp::ALL
        .into_iter()
        .flat_map(|op| shapes.map(|s| (op, s)))
    {
        let spec = NdBinarySpec::new(op, a_dims, b_dims).unwrap();
        let (la, lb) = (
            a_dims.iter().product::<u32>() as usize,
            b_dims.iter().product::<u32>() as usize,
        );
        let mut a = common::random_vec(&mut rng, la * items as usize, 2.0);
        let b: Vec<f32> = common::random_vec(&mut rng, lb, 2.0)
            .into_iter()
            .map(|x| {
                if op == BinaryOp::Div {
                    x.abs() + 0.5
                } else {
                    x
                }
            })
            .collect();
        if op == BinaryOp::Pow {
            a.iter_mut().for_each(|x| *x = x.abs() + 0.1);
        }
        let count = spec.count() as usize;
        let (ga, gb) = (storage(gpu, &a), storage(gpu, &b));
        let dst = output(gpu, count * items as usize);
        // b is a constant shared by the items.
        let step = nd_binary::prepare(
            Bind::new(gpu, &s.kernels, "nd_binary"),
            &spec,
            &ga,
            la as u32,
            &gb,
            0,
            &dst,
        );
        let got = run_f32(gpu, &step, items, &dst, count * items as usize);
        for i in 0..items as usize {
            let want = spec.reference(&a[i * la..(i + 1) * la], &b);
            for (g, w) in got[i * count..(i + 1) * count].iter().zip(&want) {
                let tol = if op == BinaryOp::Pow {
                    1e-5 * w.abs()
                } else {
                    0.0
                };
                assert!(
                    (g - w).abs() <= tol,
                    "{op:?} {a_dims:?} {b_dims:?}: {g} vs {w}"
                );
            }
        }
    }
}

/// Sums of up to 60 f32 values against f64: 1e-5 relative plus 1e-5 absolute (products and
/// exponentials relative only).
#[test]
fn reduce_matches_reference() {
    use batchwise::kernels::reduce::{self};
    use batchwise::model::{ReduceOp, ReduceSpec};
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(53);
    let dims = vec![3u32, 4, 5, 3];
    let len: u32 = dims.iter().product();
    let items = 2u32;
    for axes in [vec![1usize, 3], vec![0], vec![0, 1, 2, 3], vec![2]] {
        for op in ReduceOp::ALL {
            let input: Vec<f32> = common::random_vec(&mut rng, (len * items) as usize, 1.0)
                .into_iter()
                .map(|x| match op {
                    ReduceOp::LogSum => x.abs() + 0.1,
                    ReduceOp::Prod => 0.8 + 0.4 * x.abs(),
                    _ => x,
                })
                .collect();
            let spec = ReduceSpec {
                op,
                dims: dims.clone(),
                axes: axes.clone(),
            };
            let count = spec.count() as usize;
            let src = storage(gpu, &input);
            let dst = output(gpu, count * items as usize);
            let step = reduce::prepare(Bind::new(gpu, &s.kernels, "reduce"), &spec, &src, &dst);
            let got = run_f32(gpu, &step, items, &dst, count * items as usize);
            for i in 0..items as usize {
                let want = spec.reference(&input[i * len as usize..(i + 1) * len as usize]);
                for (g, w) in got[i * count..(i + 1) * count].iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
                        "{op:?} over {axes:?}: {g} vs {w}"
                    );
                }
            }
        }
    }
}

/// exp and a sum of up to 7 terms per row: 1e-6 absolute plus 1e-5 relative.
#[test]
fn softmax_matches_reference() {
    use batchwise::kernels::softmax::{self};
    use batchwise::model::{SoftmaxKind, SoftmaxSpec};
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(54);
    let dims = [3u32, 7, 5];
    let len: usize = 105;
    let items = 2u32;
    for kind in [
        SoftmaxKind::Softmax,
        SoftmaxKind::LogSoftmax,
        SoftmaxKind::Hardmax,
    ] {
        for axis in 0..3 {
            let spec = SoftmaxSpec::along(kind, &dims, axis);
            let input = common::random_vec(&mut rng, len * items as usize, 3.0);
            let src = storage(gpu, &input);
            let dst = output(gpu, input.len());
            let step = softmax::prepare(Bind::new(gpu, &s.kernels, "softmax"), &spec, &src, &dst);
            let got = run_f32(gpu, &step, items, &dst, input.len());
            for i in 0..items as usize {
                let want = spec.reference(&input[i * len..(i + 1) * len]);
                for (g, w) in got[i * len..(i + 1) * len].iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-6 + 1e-5 * w.abs(),
                        "{kind:?} on axis {axis}: {g} vs {w}"
                    );
                }
            }
        }
    }
}

/// Mean and variance of 60 values in f32 (two passes) against f64: 1e-5 absolute plus 1e-5
/// relative on outputs of unit scale.
#[test]
fn normalize_matches_reference() {
    use batchwise::kernels::normalize::{self};
    use batchwise::model::NormSpec;
    let s = setup();
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(56);
    let items = 2u32;
    for spec in [
        NormSpec {
            rows: 6,
            len: 60,
            channels: 3,
            per_element: false,
            eps: 1e-5,
        },
        NormSpec {
            rows: 5,
            len: 60,
            channels: 1,
            per_element: true,
            eps: 1e-3,
        },
    ] {
        let len = (spec.rows * spec.len) as usize;
        let input: Vec<f32> = common::random_vec(&mut rng, len * items as usize, 2.0)
            .into_iter()
            .map(|x| x + 3.0)
            .collect();
        let affine = common::random_vec(&mut rng, 2 * spec.affine_len(), 1.0);
        let (src, ga) = (storage(gpu, &input), storage(gpu, &affine));
        let dst = output(gpu, input.len());
        let step = normalize::prepare(Bind::new(gpu, &s.kernels, "norm"), &spec, &src, &ga, &dst);
        let got = run_f32(gpu, &step, items, &dst, input.len());
        for i in 0..items as usize {
            let want = spec.reference(&input[i * len..(i + 1) * len], &affine);
            for (g, w) in got[i * len..(i + 1) * len].iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
                    "{spec:?}: {g} vs {w}"
                );
            }
        }
    }
}

/// Runs `layer` on `input` stored as float16 and compares with `expected` within 2e-2 absolute
/// plus 1e-2 relative.
fn assert_close_f16(
    gpu: &Gpu,
    bind: Bind,
    layer: &Conv2dLayer,
    input: &[f32],
    (n, h, w): (u32, u32, u32),
    expected: &[f32],
) {
    let halves: Vec<half::f16> = input.iter().map(|&x| half::f16::from_f32(x)).collect();
    let src = gpu.create_buffer_init(
        "f16 input",
        bytemuck::cast_slice(&halves),
        wgpu::BufferUsages::STORAGE,
    );
    let dst = output(gpu, expected.len() / 2 + 1);
    let step = layer.prepare(bind, &src, &dst, h, w);
    let bytes = run(gpu, &step, n, &dst, expected.len() / 2);
    let got: Vec<f32> = bytemuck::pod_collect_to_vec::<u8, half::f16>(&bytes)
        .into_iter()
        .map(half::f16::to_f32)
        .collect();
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() <= 2e-2 + 1e-2 * e.abs(),
            "element {i}: {g} vs {e}"
        );
    }
}

/// The float16 variants of conv2d (a 3x3) and gemm (a 1x1) (storage and arithmetic in f16)
/// against the f64 reference on inputs and weights rounded to f16: each of the up to 72 products
/// and partial sums rounds to 11 significant bits, so 2e-2 absolute plus 1e-2 relative on
/// outputs of order 1.
#[test]
fn conv2d_float16_matches_reference() {
    use batchwise::kernels::Precision;
    let s = setup();
    let gpu = &s.engine.gpu;
    if !gpu.device.features().contains(wgpu::Features::SHADER_F16) {
        eprintln!("skipped: the adapter has no SHADER_F16");
        return;
    }
    let kernels = Kernels::with_precision(gpu, Precision::F16);
    let mut rng = common::rng(71);
    let round = |v: Vec<f32>| -> Vec<f32> {
        v.into_iter()
            .map(|x| half::f16::from_f32(x).to_f32())
            .collect()
    };
    for (spec, (n, h, w), scale) in [
        (conv(8, 20, 3), (2u32, 11u32, 13u32), 0.3),
        (conv(48, 37, 1), (2, 7, 9), 0.15),
        (conv(16, 24, 1), (2, 8, 12), 0.25),
    ] {
        let spec = Conv2dSpec {
            activation: Activation::LeakyRelu { alpha: 0.1 },
            ..spec
        };
        let fan = (spec.in_c * spec.k_h * spec.k_w) as usize;
        let input = round(common::random_vec(
            &mut rng,
            (n * spec.in_c * h * w) as usize,
            1.0,
        ));
        let weights = round(common::random_vec(
            &mut rng,
            spec.out_c as usize * fan,
            scale,
        ));
        let bias = round(common::random_vec(&mut rng, spec.out_c as usize, 0.3));
        let expected = conv2d::reference(&spec, &input, n, h, w, &weights, &bias);
        let layer = Conv2dLayer::upload(gpu, "test", spec, &weights, &bias);
        let bind = Bind::new(gpu, &kernels, "test");
        assert_close_f16(gpu, bind, &layer, &input, (n, h, w), &expected);
    }
}
/// A 1x1 convolution (gemm.wgsl through `Conv2dLayer`) with a fused residual, on random inputs:
/// the residual of the output's channels, or (`skip_c`) of fewer (a fused channel Pad: the
/// channels past them add 0).
fn check_pointwise(
    s: &Setup,
    case: (u64, Conv2dSpec, u32, (u32, u32)),
    res: Residual,
    skip_c: Option<u32>,
) {
    use batchwise::kernels::gemm;
    let (seed, spec, n, (h, w)) = case;
    let gpu = &s.engine.gpu;
    let mut rng = common::rng(seed);
    let (ic, oc) = (spec.in_c, spec.out_c);
    let input = common::random_vec(&mut rng, (n * ic * h * w) as usize, 1.0);
    let weights = common::random_vec(&mut rng, (oc * ic) as usize, 1.0 / (ic as f32).sqrt());
    let bias = common::random_vec(&mut rng, oc as usize, 0.5);
    let skip_channels = skip_c.unwrap_or(oc);
    let skip = common::random_vec(&mut rng, (n * skip_channels * h * w) as usize, 1.0);
    let layout = gemm::Layout::planes(ic, oc, h * w).with_skip_channels(skip_channels);
    let expected = gemm::reference(
        &layout,
        (oc, ic),
        &weights,
        &bias,
        &spec.activation,
        Some((&skip, res)),
        &input,
        n,
    );
    let layer = Conv2dLayer::upload(gpu, "test", spec.clone(), &weights, &bias);
    let (src, dst, skip_buf) = (
        storage(gpu, &input),
        output(gpu, expected.len()),
        storage(gpu, &skip),
    );
    let bind = Bind::new(gpu, &s.kernels, "test");
    let io = conv2d::Operands {
        skip_c,
        ..Default::default()
    };
    let step = layer.prepare_placed(bind, [&src, &dst], [h, w], Some((&skip_buf, res)), io);
    let got = run_f32(gpu, &step, n, &dst, expected.len());
    assert_close(
        &got,
        &expected,
        &format!("1x1 {spec:?} {res:?} skip {skip_c:?} on {n}x{h}x{w}"),
    );
}

/// gemm on channel planes off the 8-value grid (`gemm_shifted.rs`, a CPU adapter): planes of 9,
/// 10, 11, 13, 14, 15 and 49 values (every `P mod 8` that is not a multiple of 4), items
/// folded, 3 input-channel chunks (first and last), both residuals and a residual of fewer
/// channels. Which kernel runs is asserted: one value a load where the input channels are not
/// in whole 8s, and on a GPU. A wrong pick of the values of a channel fails: they are its
/// neighbours'.
#[test]
fn gemm_on_planes_off_the_grid_matches_reference() {
    use batchwise::kernels::gemm::{self, GemmLayer};
    let s = setup();
    let gpu = &s.engine.gpu;
    let eight = s.kernels.eight_a_load;
    let before = Residual::BeforeActivation;
    let after = Residual::AfterActivation;
    for (seed, spec, n, hw, res, skip_c, shifted) in [
        (91, conv(320, 64, 1), 3, (7, 7), before, None, true),
        (92, conv(16, 40, 1), 2, (5, 3), after, None, true),
        (93, conv(24, 33, 1), 4, (3, 3), before, Some(20), true),
        (94, conv(1200, 32, 1), 2, (7, 7), after, None, true),
        (95, conv(8, 20, 1), 3, (2, 5), before, None, true),
        (96, conv(16, 24, 1), 2, (1, 11), after, None, true),
        (97, conv(40, 36, 1), 2, (13, 1), before, None, true),
        (98, conv(32, 28, 1), 2, (2, 7), after, Some(27), true),
        (99, conv(20, 40, 1), 2, (7, 7), before, None, false),
    ] {
        let spec = Conv2dSpec {
            activation: Activation::LeakyRelu { alpha: 0.1 },
            ..spec
        };
        let pixels = hw.0 * hw.1;
        let layout = gemm::Layout::planes(spec.in_c, spec.out_c, pixels)
            .with_skip_channels(skip_c.unwrap_or(spec.out_c));
        let zeros = vec![0.0; (spec.out_c * spec.in_c) as usize];
        let dims = (spec.out_c, spec.in_c);
        let layer = GemmLayer::upload(gpu, "gemm", dims, &zeros, &[], &spec.activation);
        let lane_loops = s.kernels.storage_loads_loop;
        let expected = match shifted && eight && lane_loops {
            true => gemm::Width::Shifted(pixels % 8),
            false => gemm::Width::One,
        };
        assert_eq!(
            layer.width(&layout, eight, lane_loops),
            expected,
            "case {seed}"
        );
        check_pointwise(&s, (seed, spec, n, hw), res, skip_c);
    }
}

/// gemm.wgsl with a residual of fewer channels than its output (BlazeFace's `relu(conv(x) +
/// pad(x))`, the Pad fused): 8, 4 and one q a load (which runs is asserted), items folded into q
/// and not, a 1x1 map (which gemv.wgsl would run but for the residual), channel counts off the
/// 4-value vectors, both residual orders. A residual read past its channels (or from the
/// output's item stride) fails: the values there are the next item's.
#[test]
fn gemm_with_fewer_residual_channels_matches_reference() {
    use batchwise::kernels::gemm;
    let s = setup();
    let relu = Activation::LeakyRelu { alpha: 0.0 };
    let eight = s.kernels.eight_a_load;
    for (seed, spec, n, hw, skip_c, res, width) in [
        (
            81,
            conv(24, 28, 1),
            3,
            (16, 16),
            24,
            Residual::BeforeActivation,
            gemm::Width::Eight,
        ),
        (
            82,
            conv(42, 48, 1),
            2,
            (14, 14),
            42,
            Residual::AfterActivation,
            gemm::Width::Four,
        ),
        (
            83,
            conv(13, 40, 1),
            2,
            (5, 7),
            3,
            Residual::BeforeActivation,
            gemm::Width::One,
        ),
        (
            84,
            conv(88, 96, 1),
            4,
            (2, 2),
            88,
            Residual::BeforeActivation,
            gemm::Width::Four,
        ),
        (
            85,
            conv(16, 37, 1),
            2,
            (36, 36),
            30,
            Residual::AfterActivation,
            gemm::Width::Eight,
        ),
        (
            86,
            conv(20, 33, 1),
            3,
            (1, 1),
            31,
            Residual::BeforeActivation,
            gemm::Width::One,
        ),
    ] {
        let spec = Conv2dSpec {
            activation: relu.clone(),
            ..spec
        };
        let layout = gemm::Layout::planes(spec.in_c, spec.out_c, hw.0 * hw.1);
        let layout = layout.with_skip_channels(skip_c);
        let expected = match width {
            gemm::Width::Eight if !eight => gemm::Width::Four,
            w => w,
        };
        let chosen = layout.width(eight, gemm::blocking_for(spec.out_c));
        assert_eq!(chosen, expected, "case {seed}");
        check_pointwise(&s, (seed, spec, n, hw), res, Some(skip_c));
    }
}

/// gemm.wgsl: 1x1 convolutions (channels and pixel counts off the 32-channel and 8-pixel blocks,
/// batches, several blocks in one window or a block a dispatch with the input channels
/// unrolled, input channels in two windows, PRelu, both residuals)
/// and a product laid out as Gemm's (A's rows as q, transposed). Tolerance as conv2d's (module
/// docs): up to 600 f32 products a sum, weights scaled by 1/sqrt(fan-in).
#[test]
fn gemm_matches_reference() {
    use batchwise::kernels::gemm::{self, GemmLayer};
    let s = setup();
    let leaky = Activation::LeakyRelu { alpha: 0.1 };
    let mut rng = common::rng(61);
    let prelu = Activation::PRelu {
        slopes: common::random_vec(&mut rng, 70, 0.5),
    };
    let gpu = &s.engine.gpu;
    let mut unrolled = [false, false];
    for (seed, spec, n, hw, res) in [
        (1, conv(20, 37, 1), 3, (9, 7), Residual::BeforeActivation),
        (
            2,
            Conv2dSpec {
                activation: leaky.clone(),
                ..conv(64, 70, 1)
            },
            2,
            (5, 13),
            Residual::AfterActivation,
        ),
        (
            3,
            Conv2dSpec {
                activation: prelu,
                ..conv(3, 70, 1)
            },
            1,
            (11, 3),
            Residual::BeforeActivation,
        ),
        (
            4,
            Conv2dSpec {
                activation: leaky,
                ..conv(600, 33, 1)
            },
            2,
            (4, 5),
            Residual::AfterActivation,
        ),
        (
            5,
            Conv2dSpec {
                activation: Activation::Clip {
                    min: -0.5,
                    max: 0.5,
                },
                ..conv(7, 5, 1)
            },
            1,
            (1, 1),
            Residual::BeforeActivation,
        ),
        // Read and written 4 q a load (every item's q a multiple of 4): few input channels
        // (3, 16, 24, 32) on maps above and below the folding limit, batches, 16 x 16 blocks.
        (6, conv(3, 40, 1), 2, (8, 12), Residual::BeforeActivation),
        (7, conv(16, 96, 1), 3, (48, 48), Residual::AfterActivation),
        (8, conv(24, 70, 1), 1, (16, 16), Residual::BeforeActivation),
        (9, conv(32, 16, 1), 2, (40, 60), Residual::AfterActivation),
        (10, conv(16, 16, 1), 2, (4, 3), Residual::BeforeActivation),
        // To few channels (4- and 8-channel blocks): 8 q a load, 4 and one.
        (11, conv(16, 4, 1), 3, (8, 16), Residual::AfterActivation),
        (12, conv(64, 3, 1), 2, (6, 6), Residual::BeforeActivation),
        (13, conv(32, 8, 1), 2, (5, 7), Residual::AfterActivation),
        (14, conv(7, 1, 1), 1, (8, 8), Residual::BeforeActivation),
    ] {
        let layout = gemm::Layout::planes(spec.in_c, spec.out_c, hw.0 * hw.1);
        assert_eq!(
            layout.wide(),
            seed == 4 || (6..=12).contains(&seed) || seed == 14,
            "case {seed} read 4 q a load"
        );
        // On a CPU adapter (lavapipe) cases 6-9 move 8 q a load (`vec4<u64>`), 4 and 10 stay 4.
        let eight = s.kernels.eight_a_load;
        assert_eq!(eight, s.engine.gpu.adapter.device_type == "Cpu");
        let width = layout.width(eight, gemm::blocking_for(spec.out_c));
        let expected = match seed {
            6..=9 | 11 | 14 if eight => gemm::Width::Eight,
            4 | 6..=12 | 14 => gemm::Width::Four,
            _ => gemm::Width::One,
        };
        assert_eq!(width, expected, "case {seed}");
        let (dims, zeros) = (
            (spec.out_c, spec.in_c),
            vec![0.0; (spec.in_c * spec.out_c) as usize],
        );
        let layer = GemmLayer::upload(gpu, "gemm", dims, &zeros, &[], &spec.activation);
        unrolled[usize::from(layer.blocking().inputs > 0)] = true;
        check_pointwise(&s, (seed, spec, n, hw), res, None);
    }
    // Where uniform loads in a loop are lane by lane, both kernels ran: the input channels
    // unrolled, a block a dispatch (few inputs on maps of 2048 pixels or more: cases 7 and 9),
    // and the loop over a window's blocks (the rest; 2 and 4 never take the unrolled one).
    if s.kernels.storage_loads_loop {
        assert_eq!(unrolled, [true, true]);
    }
    // Without a residual, against the convolution's own reference.
    check_conv2d(&s, 62, conv(45, 19, 1), 2, 10, 11);
    // Gemm's layout: out[i, j] = sum_k A[k, i] B[k, j] + C[j] (transA), rows of A as q.
    let (m, k, n, items) = (19u32, 40u32, 35u32, 2u32);
    let layout = gemm::Layout {
        q_count: m,
        in_cs: m,
        in_qs: 1,
        in_item: k * m,
        out_cs: 1,
        out_qs: n,
        out_item: m * n,
        skip_c: n,
        skip_item: m * n,
    };
    let a = common::random_vec(&mut rng, (items * k * m) as usize, 1.0);
    let b = common::random_vec(&mut rng, (n * k) as usize, 0.3);
    let c = common::random_vec(&mut rng, n as usize, 0.5);
    let act = Activation::None;
    let expected = gemm::reference(&layout, (n, k), &b, &c, &act, None, &a, items);
    let layer = GemmLayer::upload(gpu, "gemm", (n, k), &b, &c, &act);
    let (src, dst) = (storage(gpu, &a), output(gpu, expected.len()));
    let step = layer.prepare(Bind::new(gpu, &s.kernels, "gemm"), &src, &dst, layout, None);
    assert_close(
        &run_f32(gpu, &step, items, &dst, expected.len()),
        &expected,
        "gemm transA",
    );
}

/// A generated kernel that does not compile (a fault of a kernel generator for some shape) is
/// kept with the compiler's error, which the runner names instead of submitting a batch the GPU
/// rejects; a kernel that compiles has none.
#[test]
fn a_kernel_that_does_not_compile_is_named_with_the_compilers_error() {
    let s = setup();
    let broken = "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }";
    let pipeline = s.kernels.generated("broken", broken);
    let e = s.kernels.pipeline_error(&pipeline).unwrap();
    eprintln!("{e}");
    assert!(e.starts_with("the broken kernel did not compile"), "{e}");
    assert!(e.contains("u32"), "the compiler's own words: {e}");
    // Cached: asked again, the same pipeline and error, and compiled once.
    let again = s.kernels.generated("broken", broken);
    assert_eq!(
        s.kernels.pipeline_error(&again).as_deref(),
        Some(e.as_str())
    );
    let fine = s
        .kernels
        .generated("fine", "@compute @workgroup_size(1) fn main() {}");
    assert_eq!(s.kernels.pipeline_error(&fine), None);
}
