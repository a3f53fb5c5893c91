//! A batch job: files in, results out (upscaled or enhanced images; labels, embeddings, masks or
//! face boxes from the fixed-input models), with events for the app and the CLI.
//!
//! Stages overlap: images decode on tokio's blocking pool ahead of the GPU, the calling thread packs
//! tiles from as many images as it takes into each batch and runs it, and finished images are
//! encoded and written on the blocking pool while the next batch runs.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use image::{DynamicImage, GrayImage};
use serde::Serialize;

use crate::builtin::{ModelChoice, Task};
use crate::engine::Engine;
use crate::kernels::pack::PixelDepth;
use crate::tiling::Pixels;
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
    pub analysis: AnalysisOptions,
    pub export: ExportOptions,
    /// `(i, n)`: only the files of shard i of n (see [`in_shard`]).
    pub shard: Option<(u32, u32)>,
    /// GPU bytes a job may plan for (weights and batch); None: see [`memory_budget`].
    pub memory_budget: Option<u64>,
    /// Folders file inputs were found in (the app's dropped folders): a file under one keeps
    /// its path under it in the output folder, as if the folder itself were the input.
    pub roots: Vec<PathBuf>,
}

/// The memory budget when neither the user nor the device's driver gives one.
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;

/// The budget a job plans its batches against: the user's, else half of what the device's driver
/// offers this process (its budget, else its total), else [`DEFAULT_MEMORY_BUDGET`] where the
/// backend reports nothing.
pub fn memory_budget(engine: &Engine, spec: &JobSpec) -> u64 {
    spec.memory_budget
        .unwrap_or_else(|| default_memory_budget(engine.gpu.device_memory()))
}

pub fn default_memory_budget(device: Option<crate::gpu::DeviceMemory>) -> u64 {
    match device {
        Some(m) => (m.budget_bytes.unwrap_or(m.total_bytes) / 2).max(256 << 20),
        None => DEFAULT_MEMORY_BUDGET,
    }
}

/// `batch_size` that asks for Auto: the largest batch whose planned memory fits the budget.
pub const AUTO_BATCH: u32 = 0;

/// The most tiles Auto puts in one batch: beyond it batching gains nothing measurable.
pub const MAX_AUTO_BATCH: u32 = 64;

/// What the fixed-input models write.
#[derive(Clone, Debug)]
pub struct AnalysisOptions {
    /// Labels per image from `classify`.
    pub top_k: usize,
    /// `remove-background`: the mask alone (grayscale) instead of the image with it as alpha.
    pub mask_only: bool,
    /// `detect-faces`: also write each image with its faces drawn.
    pub annotate: bool,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            top_k: 5,
            mask_only: false,
            annotate: false,
        }
    }
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
    pub memory_budget_bytes: u64,
    /// Times the batch was halved after the GPU ran out of memory.
    pub retries: usize,
    /// The most batches that were on the GPU at once (submitted, not read back yet).
    pub batches_in_flight: usize,
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
        /// Seconds left at the current rate.
        eta_secs: Option<f64>,
        batch_size: u32,
        gpu_bytes: u64,
        peak_gpu_bytes: u64,
        /// The budget the batch size was planned against (batchwise's default or the user's).
        budget_bytes: u64,
        /// The device's memory as its driver reports it (total; budget and usage on Vulkan with
        /// `VK_EXT_memory_budget`); None where the backend reports nothing.
        device_memory: Option<crate::gpu::DeviceMemory>,
    },
    /// What a classifier, embedder or face detector gave item `index` (labels, the embedding,
    /// or the image's size and its faces), as the manifest records it.
    Result {
        index: usize,
        result: serde_json::Value,
    },
    /// The GPU ran out of memory: the same tiles run again in batches of `batch_size`.
    Retry {
        batch_size: u32,
        reason: String,
    },
    Finished(JobSummary),
}

/// One file of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    pub path: PathBuf,
    /// Its path under the folder it was found in (the output keeps it), or its file name.
    pub rel: PathBuf,
    /// Why it is skipped before it is read (a system file, not an image, an existing output).
    pub skip: Option<String>,
}

/// Files operating systems leave in folders, never images.
const SYSTEM_FILES: &[&str] = &["thumbs.db", ".ds_store", "desktop.ini", "ehthumbs.db"];

/// Lists a job's files: files as given (always tried), folders recursively, sorted, each file once.
/// Folder entries that are system files or have no image extension are listed as skipped with the
/// reason.
pub fn list_inputs(inputs: &[PathBuf]) -> Vec<Listed> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(input)
                .follow_links(true)
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
                .collect();
            found.sort();
            out.extend(found.into_iter().map(|path| {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_ascii_lowercase())
                    .unwrap_or_default();
                let skip = if SYSTEM_FILES.contains(&name.as_str()) || name.starts_with("._") {
                    Some("a system file, not an image".to_owned())
                } else if !is_image_name(&path) {
                    Some(format!(
                        "not an image ({}); batchwise reads {}",
                        path.extension().map_or("no extension".into(), |e| format!(
                            ".{}",
                            e.to_string_lossy()
                        )),
                        IMAGE_EXTENSIONS.join(", ")
                    ))
                } else {
                    None
                };
                Listed {
                    rel: path.strip_prefix(input).unwrap_or(&path).to_path_buf(),
                    path,
                    skip,
                }
            }));
        } else {
            out.push(Listed {
                rel: input.file_name().map_or(input.clone(), PathBuf::from),
                path: input.clone(),
                skip: None,
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|l| seen.insert(l.path.canonicalize().unwrap_or_else(|_| l.path.clone())));
    out
}

/// Whether `rel` belongs to shard `index` of `count`: a hash of the path under its folder, so
/// machines that mount the inputs in different places agree on the split.
pub fn in_shard(rel: &Path, index: u32, count: u32) -> bool {
    // FNV-1a over the path with `/` separators.
    let text = rel.to_string_lossy().replace('\\', "/");
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    hash % count as u64 == index as u64
}

/// The image format of outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Png,
    /// Lossy, with `quality`; no alpha.
    Jpeg,
    /// Lossless.
    Webp,
    Tiff,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
            OutputFormat::Tiff => "tiff",
        }
    }
}

/// What happens when an output file already exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overwrite {
    /// Leave it; the item is skipped.
    Skip,
    /// Replace it (atomically).
    Overwrite,
    /// Write `name_2.ext` (then `_3`, ...) beside it.
    #[default]
    Rename,
}

/// How outputs are named and written.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub format: OutputFormat,
    /// JPEG quality, 1 to 100.
    pub quality: u8,
    /// File name pattern: `{stem}`, `{model}`, `{scale}`, `{ext}`.
    pub pattern: String,
    pub overwrite: Overwrite,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            format: OutputFormat::Png,
            quality: 90,
            pattern: "{stem}.{ext}".into(),
            overwrite: Overwrite::Rename,
        }
    }
}

