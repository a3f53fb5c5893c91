//! The Winograd kernels (F(2,3) and F(4,3) fused, `kernels/winograd.rs`; F(2,3), F(4,3) and
//! F(6,3) split into transforms and GEMMs, `kernels/winograd_gemm.rs`) against the direct
//! convolution's CPU reference, on random inputs and weights, on the test GPU. The buffers hold
//! one item more than the batch run (the engine's lanes bind buffers of their largest batch).
//!
//! Tolerance, per output: `(in_c + 24) * 2^-24 * E + 1e-6`, where E is the sum of the absolute
//! values of every term the algorithm adds up for that output (`winograd::reference` with
//! `magnitudes`: the same transforms with |B|, |G|, |A|, |input|, |weights| and |bias|, so the
//! transforms' coefficient growth is in it, F(4,3)'s much larger than F(2,3)'s) plus |residual|.
//! A sum evaluated as a tree of depth L has a rounding error of at most L * 2^-24 * (sum of |terms|)
//! to first order (Higham, "Accuracy and Stability of Numerical Algorithms", 4.2), products add
//! one rounding each. Here L is at most in_c (the sum over input channels, chunks included) + 8
//! (the input transform: at most 4 terms a row of B^T, per dimension) + 2 (U rounded to f32, the
//! product) + 12 (the output transform: at most 6 terms a row of A^T, per dimension) + 2 (bias,
//! residual) = in_c + 24. F(6,3)'s rows have at most 6 terms in B^T and 7 in A^T: in_c + 30.
//! The split kernel rounds V and M to f32 where the fused one keeps them in registers, the same
//! roundings the count has. The activations are 1-Lipschitz (slopes and alpha within [-1, 1]), so
//! the bound holds after them. An indexing or transform mistake moves outputs by O(0.1), far
//! above every bound here (printed on failure).

#![allow(
    clippy::needless_pass_by_value,
    reason = "each check takes a spec built at its call"
)]
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use batchwise::gpu::Gpu;
use batchwise::kernels::conv2d::{self, Conv2dLayer, Kernel};
use batchwise::kernels::winograd::{self, Tile};
use batchwise::kernels::{Bind, Kernels};
use batchwise::model::{Activation, Conv2dSpec, Residual};

fn run(
    gpu: &Gpu,
    step: &batchwise::kernels::Step,
    items: u32,
    out: &wgpu::Buffer,
    len: usize,
) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&common::run_step(gpu, step, items, out, 4 * len as u64))
}

fn spec(in_c: u32, out_c: u32, pads: [u32; 4], activation: Activation) -> Conv2dSpec {
    Conv2dSpec {
        in_c,
        out_c,
        k_h: 3,
        k_w: 3,
        stride: [1, 1],
        pads,
        dilation: [1, 1],
        groups: 1,
        activation,
    }
}

/// One shape on `tile`, against the direct reference with the residual and activation applied
/// as the kernel fuses them.
fn check(
    cx: (&Gpu, &Kernels),
    seed: u64,
    spec: Conv2dSpec,
    tile: Tile,
    nhw: (u32, u32, u32),
    residual: Option<Residual>,
) {
    check_chunked(cx, seed, spec, (tile, None), nhw, residual);
}

