//! Autotune: the conv kernel variant that is fastest on this adapter, measured once and cached.
//!
//! Kernels good on one device can be poor on another (16 output rows per invocation is best on
//! lavapipe; a GPU with thousands of lanes may prefer fewer rows and more invocations). The first
//! run on an adapter times a representative convolution with each row count, then each 3x3 shape
//! of `winograd::TUNED_SHAPES` on the direct kernel and on each Winograd tile (`KERNELS`), and stores
//! the winners in `autotune.json` in the cache folder, keyed by adapter, backend, driver and
//! batchwise version; later runs read it. `BATCHWISE_CONV_ROWS=N` skips all of this (the
//! Winograd choices then stay the defaults, measured on lavapipe); `BATCHWISE_WINOGRAD` fixes
//! those.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::engine::Engine;
use crate::kernels::Bind;
use crate::kernels::conv2d::{self, Conv2dLayer, Kernel};
use crate::kernels::winograd::{self, Choice, Choices, Tile};
use crate::model::Activation;
use crate::model::Conv2dSpec;

#[derive(Clone, Debug, Serialize)]
pub struct AutotuneReport {
    pub key: String,
    pub conv_rows: u32,
    /// The kernel of each measured 3x3 shape: a Winograd tile or the direct one.
    pub winograd: Choices,
    /// Whether the choice came from the cache (no measurement this time).
    pub cached: bool,
    /// Milliseconds per row count, when measured.
    pub timings_ms: Vec<(u32, f64)>,
    /// Milliseconds per measured 3x3 shape.
    pub winograd_ms: Vec<ShapeTimings>,
}

/// A 3x3 shape (input, output channels) and its milliseconds on each of [`KERNELS`].
pub type ShapeTimings = ((u32, u32), [f64; 6]);

/// The 3x3 kernels measured per shape: the direct one (None), then each Winograd tile.
pub const KERNELS: [Option<Tile>; 6] = [
    None,
    Some(Tile::F2),
    Some(Tile::F4),
    Some(Tile::F2Split),
    Some(Tile::F4Split),
    Some(Tile::F6Split),
];

/// A 3x3 kernel's name in reports: "direct", "F(4,3)" (fused) or "F(4,3) split".
pub fn kernel_name(tile: Option<Tile>) -> String {
    match tile {
        None => "direct".into(),
        Some(t) if t.split() => format!("F({},3) split", t.m()),
        Some(t) => format!("F({},3)", t.m()),
    }
}

/// What the cache holds per adapter.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
struct Tuned {
    conv_rows: u32,
    winograd: Choices,
}

/// `$XDG_CACHE_HOME/batchwise`, else `~/.cache/batchwise`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("batchwise"))
}

/// Bumped when the measured kernels change (2: the split Winograd tiles; 3: its products without
/// division), so that an older entry of the same version is measured again.
const KERNELS_REVISION: u32 = 3;

fn cache_key(engine: &Engine) -> String {
    let a = &engine.gpu.adapter;
    format!(
        "{} | {} | {} | batchwise {} | kernels {KERNELS_REVISION}",
        a.name,
        a.backend,
        a.driver,
        env!("CARGO_PKG_VERSION")
    )
}

/// The cache's entries; one that does not parse (an older format) is measured again.
fn read_cache(path: &Path) -> BTreeMap<String, serde_json::Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Chooses the conv kernels for `engine`: from the environment, the cache in `cache_dir`, or by
/// measuring (then cached). A cache that cannot be written is not an error.
pub fn tune(engine: &Engine, cache_dir: Option<&Path>) -> Result<AutotuneReport> {
    match cached(engine, cache_dir) {
        Some(report) => Ok(report),
        None => measure_and_store(engine, cache_dir),
    }
}

