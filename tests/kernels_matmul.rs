//! The tiled general matmul (`shaders/matmul.wgsl`: bound-mode MatMul and Gemm) against its CPU
//! reference (`MatMulSpec::reference`, f64 accumulation) on random inputs, on the test GPU: sizes
//! on and off the tile edges (1, 7, 33, 65, 513), a skinny product, broadcast batch dims, more
//! batch entries than workgroups in z, a per-item B, transposed operands with alpha, and each
//! tiling on one shape. Then gemm.wgsl's products with the items folded into q (1x1
//! convolutions over small maps).
//!
//! Tolerance: |gpu - cpu| <= 2e-5 + 2e-5 * |cpu|. A is uniform in [-1, 1], B in
//! [-1/sqrt(K), 1/sqrt(K)], so outputs and partial sums are O(1). The GPU sums K f32 products
//! in order, a rounding of about sqrt(K) * 2^-24 ~ 1.4e-6 for the largest K here (1280), ten times
//! under the tolerance, while a wrong index, a missed edge or a stale tile moves an output by
//! O(0.1).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use batchwise::gpu::{Gpu, TrackedBuffer};
use batchwise::kernels::matmul::{self, Tiling};
use batchwise::kernels::{Bind, Kernels, Step};
use batchwise::model::MatMulSpec;

fn storage(gpu: &Gpu, data: &[f32]) -> TrackedBuffer {
    gpu.create_buffer_init(
        "test input",
        bytemuck::cast_slice(data),
        wgpu::BufferUsages::STORAGE,
    )
}

fn run(gpu: &Gpu, step: &Step, items: u32, len: usize, out: &wgpu::Buffer) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&common::run_step(gpu, step, items, out, 4 * len as u64))
}

/// One case: the product for `items` items, A per item, B per item or (`b_per_item` false) a
/// constant; the tiling `tiling` or the engine's.
struct Case {
    spec: MatMulSpec,
    a_len: usize,
    b_len: usize,
    items: u32,
    b_per_item: bool,
    tiling: Option<Tiling>,
}

