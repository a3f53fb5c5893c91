//! Per-kernel GFLOP/s on the default adapter, timed with GPU timestamps (median of 5 runs).
//!
//! `cargo bench --bench kernels` (add `-- conv` to run only the shapes whose name contains "conv").
//! `BATCHWISE_BENCH_RUNS=N` runs N times instead of 6 (the first dropped), `BATCHWISE_BENCH_STAT=min` the
//! fastest instead of the median (on a busy machine), `=cpu` the least CPU time of the process's
//! threads a run (the work, not the waits: GFLOP per CPU-second; idle, with both llvmpipe threads
//! busy, wall time is about half), `BATCHWISE_BENCH_ENGINE_ONLY=1` without the
//! `[conv2d]` and `[per pixel]` rows; `BATCHWISE_BENCH_GEMM=32x8,16x16` adds
//! rows for the 1x1 shapes on gemm.wgsl with those blockings (channels x pixels an invocation).
//! `BATCHWISE_BENCH_NARROW=8x4,16x4` adds rows for the narrow conv2d variant (at most 8 output
//! channels) and the generated depthwise kernel with those output rows x columns an invocation.
//! Every 3x3 stride-1 shape Winograd computes runs on the direct kernel and on Winograd F(2,3)
//! and F(4,3) (`[winograd F2]`, `[winograd F4]`); GFLOP/s counts the direct convolution's
//! multiply-adds for all three (useful work, not what Winograd executes).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

use batchwise::engine::Engine;
use batchwise::gpu::{AdapterChoice, Gpu};
use batchwise::kernels::Bind;
use batchwise::kernels::conv_transpose2d::ConvTranspose2dLayer;
use batchwise::kernels::conv2d::{Conv2dLayer, Kernel};
use batchwise::kernels::conv2d_narrow;
use batchwise::kernels::gemm;
use batchwise::kernels::winograd::{self, Tile};
use batchwise::kernels::{Kernels, Step};
use batchwise::model::Activation;
use batchwise::model::Conv2dSpec;
use batchwise::model::ConvTranspose2dSpec;
use batchwise::model::MatMulSpec;

fn time_step(gpu: &Gpu, step: &Step, items: u32) -> f64 {
    let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: None,
        ty: wgpu::QueryType::Timestamp,
        count: 2,
    });
    let resolve = gpu.create_buffer(
        "timer",
        16,
        wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
    );
    let mut times = Vec::new();
    // `BATCHWISE_BENCH_RUNS=N`: more runs (to measure the process's CPU time on a busy machine).
    let runs = std::env::var("BATCHWISE_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6usize);
    // `BATCHWISE_BENCH_STAT=cpu`: the CPU time every thread of this process (llvmpipe's
    // included) spent on a run instead of its GPU timestamps: the work a kernel costs, whatever
    // else holds the cores (on a busy machine the timestamps also count the waits).
    let cpu = std::env::var("BATCHWISE_BENCH_STAT").as_deref() == Ok("cpu");
    for _ in 0..runs.max(2) {
        let started = cpu.then(cpu_seconds);
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            step.record(&mut pass, items);
        }
        encoder.resolve_query_set(&queries, 0..2, &resolve, 0);
        gpu.queue.submit([encoder.finish()]);
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&gpu.read_back(&resolve, 16).unwrap());
        times.push(match started {
            Some(t) => cpu_seconds() - t,
            None => (ticks[1] - ticks[0]) as f64 * gpu.queue.get_timestamp_period() as f64 * 1e-9,
        });
    }
    times.remove(0); // the first run compiles the pipeline on some drivers
    times.sort_by(f64::total_cmp);
    // `BATCHWISE_BENCH_STAT=min`: the fastest run (on a machine busy with other work, the
    // closest to the kernel's own time), else the median.
    if cpu || std::env::var("BATCHWISE_BENCH_STAT").as_deref() == Ok("min") {
        return times[0];
    }
    times[times.len() / 2]
}