/// The output name `pattern` gives an input stem.
pub fn output_name(pattern: &str, stem: &str, model: &str, scale: u32, ext: &str) -> String {
    let model = Path::new(model)
        .file_stem()
        .map_or(model.to_owned(), |s| s.to_string_lossy().into_owned());
    pattern
        .replace("{stem}", stem)
        .replace("{model}", &model)
        .replace("{scale}", &scale.to_string())
        .replace("{ext}", ext)
}

/// Output paths, one per listed file: the pattern's name under the output folder, in the
/// sub-folder the input was found in. Two inputs never share an output (`_2`, `_3`, ...), an
/// existing file is skipped, replaced or renamed around as `export.overwrite` says (skipping
/// marks the item), and an output is never its own input.
pub fn plan_outputs(
    listed: &mut [Listed],
    output_dir: &Path,
    export: &ExportOptions,
    model: &str,
    scale: u32,
    reserved: &HashMap<PathBuf, PathBuf>,
) -> Vec<PathBuf> {
    // Outputs a previous run of this job recorded keep their paths.
    let mut used: std::collections::HashSet<PathBuf> = reserved.values().cloned().collect();
    listed
        .iter_mut()
        .map(|item| {
            if let Some(out) = reserved.get(&item.path) {
                return out.clone();
            }
            let stem = item
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            let dir = output_dir.join(item.rel.parent().unwrap_or(Path::new("")));
            let name = output_name(
                &export.pattern,
                &stem,
                model,
                scale,
                export.format.extension(),
            );
            let base = dir.join(&name);
            let (file_stem, ext) = (
                base.file_stem()
                    .map_or(stem.clone(), |s| s.to_string_lossy().into_owned()),
                base.extension().map(|e| e.to_string_lossy().into_owned()),
            );
            let candidate = |n: u32| {
                let file = match (&ext, n) {
                    (Some(e), 1) => format!("{file_stem}.{e}"),
                    (None, 1) => file_stem.clone(),
                    (Some(e), n) => format!("{file_stem}_{n}.{e}"),
                    (None, n) => format!("{file_stem}_{n}"),
                };
                dir.join(file)
            };
            let mut n = 1;
            loop {
                let path = candidate(n);
                let taken = used.contains(&path)
                    || same_file(&item.path, &path)
                    || (export.overwrite == Overwrite::Rename && path.exists());
                if !taken {
                    if export.overwrite == Overwrite::Skip && path.exists() && item.skip.is_none() {
                        item.skip = Some(format!(
                            "{} exists (overwrite policy: skip)",
                            path.display()
                        ));
                    }
                    used.insert(path.clone());
                    return path;
                }
                n += 1;
            }
        })
        .collect()
}

/// Lists the image files of a job: files as given, folders recursively (image extensions only),
/// sorted.
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

/// A decoded input: RGB(A) pixels (16-bit where the file has more than 8 bits a channel) and, if
/// the image is not opaque, its alpha plane (8 or 16-bit, as the pixels).
struct Decoded {
    rgba: Pixels,
    alpha: Option<DynamicImage>,
    meta: Metadata,
}

/// What an output carries over from its input where the format holds it.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    /// The ICC colour profile.
    pub icc: Option<Vec<u8>>,
    /// The EXIF chunk, its orientation reset (the pixels were turned on reading).
    pub exif: Option<Vec<u8>>,
}

/// The largest image side batchwise decodes, and the most memory one decode may take: a file that
/// claims more gets a clear error instead of exhausting memory.
pub const MAX_IMAGE_SIDE: u32 = 32768;
pub const MAX_DECODE_BYTES: u64 = 4 << 30;

fn decode(path: &Path) -> Result<Decoded, String> {
    use image::ImageDecoder as _;
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| format!("cannot open: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    if reader.format().is_none() {
        return Err("not an image batchwise can read (unknown format)".into());
    }
    let too_big = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => format!(
            "cannot decode: the image is larger than batchwise reads (at most {MAX_IMAGE_SIDE} px \
             a side and {} GiB decoded): {e}",
            MAX_DECODE_BYTES >> 30
        ),
        e => format!("cannot decode: {e}"),
    };
    let mut decoder = reader.into_decoder().map_err(too_big)?;
    let icc = decoder.icc_profile().ok().flatten();
    let exif = decoder.exif_metadata().ok().flatten().map(|mut chunk| {
        let _ = image::metadata::Orientation::remove_from_exif_chunk(&mut chunk);
        chunk
    });
    // EXIF orientation: the pixels as the camera meant them.
    let orientation = decoder.orientation().ok();
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(too_big)?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    if img.width() == 0 || img.height() == 0 {
        return Err("the image is empty (0 pixels)".into());
    }
    let deep = img.color().bytes_per_pixel() / img.color().channel_count() > 1;
    let has_alpha = img.color().has_alpha();
    // The pixels once, at their depth, and the alpha plane where it is not fully opaque.
    let (rgba, alpha) = if deep {
        let rgba = img.to_rgba16();
        let alpha = has_alpha
            .then(|| {
                let a = image::ImageBuffer::from_fn(rgba.width(), rgba.height(), |x, y| {
                    image::Luma([rgba.get_pixel(x, y)[3]])
                });
                a.pixels().any(|p| p[0] != u16::MAX).then_some(a)
            })
            .flatten()
            .map(DynamicImage::ImageLuma16);
        (Pixels::Sixteen(rgba), alpha)
    } else {
        let rgba = img.to_rgba8();
        let alpha = has_alpha
            .then(|| {
                let a = GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                    image::Luma([rgba.get_pixel(x, y)[3]])
                });
                a.pixels().any(|p| p[0] != u8::MAX).then_some(a)
            })
            .flatten()
            .map(DynamicImage::ImageLuma8);
        (Pixels::Eight(rgba), alpha)
    };
    Ok(Decoded {
        rgba,
        alpha,
        meta: Metadata { icc, exif },
    })
}

/// Writes `path` through `write` into a temporary file beside it, then renames it: never a partial
/// output file.
fn write_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    write_atomic_then(path, write, || Ok(()))
}