/// As [`check`], the split kernel run in chunks of at most `chunk` tiles an item where given.
fn check_chunked(
    (gpu, kernels): (&Gpu, &Kernels),
    seed: u64,
    spec: Conv2dSpec,
    (tile, chunk): (Tile, Option<u32>),
    (n, h, w): (u32, u32, u32),
    residual: Option<Residual>,
) {
    let mut rng = common::rng(seed);
    let (ic, oc) = (spec.in_c, spec.out_c);
    // One spare item in every buffer: the kernels must neither read it into nor write it.
    let input = common::random_vec(&mut rng, ((n + 1) * ic * h * w) as usize, 1.0);
    let weights = common::random_vec(
        &mut rng,
        (oc * ic * 9) as usize,
        1.0 / (9.0 * ic as f32).sqrt(),
    );
    let bias = common::random_vec(&mut rng, oc as usize, 0.5);
    let (oh, ow) = spec.output_hw(h, w).unwrap();
    let plane = (oh * ow) as usize;
    let skip = common::random_vec(&mut rng, (n + 1) as usize * oc as usize * plane, 1.0);
    let linear = Conv2dSpec {
        activation: Activation::None,
        ..spec.clone()
    };
    let sums = conv2d::reference(&linear, &input, n, h, w, &weights, &bias);
    let expected: Vec<f32> = sums
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i / plane % oc as usize;
            let before = v + if residual == Some(Residual::BeforeActivation) {
                skip[i]
            } else {
                0.0
            };
            let after = spec.activation.apply(before, c);
            after
                + if residual == Some(Residual::AfterActivation) {
                    skip[i]
                } else {
                    0.0
                }
        })
        .collect();
    let magnitudes = winograd::reference(&spec, tile, &input, (n, h, w), &weights, &bias, true);
    let depth = (ic + if tile.m() == 6 { 30 } else { 24 }) as f64;
    let tolerance: Vec<f64> = magnitudes
        .iter()
        .zip(&skip)
        .map(|(e, s)| depth * f64::from(f32::EPSILON) / 2.0 * (e + s.abs() as f64) + 1e-6)
        .collect();

    let layer = Conv2dLayer::upload_with(
        gpu,
        "test",
        spec.clone(),
        &weights,
        &bias,
        Kernel::Winograd(tile),
    );
    let layer = match chunk {
        Some(tiles) => layer.with_winograd_chunk(tiles),
        None => layer,
    };
    let src = gpu.create_buffer_init(
        "input",
        bytemuck::cast_slice(&input),
        wgpu::BufferUsages::STORAGE,
    );
    let skip_buf = gpu.create_buffer_init(
        "skip",
        bytemuck::cast_slice(&skip),
        wgpu::BufferUsages::STORAGE,
    );
    let dst = gpu.create_buffer(
        "output",
        4 * (expected.len() + oc as usize * plane) as u64,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let bind = Bind::new(gpu, kernels, "test");
    let step =
        layer.prepare_with_residual(bind, &src, &dst, h, w, residual.map(|r| (&*skip_buf, r)));
    let got = run(gpu, &step, n, &dst, expected.len() + oc as usize * plane);
    assert!(
        got[expected.len()..].iter().all(|&v| v == 0.0),
        "{tile:?}: the spare item was written"
    );
    let what = format!("{tile:?} {spec:?} {residual:?} on {n}x{h}x{w}");
    let mut worst = 0.0f64;
    for (i, ((g, e), t)) in got.iter().zip(&expected).zip(&tolerance).enumerate() {
        let err = (*g as f64 - *e as f64).abs();
        assert!(
            err <= *t,
            "{what}: element {i}: gpu {g} vs cpu {e} (tolerance {t:e})"
        );
        worst = worst.max(err / t);
    }
    assert!(
        expected.iter().any(|v| v.abs() > 1e-2),
        "{what}: the reference is all near zero, so the test proves nothing"
    );
    eprintln!("{what}: worst error {:.3} of its tolerance", worst);
}

/// The adapter's kernels and, where they move 8 values a load (a CPU adapter: the split
/// products' `vec4<u64>`), the same with one value a load (a GPU's).
fn kernel_sets(gpu: &Gpu) -> Vec<Kernels> {
    let mut sets = vec![Kernels::new(gpu)];
    if sets[0].eight_a_load {
        let mut one = Kernels::new(gpu);
        one.eight_a_load = false;
        sets.push(one);
    }
    sets
}

#[test]
fn winograd_matches_the_direct_reference() {
    let engine = common::engine();
    let gpu = &engine.gpu;
    for kernels in kernel_sets(gpu) {
        matches_the_direct_reference((gpu, &kernels));
    }
}

