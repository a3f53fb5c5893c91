//! `batchwise bench`: throughput, GPU time and memory per batch size, on the same workload.

use std::time::Instant;

use anyhow::{Result, bail};
use image::RgbaImage;
use serde::Serialize;

use crate::builtin::ModelChoice;
use crate::engine::Engine;
use crate::upscale::{AUTO_TILE_SIZES, TileRef, TiledUpscaler};

mod profile;
pub use profile::{Profile, ProfileRow, describe};

#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    pub batch_size: u32,
    /// Items (whole images) per second: end to end (decode, run, encode, write: a real `run` job)
    /// with `--inputs`, else compute only.
    pub items_per_sec: f64,
    /// Items per second, compute only: tiles cut from decoded images, run, placed.
    pub compute_items_per_sec: f64,
    /// Mean GPU time of one batch from timestamp queries; None where the adapter has none.
    pub gpu_ms_per_batch: Option<f64>,
    /// Tiled models: one batch run alone, nothing overlapped (mean of two), where its wall time
    /// goes on the host: cutting the tiles out and submitting them, and then waiting for the GPU,
    /// reading the outputs back and cropping them (the GPU time is part of the second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ms_per_batch: Option<HostTimes>,
    /// Peak of the engine's ledger while this batch size ran (weights included).
    pub peak_gpu_bytes: u64,
    /// What the planner predicted before allocating (weights + items x bytes per item).
    pub planned_gpu_bytes: u64,
    pub batches: usize,
    pub dispatches_per_batch: usize,
    /// Model multiply-adds per second, counting the context each tile carries.
    pub gflops: f64,
    /// For a chain with `--inputs`: items per second of its steps run as separate jobs, each
    /// reading the files the one before wrote (how tools without chains run one), end to end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub separate_steps_items_per_sec: Option<f64>,
    /// A chain the job ran step by step (each step on its own tiles): its planned memory and
    /// GFLOP/s are still the composed chain's.
    pub step_by_step: bool,
}

/// [`BenchRow::host_ms_per_batch`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct HostTimes {
    pub submit_ms: f64,
    pub collect_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub device: String,
    pub backend: String,
    pub device_type: String,
    pub model: String,
    pub size: u32,
    pub count: u32,
    pub tile_size: u32,
    pub tiles_per_item: usize,
    /// Packed weight bytes on the GPU and planned bytes per batch item at this tile size.
    pub weight_bytes: u64,
    pub bytes_per_item: u64,
    pub rows: Vec<BenchRow>,
    /// With `--profile`: each layer's GPU time in one batch of the largest batch size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

impl BenchReport {
    /// A report of `rows` on `engine`'s adapter; `workload` is (image size, image count, tile
    /// size, tiles per image) and `plan` the memory plan of one item.
    fn new(
        engine: &Engine,
        model: &str,
        (size, count, tile_size, tiles_per_item): (u32, u32, u32, usize),
        plan: crate::engine::MemoryPlan,
        rows: Vec<BenchRow>,
    ) -> Self {
        let a = &engine.gpu.adapter;
        Self {
            device: a.name.clone(),
            backend: a.backend.clone(),
            device_type: a.device_type.clone(),
            model: model.to_owned(),
            size,
            count,
            tile_size,
            tiles_per_item,
            weight_bytes: plan.weight_bytes,
            bytes_per_item: plan.bytes_per_item,
            rows,
            profile: None,
        }
    }
}

/// The job a bench row runs: `model` at `batch` (and `tile`), writing (if at all) into `out`.
fn job_spec(
    model: &ModelChoice,
    (batch, tile): (u32, Option<u32>),
    precision: crate::kernels::Precision,
    out: std::path::PathBuf,
) -> crate::job::JobSpec {
    crate::job::JobSpec {
        batch_size: batch,
        tile_size: tile,
        precision,
        ..crate::job::JobSpec::new(model.clone(), Vec::new(), out)
    }
}

/// Items per second of a real `run` job over `dir` into a temporary folder (removed after).
fn end_to_end(
    engine: &Engine,
    model: &ModelChoice,
    dir: &std::path::Path,
    batch: u32,
    tile: u32,
    precision: crate::kernels::Precision,
) -> Result<f64> {
    let out = std::env::temp_dir().join(format!("batchwise-bench-{}-{batch}", std::process::id()));
    let mut spec = job_spec(model, (batch, Some(tile)), precision, out.clone());
    spec.inputs = vec![dir.to_path_buf()];
    let summary = crate::job::run(engine, &spec, &Default::default(), &mut |_| {});
    let _ = std::fs::remove_dir_all(&out);
    Ok(summary?.items_per_sec)
}

