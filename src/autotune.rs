//! Autotune: the conv kernel variant that is fastest on this adapter, measured once and cached.
//!
//! Kernels good on one device can be poor on another (16 output rows per invocation is best on
//! lavapipe; a GPU with thousands of lanes may prefer fewer rows and more invocations). The first
//! run on an adapter times a representative convolution with each row count and stores the winner
//! in `autotune.json` in the cache folder, keyed by adapter, backend, driver and batchwise version;
//! later runs read it. `BATCHWISE_CONV_ROWS=N` skips all of this.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::engine::Engine;
use crate::kernels::Bind;
use crate::kernels::conv2d::{self, Conv2dLayer};
use crate::model::Activation;
use crate::model::Conv2dSpec;

#[derive(Clone, Debug, Serialize)]
pub struct AutotuneReport {
    pub key: String,
    pub conv_rows: u32,
    /// Whether the choice came from the cache (no measurement this time).
    pub cached: bool,
    /// Milliseconds per row count, when measured.
    pub timings_ms: Vec<(u32, f64)>,
}

/// `$XDG_CACHE_HOME/batchwise`, else `~/.cache/batchwise`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("batchwise"))
}

fn cache_key(engine: &Engine) -> String {
    let a = &engine.gpu.adapter;
    format!(
        "{} | {} | {} | batchwise {}",
        a.name,
        a.backend,
        a.driver,
        env!("CARGO_PKG_VERSION")
    )
}

fn read_cache(path: &Path) -> BTreeMap<String, u32> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Chooses the conv row count for `engine`: from the environment, the cache in `cache_dir`, or by
/// measuring (then cached). A cache that cannot be written is not an error.
pub fn tune(engine: &Engine, cache_dir: Option<&Path>) -> Result<AutotuneReport> {
    let key = cache_key(engine);
    if let Some(rows) = conv2d::rows_from_env() {
        engine.kernels().set_conv_rows(rows);
        return Ok(AutotuneReport {
            key,
            conv_rows: rows,
            cached: true,
            timings_ms: Vec::new(),
        });
    }
    let file = cache_dir.map(|d| d.join("autotune.json"));
    if let Some(&rows) = file
        .as_deref()
        .map(read_cache)
        .as_ref()
        .and_then(|c| c.get(&key))
    {
        engine.kernels().set_conv_rows(rows);
        return Ok(AutotuneReport {
            key,
            conv_rows: rows,
            cached: true,
            timings_ms: Vec::new(),
        });
    }
    let timings_ms = measure(engine)?;
    let rows = timings_ms
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|t| t.0)
        .unwrap_or(conv2d::DEFAULT_UNROLLED_ROWS);
    engine.kernels().set_conv_rows(rows);
    if let Some(file) = &file {
        let mut cache = read_cache(file);
        cache.insert(key.clone(), rows);
        let _ = write_atomic(file, &serde_json::to_vec_pretty(&cache)?);
    }
    Ok(AutotuneReport {
        key,
        conv_rows: rows,
        cached: false,
        timings_ms,
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("no parent folder")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".autotune.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Times a 3x3, 64 -> 64 channel convolution on a 66x66 input (a typical upscaler layer) with each
/// row count: the best of 3 runs after a warm-up that compiles the pipeline.
fn measure(engine: &Engine) -> Result<Vec<(u32, f64)>> {
    let gpu = &engine.gpu;
    let spec = Conv2dSpec {
        in_c: 64,
        out_c: 64,
        k_h: 3,
        k_w: 3,
        stride: [1, 1],
        pads: [0; 4],
        dilation: [1, 1],
        groups: 1,
        activation: Activation::LeakyRelu { alpha: 0.1 },
    };
    let (size, out) = (66u32, 64u32);
    let weights: Vec<f32> = (0..64 * 64 * 9)
        .map(|i| ((i % 13) as f32 - 6.0) / 64.0)
        .collect();
    let layer = Conv2dLayer::upload(gpu, "autotune", spec.clone(), &weights, &[0.0; 64]);
    let input: Vec<f32> = (0..64 * size * size)
        .map(|i| (i % 7) as f32 / 7.0)
        .collect();
    let src = gpu.create_buffer_init(
        "autotune input",
        bytemuck::cast_slice(&input),
        wgpu::BufferUsages::STORAGE,
    );
    let dst = gpu.create_buffer(
        "autotune output",
        4 * 64 * out as u64 * out as u64,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let kernels = engine.kernels();
    let mut timings = Vec::new();
    for &rows in conv2d::UNROLLED_ROW_CHOICES {
        kernels.set_conv_rows(rows);
        let step = layer.prepare(Bind::new(gpu, kernels, "autotune"), &src, &dst, size, size);
        let mut best = f64::MAX;
        for run in 0..4 {
            let start = Instant::now();
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                step.record(&mut pass, 1);
            }
            gpu.queue.submit([encoder.finish()]);
            gpu.device
                .poll(wgpu::PollType::wait_indefinitely())
                .context("waiting for the GPU")?;
            if run > 0 {
                best = best.min(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        timings.push((rows, best));
    }
    Ok(timings)
}