/// Sets `engine`'s conv kernels from the environment (`BATCHWISE_CONV_ROWS`) or from what an
/// earlier measurement on this adapter and driver stored in `cache_dir`; None (the defaults kept)
/// when neither has them. Measures nothing: the command line uses this, and `batchwise tune`
/// (or the app) measures.
pub fn cached(engine: &Engine, cache_dir: Option<&Path>) -> Option<AutotuneReport> {
    let tuned = match conv2d::rows_from_env() {
        Some(conv_rows) => Tuned {
            conv_rows,
            winograd: engine.kernels().winograd_choices(),
        },
        None => {
            let file = cache_dir?.join(CACHE_FILE);
            let hit = read_cache(&file).remove(&cache_key(engine))?;
            serde_json::from_value::<Tuned>(hit).ok()?
        }
    };
    engine.kernels().set_conv_rows(tuned.conv_rows);
    engine
        .kernels()
        .set_winograd_choices(tuned.winograd.clone());
    Some(AutotuneReport {
        key: cache_key(engine),
        conv_rows: tuned.conv_rows,
        winograd: tuned.winograd,
        cached: true,
        timings_ms: Vec::new(),
        winograd_ms: Vec::new(),
    })
}

/// The cache's file in the cache folder.
const CACHE_FILE: &str = "autotune.json";

/// Measures the conv kernels on `engine`, sets the fastest and stores them in `cache_dir`'s
/// cache (replacing what it held for this adapter).
pub fn measure_and_store(engine: &Engine, cache_dir: Option<&Path>) -> Result<AutotuneReport> {
    let key = cache_key(engine);
    let kernels = engine.kernels();
    let timings_ms = measure(engine)?;
    let rows = timings_ms
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|t| t.0)
        .unwrap_or(conv2d::DEFAULT_UNROLLED_ROWS);
    kernels.set_conv_rows(rows);
    let winograd_ms = measure_winograd(engine)?;
    let winograd = Choices(
        winograd_ms
            .iter()
            .map(|&((in_c, out_c), ms)| Choice {
                in_c,
                out_c,
                tile: fastest(ms),
            })
            .collect(),
    );
    kernels.set_winograd_choices(winograd.clone());
    if let Some(file) = cache_dir.map(|d| d.join(CACHE_FILE)) {
        let mut cache = read_cache(&file);
        let tuned = Tuned {
            conv_rows: rows,
            winograd: winograd.clone(),
        };
        cache.insert(key.clone(), serde_json::to_value(tuned)?);
        let _ = write_atomic(&file, &serde_json::to_vec_pretty(&cache)?);
    }
    Ok(AutotuneReport {
        key,
        conv_rows: rows,
        winograd,
        cached: false,
        timings_ms,
        winograd_ms,
    })
}

impl AutotuneReport {
    /// One line: the rows per invocation and each measured 3x3 shape's kernel.
    pub fn describe(&self) -> String {
        let shapes: Vec<String> = self
            .winograd
            .0
            .iter()
            .map(|c| format!("{}->{} {}", c.in_c, c.out_c, kernel_name(c.tile)))
            .collect();
        format!(
            "{} rows an invocation; 3x3: {}",
            self.conv_rows,
            shapes.join(", ")
        )
    }
}

