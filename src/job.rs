//! A batch job: files in, upscaled files out, with events for the app and the CLI.
//!
//! Stages overlap: images decode on tokio's blocking pool ahead of the GPU, the calling thread packs
//! tiles from as many images as it takes into each batch and runs it, and finished images are
//! encoded and written on the blocking pool while the next batch runs.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use image::{GrayImage, RgbaImage};
use serde::Serialize;

use crate::builtin::ModelChoice;
use crate::engine::Engine;
use crate::upscale::{TileRef, TiledUpscaler};

/// Extensions taken from folders; files named on their own are always tried.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif"];

/// Images decoded ahead of the GPU.
const DECODE_AHEAD: usize = 8;

#[derive(Clone, Debug)]
pub struct JobSpec {
    pub inputs: Vec<PathBuf>,
    pub model: ModelChoice,
    pub batch_size: u32,
    /// None: the largest tile that fits the adapter.
    pub tile_size: Option<u32>,
    pub output_dir: PathBuf,
    /// The element type of activations on the GPU.
    pub precision: crate::kernels::Precision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    Queued,
    Running,
    Done,
    Failed,
    Skipped,
}

#[derive(Clone, Debug, Serialize)]
pub struct ItemReport {
    pub input: PathBuf,
    pub output: Option<PathBuf>,
    pub status: ItemStatus,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct JobSummary {
    pub model: String,
    pub adapter: String,
    pub batch_size: u32,
    pub tile_size: u32,
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
    pub elapsed_secs: f64,
    pub items_per_sec: f64,
    pub peak_gpu_bytes: u64,
    pub items: Vec<ItemReport>,
}

#[derive(Clone, Debug)]
pub enum JobEvent {
    /// Inputs are listed and the model is on the GPU.
    Started {
        items: Vec<PathBuf>,
        batch_size: u32,
        tile_size: u32,
    },
    Item {
        index: usize,
        status: ItemStatus,
        output: Option<PathBuf>,
        error: Option<String>,
    },
    /// After every batch.
    Progress {
        done: usize,
        failed: usize,
        total: usize,
        items_per_sec: f64,
        gpu_bytes: u64,
        peak_gpu_bytes: u64,
    },
    Finished(JobSummary),
}

/// Lists the files of a job: files as given, folders recursively (image extensions only), sorted.
pub fn expand_inputs(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(input)
                .follow_links(true)
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file() && is_image_name(e.path()))
                .map(|e| e.into_path())
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(input.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())));
    out
}

pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// A decoded input: RGB(A) pixels and, if the image is not opaque, its alpha plane.
struct Decoded {
    rgba: RgbaImage,
    alpha: Option<GrayImage>,
}

fn decode(path: &Path) -> Result<Decoded, String> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| format!("cannot open: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    if reader.format().is_none() {
        return Err("not an image batchwise can read (unknown format)".into());
    }
    let img = reader.decode().map_err(|e| format!("cannot decode: {e}"))?;
    if img.width() == 0 || img.height() == 0 {
        return Err("the image is empty (0 pixels)".into());
    }
    let rgba = img.to_rgba8();
    let alpha = img.color().has_alpha().then(|| {
        GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
            image::Luma([rgba.get_pixel(x, y)[3]])
        })
    });
    let alpha = alpha.filter(|a| a.pixels().any(|p| p[0] != 255));
    Ok(Decoded { rgba, alpha })
}