/// Items per second of a chain's `steps` run as separate jobs over `dir`, each writing PNG files
/// into a temporary folder (removed after) that the next one reads: the items' time is the sum
/// of the jobs' (each measured as [`end_to_end`] measures one). A step's tile covers the same
/// input pixels as the chain's `tile` does.
fn separate_steps(
    engine: &Engine,
    steps: &[ModelChoice],
    dir: &std::path::Path,
    batch: u32,
    tile: u32,
    precision: crate::kernels::Precision,
) -> Result<f64> {
    let base = std::env::temp_dir().join(format!(
        "batchwise-bench-steps-{}-{batch}",
        std::process::id()
    ));
    let (mut from, mut seconds_per_item, mut scale) = (dir.to_path_buf(), 0.0, 1);
    for (i, step) in steps.iter().enumerate() {
        let out = base.join(i.to_string());
        let mut spec = job_spec(step, (batch, Some(tile * scale)), precision, out.clone());
        spec.inputs = vec![from];
        let summary = crate::job::run(engine, &spec, &Default::default(), &mut |_| {});
        let summary = summary.inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&base);
        })?;
        seconds_per_item += 1.0 / summary.items_per_sec;
        scale *= step.spec.scale;
        from = out;
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(1.0 / seconds_per_item)
}

/// Deterministic test images: smooth gradients with texture, so no kernel sees only zeros.
pub fn synthetic_images(count: u32, size: u32) -> Vec<RgbaImage> {
    (0..count)
        .map(|i| {
            RgbaImage::from_fn(size, size, |x, y| {
                let h = (x.wrapping_mul(73) ^ y.wrapping_mul(151) ^ i.wrapping_mul(97)) % 61;
                image::Rgba([
                    ((x * 255 / size) as u8).wrapping_add(h as u8),
                    ((y * 255 / size) as u8).wrapping_add((i * 40) as u8),
                    (((x + y) * 127 / size) as u8).wrapping_add(h as u8 / 2),
                    255,
                ])
            })
        })
        .collect()
}

/// What a bench measures: `count` images of `size` x `size` at each batch size.
#[derive(Clone, Debug)]
pub struct BenchSetup {
    pub batch_sizes: Vec<u32>,
    pub size: u32,
    pub count: u32,
    /// None: the image size, or the largest tile that fits the largest batch.
    pub tile_size: Option<u32>,
    pub precision: crate::kernels::Precision,
    /// A folder of real images: rows then measure end to end too (a `run` job into a temporary
    /// folder), beside compute only on the same decoded images.
    pub inputs: Option<std::path::PathBuf>,
    /// Image files to measure compute only on (the app's Tune), instead of synthetic images.
    pub files: Vec<std::path::PathBuf>,
    /// Also time each layer of one batch of the largest batch size ([`Profile`]).
    pub profile: bool,
}

/// The images a bench measures: a folder's, the given files', or `count` synthetic ones.
fn load_images(
    dir: Option<&std::path::Path>,
    files: &[std::path::PathBuf],
    count: u32,
    size: u32,
) -> Result<Vec<RgbaImage>> {
    let dir = dir.map(std::path::Path::to_path_buf);
    let listed = match &dir {
        Some(dir) => std::slice::from_ref(dir),
        None => files,
    };
    if listed.is_empty() {
        return Ok(synthetic_images(count, size));
    }
    let decoded: Vec<RgbaImage> = crate::job::list_inputs(listed)
        .iter()
        .filter(|l| l.skip.is_none())
        .filter_map(|l| image::open(&l.path).ok().map(|i| i.to_rgba8()))
        .collect();
    if decoded.is_empty() {
        bail!("none of the images could be read");
    }
    Ok(decoded)
}

/// Compute only through the job pipeline (decode and write left out: the images are in memory
/// and nothing is written): items per second from the first batch to the last (model upload and
/// runner allocation excluded), with the job's summary.
fn in_memory(
    engine: &Engine,
    (choice, model): (&ModelChoice, &crate::engine::GpuModel),
    (batch, tile): (u32, Option<u32>),
    precision: crate::kernels::Precision,
    images: &[RgbaImage],
) -> Result<(f64, crate::job::JobSummary)> {
    let spec = job_spec(choice, (batch, tile), precision, std::env::temp_dir());
    // Warm-up: the first dispatch of a pipeline compiles it on some drivers.
    crate::job::run_in_memory(engine, &spec, model, images[..1].to_vec(), &mut |_| {})?;
    let mut first_batch: Option<Instant> = None;
    let summary = crate::job::run_in_memory(engine, &spec, model, images.to_vec(), &mut |e| {
        if matches!(e, crate::job::JobEvent::Started { .. }) {
            first_batch = Some(Instant::now());
        }
    })?;
    let secs = first_batch.map_or(summary.elapsed_secs, |t| t.elapsed().as_secs_f64());
    if summary.done != images.len() {
        bail!(
            "the bench job finished {} of {} images: {:?}",
            summary.done,
            images.len(),
            summary.items.iter().find_map(|i| i.error.clone())
        );
    }
    Ok((images.len() as f64 / secs.max(1e-9), summary))
}

