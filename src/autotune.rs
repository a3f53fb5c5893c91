//! Autotune: the conv kernel variant that is fastest on this adapter, measured once and cached.
//!
//! Kernels good on one device can be poor on another (16 output rows per invocation is best on
//! lavapipe; a GPU with thousands of lanes may prefer fewer rows and more invocations). The first
//! run on an adapter times a representative convolution with each row count, then each 3x3 shape
//! of `winograd::TUNED_SHAPES` on the direct kernel and on each Winograd tile (`KERNELS`), and stores
//! the winners in `autotune.json` in the cache folder, keyed by adapter, backend, driver and
//! batchwise version; later runs read it. Until then an adapter runs its kind's defaults: on a
//! CPU's Vulkan what lavapipe measured in the models, on a GPU the direct kernel with 4 rows
//! (what an H200 measured: `Choices::defaults_for`, `conv2d::default_unrolled_rows`).
//! `BATCHWISE_CONV_ROWS=N` skips all of this (the Winograd choices then stay the defaults);
//! `BATCHWISE_WINOGRAD` fixes those.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::engine::Engine;
use crate::gpu::TrackedBuffer;
use crate::kernels::conv2d::{self, Conv2dLayer, Kernel};
use crate::kernels::winograd::{self, Choice, Choices, Tile};
use crate::kernels::{Bind, Step};
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