/// Encodes PNG into a temporary file beside `path`, then renames it: never a partial output file.
fn write_png(path: &Path, mut rgba: RgbaImage, alpha: Option<GrayImage>) -> Result<(), String> {
    let img = match alpha {
        Some(a) => {
            let a = image::imageops::resize(
                &a,
                rgba.width(),
                rgba.height(),
                image::imageops::FilterType::CatmullRom,
            );
            for (p, a) in rgba.pixels_mut().zip(a.pixels()) {
                p[3] = a[0];
            }
            image::DynamicImage::ImageRgba8(rgba)
        }
        None => image::DynamicImage::ImageRgba8(rgba).to_rgb8().into(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let result = img
        .save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .map_err(|e| format!("cannot move the output into {}: {e}", path.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Output paths, one per input: `{stem}.png` in the output folder, `{stem}_2.png` and so on when two
/// inputs share a stem.
pub fn output_paths(inputs: &[PathBuf], output_dir: &Path) -> Vec<PathBuf> {
    let mut used = std::collections::HashSet::new();
    inputs
        .iter()
        .map(|input| {
            let stem = input
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            let mut n = 1;
            loop {
                let name = if n == 1 {
                    format!("{stem}.png")
                } else {
                    format!("{stem}_{n}.png")
                };
                if used.insert(name.clone()) {
                    return output_dir.join(name);
                }
                n += 1;
            }
        })
        .collect()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn set_status(
    emit: &mut dyn FnMut(JobEvent),
    reports: &mut [ItemReport],
    index: usize,
    status: ItemStatus,
    error: Option<String>,
) {
    let r = &mut reports[index];
    r.status = status;
    r.error = error.clone();
    emit(JobEvent::Item {
        index,
        status,
        output: r.output.clone().filter(|_| status == ItemStatus::Done),
        error,
    });
}

struct InProgress {
    rgba: RgbaImage,
    out: RgbaImage,
    alpha: Option<GrayImage>,
    remaining_tiles: usize,
}

/// Runs a job to the end, calling `emit` for every event. Fails only when the job cannot start
/// (model, GPU, output folder); a bad item fails that item alone.
pub fn run(
    engine: &Engine,
    spec: &JobSpec,
    cancel: &AtomicBool,
    emit: &mut dyn FnMut(JobEvent),
) -> Result<JobSummary> {
    let started = Instant::now();
    let inputs = expand_inputs(&spec.inputs);
    if inputs.is_empty() {
        return Err(anyhow!("no input images were found"));
    }
    let outputs = output_paths(&inputs, &spec.output_dir);
    std::fs::create_dir_all(&spec.output_dir).with_context(|| {
        format!(
            "cannot create the output folder {}",
            spec.output_dir.display()
        )
    })?;
    engine.gpu.ledger.reset_peak();
    let model = engine.load_with(spec.model.model.clone(), spec.precision)?;
    let upscaler = TiledUpscaler::new(
        engine,
        &model,
        spec.model.spec,
        spec.batch_size,
        spec.tile_size,
    )?;
    let batch = upscaler.batch_size() as usize;
    let scale = upscaler.spec.scale;
    emit(JobEvent::Started {
        items: inputs.clone(),
        batch_size: upscaler.batch_size(),
        tile_size: upscaler.tile,
    });

    let mut reports: Vec<ItemReport> = inputs
        .iter()
        .zip(&outputs)
        .map(|(i, o)| ItemReport {
            input: i.clone(),
            output: Some(o.clone()),
            status: ItemStatus::Queued,
            error: None,
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("batchwise-io")
        .build()
        .context("starting the I/O thread pool")?;
    let mut decoding: VecDeque<(usize, tokio::task::JoinHandle<Result<Decoded, String>>)> =
        VecDeque::new();
    let mut next_decode = 0usize;
    let mut writing: Vec<(usize, tokio::task::JoinHandle<Result<(), String>>)> = Vec::new();
    let mut in_progress: HashMap<usize, InProgress> = HashMap::new();
    let mut pending: VecDeque<TileRef> = VecDeque::new();
    let mut done = 0usize;
    let mut failed = 0usize;

    loop {
        // Keep the decoders ahead of the GPU.
        while decoding.len() < DECODE_AHEAD && next_decode < inputs.len() {
            let i = next_decode;
            next_decode += 1;
            if same_file(&inputs[i], &outputs[i]) {
                failed += 1;
                let msg = format!(
                    "{}: the output would overwrite the input; choose another output folder",
                    inputs[i].display()
                );
                set_status(emit, &mut reports, i, ItemStatus::Failed, Some(msg));
                continue;
            }
            let path = inputs[i].clone();
            decoding.push_back((i, runtime.spawn_blocking(move || decode(&path))));
        }
        // Fill the batch with tiles from as many images as it takes.
        while pending.len() < batch && !cancel.load(Ordering::Relaxed) {
            let Some((i, handle)) = decoding.pop_front() else {
                break;
            };
            let decoded = runtime
                .block_on(handle)
                .unwrap_or_else(|e| Err(format!("the decoder crashed: {e}")));
            match decoded {
                Ok(d) => {
                    let tiles = upscaler.tiles(d.rgba.width(), d.rgba.height());
                    pending.extend(tiles.iter().map(|&rect| TileRef { image: i, rect }));
                    in_progress.insert(
                        i,
                        InProgress {
                            out: RgbaImage::new(d.rgba.width() * scale, d.rgba.height() * scale),
                            rgba: d.rgba,
                            alpha: d.alpha,
                            remaining_tiles: tiles.len(),
                        },
                    );
                    set_status(emit, &mut reports, i, ItemStatus::Running, None);
                }
                Err(e) => {
                    failed += 1;
                    let msg = format!("{}: {e}", inputs[i].display());
                    set_status(emit, &mut reports, i, ItemStatus::Failed, Some(msg));
                }
            }
            while decoding.len() < DECODE_AHEAD && next_decode < inputs.len() {
                let i = next_decode;
                next_decode += 1;
                let path = inputs[i].clone();
                decoding.push_back((i, runtime.spawn_blocking(move || decode(&path))));
            }
        }
        if cancel.load(Ordering::Relaxed) || pending.is_empty() {
            if decoding.is_empty() || cancel.load(Ordering::Relaxed) {
                break;
            }
            continue;
        }

        let take = pending.len().min(batch);
        let tiles: Vec<TileRef> = pending.drain(..take).collect();
        let mut images: Vec<usize> = tiles.iter().map(|t| t.image).collect();
        images.dedup();
        let refs: Vec<&RgbaImage> = images.iter().map(|i| &in_progress[i].rgba).collect();
        let local: Vec<TileRef> = tiles
            .iter()
            .map(|t| TileRef {
                image: images.iter().position(|&i| i == t.image).expect("listed"),
                rect: t.rect,
            })
            .collect();
        match upscaler.run_tiles(&refs, &local) {
            Ok(outs) => {
                for (t, o) in tiles.iter().zip(outs) {
                    let item = in_progress.get_mut(&t.image).expect("in progress");
                    upscaler.place(&mut item.out, t.rect, &o);
                    item.remaining_tiles -= 1;
                }
            }
            Err(e) => {
                for &i in &images {
                    in_progress.remove(&i);
                    pending.retain(|t| t.image != i);
                    failed += 1;
                    let msg = format!("{}: the GPU batch failed: {e:#}", inputs[i].display());
                    set_status(emit, &mut reports, i, ItemStatus::Failed, Some(msg));
                }
            }
        }
        for i in images {
            if in_progress.get(&i).is_some_and(|p| p.remaining_tiles == 0) {
                let item = in_progress.remove(&i).expect("present");
                let path = outputs[i].clone();
                writing.push((
                    i,
                    runtime.spawn_blocking(move || write_png(&path, item.out, item.alpha)),
                ));
            }
        }
        // Report finished writes without waiting for the others.
        let (finished, still): (Vec<_>, Vec<_>) =
            writing.drain(..).partition(|(_, h)| h.is_finished());
        writing = still;
        for (i, h) in finished {
            match runtime.block_on(h).unwrap_or_else(|e| Err(e.to_string())) {
                Ok(()) => {
                    done += 1;
                    set_status(emit, &mut reports, i, ItemStatus::Done, None);
                }
                Err(e) => {
                    failed += 1;
                    set_status(emit, &mut reports, i, ItemStatus::Failed, Some(e));
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        emit(JobEvent::Progress {
            done,
            failed,
            total: inputs.len(),
            items_per_sec: done as f64 / secs.max(1e-9),
            gpu_bytes: engine.gpu.ledger.in_use_bytes(),
            peak_gpu_bytes: engine.gpu.ledger.peak_bytes(),
        });
    }

    for (i, h) in writing {
        match runtime.block_on(h).unwrap_or_else(|e| Err(e.to_string())) {
            Ok(()) => {
                done += 1;
                set_status(emit, &mut reports, i, ItemStatus::Done, None);
            }
            Err(e) => {
                failed += 1;
                set_status(emit, &mut reports, i, ItemStatus::Failed, Some(e));
            }
        }
    }
    // Whatever is left was cancelled.
    let mut skipped = 0;
    for i in 0..inputs.len() {
        if matches!(reports[i].status, ItemStatus::Queued | ItemStatus::Running) {
            skipped += 1;
            set_status(
                emit,
                &mut reports,
                i,
                ItemStatus::Skipped,
                Some("cancelled".into()),
            );
        }
    }
    for r in &mut reports {
        if r.status != ItemStatus::Done {
            r.output = None;
        }
    }
    let elapsed_secs = started.elapsed().as_secs_f64();
    let summary = JobSummary {
        model: spec.model.id.clone(),
        adapter: engine.gpu.adapter.name.clone(),
        batch_size: upscaler.batch_size(),
        tile_size: upscaler.tile,
        total: inputs.len(),
        done,
        failed,
        skipped,
        elapsed_secs,
        items_per_sec: done as f64 / elapsed_secs.max(1e-9),
        peak_gpu_bytes: engine.gpu.ledger.peak_bytes(),
        items: reports,
    };
    drop(model);
    emit(JobEvent::Finished(summary.clone()));
    if inputs.is_empty() {
        return Err(anyhow!("no input files were found"));
    }
    Ok(summary)
}