fn check(gpu: &Gpu, kernels: &Kernels, seed: u64, case: Case) {
    let Case {
        spec,
        a_len,
        b_len,
        items,
        b_per_item,
        tiling,
    } = case;
    let mut rng = common::rng(seed);
    let b_items = if b_per_item { items as usize } else { 1 };
    let a = common::random_vec(&mut rng, a_len * items as usize, 1.0);
    let b = common::random_vec(&mut rng, b_len * b_items, 1.0 / (spec.k as f32).sqrt());
    let count = spec.count() as usize;
    let (ga, gb) = (storage(gpu, &a), storage(gpu, &b));
    let dst = gpu.create_buffer(
        "test output",
        4 * (count * items as usize) as u64,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let b_item = if b_per_item { b_len as u32 } else { 0 };
    let bind = Bind::new(gpu, kernels, "matmul");
    let tiling = tiling.unwrap_or(Tiling::for_shape(spec.m, spec.n));
    let step = matmul::prepare_tiled(
        bind,
        tiling,
        &spec,
        (&ga, a_len as u32),
        (&gb, b_item),
        &dst,
    );
    let got = run(gpu, &step, items, count * items as usize, &dst);
    let what = format!(
        "{}x{}x{} batch {:?} ({tiling:?})",
        spec.m, spec.k, spec.n, spec.batch
    );
    for i in 0..items as usize {
        let bi = if b_per_item { i } else { 0 };
        let want = spec.reference(
            &a[i * a_len..(i + 1) * a_len],
            &b[bi * b_len..(bi + 1) * b_len],
        );
        let got = &got[i * count..(i + 1) * count];
        for (e, (g, w)) in got.iter().zip(&want).enumerate() {
            let tol = 2e-5 + 2e-5 * w.abs();
            assert!(
                (g - w).abs() <= tol,
                "{what}, item {i}, element {e}: gpu {g} vs cpu {w} (tolerance {tol})"
            );
        }
        assert!(
            want.iter().any(|v| v.abs() > 0.01),
            "{what}: the reference is near zero, so the test proves nothing"
        );
    }
}

/// A plain `[m, k] x [k, n]` case, B a constant.
fn plain(m: u32, k: u32, n: u32) -> Case {
    Case {
        spec: MatMulSpec::matmul(&[m, k], &[k, n]).unwrap(),
        a_len: (m * k) as usize,
        b_len: (k * n) as usize,
        items: 1,
        b_per_item: false,
        tiling: None,
    }
}

#[test]
fn tiled_matmul_matches_reference_at_awkward_sizes() {
    let engine = common::engine();
    let (gpu, kernels) = (&engine.gpu, Kernels::new(&engine.gpu));
    for (seed, (m, k, n)) in [
        (1, 1, 1),
        (7, 7, 7),
        (33, 65, 33),
        (65, 33, 65),
        (513, 130, 520),
        (1, 1280, 1000),
        (3, 17, 300),
        (13, 40, 70),
        (64, 64, 64),
    ]
    .into_iter()
    .enumerate()
    {
        check(gpu, &kernels, seed as u64, plain(m, k, n));
    }
}

#[test]
fn tiled_matmul_every_tiling_matches_reference() {
    let engine = common::engine();
    let (gpu, kernels) = (&engine.gpu, Kernels::new(&engine.gpu));
    let tilings = [1, 6, 40].map(Tiling::for_rows);
    for (seed, tiling) in tilings
        .into_iter()
        .chain([Tiling::for_shape(40, 64)])
        .enumerate()
    {
        let case = Case {
            tiling: Some(tiling),
            ..plain(37, 45, 71)
        };
        check(gpu, &kernels, 20 + seed as u64, case);
    }
}

#[test]
fn tiled_matmul_batches_and_transposes_match_reference() {
    let engine = common::engine();
    let (gpu, kernels) = (&engine.gpu, Kernels::new(&engine.gpu));
    // Broadcast batch dims ([2, 1] against [3]), two items, B a constant.
    let broadcast = Case {
        spec: MatMulSpec::matmul(&[2, 1, 9, 37], &[3, 37, 11]).unwrap(),
        a_len: 2 * 9 * 37,
        b_len: 3 * 37 * 11,
        items: 2,
        b_per_item: false,
        tiling: None,
    };
    // More batch entries (130) than workgroups in z (128), B per item (attention's scores).
    let many = Case {
        spec: MatMulSpec::matmul(&[130, 5, 8], &[130, 8, 6]).unwrap(),
        a_len: 130 * 5 * 8,
        b_len: 130 * 8 * 6,
        items: 2,
        b_per_item: true,
        tiling: None,
    };
    // Gemm's transA and transB with alpha: A stored [k, m], B stored [n, k].
    let (m, k, n) = (70, 45, 33);
    let mut spec = MatMulSpec::matmul(&[m, k], &[k, n]).unwrap();
    (spec.a_row, spec.a_col) = (1, m);
    (spec.b_row, spec.b_col) = (1, k);
    spec.alpha = 0.5;
    let transposed = Case {
        spec,
        items: 3,
        ..plain(m, k, n)
    };
    for (seed, case) in [broadcast, many, transposed].into_iter().enumerate() {
        check(gpu, &kernels, 40 + seed as u64, case);
    }
}

/// gemm.wgsl with the items folded into q (a 1x1 convolution over a 1x1 or 7x7 map: a
/// classifier's head): buffers that hold more items than the batch run (the kernel's bound is
/// what the buffers hold, the dispatch covers the batch), input channels over several weight
/// windows, PRelu and a residual; and a map over the folding bound (1200 pixels, items in z).
/// Tolerance as above: K up to 1280 f32 products of O(1 / sqrt(K)) terms.
#[test]
fn gemm_folded_items_match_reference() {
    use batchwise::kernels::conv2d::Conv2dLayer;
    use batchwise::kernels::gemm;
    use batchwise::model::{Activation, Conv2dSpec, Residual};
    let engine = common::engine();
    let (gpu, kernels) = (&engine.gpu, Kernels::new(&engine.gpu));
    let mut rng = common::rng(70);
    for (ic, oc, (h, w), items, held) in [
        (1280, 100, (1, 1), 3, 5),
        (192, 70, (7, 7), 2, 4),
        (33, 40, (30, 40), 2, 2),
        // Many channels on a 7x7 map (every channel block in one dispatch), batch 3.
        (1152, 320, (7, 7), 3, 3),
        // 16 output channels (16-channel blocks of 16 q) on an odd map.
        (32, 16, (13, 11), 2, 3),
    ] {
        let spec = Conv2dSpec {
            in_c: ic,
            out_c: oc,
            k_h: 1,
            k_w: 1,
            stride: [1, 1],
            pads: [0; 4],
            dilation: [1, 1],
            groups: 1,
            activation: Activation::PRelu {
                slopes: common::random_vec(&mut rng, oc as usize, 0.5),
            },
        };
        let px = (h * w) as usize;
        let input = common::random_vec(&mut rng, held * ic as usize * px, 1.0);
        let weights = common::random_vec(&mut rng, (oc * ic) as usize, 1.0 / (ic as f32).sqrt());
        let bias = common::random_vec(&mut rng, oc as usize, 0.5);
        let skip = common::random_vec(&mut rng, held * oc as usize * px, 1.0);
        let layout = gemm::Layout::planes(ic, oc, h * w);
        let res = Some((&skip[..], Residual::BeforeActivation));
        let want = gemm::reference(
            &layout,
            (oc, ic),
            &weights,
            &bias,
            &spec.activation,
            res,
            &input,
            items,
        );
        let layer = Conv2dLayer::upload(gpu, "gemm", spec.clone(), &weights, &bias);
        let (src, skip_buf) = (storage(gpu, &input), storage(gpu, &skip));
        let dst = gpu.create_buffer(
            "test output",
            4 * skip.len() as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let bind = Bind::new(gpu, &kernels, "gemm");
        let residual = Some((&*skip_buf, Residual::BeforeActivation));
        let step = layer.prepare_with_residual(bind, &src, &dst, h, w, residual);
        let got = run(gpu, &step, items, want.len(), &dst);
        for (e, (g, c)) in got.iter().zip(&want).enumerate() {
            let tol = 2e-5 + 2e-5 * c.abs();
            assert!(
                (g - c).abs() <= tol,
                "1x1 {ic}->{oc} on {h}x{w}, {items} of {held} items, element {e}: gpu {g} vs \
                 cpu {c} (tolerance {tol})"
            );
        }
    }
}

/// gemm.wgsl with the weights bound in storage windows smaller than the matrix (as where a
/// matrix is larger than a binding may be): a dispatch per window, input channels over several
/// windows (later ones add to what the first wrote), several channel blocks in one, both
/// blockings, an odd map and a batch. Tolerance as above: K up to 700 f32 products of
/// O(1 / sqrt(K)) terms.
#[test]
fn gemm_storage_windows_match_reference() {
    use batchwise::kernels::gemm::{self, Blocking, GemmLayer};
    use batchwise::model::{Activation, Residual};
    let engine = common::engine();
    let (gpu, kernels) = (&engine.gpu, Kernels::new(&engine.gpu));
    let mut rng = common::rng(71);
    // (in_c, out_c, pixels, items, blocking, window floats)
    for (ic, oc, px, items, blocking, window) in [
        (700, 70, 37, 2, gemm::BLOCKING, 4096),
        (50, 100, 61, 3, gemm::BLOCKING, 4096),
        (
            300,
            16,
            29,
            2,
            Blocking {
                oc_block: 16,
                pix: 16,
                inputs: 0,
            },
            1024,
        ),
        // Small blocks, as `BATCHWISE_GEMM_BLOCKING` asks for on a GPU: a 7x7 map (items
        // folded), the matrix in one window; and several windows.
        (
            96,
            40,
            49,
            4,
            Blocking {
                oc_block: 8,
                pix: 4,
                inputs: 0,
            },
            1 << 20,
        ),
        (
            64,
            24,
            200,
            2,
            Blocking {
                oc_block: 4,
                pix: 4,
                inputs: 0,
            },
            512,
        ),
    ] {
        let input = common::random_vec(&mut rng, (items * ic * px) as usize, 1.0);
        let weights = common::random_vec(&mut rng, (oc * ic) as usize, 1.0 / (ic as f32).sqrt());
        let bias = common::random_vec(&mut rng, oc as usize, 0.5);
        let skip = common::random_vec(&mut rng, (items * oc * px) as usize, 1.0);
        let act = Activation::LeakyRelu { alpha: 0.1 };
        let layout = gemm::Layout::planes(ic, oc, px);
        let res = Some((&skip[..], Residual::AfterActivation));
        let want = gemm::reference(&layout, (oc, ic), &weights, &bias, &act, res, &input, items);
        let (bias_act, blocking_window) = ((&bias[..], &act), (blocking, window));
        let layer =
            GemmLayer::upload_windowed(gpu, "gemm", (oc, ic), &weights, bias_act, blocking_window);
        let (src, skip_buf) = (storage(gpu, &input), storage(gpu, &skip));
        let dst = gpu.create_buffer(
            "test output",
            4 * want.len() as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let residual = Some((&*skip_buf, Residual::AfterActivation));
        let step = layer.prepare(
            Bind::new(gpu, &kernels, "gemm"),
            &src,
            &dst,
            layout,
            residual,
        );
        let got = run(gpu, &step, items, want.len(), &dst);
        for (e, (g, c)) in got.iter().zip(&want).enumerate() {
            let tol = 2e-5 + 2e-5 * c.abs();
            assert!(
                (g - c).abs() <= tol,
                "{ic}->{oc} on {px} px, {items} items, {blocking:?}, windows of {window}, \
                 element {e}: gpu {g} vs cpu {c} (tolerance {tol})"
            );
        }
    }
}

/// gemv.wgsl: products of one q an item (a 1x1 convolution on a 1x1 map, a Gemm of one row an
/// item) run as one dispatch over every channel, from gemm's packed weights. Shapes: a
/// classifier's head (1280 -> 1000: three input-channel windows a block), several blocks in one
/// window (40 -> 37), channels off the 4-channel quads (600 -> 70); blocks of 20, 24 and 32
/// channels; batches of 1, 5, 8 and 9 items (off the 8 items an invocation or a workgroup) in
/// buffers that may hold more; every activation and both residuals; in both of gemv's orders.
/// Tolerance as above: K up to 1280 f32 products of O(1 / sqrt(K)) terms.
#[test]
fn gemv_matches_reference() {
    use batchwise::kernels::gemm::{self, GemmLayer};
    use batchwise::kernels::gemv::Order;
    use batchwise::model::{Activation, Residual};
    let engine = common::engine();
    let (gpu, kernels) = (&engine.gpu, Kernels::new(&engine.gpu));
    let mut rng = common::rng(73);
    let leaky = Activation::LeakyRelu { alpha: 0.1 };
    let clip = Activation::Clip {
        min: -0.4,
        max: 0.6,
    };
    for (ic, oc, items, held, activation, residual) in [
        (1280, 1000, 9, 11, leaky, Some(Residual::AfterActivation)),
        (40, 37, 1, 2, clip, None),
        (200, 64, 8, 8, Activation::LeakyRelu { alpha: 0.2 }, None),
        (72, 24, 3, 3, Activation::HardSwish, None),
        (
            600,
            70,
            5,
            5,
            Activation::None,
            Some(Residual::BeforeActivation),
        ),
        (
            96,
            20,
            4,
            6,
            Activation::PRelu {
                slopes: common::random_vec(&mut rng, 20, 0.5),
            },
            Some(Residual::BeforeActivation),
        ),
    ] {
        let layout = gemm::Layout::planes(ic, oc, 1);
        let input = common::random_vec(&mut rng, (held * ic) as usize, 1.0);
        let weights = common::random_vec(&mut rng, (oc * ic) as usize, 1.0 / (ic as f32).sqrt());
        let bias = common::random_vec(&mut rng, oc as usize, 0.5);
        let skip = common::random_vec(&mut rng, (held * oc) as usize, 1.0);
        let res = residual.map(|r| (&skip[..], r));
        let want = gemm::reference(
            &layout,
            (oc, ic),
            &weights,
            &bias,
            &activation,
            res,
            &input,
            items,
        );
        let (src, skip_buf) = (storage(gpu, &input), storage(gpu, &skip));
        let dst = gpu.create_buffer(
            "test output",
            4 * skip.len() as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        // Either packing: 64 KiB uniform windows (a CPU adapter's), one storage window (a GPU's).
        let blocking = gemm::blocking_for(oc);
        let (bias_act, dims) = ((&bias[..], &activation), (oc, ic));
        for window in [0, 1 << 20] {
            let packing = (blocking, window);
            let layer = GemmLayer::upload_windowed(gpu, "gemv", dims, &weights, bias_act, packing);
            for order in [Order::Channels, Order::Items] {
                let bind = Bind::new(gpu, &kernels, "gemv");
                let skip = residual.map(|r| (&*skip_buf, r));
                let step = layer.prepare_ordered(bind, (&src, &dst), layout, skip, order);
                assert_eq!(step.dispatches(), 1, "{ic}->{oc}: one dispatch");
                let got = run(gpu, &step, items, want.len(), &dst);
                for (e, (g, c)) in got.iter().zip(&want).enumerate() {
                    let tol = 2e-5 + 2e-5 * c.abs();
                    assert!(
                        (g - c).abs() <= tol,
                        "{ic}->{oc} ({order:?}, window {window}), {items} of {held} items, element \
                     {e}: gpu {g} vs cpu {c} (tolerance {tol})"
                    );
                }
            }
        }
    }
}

/// A MatMul by a constant B over dense rows of A (a transformer's Linear layers:
/// `kernels::linear`) on gemm.wgsl, against the general matmul's CPU reference: tokens by
/// weights, rows over several batch dims, B read transposed and scaled (alpha), rows not a
/// multiple of the register block, a single row (gemv.wgsl), more output channels than one
/// weight window holds, more rows than gemm folds, with a bias and without. Tolerance as above.
#[test]
fn linear_products_match_reference() {
    use batchwise::kernels::linear;
    let engine = common::engine();
    let (gpu, kernels) = (&engine.gpu, Kernels::new(&engine.gpu));
    let mut rng = common::rng(71);
    let transposed = |spec: MatMulSpec| MatMulSpec {
        b_row: 1,
        b_col: spec.k,
        alpha: 0.5,
        ..spec
    };
    for (spec, items, with_bias) in [
        (
            MatMulSpec::matmul(&[1, 197, 192], &[192, 100]).unwrap(),
            2,
            true,
        ),
        (
            MatMulSpec::matmul(&[2, 3, 17, 33], &[33, 50]).unwrap(),
            3,
            false,
        ),
        (
            transposed(MatMulSpec::matmul(&[5, 40], &[40, 1000]).unwrap()),
            2,
            true,
        ),
        (MatMulSpec::matmul(&[1, 40], &[40, 70]).unwrap(), 3, true),
        (MatMulSpec::matmul(&[1, 40], &[40, 30]).unwrap(), 2, false),
        // More rows than gemm folds into one dispatch row (an item a workgroup row).
        (MatMulSpec::matmul(&[1100, 24], &[24, 40]).unwrap(), 2, true),
    ] {
        let rows = linear::rows(&spec).expect("dense rows by a shared B");
        let (a_len, out_len) = ((rows * spec.k) as usize, spec.count() as usize);
        let a = common::random_vec(&mut rng, a_len * items, 1.0);
        let b = common::random_vec(
            &mut rng,
            (spec.k * spec.n) as usize,
            1.0 / (spec.k as f32).sqrt(),
        );
        // A Linear layer's bias (`passes::fuse_linear_bias`), or none.
        let bias = match with_bias {
            true => common::random_vec(&mut rng, spec.n as usize, 0.5),
            false => Vec::new(),
        };
        let layer = linear::upload(gpu, "linear", &spec, &b, &bias);
        let src = storage(gpu, &a);
        let dst = gpu.create_buffer(
            "test output",
            4 * (out_len * items) as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let layout = linear::layout(&spec, rows, a_len as u32, out_len as u32);
        let step = layer.prepare(Bind::new(gpu, &kernels, "linear"), &src, &dst, layout, None);
        let got = run(gpu, &step, items as u32, out_len * items, &dst);
        for i in 0..items {
            let want = spec.reference(&a[i * a_len..(i + 1) * a_len], &b);
            let got = &got[i * out_len..(i + 1) * out_len];
            for (e, (g, w)) in got.iter().zip(&want).enumerate() {
                let w = w + bias.get(e % spec.n as usize).unwrap_or(&0.0);
                let tol = 2e-5 + 2e-5 * w.abs();
                assert!(
                    (g - w).abs() <= tol,
                    "{rows} rows x {} -> {}, item {i}, element {e}: gpu {g} vs cpu {w} \
                     (tolerance {tol})",
                    spec.k,
                    spec.n
                );
            }
        }
    }
}