/// A fixed-input model (classify, embed, segment, faces): batches of whole images fitted to its
/// input, through the job pipeline, compute only.
fn run_fixed(
    engine: &Engine,
    choice: &ModelChoice,
    model: &crate::engine::GpuModel,
    (batch_sizes, precision): (&[u32], crate::kernels::Precision),
    images: &[RgbaImage],
    inputs: Option<&std::path::Path>,
    mut progress: impl FnMut(&BenchRow),
) -> Result<BenchReport> {
    let size = choice.input_size;
    // Beyond the first batch size that holds every image, nothing new is measured.
    let mut sizes: Vec<u32> = batch_sizes
        .iter()
        .copied()
        .filter(|&b| (b as usize) < images.len())
        .collect();
    sizes.extend(
        batch_sizes
            .iter()
            .copied()
            .find(|&b| b as usize >= images.len()),
    );
    let macs = model.model.macs_per_item(size, size)? * images.len() as u64;
    let mut rows = Vec::new();
    for batch in sizes {
        let (rate, summary) = in_memory(engine, (choice, model), (batch, None), precision, images)?;
        let end_to_end = match inputs {
            Some(dir) => end_to_end(engine, choice, dir, batch, size, precision)?,
            None => rate,
        };
        let row = BenchRow {
            batch_size: batch,
            items_per_sec: end_to_end,
            compute_items_per_sec: rate,
            gpu_ms_per_batch: None,
            host_ms_per_batch: None,
            peak_gpu_bytes: summary.peak_gpu_bytes,
            planned_gpu_bytes: crate::engine::plan(model, size, size, batch)?.total_bytes(),
            batches: images.len().div_ceil(batch as usize),
            dispatches_per_batch: summary.dispatches_per_batch,
            gflops: 2.0 * macs as f64 * rate / images.len() as f64 / 1e9,
            separate_steps_items_per_sec: None,
            step_by_step: false,
        };
        progress(&row);
        rows.push(row);
    }
    let plan = crate::engine::plan(model, size, size, 1)?;
    let workload = (size, images.len() as u32, size, 1);
    Ok(BenchReport::new(engine, &choice.id, workload, plan, rows))
}

/// A chain whose images each fit one `tile` runs composed for whole images, as its job would
/// (`job::plan::whole_images`): that chain with its model loaded; else None and `model`.
fn whole_images(
    engine: &Engine,
    builtin: &ModelChoice,
    model: crate::engine::GpuModel,
    images: &[RgbaImage],
    tile: u32,
) -> Result<(Option<ModelChoice>, crate::engine::GpuModel)> {
    let fit = images
        .iter()
        .all(|i| i.width() <= tile && i.height() <= tile);
    let whole = match fit {
        true => crate::chain::for_whole_images(builtin)?,
        false => None,
    };
    let model = match &whole {
        Some(whole) => engine.load_with(whole.model.clone(), model.precision)?,
        None => model,
    };
    Ok((whole, model))
}

/// GPU time of one batch (mean of two, from timestamp queries), where the adapter has them, and
/// its host times (the same two batches, each run alone).
fn batch_times(
    up: &TiledUpscaler,
    refs: &[&RgbaImage],
    tiles: &[TileRef],
    batch: usize,
) -> Result<(Option<f64>, HostTimes)> {
    let mut ms = Vec::new();
    let mut host = HostTimes::default();
    let mut runs = 0.0;
    for chunk in tiles.chunks(batch).take(2) {
        let start = Instant::now();
        let submitted = up.submit_tiles(refs, chunk, true)?;
        let submitted_at = Instant::now();
        ms.extend(up.collect_with(submitted, |_| ())?.1);
        host.submit_ms += (submitted_at - start).as_secs_f64() * 1e3;
        host.collect_ms += submitted_at.elapsed().as_secs_f64() * 1e3;
        runs += 1.0;
    }
    host.submit_ms /= f64::max(runs, 1.0);
    host.collect_ms /= f64::max(runs, 1.0);
    let gpu_ms = (!ms.is_empty()).then(|| ms.iter().sum::<f64>() / ms.len() as f64);
    Ok((gpu_ms, host))
}