/// As [`write_atomic`], calling `before_rename` (the resume manifest's record) between writing
/// the temporary file and renaming it.
fn write_atomic_then(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
    before_rename: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the folder {}: {e}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let result = write(&tmp).and_then(|()| before_rename()).and_then(|()| {
        std::fs::rename(&tmp, path)
            .map_err(|e| format!("cannot move the output into {}: {e}", path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_atomic(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    })
}

/// Encodes `rgba` (with `alpha`, resized to it, where the format holds alpha) as `export` says
/// into a temporary file beside `path`, then renames it: never a partial output file.
fn write_image(
    path: &Path,
    rgba: Pixels,
    alpha: Option<DynamicImage>,
    meta: &Metadata,
    export: &ExportOptions,
    record: Option<&Record>,
) -> Result<(), String> {
    // The ICC profile and EXIF travel where the encoder takes them (PNG, JPEG, WebP).
    fn with_meta<E: image::ImageEncoder>(mut e: E, meta: &Metadata) -> E {
        if let Some(icc) = &meta.icc {
            let _ = e.set_icc_profile(icc.clone());
        }
        if let Some(exif) = &meta.exif {
            let _ = e.set_exif_metadata(exif.clone());
        }
        e
    }
    let record = || record.map_or(Ok(()), |r| r.writer.append(&r.entry));
    // JPEG holds no alpha: the pixels alone. JPEG and WebP hold 8 bits a channel; PNG and TIFF
    // keep 16-bit images 16-bit.
    let img = compose(rgba, alpha.filter(|_| export.format != OutputFormat::Jpeg));
    let img = match (export.format, img) {
        (OutputFormat::Jpeg | OutputFormat::Webp, DynamicImage::ImageRgb16(i)) => {
            DynamicImage::ImageRgb8(DynamicImage::ImageRgb16(i).to_rgb8())
        }
        (OutputFormat::Jpeg | OutputFormat::Webp, DynamicImage::ImageRgba16(i)) => {
            DynamicImage::ImageRgba8(DynamicImage::ImageRgba16(i).to_rgba8())
        }
        (_, img) => img,
    };
    write_atomic_then(
        path,
        |tmp| {
            let file = std::fs::File::create(tmp)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let result = match export.format {
                OutputFormat::Jpeg => img.write_with_encoder(with_meta(
                    image::codecs::jpeg::JpegEncoder::new_with_quality(
                        &mut w,
                        export.quality.clamp(1, 100),
                    ),
                    meta,
                )),
                OutputFormat::Webp => img.write_with_encoder(with_meta(
                    image::codecs::webp::WebPEncoder::new_lossless(&mut w),
                    meta,
                )),
                OutputFormat::Tiff => img.write_to(&mut w, image::ImageFormat::Tiff),
                OutputFormat::Png => img.write_with_encoder(with_meta(
                    image::codecs::png::PngEncoder::new(&mut w),
                    meta,
                )),
            };
            result
                .and_then(|()| std::io::Write::flush(&mut w).map_err(image::ImageError::IoError))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        },
        record,
    )
}

/// What the manifest records for an output once its file is complete.
#[derive(Clone)]
struct Record {
    writer: std::sync::Arc<crate::manifest::Writer>,
    entry: crate::manifest::Entry,
}

/// The settings a resumed job must share with the run that wrote the manifest.
fn settings_key(spec: &JobSpec) -> String {
    format!(
        "model={};precision={:?};format={:?};quality={};name={};mask_only={};annotate={};top_k={}",
        spec.model.id,
        spec.precision,
        spec.export.format,
        spec.export.quality,
        spec.export.pattern,
        spec.analysis.mask_only,
        spec.analysis.annotate,
        spec.analysis.top_k
    ) + &model_file_stamp(&spec.model.id)
}

/// A user model's file size and modification time, so that a model replaced at the same path
/// does not resume the old one's results; empty for built-ins.
fn model_file_stamp(id: &str) -> String {
    let path = Path::new(id);
    match path
        .is_file()
        .then(|| crate::manifest::stamp(path))
        .flatten()
    {
        Some((bytes, modified)) => format!(";model_file={bytes}@{modified}"),
        None => String::new(),
    }
}

/// The image to encode: RGB, or RGBA with `alpha` (resized to the image) when there is one, at
/// the depth of `rgba`.
fn compose(rgba: Pixels, alpha: Option<DynamicImage>) -> DynamicImage {
    let filter = image::imageops::FilterType::CatmullRom;
    match (rgba, alpha) {
        (Pixels::Eight(mut rgba), Some(a)) => {
            let a = image::imageops::resize(&a.to_luma8(), rgba.width(), rgba.height(), filter);
            for (p, a) in rgba.pixels_mut().zip(a.pixels()) {
                p[3] = a[0];
            }
            DynamicImage::ImageRgba8(rgba)
        }
        (Pixels::Sixteen(mut rgba), Some(a)) => {
            let a = image::imageops::resize(&a.to_luma16(), rgba.width(), rgba.height(), filter);
            for (p, a) in rgba.pixels_mut().zip(a.pixels()) {
                p[3] = a[0];
            }
            DynamicImage::ImageRgba16(rgba)
        }
        (Pixels::Eight(rgba), None) => DynamicImage::ImageRgba8(rgba).to_rgb8().into(),
        (Pixels::Sixteen(rgba), None) => DynamicImage::ImageRgba16(rgba).to_rgb16().into(),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Reports the items settled before any is read: skipped (with the reason) or finished by the
/// run this one resumes. Returns how many were finished.
fn mark_planned(
    emit: &mut dyn FnMut(JobEvent),
    reports: &mut [ItemReport],
    inputs: &[PathBuf],
    skips: &[Option<String>],
    resumed: &[bool],
) -> usize {
    let mut finished = 0;
    for (i, why) in skips.iter().enumerate() {
        if let Some(why) = why {
            let msg = format!("{}: {why}", inputs[i].display());
            set_status(emit, reports, i, ItemStatus::Skipped, Some(msg));
        } else if resumed[i] {
            finished += 1;
            set_status(emit, reports, i, ItemStatus::Done, None);
        }
    }
    finished
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
    rgba: Pixels,
    out: Pixels,
    alpha: Option<DynamicImage>,
    meta: Metadata,
    remaining_tiles: usize,
}

/// Pause, resume and cancel a running job from another thread.
#[derive(Debug, Default)]
pub struct Control {
    pub cancel: AtomicBool,
    pub pause: AtomicBool,
}

impl Control {
    /// Waits while paused (between batches); true once cancelled.
    fn stop_or_wait(&self) -> bool {
        while self.pause.load(Ordering::Relaxed) && !self.cancel.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Runs a job to the end, calling `emit` for every event. Fails only when the job cannot start
/// (model, GPU, output folder); a bad item fails that item alone. `control` pauses it between
/// batches and cancels it: what is in flight is finished or dropped whole, never a partial file.
pub fn run(
    engine: &Engine,
    spec: &JobSpec,
    control: &Control,
    emit: &mut dyn FnMut(JobEvent),
) -> Result<JobSummary> {
    let cancel = &control.cancel;
    let started = Instant::now();
    let mut listed = list_inputs(&spec.inputs);
    for l in &mut listed {
        if let Some(rel) = spec
            .roots
            .iter()
            .find_map(|root| l.path.strip_prefix(root).ok())
            .filter(|rel| rel.components().count() > 1)
        {
            l.rel = rel.to_path_buf();
        }
    }
    if let Some((i, n)) = spec.shard {
        listed.retain(|l| in_shard(&l.rel, i, n));
    }
    if listed.is_empty() {
        return Err(anyhow!("no input images were found"));
    }
    std::fs::create_dir_all(&spec.output_dir).with_context(|| {
        format!(
            "cannot create the output folder {}",
            spec.output_dir.display()
        )
    })?;
    crate::manifest::remove_stale_partials(&spec.output_dir);
    // Resume: what a previous run of the same job finished. Per-image outputs count when their
    // file is there; collected results (labels, embeddings, faces) when the manifest holds them.
    let task = spec.model.task;
    let collects = matches!(task, Task::Classify | Task::Embed)
        || (task == Task::DetectFaces && !spec.analysis.annotate);
    let keeps_result = matches!(task, Task::Classify | Task::Embed | Task::DetectFaces);
    let settings = settings_key(spec);
    let previous = crate::manifest::read(&spec.output_dir, &settings);
    let reserved: HashMap<PathBuf, PathBuf> = previous
        .iter()
        .filter(|_| !collects)
        .map(|e| (e.input.clone(), e.output.clone()))
        .collect();
    let resumed_results: Vec<Option<Analysis>> = listed
        .iter()
        .map(|l| {
            let entry = previous.iter().rev().find(|e| e.input == l.path)?;
            let finished = if collects {
                crate::manifest::input_unchanged(entry)
            } else {
                crate::manifest::still_done(entry)
            };
            if !finished {
                return None;
            }
            match &entry.result {
                Some(r) if keeps_result => serde_json::from_value(r.clone()).ok(),
                None if !keeps_result => Some(Analysis::Image),
                _ => None,
            }
        })
        .collect();
    let resumed: Vec<bool> = resumed_results.iter().map(Option::is_some).collect();
    // Models that collect their results write no file per image: no per-image policy applies.
    let export = if collects {
        ExportOptions {
            overwrite: Overwrite::Rename,
            ..spec.export.clone()
        }
    } else {
        spec.export.clone()
    };
    let outputs = plan_outputs(
        &mut listed,
        &spec.output_dir,
        &export,
        &spec.model.id,
        spec.model.spec.scale,
        &reserved,
    );
    let inputs: Vec<PathBuf> = listed.iter().map(|l| l.path.clone()).collect();
    let skips: Vec<Option<String>> = listed.into_iter().map(|l| l.skip).collect();
    let writer = std::sync::Arc::new(
        crate::manifest::Writer::open(&spec.output_dir).with_context(|| {
            format!(
                "cannot write {} in {}",
                crate::manifest::FILE_NAME,
                spec.output_dir.display()
            )
        })?,
    );
    let record = |i: usize| -> Option<Record> {
        let writer = writer.clone();
        let (input_bytes, input_modified) = crate::manifest::stamp(&inputs[i])?;
        Some(Record {
            writer,
            entry: crate::manifest::Entry {
                input: inputs[i].clone(),
                output: outputs[i].clone(),
                input_bytes,
                input_modified,
                settings: settings.clone(),
                result: None,
            },
        })
    };
    let records: Vec<Option<Record>> = (0..inputs.len()).map(record).collect();
    engine.gpu.ledger.reset_peak();
    if spec.model.input_size > 0 {
        let planned = Planned {
            inputs,
            outputs,
            skips,
            resumed,
            resumed_results,
            records,
        };
        return run_fixed(engine, spec, control, emit, started, planned);
    }
    let model = engine.load_with(spec.model.model.clone(), spec.precision)?;
    let budget = memory_budget(engine, spec);
    let mut retries = 0usize;
    let batch_size = match spec.batch_size {
        AUTO_BATCH => {
            let todo: Vec<&Path> = (0..inputs.len())
                .filter(|&i| skips[i].is_none() && !resumed[i])
                .map(|i| inputs[i].as_path())
                .collect();
            auto_batch(engine, &model, spec, budget, &todo)?
        }
        n => n,
    };
    let mut upscaler = upscaler_fitting(
        engine,
        &model,
        spec,
        (batch_size, spec.tile_size, PixelDepth::Eight),
        &mut retries,
        emit,
    )?;
    let mut batch = upscaler.batch_size() as usize;
    let tile_size = upscaler.tile;
    let scale = upscaler.spec.scale;
    // Why the job stopped early (the GPU could not hold even one tile any more).
    let mut stopped: Option<String> = None;
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
    let resumed_done = mark_planned(emit, &mut reports, &inputs, &skips, &resumed);
    let mut done = resumed_done;
    // Files not to read: skipped, or finished by the run this one resumes.
    let idle: Vec<bool> = (0..inputs.len())
        .map(|i| skips[i].is_some() || resumed[i])
        .collect();
    let runtime = io_runtime()?;
    let mut decoding: VecDeque<(usize, tokio::task::JoinHandle<Result<Decoded, String>>)> =
        VecDeque::new();
    let mut next_decode = 0usize;
    let mut writing: Vec<(usize, tokio::task::JoinHandle<Result<(), String>>)> = Vec::new();
    let mut in_progress: HashMap<usize, InProgress> = HashMap::new();
    let mut pending: VecDeque<TileRef> = VecDeque::new();
    // The batch on the GPU whose results are not read yet, with its tiles.
    let mut in_flight: Option<(Vec<TileRef>, crate::engine::SubmittedPixels)> = None;
    let mut in_flight_peak = 0usize;
    let mut wants_wide = false;
    let mut failed = 0usize;

    loop {
        if control.stop_or_wait() {
            break;
        }
        // Keep the decoders ahead of the GPU.
        while decoding.len() < DECODE_AHEAD && next_decode < inputs.len() {
            let i = next_decode;
            next_decode += 1;
            if idle[i] {
                continue;
            }
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
                    let (w, h) = d.rgba.dimensions();
                    // A 16-bit image switches the job to 16-bit batches (8-bit images widen
                    // exactly), so that it comes out 16-bit.
                    wants_wide |= matches!(d.rgba, Pixels::Sixteen(_));
                    let tiles = upscaler.tiles(w, h);
                    pending.extend(tiles.iter().map(|&rect| TileRef { image: i, rect }));
                    in_progress.insert(
                        i,
                        InProgress {
                            out: d.rgba.blank_like(w * scale, h * scale),
                            rgba: d.rgba,
                            alpha: d.alpha,
                            meta: d.meta,
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
                if idle[i] || same_file(&inputs[i], &outputs[i]) {
                    // Reported by the loop above on its next pass.
                    next_decode -= 1;
                    break;
                }
                let path = inputs[i].clone();
                decoding.push_back((i, runtime.spawn_blocking(move || decode(&path))));
            }
        }
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        // Submit the next batch before reading back the one ahead of it, so that the GPU always
        // has work queued while this thread stitches, decodes and packs.
        let mut submitted = None;
        let mut out_of_memory = None;
        // The switch to 16-bit batches waits until the batch in flight is read back.
        let widen = wants_wide && upscaler.depth() == PixelDepth::Eight;
        if !pending.is_empty() && !widen {
            let take = pending.len().min(batch);
            let tiles: Vec<TileRef> = pending.drain(..take).collect();
            let mut images: Vec<usize> = tiles.iter().map(|t| t.image).collect();
            images.dedup();
            let refs: Vec<&Pixels> = images.iter().map(|i| &in_progress[i].rgba).collect();
            let local: Vec<TileRef> = tiles
                .iter()
                .map(|t| TileRef {
                    image: images.iter().position(|&i| i == t.image).expect("listed"),
                    rect: t.rect,
                })
                .collect();
            match upscaler.submit_tiles(&refs, &local, false) {
                Ok(s) => submitted = Some((tiles, s)),
                Err(e) if crate::engine::is_out_of_memory(&e) && batch > 1 => {
                    // The same tiles again, in smaller batches: no item is lost or skipped.
                    out_of_memory = Some(format!("{e:#}"));
                    for t in tiles.into_iter().rev() {
                        pending.push_front(t);
                    }
                }
                Err(e) => {
                    let msg = format!("the GPU batch failed: {e:#}");
                    failed += fail_images(
                        emit,
                        &mut reports,
                        &inputs,
                        &images,
                        &mut in_progress,
                        &mut pending,
                        &msg,
                    );
                }
            }
        }
        let landing = match submitted {
            Some(now) => in_flight.replace(now),
            None => in_flight.take(),
        };
        in_flight_peak = in_flight_peak.max(upscaler.runner().peak_in_flight());
        if let Some((tiles, s)) = landing {
            let mut images: Vec<usize> = tiles.iter().map(|t| t.image).collect();
            images.dedup();
            match upscaler.collect_tiles(s) {
                Ok((outs, _)) => {
                    for (t, o) in tiles.iter().zip(outs) {
                        // Tiles of an image that failed in another batch are dropped.
                        if let Some(item) = in_progress.get_mut(&t.image) {
                            upscaler.place_into(&mut item.out, t.rect, &o);
                            item.remaining_tiles -= 1;
                        }
                    }
                }
                Err(e) => {
                    let msg = format!("the GPU batch failed: {e:#}");
                    failed += fail_images(
                        emit,
                        &mut reports,
                        &inputs,
                        &images,
                        &mut in_progress,
                        &mut pending,
                        &msg,
                    );
                }
            }
            for i in images {
                if in_progress.get(&i).is_some_and(|p| p.remaining_tiles == 0) {
                    let item = in_progress.remove(&i).expect("present");
                    let path = outputs[i].clone();
                    let export = spec.export.clone();
                    let record = records[i].clone();
                    writing.push((
                        i,
                        runtime.spawn_blocking(move || {
                            write_image(
                                &path,
                                item.out,
                                item.alpha,
                                &item.meta,
                                &export,
                                record.as_ref(),
                            )
                        }),
                    ));
                }
            }
        }
        // Nothing is in flight now: the runner can be replaced (freed first, then made anew).
        let rebuild = match out_of_memory {
            Some(reason) => Some(((batch as u32 / 2).max(1), upscaler.depth(), Some(reason))),
            None => widen.then_some((batch as u32, PixelDepth::Sixteen, None)),
        };
        if let Some((b, depth, reason)) = rebuild {
            drop(upscaler);
            if let Some(reason) = reason {
                retries += 1;
                emit(JobEvent::Retry {
                    batch_size: b,
                    reason,
                });
            }
            let wanted = (b, Some(tile_size), depth);
            match upscaler_fitting(engine, &model, spec, wanted, &mut retries, emit) {
                Ok(u) => {
                    upscaler = u;
                    batch = upscaler.batch_size() as usize;
                }
                Err(e) => {
                    stopped = Some(format!("the GPU batch could not be allocated: {e:#}"));
                    break;
                }
            }
        }
        // Report finished writes without waiting for the others.
        let (finished, still): (Vec<_>, Vec<_>) =
            writing.drain(..).partition(|(_, h)| h.is_finished());
        writing = still;
        for (i, h) in finished {
            let written = runtime.block_on(h).unwrap_or_else(|e| Err(e.to_string()));
            settle(emit, &mut reports, i, written, (&mut done, &mut failed));
        }
        let standing = Standing {
            finished: done,
            resumed: resumed_done,
            failed,
            total: inputs.len(),
            batch: batch as u32,
            budget,
        };
        report_progress(emit, engine, started, standing);
        let listed_all = decoding.is_empty() && next_decode >= inputs.len();
        if listed_all && pending.is_empty() && in_flight.is_none() {
            break;
        }
    }
    if let Some(msg) = stopped {
        let images: Vec<usize> = in_progress.keys().copied().collect();
        failed += fail_images(
            emit,
            &mut reports,
            &inputs,
            &images,
            &mut in_progress,
            &mut pending,
            &msg,
        );
    }

    for (i, h) in writing {
        let written = runtime.block_on(h).unwrap_or_else(|e| Err(e.to_string()));
        settle(emit, &mut reports, i, written, (&mut done, &mut failed));
    }
    drop(model);
    let tally = Tally {
        done,
        failed,
        batch_size: batch as u32,
        tile_size,
        retries,
        batches_in_flight: in_flight_peak,
        budget,
    };
    finish(engine, spec, emit, started, reports, tally)
}

/// Where a job stands, for its progress events.
struct Standing {
    /// Items done, `resumed` of them by the run this one resumes (not counted in the rate).
    finished: usize,
    resumed: usize,
    failed: usize,
    total: usize,
    batch: u32,
    budget: u64,
}

fn report_progress(emit: &mut dyn FnMut(JobEvent), engine: &Engine, started: Instant, s: Standing) {
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let rate = s.finished.saturating_sub(s.resumed) as f64 / secs;
    let left = s.total.saturating_sub(s.finished + s.failed) as f64;
    emit(JobEvent::Progress {
        done: s.finished,
        failed: s.failed,
        total: s.total,
        items_per_sec: rate,
        eta_secs: (rate > 0.0).then(|| left / rate),
        batch_size: s.batch,
        gpu_bytes: engine.gpu.ledger.in_use_bytes(),
        peak_gpu_bytes: engine.gpu.ledger.peak_bytes(),
        budget_bytes: s.budget,
        device_memory: engine.gpu.device_memory(),
    });
}

/// Reports a finished write: the item is done, or failed with the write's error.
fn settle(
    emit: &mut dyn FnMut(JobEvent),
    reports: &mut [ItemReport],
    i: usize,
    written: Result<(), String>,
    (done, failed): (&mut usize, &mut usize),
) {
    match written {
        Ok(()) => {
            *done += 1;
            set_status(emit, reports, i, ItemStatus::Done, None);
        }
        Err(e) => {
            *failed += 1;
            set_status(emit, reports, i, ItemStatus::Failed, Some(e));
        }
    }
}

/// A tiled runner for `(batch, tile, depth)`, halving the batch while the GPU runs out of
/// memory allocating it (each halving reported as a retry).
fn upscaler_fitting(
    engine: &Engine,
    model: &crate::engine::GpuModel,
    spec: &JobSpec,
    (mut batch, tile, depth): (u32, Option<u32>, PixelDepth),
    retries: &mut usize,
    emit: &mut dyn FnMut(JobEvent),
) -> Result<TiledUpscaler> {
    loop {
        match TiledUpscaler::with_depth(engine, model, spec.model.spec, batch, tile, depth) {
            Ok(u) => return Ok(u),
            Err(e) if crate::engine::is_out_of_memory(&e) && batch > 1 => {
                batch /= 2;
                *retries += 1;
                emit(JobEvent::Retry {
                    batch_size: batch,
                    reason: format!("{e:#}"),
                });
            }
            Err(e) => return Err(e),
        }
    }
}

/// Fails those of `images` still in progress (their other tiles are dropped) and returns how many.
fn fail_images(
    emit: &mut dyn FnMut(JobEvent),
    reports: &mut [ItemReport],
    inputs: &[PathBuf],
    images: &[usize],
    in_progress: &mut HashMap<usize, InProgress>,
    pending: &mut VecDeque<TileRef>,
    msg: &str,
) -> usize {
    let mut failed = 0;
    for &i in images {
        if in_progress.remove(&i).is_some() {
            pending.retain(|t| t.image != i);
            failed += 1;
            let msg = format!("{}: {msg}", inputs[i].display());
            set_status(emit, reports, i, ItemStatus::Failed, Some(msg));
        }
    }
    failed
}

/// Auto batch size: the largest batch (up to [`MAX_AUTO_BATCH`]) whose planned weights and
/// per-tile memory fit `budget`, at the tile size the job will use, and no larger than the
/// job's tiles (image headers are read until they hold a full batch, so a big job reads few).
fn auto_batch(
    engine: &Engine,
    model: &crate::engine::GpuModel,
    spec: &JobSpec,
    budget: u64,
    todo: &[&Path],
) -> Result<u32> {
    let probe = TiledUpscaler::new(engine, model, spec.model.spec, 1, spec.tile_size)?;
    let tile = probe.tile;
    let side = tile + 2 * spec.model.spec.context;
    drop(probe);
    let plan = crate::engine::plan(model, side, side, 1)?;
    let room = budget.saturating_sub(plan.weight_bytes);
    let fits = ((room / plan.bytes_per_item.max(1)) as u32).clamp(1, MAX_AUTO_BATCH);
    let mut tiles = 0usize;
    for path in todo {
        if tiles >= fits as usize {
            break;
        }
        if let Ok((w, h)) = image::image_dimensions(path) {
            tiles += crate::tiling::grid(w, h, tile).len();
        }
    }
    Ok(fits.min(tiles.max(1) as u32))
}

/// How a job went, for its summary.
struct Tally {
    done: usize,
    failed: usize,
    batch_size: u32,
    tile_size: u32,
    retries: usize,
    batches_in_flight: usize,
    /// The budget the batch size was planned against.
    budget: u64,
}

/// Marks what was left as skipped (cancelled), builds the summary and emits it.
fn finish(
    engine: &Engine,
    spec: &JobSpec,
    emit: &mut dyn FnMut(JobEvent),
    started: Instant,
    mut reports: Vec<ItemReport>,
    tally: Tally,
) -> Result<JobSummary> {
    let Tally {
        done,
        failed,
        batch_size,
        tile_size,
        retries,
        batches_in_flight,
        budget,
    } = tally;
    let total = reports.len();
    for i in 0..total {
        if matches!(reports[i].status, ItemStatus::Queued | ItemStatus::Running) {
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
    let skipped = reports
        .iter()
        .filter(|r| r.status == ItemStatus::Skipped)
        .count();
    let elapsed_secs = started.elapsed().as_secs_f64();
    let summary = JobSummary {
        model: spec.model.id.clone(),
        adapter: engine.gpu.adapter.name.clone(),
        batch_size,
        tile_size,
        total,
        done,
        failed,
        skipped,
        elapsed_secs,
        items_per_sec: done as f64 / elapsed_secs.max(1e-9),
        peak_gpu_bytes: engine.gpu.ledger.peak_bytes(),
        memory_budget_bytes: budget,
        retries,
        batches_in_flight,
        items: reports,
    };
    emit(JobEvent::Finished(summary.clone()));
    Ok(summary)
}

/// A job's files: inputs, their outputs, and why any is skipped before it is read.
struct Planned {
    inputs: Vec<PathBuf>,
    outputs: Vec<PathBuf>,
    skips: Vec<Option<String>>,
    /// Finished by the run this one resumes.
    resumed: Vec<bool>,
    /// The results the manifest holds for them.
    resumed_results: Vec<Option<Analysis>>,
    /// What the manifest records for each output (None where the input cannot be stamped).
    records: Vec<Option<Record>>,
}

/// What a fixed-input model gave one image.
#[derive(Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Analysis {
    Labels(Vec<crate::analyze::Label>),
    Embedding(Vec<f32>),
    Faces {
        size: [u32; 2],
        faces: Vec<crate::analyze::FaceBox>,
    },
    /// Written as its own file already.
    Image,
}

/// A job for a fixed-input model: batches of whole images fitted to its input; per-image files
/// (masks, annotated faces) as they finish, and the collected results (labels, embeddings,
/// faces) as CSV / JSON / `.npy` files at the end.
fn run_fixed(
    engine: &Engine,
    spec: &JobSpec,
    control: &Control,
    emit: &mut dyn FnMut(JobEvent),
    started: Instant,
    planned: Planned,
) -> Result<JobSummary> {
    use crate::analyze::{self, Fit};
    let Planned {
        inputs,
        outputs,
        skips,
        resumed,
        resumed_results,
        records,
    } = planned;
    use crate::builtin::Task;
    let choice = &spec.model;
    let size = choice.input_size;
    let task = choice.task;
    let model = engine.load_with(choice.model.clone(), spec.precision)?;
    let budget = memory_budget(engine, spec);
    // Auto: what fits the budget at this input size, no more than the images to run.
    let todo = (0..inputs.len())
        .filter(|&i| skips[i].is_none() && !resumed[i])
        .count();
    let batch = match spec.batch_size {
        AUTO_BATCH => {
            let plan = crate::engine::plan(&model, size, size, 1)?;
            ((budget.saturating_sub(plan.weight_bytes) / plan.bytes_per_item.max(1)) as u32)
                .clamp(1, MAX_AUTO_BATCH)
                .min(todo.max(1) as u32)
        }
        n => n,
    };
    let runner =
        crate::engine::BatchRunner::new(engine, &model, batch, size, size, &choice.spec.input_map)?;
    emit(JobEvent::Started {
        items: inputs.clone(),
        batch_size: batch,
        tile_size: size,
    });
    let dir = &spec.output_dir;
    let aggregate: Option<PathBuf> = match task {
        Task::Classify => Some(dir.join("labels.csv")),
        Task::Embed => Some(dir.join("embeddings.npy")),
        Task::DetectFaces => Some(dir.join("faces.json")),
        _ => None,
    };
    let per_image = task == Task::Segment || (task == Task::DetectFaces && spec.analysis.annotate);
    let mut reports: Vec<ItemReport> = inputs
        .iter()
        .zip(&outputs)
        .map(|(i, o)| ItemReport {
            input: i.clone(),
            output: if per_image {
                Some(o.clone())
            } else {
                aggregate.clone()
            },
            status: ItemStatus::Queued,
            error: None,
        })
        .collect();
    let labels = crate::builtin::imagenet_labels();
    let mut results: Vec<(usize, Analysis)> = Vec::new();
    let (mut done, mut failed) = (0usize, 0usize);
    let fit_mode = Fit::for_task(task);
    let resumed_done = mark_planned(emit, &mut reports, &inputs, &skips, &resumed);
    let indices: Vec<usize> = (0..inputs.len())
        .filter(|&i| skips[i].is_none() && !resumed[i])
        .collect();
    let runtime = io_runtime()?;
    let mut decoding: VecDeque<(usize, tokio::task::JoinHandle<Result<Decoded, String>>)> =
        VecDeque::new();
    let mut queued = indices.into_iter();
    // The batch on the GPU whose results are not read yet, with its images.
    let mut in_flight: Option<(Vec<Fitted>, crate::engine::SubmittedFloats)> = None;
    let mut batches_in_flight = 0usize;
    let ahead = batch as usize + DECODE_AHEAD;
    // Only masks and annotated faces need the pixels after the batch; the others keep the size.
    let keeps_pixels =
        task == Task::Segment || (task == Task::DetectFaces && spec.analysis.annotate);
    loop {
        if control.stop_or_wait() {
            break;
        }
        // Decode ahead, then fit a batch of images to the model's input.
        let mut batch_items: Vec<Fitted> = Vec::new();
        let mut pixels: Vec<u32> = Vec::new();
        while batch_items.len() < batch as usize {
            while decoding.len() < ahead
                && let Some(i) = queued.next()
            {
                let path = inputs[i].clone();
                decoding.push_back((i, runtime.spawn_blocking(move || decode(&path))));
            }
            let Some((i, handle)) = decoding.pop_front() else {
                break;
            };
            let decoded = runtime
                .block_on(handle)
                .unwrap_or_else(|e| Err(format!("the decoder crashed: {e}")));
            match decoded {
                Err(e) => {
                    failed += 1;
                    let msg = format!("{}: {e}", inputs[i].display());
                    set_status(emit, &mut reports, i, ItemStatus::Failed, Some(msg));
                }
                Ok(mut d) => {
                    set_status(emit, &mut reports, i, ItemStatus::Running, None);
                    let (input, placement) = analyze::fit(&d.rgba.to_rgba8(), size, fit_mode);
                    pixels.extend(input.pixels().map(|p| u32::from_le_bytes(p.0)));
                    let (w, h) = d.rgba.dimensions();
                    if !keeps_pixels {
                        d.rgba = Pixels::Eight(Default::default());
                    }
                    batch_items.push(Fitted {
                        index: i,
                        size: [w, h],
                        decoded: d,
                        placement,
                    });
                }
            }
        }
        // Submit it before reading back the batch ahead of it.
        let mut submitted = None;
        if !batch_items.is_empty() {
            match runner.submit_f32(&pixels, batch_items.len() as u32) {
                Ok(s) => submitted = Some((batch_items, s)),
                Err(e) => {
                    for f in &batch_items {
                        failed += 1;
                        let msg =
                            format!("{}: the GPU batch failed: {e:#}", inputs[f.index].display());
                        set_status(emit, &mut reports, f.index, ItemStatus::Failed, Some(msg));
                    }
                }
            }
        }
        let landing = match submitted {
            Some(now) => in_flight.replace(now),
            None => in_flight.take(),
        };
        batches_in_flight = batches_in_flight
            .max(usize::from(landing.is_some()) + usize::from(in_flight.is_some()));
        if let Some((fitted, s)) = landing {
            let outs = match runner.collect_floats(s) {
                Ok(outs) => outs,
                Err(e) => {
                    for f in &fitted {
                        failed += 1;
                        let msg =
                            format!("{}: the GPU batch failed: {e:#}", inputs[f.index].display());
                        set_status(emit, &mut reports, f.index, ItemStatus::Failed, Some(msg));
                    }
                    continue;
                }
            };
            let items = fitted.len();
            for (k, f) in fitted.into_iter().enumerate() {
                let i = f.index;
                let slice = |o: usize| {
                    let per = outs[o].len() / items;
                    &outs[o][k * per..(k + 1) * per]
                };
                let out = Output {
                    path: &outputs[i],
                    record: records[i].as_ref(),
                };
                match analyze_one(spec, &labels, &slice, f, size, out) {
                    Ok(a) => {
                        if !matches!(a, Analysis::Image)
                            && let Ok(result) = serde_json::to_value(&a)
                        {
                            emit(JobEvent::Result { index: i, result });
                        }
                        results.push((i, a));
                        if per_image {
                            done += 1;
                            set_status(emit, &mut reports, i, ItemStatus::Done, None);
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        set_status(emit, &mut reports, i, ItemStatus::Failed, Some(e));
                    }
                }
            }
        }
        let standing = Standing {
            finished: resumed_done + done + if per_image { 0 } else { results.len() },
            resumed: resumed_done,
            failed,
            total: inputs.len(),
            batch,
            budget,
        };
        report_progress(emit, engine, started, standing);
        if decoding.is_empty() && queued.len() == 0 && in_flight.is_none() {
            break;
        }
    }
    // The collected results, the resumed run's and this one's in input order, each file
    // written whole or not at all.
    if let Some(path) = &aggregate {
        let fresh: Vec<usize> = results.iter().map(|(i, _)| *i).collect();
        let mut all: Vec<(usize, Analysis)> = resumed_results
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, r?)))
            .chain(results)
            .collect();
        all.sort_by_key(|(i, _)| *i);
        let written = write_aggregate(task, path, &inputs, &all);
        for i in fresh {
            match (&written, per_image) {
                (Ok(()), true) => {}
                (Ok(()), false) => {
                    done += 1;
                    set_status(emit, &mut reports, i, ItemStatus::Done, None);
                }
                (Err(e), _) => {
                    done -= usize::from(per_image);
                    failed += 1;
                    set_status(emit, &mut reports, i, ItemStatus::Failed, Some(e.clone()));
                }
            }
        }
    }
    let tally = Tally {
        done: done + resumed_done,
        failed,
        batch_size: batch,
        tile_size: size,
        retries: 0,
        batches_in_flight,
        budget,
    };
    finish(engine, spec, emit, started, reports, tally)
}

/// An image decoded and fitted to a fixed-input model, waiting for its batch's results.
struct Fitted {
    index: usize,
    /// The image's width and height (its pixels are kept only where the result needs them).
    size: [u32; 2],
    decoded: Decoded,
    placement: crate::analyze::Placement,
}

/// Where one image's own output file goes.
struct Output<'a> {
    path: &'a Path,
    record: Option<&'a Record>,
}

/// Turns a fixed-input model's outputs for one image (`slice(k)`: output k) into its result,
/// writing the image's own file for masks and annotated faces.
fn analyze_one<'a>(
    spec: &JobSpec,
    labels: &[String],
    slice: &dyn Fn(usize) -> &'a [f32],
    fitted: Fitted,
    size: u32,
    out: Output,
) -> Result<Analysis, String> {
    use crate::analyze;
    let Fitted {
        decoded: d,
        placement,
        size: [w, h],
        ..
    } = fitted;
    // The manifest line that lets a resumed run reuse this result.
    let with_result = |a: &Analysis| {
        out.record.map(|r| Record {
            writer: r.writer.clone(),
            entry: crate::manifest::Entry {
                result: serde_json::to_value(a).ok(),
                ..r.entry.clone()
            },
        })
    };
    let collected = |a: Analysis| {
        if let Some(r) = with_result(&a) {
            r.writer.append(&r.entry)?;
        }
        Ok(a)
    };
    match spec.model.task {
        Task::Classify => collected(Analysis::Labels(analyze::top_labels(
            slice(0),
            labels,
            spec.analysis.top_k,
        ))),
        Task::Embed => collected(Analysis::Embedding(slice(0).to_vec())),
        Task::DetectFaces => {
            let faces = analyze::face_boxes(slice(0), slice(1), &placement, [w, h]);
            let annotated = spec.analysis.annotate.then(|| {
                let mut img = d.rgba.to_rgba8().into_owned();
                analyze::annotate(&mut img, &faces);
                Pixels::Eight(img)
            });
            let analysis = Analysis::Faces {
                size: [w, h],
                faces,
            };
            let Some(img) = annotated else {
                return collected(analysis);
            };
            let record = with_result(&analysis);
            write_image(out.path, img, None, &d.meta, &spec.export, record.as_ref())?;
            Ok(analysis)
        }
        Task::Segment => {
            let mask = analyze::mask_to_image(slice(0), size, w, h);
            if spec.analysis.mask_only {
                let rgba = Pixels::Eight(DynamicImage::ImageLuma8(mask).to_rgba8());
                write_image(out.path, rgba, None, &d.meta, &spec.export, out.record)?;
            } else {
                write_image(
                    out.path,
                    d.rgba,
                    Some(DynamicImage::ImageLuma8(mask)),
                    &d.meta,
                    &spec.export,
                    out.record,
                )?;
            }
            Ok(Analysis::Image)
        }
        Task::Upscale | Task::Enhance => Err("a tiled model came to the fixed-input path".into()),
    }
}

/// The blocking-I/O pool that decodes and writes files beside the GPU thread.
fn io_runtime() -> Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(cores.clamp(2, 16))
        .thread_name("batchwise-io")
        .build()
        .context("starting the I/O thread pool")
}

/// Writes the collected results of `task`: `labels.csv` + `labels.json`, `embeddings.npy` +
/// `embeddings.json`, or `faces.json` (`path` names the first).
fn write_aggregate(
    task: crate::builtin::Task,
    path: &Path,
    inputs: &[PathBuf],
    results: &[(usize, Analysis)],
) -> Result<(), String> {
    use crate::builtin::Task;
    let json = |v: &serde_json::Value| serde_json::to_vec_pretty(v).expect("JSON values serialise");
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    match task {
        Task::Classify => {
            let mut csv = String::from("input,rank,label,score\n");
            let mut rows = Vec::new();
            for (i, a) in results {
                if let Analysis::Labels(top) = a {
                    let input = inputs[*i].display().to_string();
                    for (rank, l) in top.iter().enumerate() {
                        csv.push_str(&format!(
                            "{},{},{},{}\n",
                            quote(&input),
                            rank + 1,
                            quote(&l.label),
                            l.score
                        ));
                    }
                    rows.push(serde_json::json!({ "input": input, "labels": top }));
                }
            }
            write_bytes(path, csv.as_bytes())?;
            write_bytes(
                &path.with_extension("json"),
                &json(&serde_json::Value::Array(rows)),
            )
        }
        Task::Embed => {
            let vectors: Vec<(usize, &Vec<f32>)> = results
                .iter()
                .filter_map(|(i, a)| match a {
                    Analysis::Embedding(v) => Some((*i, v)),
                    _ => None,
                })
                .collect();
            let dim = vectors.first().map_or(0, |(_, v)| v.len());
            let rows: Vec<Vec<f32>> = vectors.iter().map(|(_, v)| (*v).clone()).collect();
            write_bytes(path, &crate::analyze::npy_bytes(&rows, dim))?;
            let index: Vec<serde_json::Value> = vectors
                .iter()
                .enumerate()
                .map(|(row, (i, _))| serde_json::json!({ "row": row, "input": inputs[*i] }))
                .collect();
            write_bytes(
                &path.with_extension("json"),
                &json(&serde_json::json!({ "dim": dim, "rows": index })),
            )
        }
        Task::DetectFaces => {
            let rows: Vec<serde_json::Value> = results
                .iter()
                .filter_map(|(i, a)| match a {
                    Analysis::Faces { size, faces } => Some(serde_json::json!({
                        "input": inputs[*i],
                        "width": size[0],
                        "height": size[1],
                        "faces": faces,
                    })),
                    _ => None,
                })
                .collect();
            write_bytes(path, &json(&serde_json::Value::Array(rows)))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::DeviceMemory;

    #[test]
    fn the_default_budget_is_half_of_what_the_driver_offers() {
        let gib = 1u64 << 30;
        assert_eq!(default_memory_budget(None), DEFAULT_MEMORY_BUDGET);
        let total_only = DeviceMemory {
            total_bytes: 8 * gib,
            budget_bytes: None,
            usage_bytes: None,
        };
        assert_eq!(default_memory_budget(Some(total_only)), 4 * gib);
        let with_budget = DeviceMemory {
            budget_bytes: Some(6 * gib),
            usage_bytes: Some(gib),
            ..total_only
        };
        assert_eq!(default_memory_budget(Some(with_budget)), 3 * gib);
        let tiny = DeviceMemory {
            total_bytes: 64 << 20,
            ..total_only
        };
        assert_eq!(default_memory_budget(Some(tiny)), 256 << 20);
    }
}