/// The tile of the fastest of [`KERNELS`], None for the direct kernel.
pub fn fastest(ms: [f64; 6]) -> Option<Tile> {
    let best = (0..ms.len()).min_by(|&a, &b| ms[a].total_cmp(&ms[b]))?;
    KERNELS[best]
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("no parent folder")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".autotune.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Input side of the measured convolutions (128 x 128 outputs, unpadded: the upscalers' tiles;
/// smaller maps leave the split Winograd's GEMM workgroups part empty).
const SIZE: u32 = 130;

/// Items of a measured convolution with `in_c` input channels: 4 below 64 channels, 1 above. A
/// layer of few channels runs on a batch of tiles, and one item of it is too little work for the
/// split Winograd's GEMM: on lavapipe one item of 32 -> 32 measured the direct kernel as fast as
/// F(4,3) split, while enhance-low-light (32 and 64 channels, 142 px tiles) ran 1.3x faster on
/// F(4,3) split at batch 1 and 1.7x at batch 4 (BENCHMARKS.md, "Winograd for the few-channel
/// layers"). Above 64 channels one item is work enough, and 4 would make the first run slow.
fn probe_items(in_c: u32) -> u32 {
    if in_c < 64 { 4 } else { 1 }
}

/// A 3x3 convolution of `in_c -> out_c` channels on a 130x130 input (a typical upscaler layer) on
/// `kernel`, with its input and output buffers.
fn probe(
    engine: &Engine,
    (in_c, out_c): (u32, u32),
    kernel: Kernel,
) -> (Conv2dLayer, [crate::gpu::TrackedBuffer; 2]) {
    let gpu = &engine.gpu;
    let spec = Conv2dSpec {
        in_c,
        out_c,
        k_h: 3,
        k_w: 3,
        stride: [1, 1],
        pads: [0; 4],
        dilation: [1, 1],
        groups: 1,
        activation: Activation::LeakyRelu { alpha: 0.1 },
    };
    let weights: Vec<f32> = (0..in_c * out_c * 9)
        .map(|i| ((i % 13) as f32 - 6.0) / 64.0)
        .collect();
    let bias = vec![0.0; out_c as usize];
    let layer = Conv2dLayer::upload_with(gpu, "autotune", spec, &weights, &bias, kernel);
    let input: Vec<f32> = (0..probe_items(in_c) * in_c * SIZE * SIZE)
        .map(|i| (i % 7) as f32 / 7.0)
        .collect();
    let src = gpu.create_buffer_init(
        "autotune input",
        bytemuck::cast_slice(&input),
        wgpu::BufferUsages::STORAGE,
    );
    let out = (SIZE - 2) as u64;
    let dst = gpu.create_buffer(
        "autotune output",
        4 * u64::from(probe_items(in_c) * out_c) * out * out,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    (layer, [src, dst])
}

/// The best of 3 runs of `layer` after a warm-up that compiles the pipeline, in milliseconds.
fn best_ms(
    engine: &Engine,
    (layer, [src, dst]): &(Conv2dLayer, [crate::gpu::TrackedBuffer; 2]),
) -> Result<f64> {
    let gpu = &engine.gpu;
    let step = layer.prepare(
        Bind::new(gpu, engine.kernels(), "autotune"),
        src,
        dst,
        SIZE,
        SIZE,
    );
    let mut best = f64::MAX;
    for run in 0..4 {
        let start = Instant::now();
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            step.record(&mut pass, probe_items(layer.spec.in_c));
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.device
            .poll(wgpu::PollType::wait_indefinitely())
            .context("waiting for the GPU")?;
        if run > 0 {
            best = best.min(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(best)
}

/// Times the 64 -> 64 channel probe with each row count.
fn measure(engine: &Engine) -> Result<Vec<(u32, f64)>> {
    let probe = probe(engine, (64, 64), Kernel::Auto);
    let mut timings = Vec::new();
    for &rows in conv2d::UNROLLED_ROW_CHOICES {
        engine.kernels().set_conv_rows(rows);
        timings.push((rows, best_ms(engine, &probe)?));
    }
    Ok(timings)
}

/// Times each shape of `winograd::TUNED_SHAPES` on each of [`KERNELS`] (the direct one at the
/// chosen row count).
fn measure_winograd(engine: &Engine) -> Result<Vec<ShapeTimings>> {
    let kernels = KERNELS.map(|t| t.map_or(Kernel::Auto, Kernel::Winograd));
    winograd::TUNED_SHAPES
        .iter()
        .map(|&shape| {
            let mut ms = [0.0; 6];
            for (t, kernel) in ms.iter_mut().zip(kernels) {
                *t = best_ms(engine, &probe(engine, shape, kernel))?;
            }
            Ok((shape, ms))
        })
        .collect()
}