/// Runs the bench `setup` describes, calling `progress` after each batch size.
pub fn run(
    engine: &Engine,
    builtin: &ModelChoice,
    setup: &BenchSetup,
    mut progress: impl FnMut(&BenchRow),
) -> Result<BenchReport> {
    let BenchSetup {
        batch_sizes,
        size,
        mut count,
        tile_size,
        precision,
        inputs,
        files,
        profile,
    } = setup.clone();
    if batch_sizes.is_empty() || count == 0 || size == 0 {
        bail!("give at least one batch size, one image and a size of at least 1 px");
    }
    let model = engine.load_with(builtin.model.clone(), precision)?;
    let images = load_images(inputs.as_deref(), &files, count, size)?;
    count = images.len() as u32;
    let largest = *batch_sizes.iter().max().expect("not empty");
    if builtin.input_size > 0 {
        let fixed = (&batch_sizes[..], precision);
        let dir = inputs.as_deref();
        let mut report = run_fixed(engine, builtin, &model, fixed, &images, dir, progress)?;
        if profile {
            let size = builtin.input_size;
            let map = &builtin.spec.input_map;
            let runner = crate::engine::BatchRunner::new(engine, &model, largest, size, size, map)?;
            report.profile = Some(profile::profile(
                &runner,
                &model.model,
                largest,
                (size, size),
            )?);
        }
        return Ok(report);
    }
    // One tile size for every row, so every batch size does the same work.
    let tile = match tile_size {
        Some(t) => t,
        None => {
            let fits = TiledUpscaler::new(engine, &model, builtin.spec, largest, None)?.tile;
            AUTO_TILE_SIZES
                .iter()
                .copied()
                .filter(|&t| t <= fits)
                .find(|&t| t <= size)
                .unwrap_or(fits)
                .min(fits)
        }
    };
    let (whole, model) = whole_images(engine, builtin, model, &images, tile)?;
    let builtin = whole.as_ref().unwrap_or(builtin);
    let refs: Vec<&RgbaImage> = images.iter().collect();
    // On given files (Tune), batch sizes beyond the first that holds every tile measure nothing new.
    let batch_sizes: Vec<u32> = if files.is_empty() {
        batch_sizes
    } else {
        let tiles: usize = images
            .iter()
            .map(|i| crate::tiling::grid(i.width(), i.height(), tile).len())
            .sum();
        let mut sizes: Vec<u32> = batch_sizes
            .iter()
            .copied()
            .filter(|&b| (b as usize) < tiles)
            .collect();
        sizes.extend(batch_sizes.iter().copied().find(|&b| b as usize >= tiles));
        sizes
    };
    let mut rows = Vec::new();
    let mut tiles_per_item = 0;
    for &batch in &batch_sizes {
        let up = TiledUpscaler::new(engine, &model, builtin.spec, batch, Some(tile))?;
        let tiles: Vec<TileRef> = images
            .iter()
            .enumerate()
            .flat_map(|(image, i)| {
                up.tiles(i.width(), i.height())
                    .into_iter()
                    .map(move |rect| TileRef { image, rect })
            })
            .collect();
        tiles_per_item = tiles.len() / images.len();
        up.run_tiles(&refs, &tiles[..1])?;
        let (gpu_ms, host) = batch_times(&up, &refs, &tiles, batch as usize)?;
        drop(up);
        let (compute, summary) = in_memory(
            engine,
            (builtin, &model),
            (batch, Some(tile)),
            precision,
            &images,
        )?;
        let secs = count as f64 / compute;
        let side = tile + 2 * builtin.spec.context;
        let macs = model.model.macs_per_item(side, side)? * tiles.len() as u64;
        let peak = summary.peak_gpu_bytes;
        let end_to_end = match &inputs {
            Some(dir) => end_to_end(engine, builtin, dir, batch, tile, precision)?,
            None => compute,
        };
        let separate_steps = match &inputs {
            Some(dir) if !builtin.steps.is_empty() => Some(separate_steps(
                engine,
                &builtin.steps,
                dir,
                batch,
                tile,
                precision,
            )?),
            _ => None,
        };
        let row = BenchRow {
            batch_size: batch,
            items_per_sec: end_to_end,
            compute_items_per_sec: compute,
            gpu_ms_per_batch: gpu_ms,
            host_ms_per_batch: Some(host),
            peak_gpu_bytes: peak,
            planned_gpu_bytes: crate::engine::plan(&model, side, side, batch)?.total_bytes(),
            batches: tiles.len().div_ceil(batch as usize),
            dispatches_per_batch: summary.dispatches_per_batch,
            gflops: 2.0 * macs as f64 / secs / 1e9,
            separate_steps_items_per_sec: separate_steps,
            step_by_step: summary.step_by_step,
        };
        progress(&row);
        rows.push(row);
    }
    let side = tile + 2 * builtin.spec.context;
    let plan = crate::engine::plan(&model, side, side, 1)?;
    let workload = (size, count, tile, tiles_per_item);
    let mut report = BenchReport::new(engine, &builtin.id, workload, plan, rows);
    if profile {
        let up = TiledUpscaler::new(engine, &model, builtin.spec, largest, Some(tile))?;
        let runner = up.runner();
        report.profile = Some(profile::profile(
            runner,
            &model.model,
            largest,
            (side, side),
        )?);
    }
    Ok(report)
}