/// Bumped when the measured kernels or the measurement change (2: the split Winograd tiles; 3:
/// its products without division; 4: interleaved rounds and the defaults' margin), so that an
/// older entry of the same version is measured again.
const KERNELS_REVISION: u32 = 4;

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
    let device_type = &engine.gpu.adapter.device_type;
    let timings_ms = measure(engine)?;
    let rows = chosen_rows(&timings_ms, conv2d::default_unrolled_rows(device_type));
    kernels.set_conv_rows(rows);
    let winograd_ms = measure_winograd(engine)?;
    let defaults = Choices::defaults_for(device_type);
    let winograd = Choices(
        winograd_ms
            .iter()
            .map(|&((in_c, out_c), ms)| Choice {
                in_c,
                out_c,
                tile: chosen_tile((in_c, out_c), ms, &defaults),
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

/// A measured kernel replaces the default only where it is at least this much faster: closer
/// than that, wall-clock times on a shared machine do not tell two kernels apart (lavapipe's
/// F(4,3) and F(6,3) split on 64 -> 64 measured 29.3 and 30.1 ms in one run, the other way
/// round in the next), and the defaults were chosen in whole models, where a layer's balance
/// differs from one probe's (BENCHMARKS.md, "Autotune").
pub const MARGIN: f64 = 0.05;

/// Of candidates timed `ms`, the one to keep: the fastest, or the `default` where its time is
/// within [`MARGIN`] of the fastest's.
pub fn pick(ms: &[f64], default: usize) -> usize {
    let Some(best) = (0..ms.len()).min_by(|&a, &b| ms[a].total_cmp(&ms[b])) else {
        return default;
    };
    match ms.get(default) {
        Some(&d) if d <= ms[best] * (1.0 + MARGIN) => default,
        _ => best,
    }
}

/// The row count to keep of `timings` (rows, milliseconds): [`pick`] with the adapter's
/// `default` ([`conv2d::default_unrolled_rows`]).
pub fn chosen_rows(timings: &[(u32, f64)], default: u32) -> u32 {
    let ms: Vec<f64> = timings.iter().map(|t| t.1).collect();
    let at = timings
        .iter()
        .position(|t| t.0 == default)
        .unwrap_or(usize::MAX);
    timings.get(pick(&ms, at)).map_or(default, |t| t.0)
}

/// The kernel to keep for a 3x3 `shape` of [`winograd::TUNED_SHAPES`] timed `ms` on each of
/// [`KERNELS`]: [`pick`] with the adapter's choice for the shape in `defaults`
/// ([`Choices::defaults_for`]).
pub fn chosen_tile(shape: (u32, u32), ms: [f64; 6], defaults: &Choices) -> Option<Tile> {
    let default = defaults
        .0
        .iter()
        .find(|c| (c.in_c, c.out_c) == shape)
        .and_then(|c| KERNELS.iter().position(|&k| k == c.tile))
        .unwrap_or(usize::MAX);
    KERNELS[pick(&ms, default)]
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

/// The steps to time, each with the items it runs, and what they bind (buffers are destroyed
/// when dropped).
struct Probes {
    steps: Vec<(Step, u32)>,
    _layers: Vec<Conv2dLayer>,
    _buffers: [TrackedBuffer; 2],
}

/// A 3x3 convolution of `in_c -> out_c` channels on a 130x130 input (a typical upscaler layer),
/// prepared on each of `kernels` (the row count set before each, where given), all reading
/// and writing the same buffers.
fn probes(engine: &Engine, (in_c, out_c): (u32, u32), kernels: &[(Kernel, Option<u32>)]) -> Probes {
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
    let items = probe_items(in_c);
    let input: Vec<f32> = (0..items * in_c * SIZE * SIZE)
        .map(|i| (i % 7) as f32 / 7.0)
        .collect();
    let src = gpu.create_buffer_init(
        "autotune input",
        bytemuck::cast_slice(&input),
        wgpu::BufferUsages::STORAGE,
    );
    let out = u64::from(SIZE - 2);
    let dst = gpu.create_buffer(
        "autotune output",
        4 * u64::from(items * out_c) * out * out,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let mut steps = Vec::new();
    let mut layers = Vec::new();
    for &(kernel, rows) in kernels {
        if let Some(rows) = rows {
            engine.kernels().set_conv_rows(rows);
        }
        let layer =
            Conv2dLayer::upload_with(gpu, "autotune", spec.clone(), &weights, &bias, kernel);
        let bind = Bind::new(gpu, engine.kernels(), "autotune");
        steps.push((layer.prepare(bind, &src, &dst, SIZE, SIZE), items));
        layers.push(layer);
    }
    Probes {
        steps,
        _layers: layers,
        _buffers: [src, dst],
    }
}

/// Timed rounds of a measurement. Each round runs every candidate once, starting one further
/// along each round, so that a burst of load on a shared machine slows a round of all of them
/// rather than every run of one; each keeps its fastest.
const ROUNDS: usize = 4;

/// What one timed submission should take, in milliseconds: a candidate faster than this runs as
/// many times in one submission as make it up (at most [`MAX_REPEATS`]), so that the clock
/// times the GPU's work, not a submission and a wait (a GPU runs a probe in well under a
/// millisecond; lavapipe in tens of them, one run a submission).
const TARGET_MS: f64 = 20.0;
const MAX_REPEATS: u32 = 64;

/// The fastest milliseconds a run of each of `steps`: each runs once untimed (first use), once
/// timed to size its submissions, then [`ROUNDS`] rounds.
fn interleaved(engine: &Engine, steps: &[(Step, u32)]) -> Result<Vec<f64>> {
    let mut best = Vec::with_capacity(steps.len());
    let mut repeats = Vec::with_capacity(steps.len());
    for step in steps {
        submit_timed(engine, step, 1)?;
        let ms = submit_timed(engine, step, 1)?;
        best.push(ms);
        repeats.push(repeats_for(ms));
    }
    for round in 0..ROUNDS {
        for i in (0..steps.len()).map(|k| (k + round) % steps.len()) {
            let ms = submit_timed(engine, &steps[i], repeats[i])? / f64::from(repeats[i]);
            best[i] = best[i].min(ms);
        }
    }
    Ok(best)
}

/// Runs a submission of a candidate that ran once in `ms` milliseconds.
fn repeats_for(ms: f64) -> u32 {
    (TARGET_MS / ms.max(1e-3)).clamp(1.0, f64::from(MAX_REPEATS)) as u32
}

/// Milliseconds to submit `repeats` runs of `step` in one pass and wait for them.
fn submit_timed(engine: &Engine, (step, items): &(Step, u32), repeats: u32) -> Result<f64> {
    let gpu = &engine.gpu;
    let start = Instant::now();
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        for _ in 0..repeats {
            step.record(&mut pass, *items);
        }
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .context("waiting for the GPU")?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// Times the 64 -> 64 channel probe with each row count.
fn measure(engine: &Engine) -> Result<Vec<(u32, f64)>> {
    let rows = conv2d::UNROLLED_ROW_CHOICES;
    let kernels: Vec<_> = rows.iter().map(|&r| (Kernel::Auto, Some(r))).collect();
    let ms = interleaved(engine, &probes(engine, (64, 64), &kernels).steps)?;
    Ok(rows.iter().copied().zip(ms).collect())
}

/// Times each shape of `winograd::TUNED_SHAPES` on each of [`KERNELS`] (the direct one at the
/// chosen row count).
fn measure_winograd(engine: &Engine) -> Result<Vec<ShapeTimings>> {
    let kernels = KERNELS.map(|t| (t.map_or(Kernel::Auto, Kernel::Winograd), None));
    winograd::TUNED_SHAPES
        .iter()
        .map(|&shape| {
            let ms = interleaved(engine, &probes(engine, shape, &kernels).steps)?;
            let ms = ms
                .try_into()
                .map_err(|_| anyhow::anyhow!("a time per kernel"))?;
            Ok((shape, ms))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_replaces_the_default_only_when_clearly_faster() {
        // Within the margin the default stays, whichever is faster.
        assert_eq!(pick(&[10.0, 9.7, 12.0], 0), 0);
        assert_eq!(pick(&[10.0, 10.4, 12.0], 1), 1);
        assert_eq!(pick(&[10.0, 10.6, 12.0], 1), 0);
        // Past it the fastest replaces it.
        assert_eq!(pick(&[10.0, 9.0, 12.0], 0), 1);
        assert_eq!(pick(&[10.0, 12.0, 11.0], 1), 0);
        // No default among the candidates: the fastest.
        assert_eq!(pick(&[10.0, 9.9], usize::MAX), 1);
        assert_eq!(pick(&[], 3), 3);
    }

    #[test]
    fn fast_candidates_run_several_times_a_submission() {
        assert_eq!(repeats_for(30.0), 1);
        assert_eq!(repeats_for(20.0), 1);
        assert_eq!(repeats_for(6.0), 3);
        assert_eq!(repeats_for(0.5), 40);
        assert_eq!(repeats_for(0.1), MAX_REPEATS);
        assert_eq!(repeats_for(0.0), MAX_REPEATS);
    }

    #[test]
    fn rows_and_tiles_default_to_what_the_adapters_kind_measured() {
        let rows =
            |ms: [f64; 3], default| chosen_rows(&[(4, ms[0]), (8, ms[1]), (16, ms[2])], default);
        let cpu = conv2d::default_unrolled_rows("Cpu");
        assert_eq!(cpu, 16);
        assert_eq!(rows([30.0, 29.0, 30.0], cpu), 16);
        assert_eq!(rows([30.0, 20.0, 30.0], cpu), 8);
        // A GPU's default, 4 rows, kept within the margin.
        let gpu = conv2d::default_unrolled_rows("DiscreteGpu");
        assert_eq!(rows([0.75, 0.73, 10.0], gpu), 4);
        assert_eq!(rows([0.75, 0.6, 10.0], gpu), 8);
        // 64 -> 64 defaults to split F(6,3), KERNELS' last: F(4,3) split 2.5% faster keeps it.
        let lavapipe = Choices::defaults_for("Cpu");
        let ms = [76.0, 55.0, 74.0, 47.0, 29.3, 30.0];
        assert_eq!(chosen_tile((64, 64), ms, &lavapipe), Some(Tile::F6Split));
        let ms = [76.0, 55.0, 74.0, 47.0, 25.0, 30.0];
        assert_eq!(chosen_tile((64, 64), ms, &lavapipe), Some(Tile::F4Split));
        // On a GPU the direct kernel, KERNELS' first, unless another is clearly faster.
        let direct = Choices::defaults_for("DiscreteGpu");
        assert!(direct.0.iter().all(|c| c.tile.is_none()));
        assert_eq!(lavapipe, Choices::lavapipe());
        let ms = [0.74, 7.3, 0.72, 8.0, 17.4, 30.7];
        assert_eq!(chosen_tile((64, 64), ms, &direct), None);
        let ms = [0.74, 7.3, 0.5, 8.0, 17.4, 30.7];
        assert_eq!(chosen_tile((64, 64), ms, &direct), Some(Tile::F4));
        // A shape no default names: the fastest.
        let ms = [9.0, 8.0, 7.0, 6.0, 5.0, 4.9];
        assert_eq!(chosen_tile((3, 5), ms, &lavapipe), Some(Tile::F6Split));
    }
}