fn matches_the_direct_reference(cx: (&Gpu, &Kernels)) {
    let leaky = Activation::LeakyRelu { alpha: 0.1 };
    let mut rng = common::rng(90);
    let prelu = Activation::PRelu {
        slopes: common::random_vec(&mut rng, 24, 1.0),
    };
    let clip = Activation::Clip {
        min: -0.5,
        max: 0.7,
    };
    for tile in Tile::ALL {
        // Padding 1, sizes not a multiple of either tile (nor of F(2,3)'s 4 tiles an invocation),
        // channels off the 8- and 16-channel blocks, a batch of 2.
        check(
            cx,
            1,
            spec(20, 37, [1; 4], leaky.clone()),
            tile,
            (2, 11, 13),
            None,
        );
        // No padding: the output is 2 smaller than the input (7 x 5), a batch of 3; HardSwish.
        check(
            cx,
            2,
            spec(16, 16, [0; 4], Activation::HardSwish),
            tile,
            (3, 9, 7),
            None,
        );
        // Input channels in one window for F(2,3) (128 fit), three for F(4,3) (28 a window):
        // later chunks add to what the earlier stored, then the residual and PRelu.
        check(
            cx,
            3,
            spec(70, 24, [1; 4], prelu.clone()),
            tile,
            (2, 6, 10),
            Some(Residual::BeforeActivation),
        );
        // Asymmetric padding (TF SAME), Clip, the residual after it.
        check(
            cx,
            4,
            spec(8, 12, [0, 1, 1, 0], clip.clone()),
            tile,
            (1, 7, 8),
            Some(Residual::AfterActivation),
        );
        // An image smaller than one tile, two chunks for F(2,3) and five for F(4,3), ReLU.
        check(
            cx,
            5,
            spec(130, 9, [1; 4], Activation::LeakyRelu { alpha: 0.0 }),
            tile,
            (2, 3, 2),
            None,
        );
        // More input channels than one weight window of the split kernel's products holds (512
        // at 32 output channels a block): the second chunk adds to what the first stored in M.
        check(
            cx,
            6,
            spec(520, 32, [1; 4], leaky.clone()),
            tile,
            (2, 5, 6),
            None,
        );
    }
}

/// The split kernel over a map in chunks of its tiles (as large maps run): chunks of 1, 5 and 7
/// tiles of an item, the last one partial, a batch of 2, input channels past one weight window,
/// PRelu with the residual; same tolerance as above.
#[test]
fn split_winograd_in_chunks_of_tiles_matches_the_reference() {
    let engine = common::engine();
    let gpu = &engine.gpu;
    let mut rng = common::rng(91);
    let prelu = Activation::PRelu {
        slopes: common::random_vec(&mut rng, 20, 1.0),
    };
    for kernels in kernel_sets(gpu) {
        let cx = (&**gpu, &kernels);
        for tile in Tile::ALL.into_iter().filter(|t| t.split()) {
            for chunk in [1, 5, 7] {
                let residual = Some(Residual::BeforeActivation);
                let s = spec(36, 20, [1; 4], prelu.clone());
                check_chunked(cx, 7, s, (tile, Some(chunk)), (2, 17, 23), residual);
            }
        }
    }
}

/// The engine runs Winograd where the choices say so, and the result is the direct kernel's.
#[test]
fn the_choice_decides_the_kernel_and_not_the_result() {
    let s = spec(32, 32, [1; 4], Activation::None);
    let choices = |tile| {
        winograd::Choices(vec![winograd::Choice {
            in_c: 32,
            out_c: 32,
            tile,
        }])
    };
    if winograd::from_env().is_none() {
        assert_eq!(choices(Some(Tile::F4)).choose(&s), Some(Tile::F4));
        assert_eq!(choices(None).choose(&s), None);
        // The nearest measured shape decides for another.
        assert_eq!(
            choices(Some(Tile::F2)).choose(&spec(48, 64, [1; 4], Activation::None)),
            Some(Tile::F2)
        );
    }
    // Not for shapes Winograd does not compute, nor for the narrow kernel's.
    let strided = Conv2dSpec {
        stride: [2, 2],
        ..s.clone()
    };
    assert_eq!(choices(Some(Tile::F2)).choose(&strided), None);
    assert_eq!(
        choices(Some(Tile::F2)).choose(&spec(32, 3, [1; 4], Activation::None)),
        None
    );
    // Nor for an image's first convolution (3 input channels): it runs direct.
    assert_eq!(
        choices(Some(Tile::F2)).choose(&spec(3, 32, [1; 4], Activation::None)),
        None
    );
}