/// The CPU time all threads of this process have run, in seconds (Linux: each thread's
/// `schedstat`, nanoseconds; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 * 1e-9
}

fn buffers(
    gpu: &Gpu,
    input: usize,
    output: usize,
) -> (batchwise::gpu::TrackedBuffer, batchwise::gpu::TrackedBuffer) {
    let data: Vec<f32> = (0..input)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let src = gpu.create_buffer_init(
        "src",
        bytemuck::cast_slice(&data),
        wgpu::BufferUsages::STORAGE,
    );
    let dst = gpu.create_buffer(
        "dst",
        4 * output as u64,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    (src, dst)
}

fn conv(in_c: u32, out_c: u32, k: u32, stride: u32, pad: u32, groups: u32) -> Conv2dSpec {
    Conv2dSpec {
        in_c,
        out_c,
        k_h: k,
        k_w: k,
        stride: [stride; 2],
        pads: [pad; 4],
        dilation: [1, 1],
        groups,
        activation: Activation::LeakyRelu { alpha: 0.1 },
    }
}

/// The convolutions measured: name, spec, side, batch.
fn conv_shapes() -> Vec<(&'static str, Conv2dSpec, u32, u32)> {
    vec![
        (
            "conv 3x3 32->32 128x128 n1 (low-light)",
            conv(32, 32, 3, 1, 1, 1),
            128,
            1,
        ),
        (
            "conv 3x3 64->64 128x128 n1",
            conv(64, 64, 3, 1, 1, 1),
            128,
            1,
        ),
        (
            "conv 3x3 64->64 164x164 n4 (upscale-anime-4x)",
            conv(64, 64, 3, 1, 1, 1),
            164,
            4,
        ),
        (
            "conv 3x3 128->128 64x64 n1 (waifu2x conv5)",
            conv(128, 128, 3, 1, 0, 1),
            64,
            1,
        ),
        (
            "conv 3x3 128->128 128x128 n4 (upscale-photo-2x)",
            conv(128, 128, 3, 1, 1, 1),
            128,
            4,
        ),
        (
            "conv 3x3 128->256 64x64 n1 (waifu2x conv6)",
            conv(128, 256, 3, 1, 0, 1),
            64,
            1,
        ),
        (
            "conv 3x3 128->256 32x32 n4",
            conv(128, 256, 3, 1, 0, 1),
            32,
            4,
        ),
        (
            "conv 3x3 16->32 128x128 n1",
            conv(16, 32, 3, 1, 0, 1),
            128,
            1,
        ),
        (
            "conv 3x3 s2 32->64 64x64 n1",
            conv(32, 64, 3, 2, 1, 1),
            64,
            1,
        ),
        ("conv 1x1 64->64 64x64 n1", conv(64, 64, 1, 1, 0, 1), 64, 1),
        (
            "conv 1x1 256->64 128x128 n1",
            conv(256, 64, 1, 1, 0, 1),
            128,
            1,
        ),
        (
            "conv 1x1 64->256 64x64 n4",
            conv(64, 256, 1, 1, 0, 1),
            64,
            4,
        ),
        (
            "conv 1x1 1024->64 32x32 n1 (two chunks)",
            conv(1024, 64, 1, 1, 0, 1),
            32,
            1,
        ),
        (
            "conv 3x3 16->3 256x256 n2 (upscaler last)",
            conv(16, 3, 3, 1, 1, 1),
            256,
            2,
        ),
        ("conv 3x3 64->3 128x128 n1", conv(64, 3, 3, 1, 1, 1), 128, 1),
        (
            "conv 3x3 256->12 130x130 n4 (upscale-photo-2x last)",
            conv(256, 12, 3, 1, 0, 1),
            130,
            4,
        ),
        ("conv 3x3 32->8 128x128 n1", conv(32, 8, 3, 1, 1, 1), 128, 1),
        ("conv 1x1 64->3 128x128 n1", conv(64, 3, 1, 1, 0, 1), 128, 1),
        (
            "conv 1x1 16->4 128x128 n8 (remove-background's last)",
            conv(16, 4, 1, 1, 0, 1),
            128,
            8,
        ),
        ("conv 1x1 32->8 64x64 n8", conv(32, 8, 1, 1, 0, 1), 64, 8),
        ("conv 5x5 8->1 128x128 n1", conv(8, 1, 5, 1, 2, 1), 128, 1),
        (
            "conv depthwise 3x3 64 64x64 n1",
            conv(64, 64, 3, 1, 1, 64),
            64,
            1,
        ),
    ]
    .into_iter()
    .chain(mobile_shapes())
    .chain(wide_depthwise_shapes())
    .collect()
}

/// The mobile nets' shapes (classify, embed): 1x1 convolutions with few input channels on large
/// maps and many on small ones, a classifier's head, depthwise convolutions.
fn mobile_shapes() -> Vec<(&'static str, Conv2dSpec, u32, u32)> {
    vec![
        // The mobile nets' (classify, embed): few input channels on large maps, many on small.
        (
            "conv 1x1 16->96 112x112 n8",
            conv(16, 96, 1, 1, 0, 1),
            112,
            8,
        ),
        (
            "conv 1x1 24->144 56x56 n8",
            conv(24, 144, 1, 1, 0, 1),
            56,
            8,
        ),
        (
            "conv 1x1 672->112 14x14 n8",
            conv(672, 112, 1, 1, 0, 1),
            14,
            8,
        ),
        // An image's first convolution (classify's, detect-faces').
        (
            "conv 3x3 s2 3->32 224x224 n8",
            conv(3, 32, 3, 2, 1, 1),
            224,
            8,
        ),
        (
            "conv 5x5 s2 3->24 128x128 n4",
            conv(3, 24, 5, 2, 2, 1),
            128,
            4,
        ),
        // Output channels off the 32-channel block (classify's projections).
        (
            "conv 1x1 144->24 56x56 n8",
            conv(144, 24, 1, 1, 0, 1),
            56,
            8,
        ),
        (
            "conv 1x1 240->40 28x28 n8",
            conv(240, 40, 1, 1, 0, 1),
            28,
            8,
        ),
        (
            "conv 1x1 32->16 112x112 n8",
            conv(32, 16, 1, 1, 0, 1),
            112,
            8,
        ),
        // detect-faces' and remove-background's few-channel 1x1s on their largest maps.
        ("conv 1x1 24->28 64x64 n8", conv(24, 28, 1, 1, 0, 1), 64, 8),
        (
            "conv 1x1 16->16 128x128 n8",
            conv(16, 16, 1, 1, 0, 1),
            128,
            8,
        ),
        ("conv 1x1 16->72 64x64 n8", conv(16, 72, 1, 1, 0, 1), 64, 8),
        (
            "conv 1x1 320->1280 7x7 n8",
            conv(320, 1280, 1, 1, 0, 1),
            7,
            8,
        ),
        (
            "conv 1x1 1152->320 7x7 n8",
            conv(1152, 320, 1, 1, 0, 1),
            7,
            8,
        ),
        (
            "conv 1x1 1280->1000 1x1 n8 (classifier head)",
            conv(1280, 1000, 1, 1, 0, 1),
            1,
            8,
        ),
        // The mobile nets' (classify, embed): many channels on small maps.
        (
            "conv depthwise 3x3 144 56x56 n8",
            conv(144, 144, 3, 1, 1, 144),
            56,
            8,
        ),
        (
            "conv depthwise 3x3 32 112x112 n8",
            conv(32, 32, 3, 1, 1, 32),
            112,
            8,
        ),
        (
            "conv depthwise 3x3 s2 96 112x112 n8",
            conv(96, 96, 3, 2, 1, 96),
            112,
            8,
        ),
        // The same on one item: its 4.8 MB input stays in a 32 MiB L3 between runs, the 38.5
        // MB of 8 items does not.
        (
            "conv depthwise 3x3 s2 96 112x112 n1",
            conv(96, 96, 3, 2, 1, 96),
            112,
            1,
        ),
        // Stride 2 onto maps whose width is not a multiple of 4.
        (
            "conv depthwise 3x3 s2 240 28x28 n8",
            conv(240, 240, 3, 2, 1, 240),
            28,
            8,
        ),
        (
            "conv depthwise 5x5 s2 672 14x14 n8",
            conv(672, 672, 5, 2, 2, 672),
            14,
            8,
        ),
        (
            "conv depthwise 5x5 s2 144 56x56 n8",
            conv(144, 144, 5, 2, 2, 144),
            56,
            8,
        ),
        (
            "conv depthwise 5x5 672 14x14 n8",
            conv(672, 672, 5, 1, 2, 672),
            14,
            8,
        ),
        (
            "conv depthwise 5x5 1152 7x7 n8",
            conv(1152, 1152, 5, 1, 2, 1152),
            7,
            8,
        ),
        // classify's 3x3s on maps of 14 and 7: rows off the 4-value grid.
        (
            "conv depthwise 3x3 480 14x14 n8",
            conv(480, 480, 3, 1, 1, 480),
            14,
            8,
        ),
        (
            "conv depthwise 3x3 1152 7x7 n8",
            conv(1152, 1152, 3, 1, 1, 1152),
            7,
            8,
        ),
    ]
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let engine = Engine::new(&AdapterChoice::Auto).expect("a GPU adapter");
    let gpu = &engine.gpu;
    let kernels = Kernels::new(gpu);
    println!(
        "adapter: {} ({}, {})",
        gpu.adapter.name, gpu.adapter.backend, gpu.adapter.device_type
    );
    println!("{:<56} {:>10} {:>10}", "kernel", "ms", "GFLOP/s");
    let convs = conv_shapes();
    let blockings: Vec<(u32, u32)> = std::env::var("BATCHWISE_BENCH_NARROW")
        .unwrap_or_default()
        .split(',')
        .filter_map(|b| {
            let (r, c) = b.split_once('x')?;
            Some((r.parse().ok()?, c.parse().ok()?))
        })
        .collect();
    // Each shape on the kernel the engine picks, then (where that is another) on conv2d.wgsl.
    let runs = convs.into_iter().flat_map(|(name, spec, size, n)| {
        let narrow = conv2d_narrow::variant(&spec).is_some() || spec.is_depthwise();
        let other = spec.is_pointwise() || spec.is_depthwise() || narrow;
        let blocked = other.then(|| {
            (
                format!("{name} [conv2d]"),
                spec.clone(),
                size,
                n,
                Kernel::Blocked,
            )
        });
        let fits = |&&(rows, cols): &&(u32, u32)| {
            conv2d_narrow::variant_with(&spec, rows, cols).is_some() || spec.is_depthwise()
        };
        let tried = blockings.iter().filter(fits).map(|&(rows, cols)| {
            (
                format!("{name} [{rows}x{cols}]"),
                spec.clone(),
                size,
                n,
                Kernel::Narrow { rows, cols },
            )
        });
        let mut tried: Vec<_> = tried.collect();
        if spec.is_depthwise() {
            tried.push((
                format!("{name} [per pixel]"),
                spec.clone(),
                size,
                n,
                Kernel::DepthwisePerPixel,
            ));
        }
        let winograd = winograd::supported(&spec) && !narrow;
        let tiles = Tile::ALL.into_iter().filter(|_| winograd).map(|tile| {
            let label = format!("{name} [winograd {tile:?}]");
            (label, spec.clone(), size, n, Kernel::Winograd(tile))
        });
        std::iter::once((name.to_owned(), spec.clone(), size, n, Kernel::Auto))
            .chain(blocked)
            .chain(tried)
            .chain(tiles.collect::<Vec<_>>())
    });
    // `BATCHWISE_BENCH_ENGINE_ONLY=1`: no `[conv2d]` or `[per pixel]` rows.
    let engine_only = std::env::var_os("BATCHWISE_BENCH_ENGINE_ONLY").is_some();
    for (name, spec, size, n, kernel) in runs {
        if filter.as_deref().is_some_and(|f| !name.contains(f))
            || (engine_only && matches!(kernel, Kernel::Blocked | Kernel::DepthwisePerPixel))
        {
            continue;
        }
        let fan = (spec.in_c / spec.groups * spec.k_h * spec.k_w) as usize;
        let weights: Vec<f32> = (0..spec.out_c as usize * fan)
            .map(|i| ((i % 17) as f32 - 8.0) / 64.0)
            .collect();
        let bias = vec![0.1; spec.out_c as usize];
        let layer = Conv2dLayer::upload_with(gpu, &name, spec.clone(), &weights, &bias, kernel);
        let (oh, ow) = spec.output_hw(size, size).unwrap();
        let (src, dst) = buffers(
            gpu,
            (n * spec.in_c * size * size) as usize,
            (n * spec.out_c * oh * ow) as usize,
        );
        let step = layer.prepare(Bind::new(gpu, &kernels, &name), &src, &dst, size, size);
        let secs = time_step(gpu, &step, n);
        let flops = 2.0 * spec.macs(size, size) as f64 * n as f64;
        println!(
            "{name:<56} {:>10.2} {:>10.2}",
            secs * 1e3,
            flops / secs / 1e9
        );
    }
    gemm_rows(gpu, &kernels, filter.as_deref());
    matmul_rows(gpu, &kernels, filter.as_deref());
    let deconvs = [(
        "conv_transpose 4x4 s2 256->3 64x64 n1 (waifu2x)",
        ConvTranspose2dSpec {
            in_c: 256,
            out_c: 3,
            k_h: 4,
            k_w: 4,
            stride: [2, 2],
            pads: [3; 4],
            dilation: [1, 1],
            output_padding: [0, 0],
            groups: 1,
            activation: Activation::None,
        },
        64u32,
        1u32,
    )];
    for (name, spec, size, n) in deconvs {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let weights: Vec<f32> = (0..(spec.in_c * spec.out_c * 16) as usize)
            .map(|i| ((i % 13) as f32 - 6.0) / 64.0)
            .collect();
        let layer = ConvTranspose2dLayer::upload(gpu, name, spec.clone(), &weights, &[0.0; 3]);
        let (oh, ow) = spec.output_hw(size, size).unwrap();
        let (src, dst) = buffers(
            gpu,
            (n * spec.in_c * size * size) as usize,
            (n * spec.out_c * oh * ow) as usize,
        );
        let step = layer.prepare(Bind::new(gpu, &kernels, name), &src, &dst, size, size);
        let secs = time_step(gpu, &step, n);
        // Useful work: each input pixel meets each kernel tap once per output channel.
        let flops = 2.0 * spec.macs(size, size) as f64 * n as f64;
        println!(
            "{name:<56} {:>10.2} {:>10.2}",
            secs * 1e3,
            flops / secs / 1e9
        );
    }
}

/// The general matmul (bound-mode MatMul and Gemm): `[m, k] x [k, n]`, B a constant, on the
/// tiling the engine picks, then on each of `BATCHWISE_BENCH_MATMUL=WXxWYxRMxRN,...`.
fn matmul_rows(gpu: &Gpu, kernels: &Kernels, filter: Option<&str>) {
    use batchwise::kernels::matmul::{self, Tiling};
    let shapes = [
        ("matmul 512x512x512", 512, 512, 512),
        ("matmul 1x1280x1000 (a classifier's Gemm)", 1, 1280, 1000),
        ("matmul 196x64x196 (attention scores)", 196, 64, 196),
        ("matmul 197x197x64 (attention weights by v)", 197, 197, 64),
    ];
    let tried: Vec<Tiling> = std::env::var("BATCHWISE_BENCH_MATMUL")
        .unwrap_or_default()
        .split(',')
        .filter_map(|t| {
            let v: Vec<u32> = t.split('x').filter_map(|x| x.parse().ok()).collect();
            (v.len() == 4).then(|| Tiling::new(v[0], v[1], v[2], v[3]))
        })
        .collect();
    for (name, m, k, n) in shapes {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let spec = MatMulSpec::matmul(&[m, k], &[k, n]).unwrap();
        let (a, dst) = buffers(gpu, (m * k) as usize, (m * n) as usize);
        let (b, _) = buffers(gpu, (k * n) as usize, 1);
        let runs = std::iter::once((name.to_owned(), Tiling::for_shape(m, n))).chain(
            tried
                .iter()
                .map(|t| (format!("{name} [{}x{}x{}x{}]", t.wx, t.wy, t.rm, t.rn), *t)),
        );
        for (label, tiling) in runs {
            let bind = Bind::new(gpu, kernels, &label);
            let step = matmul::prepare_tiled(bind, tiling, &spec, (&a, m * k), (&b, 0), &dst);
            let secs = time_step(gpu, &step, 1);
            let flops = 2.0 * (m * k * n) as f64;
            println!(
                "{label:<44} {:>10.2} {:>10.2}",
                secs * 1e3,
                flops / secs / 1e9
            );
        }
    }
}

/// The 1x1 shapes on gemm.wgsl with each register blocking of
/// `BATCHWISE_BENCH_GEMM=OCxPIX,...` (output channels x pixels an invocation).
fn gemm_rows(gpu: &Gpu, kernels: &Kernels, filter: Option<&str>) {
    let blockings: Vec<gemm::Blocking> = std::env::var("BATCHWISE_BENCH_GEMM")
        .unwrap_or_default()
        .split(',')
        .filter_map(|b| {
            let (oc, pix) = b.split_once('x')?;
            let (oc_block, pix) = (oc.parse().ok()?, pix.parse().ok()?);
            Some(gemm::Blocking {
                oc_block,
                pix,
                inputs: 0,
            })
        })
        .collect();
    let shapes = conv_shapes()
        .into_iter()
        .filter(|(_, s, _, _)| s.is_pointwise());
    for ((name, spec, size, n), b) in
        shapes.flat_map(|c| blockings.iter().map(move |b| (c.clone(), *b)))
    {
        let name = format!("{name} [gemm {}x{}]", b.oc_block, b.pix);
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let weights: Vec<f32> = (0..(spec.out_c * spec.in_c) as usize)
            .map(|i| ((i % 17) as f32 - 8.0) / 64.0)
            .collect();
        let bias = vec![0.1; spec.out_c as usize];
        let dims = (spec.out_c, spec.in_c);
        let layer =
            gemm::GemmLayer::upload_blocked(gpu, &name, dims, &weights, &bias, &spec.activation, b);
        let pixels = size * size;
        let (src, dst) = buffers(
            gpu,
            (n * spec.in_c * pixels) as usize,
            (n * spec.out_c * pixels) as usize,
        );
        let layout = gemm::Layout::planes(spec.in_c, spec.out_c, pixels);
        let step = layer.prepare(Bind::new(gpu, kernels, &name), &src, &dst, layout, None);
        let secs = time_step(gpu, &step, n);
        let flops = 2.0 * spec.macs(size, size) as f64 * n as f64;
        println!(
            "{name:<56} {:>10.2} {:>10.2}",
            secs * 1e3,
            flops / secs / 1e9
        );
    }
}

/// Depthwise convolutions over few channels on wide maps: ConvNeXt's 7x7, and a 5x5.
fn wide_depthwise_shapes() -> Vec<(&'static str, Conv2dSpec, u32, u32)> {
    vec![
        (
            "conv depthwise 7x7 32 56x56 n8",
            conv(32, 32, 7, 1, 3, 32),
            56,
            8,
        ),
        (
            "conv depthwise 7x7 32 160x160 n8",
            conv(32, 32, 7, 1, 3, 32),
            160,
            8,
        ),
        (
            "conv depthwise 5x5 32 56x56 n8",
            conv(32, 32, 5, 1, 2, 32),
            56,
            8,
        ),
    ]
}