/// The split kernel reads its input as a channel slice of a larger buffer, upsampled (nearest),
/// and writes its output into a channel slice of another (a Concat done in place, a fused
/// Resize); the channels around the slice stay as they were. Tolerance as above.
#[test]
fn split_kernel_reads_and_writes_channel_slices_upsampled() {
    use batchwise::kernels::winograd_gemm::{Placed, WinogradGemm};
    let engine = common::engine();
    let gpu = &engine.gpu;
    let kernels = Kernels::new(gpu);
    let (n, h, w, up) = (2u32, 5u32, 7u32, [2u32, 3u32]);
    let s = spec(12, 20, [1; 4], Activation::LeakyRelu { alpha: 0.2 });
    let (src_c, src_offset, dst_c, dst_offset) = (17u32, 3u32, 27u32, 5u32);
    for tile in Tile::SPLIT {
        let mut rng = common::rng(7);
        let held = common::random_vec(&mut rng, (n * src_c * h * w) as usize, 1.0);
        let weights = common::random_vec(&mut rng, (s.out_c * s.in_c * 9) as usize, 0.1);
        let bias = common::random_vec(&mut rng, s.out_c as usize, 0.5);
        // The input the convolution sees: the slice's channels, each pixel repeated up x up.
        let (uh, uw) = (h * up[0], w * up[1]);
        let mut input = Vec::with_capacity((n * s.in_c * uh * uw) as usize);
        for item in 0..n {
            for c in 0..s.in_c {
                for y in 0..uh {
                    for x in 0..uw {
                        let plane = (item * src_c + src_offset + c) * h * w;
                        input.push(held[(plane + y / up[0] * w + x / up[1]) as usize]);
                    }
                }
            }
        }
        let linear = Conv2dSpec {
            activation: Activation::None,
            ..s.clone()
        };
        let sums = conv2d::reference(&linear, &input, n, uh, uw, &weights, &bias);
        let magnitudes = winograd::reference(&s, tile, &input, (n, uh, uw), &weights, &bias, true);
        let depth = (s.in_c + if tile.m() == 6 { 30 } else { 24 }) as f64;
        let layer = WinogradGemm::upload(gpu, "test", &s, &weights, &bias, tile);
        let src = gpu.create_buffer_init(
            "input",
            bytemuck::cast_slice(&held),
            wgpu::BufferUsages::STORAGE,
        );
        let plane = (uh * uw) as usize;
        let dst = gpu.create_buffer(
            "output",
            4 * (n * dst_c) as u64 * plane as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let placed = Placed {
            src: (src_c, src_offset),
            dst: (dst_c, dst_offset),
            upsample: up,
        };
        let bind = Bind::new(gpu, &kernels, "test");
        let step = layer.prepare(bind, [&src, &dst], [h, w], None, None, placed);
        let got = run(gpu, &step, n, &dst, (n * dst_c) as usize * plane);
        for item in 0..n as usize {
            for c in 0..dst_c as usize {
                for i in 0..plane {
                    let g = got[(item * dst_c as usize + c) * plane + i] as f64;
                    let oc = c.wrapping_sub(dst_offset as usize);
                    if oc >= s.out_c as usize {
                        assert_eq!(g, 0.0, "{tile:?}: channel {c} outside the slice written");
                        continue;
                    }
                    let at = (item * s.out_c as usize + oc) * plane + i;
                    let e = s.activation.apply(sums[at], oc) as f64;
                    let t = depth * f64::from(f32::EPSILON) / 2.0 * magnitudes[at] + 1e-6;
                    assert!(
                        (g - e).abs() <= t,
                        "{tile:?}: item {item} channel {oc} pixel {i}: gpu {g} vs cpu {e} (tolerance {t:e})"
                    );
                }
            }
        }
    }
}
