//! A whole job: plan the files ([`plan`]: listing, names, resume), then run them through the
//! one pipeline ([`pipeline`]) with the stage the model needs ([`tiled`] or [`fixed`]), and
//! export the results ([`export`]).
//!
//! | file | what is inside |
//! |---|---|
//! | `listing.rs` | folder walking, system files and non-images skipped with the reason, shards |
//! | `naming.rs` | output names: pattern, sub-folders, collisions, overwrite policy |
//! | `decode.rs` | decoding with limits, EXIF orientation, 16-bit, alpha, metadata |
//! | `plan.rs` | a job's files and outputs, and what a previous run finished (resume) |
//! | `dry_run.rs` | the plan of a job without running it: outputs, skips, batch, GPU memory |
//! | `resume.rs` | what the manifest records, and the settings a resumed job must share |
//! | `pipeline.rs` | the one loop: decode ahead, batch, two in flight, write; out-of-memory halving |
//! | `tiled.rs` | the stage of image-to-image models: tiles, stitching, bands of rows, 16-bit |
//! | `fixed.rs` | the stage of fixed-input models: fit, analyse, collect |
//! | `chained.rs` | a chain ending in a fixed-input model: its tiled steps hand images to it |
//! | `export/` | image files (PNG, TIFF by rows), and the collected results behind one trait |

mod chained;
pub mod decode;
mod dry_run;
pub mod export;
mod fixed;
pub mod listing;
pub mod naming;
mod pipeline;
mod plan;
mod resume;
mod stepwise;
mod tiled;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

pub use decode::{ItemLimits, MAX_DECODE_BYTES, MAX_IMAGE_SIDE, Metadata, read_upright};
pub use dry_run::{DryRun, PlannedAction, PlannedItem, dry_run};
pub use listing::{IMAGE_EXTENSIONS, Listed, expand_inputs, in_shard, is_image_name, list_inputs};
pub use naming::{ExportOptions, OutputFormat, Overwrite, output_name, plan_outputs};
pub use plan::MAX_SCALE;
pub(crate) use plan::collects;

use crate::builtin::ModelChoice;
use crate::engine::Engine;

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
    /// Host memory one image may take (its decoded pixels and its output's, the model's scale
    /// included; a PNG or TIFF output is written by rows, not held), checked from its header
    /// before anything is allocated; None:
    /// [`MAX_DECODE_BYTES`]. An image over it fails alone with the reason.
    pub max_item_bytes: Option<u64>,
}

impl JobSpec {
    /// A job of `model` over `inputs` into `output_dir` with every other setting at its
    /// default: Auto batch and tile, float32, the default export, no shard, budget or limit.
    pub fn new(model: ModelChoice, inputs: Vec<PathBuf>, output_dir: PathBuf) -> Self {
        Self {
            inputs,
            model,
            batch_size: AUTO_BATCH,
            tile_size: None,
            output_dir,
            precision: Default::default(),
            analysis: Default::default(),
            export: Default::default(),
            shard: None,
            memory_budget: None,
            roots: Vec::new(),
            max_item_bytes: None,
        }
    }
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

/// How a job's batches are sized: the batch to allocate, the tile size (a fixed-input model's
/// input size) and the side of one batch item in input pixels (the tile with its context).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizing {
    pub batch: u32,
    pub tile: u32,
    pub side: u32,
}

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

/// An item's paths are written to JSON as text: a name that is not UTF-8 has its bad bytes
/// shown as U+FFFD (the report is for people; the manifest keeps names exactly).
#[derive(Clone, Debug, Serialize)]
pub struct ItemReport {
    #[serde(serialize_with = "lossy_path")]
    pub input: PathBuf,
    #[serde(serialize_with = "lossy_opt_path")]
    pub output: Option<PathBuf>,
    pub status: ItemStatus,
    pub error: Option<String>,
}

fn lossy_path<S: serde::Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

fn lossy_opt_path<S: serde::Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => lossy_path(p, s),
        None => s.serialize_none(),
    }
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
    /// Why the GPU device was lost during the job, if it was: the items in flight failed and
    /// the rest were not started ([`run_recovering`] opens a new device and resumes).
    pub device_lost: Option<String>,
    /// The most batches that were on the GPU at once (submitted, not read back yet).
    pub batches_in_flight: usize,
    /// Kernel dispatches in one full batch (every layer of every lane, pack and unpack; a chain
    /// run step by step: a batch of each step).
    pub dispatches_per_batch: usize,
    /// A chain run step by step (each step on its own tiles, images handed on in memory), not
    /// composed into one model.
    pub step_by_step: bool,
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
    /// Part of an image's tiles landed and were stitched (after each batch, for every image
    /// part done), so an image of many tiles shows progress before it is finished.
    Tiles {
        index: usize,
        done: usize,
        total: usize,
    },
    /// After every batch.
    Progress {
        done: usize,
        failed: usize,
        total: usize,
        /// Images in progress, each counted by the share of its tiles landed (in the rate too).
        partial_items: f64,
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
        result: ItemResult,
    },
    /// The GPU ran out of memory: the same tiles run again in batches of `batch_size`.
    Retry {
        batch_size: u32,
        reason: String,
    },
    Finished(JobSummary),
}

/// Pause, resume and cancel a running job from another thread.
#[derive(Debug, Default)]
pub struct Control {
    pub cancel: AtomicBool,
    pub pause: AtomicBool,
}

impl Control {
    /// Waits while paused (between batches); true once cancelled.
    pub(crate) fn stop_or_wait(&self) -> bool {
        while self.pause.load(Ordering::Relaxed) && !self.cancel.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.cancel.load(Ordering::Relaxed)
    }
}

/// What a classifier, embedder or face detector gave one image: reported live in
/// [`JobEvent::Result`], recorded in the resume manifest, collected into the job's files.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemResult {
    Labels(Vec<crate::analyze::Label>),
    Embedding(Vec<f32>),
    Faces {
        /// The image's width and height.
        size: [u32; 2],
        faces: Vec<crate::analyze::FaceBox>,
    },
    /// A user model's outputs that are not images, each as it came out (row-major).
    Tensors(Vec<Vec<f32>>),
}

/// Times [`run_recovering`] opens a new device after losing one before it gives up.
pub const DEVICE_REOPENS: usize = 2;

/// [`run`], and when the GPU device is lost mid-job (a driver reset, a GPU gone), a new device
/// from `reopen` and the job again: resume skips what was written, so the items that were in
/// flight and those not started yet are done on the new device. At most [`DEVICE_REOPENS`]
/// times; a device that cannot be reopened ends the job with the first run's summary (its lost
/// items failed with the reason).
pub fn run_recovering(
    engine: &mut Engine,
    reopen: &dyn Fn() -> Result<Engine>,
    spec: &JobSpec,
    control: &Control,
    emit: &mut dyn FnMut(JobEvent),
) -> Result<JobSummary> {
    let mut summary = run(engine, spec, control, emit)?;
    for _ in 0..DEVICE_REOPENS {
        let Some(reason) = summary.device_lost.clone() else {
            break;
        };
        if control.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        match reopen() {
            Ok(fresh) => {
                log::warn!("the GPU device was lost ({reason}); resuming the job on a new one");
                *engine = fresh;
                summary = run(engine, spec, control, emit)?;
            }
            Err(e) => {
                log::error!("the GPU device was lost ({reason}) and cannot be reopened: {e:#}");
                break;
            }
        }
    }
    Ok(summary)
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
    let started = Instant::now();
    let planned = plan::plan(spec)?;
    let exporter = export::for_model(&spec.model);
    let outputs = pipeline::Outputs {
        per_image: exporter.is_none() || !plan::collects(spec),
        exporter,
        discard: false,
    };
    let source = pipeline::Source::Files;
    let keeping = keeping_steps(spec)?;
    let whole = plan::whole_images(&keeping, &planned)?;
    let spec: &JobSpec = whole.as_ref().unwrap_or(&keeping);
    let run = (started, planned, source, outputs);
    // The composed model is loaded where it runs (not for a chain run step by step).
    run_planned(engine, spec, None, control, emit, run)
}

/// Runs `images` (already decoded) through the same pipeline as [`run`] and writes nothing:
/// what `bench` measures. `spec.inputs`, the output folder and the export options are not used.
pub fn run_in_memory(
    engine: &Engine,
    spec: &JobSpec,
    model: &crate::engine::GpuModel,
    images: Vec<image::RgbaImage>,
    emit: &mut dyn FnMut(JobEvent),
) -> Result<JobSummary> {
    let started = Instant::now();
    let n = images.len();
    let decoded: Vec<decode::Decoded> = images
        .into_iter()
        .map(|rgba| decode::Decoded {
            rgba: crate::tiling::Pixels::Eight(rgba),
            alpha: None,
            meta: Metadata::default(),
            prepared: None,
        })
        .collect();
    let names: Vec<PathBuf> = (0..n)
        .map(|i| PathBuf::from(format!("image-{i}")))
        .collect();
    let planned = plan::Planned {
        outputs: names.iter().map(|p| p.with_extension("out")).collect(),
        inputs: names,
        skips: vec![None; n],
        failures: vec![None; n],
        resumed: vec![false; n],
        resumed_results: vec![None; n],
        records: vec![None; n],
        kept: vec![Vec::new(); n],
        kept_records: vec![Vec::new(); n],
    };
    let outputs = pipeline::Outputs {
        exporter: None,
        per_image: true,
        discard: true,
    };
    let source = pipeline::Source::Memory(std::sync::Arc::new(decoded));
    let control = Control::default();
    let run = (started, planned, source, outputs);
    run_planned(engine, spec, Some(model), &control, emit, run)
}

/// `spec` with its chain composed to read each step's output back as an extra output
/// (`--keep-steps`: the job writes them, the plan counts their buffers); else `spec` as it is.
pub(crate) fn keeping_steps(spec: &JobSpec) -> Result<std::borrow::Cow<'_, JobSpec>> {
    Ok(if spec.export.keep_steps {
        std::borrow::Cow::Owned(JobSpec {
            model: crate::chain::keep_steps(&spec.model)?,
            ..spec.clone()
        })
    } else {
        std::borrow::Cow::Borrowed(spec)
    })
}

/// Sizes the batch (Auto) and drives the pipeline with the model's stage; `model` is the job's
/// model loaded, or None to load it here.
fn run_planned(
    engine: &Engine,
    spec: &JobSpec,
    model: Option<&crate::engine::GpuModel>,
    control: &Control,
    emit: &mut dyn FnMut(JobEvent),
    (started, planned, source, outputs): (
        Instant,
        plan::Planned,
        pipeline::Source,
        pipeline::Outputs,
    ),
) -> Result<JobSummary> {
    engine.gpu.ledger.reset_peak();
    let budget = memory_budget(engine, spec);
    let (outs, records) = (planned.outputs.clone(), planned.records.clone());
    let kept = (planned.kept.clone(), planned.kept_records.clone());
    let write = !outputs.discard;
    let todo: Vec<PathBuf> = (0..planned.inputs.len())
        .filter(|&i| planned.todo(i))
        .map(|i| planned.inputs[i].clone())
        .collect();
    let job = |batch: u32| pipeline::Job {
        engine,
        spec,
        control,
        started,
        planned,
        source,
        outputs,
        batch,
        budget,
    };
    let todo: Vec<&std::path::Path> = todo.iter().map(PathBuf::as_path).collect();
    if let Some(specs) = stepwise::plan(engine, spec, &todo)? {
        // A chain in tiles whose composed tile would redo more work than handing images on.
        let models = stepwise::load(engine, &specs)?;
        let models: Vec<&crate::engine::GpuModel> = models.iter().collect();
        let stage = stepwise::StepwiseStage::new(engine, &specs, models, (outs, records), write);
        let batch = stage
            .batch_to_allocate(spec.batch_size, budget, &todo)?
            .batch;
        return pipeline::drive(job(batch), stage, emit);
    }
    let loaded;
    let model = match model {
        Some(model) => model,
        None => {
            loaded = engine.load_with(spec.model.model.clone(), spec.precision)?;
            &loaded
        }
    };
    if let Some(prefix) = crate::chain::prefix(&spec.model)? {
        // A chain ending in a fixed-input model: its steps before the last, composed, in tiles.
        let prefix_model = engine.load_with(prefix.model.clone(), spec.precision)?;
        let prefix_spec = JobSpec {
            model: prefix,
            ..spec.clone()
        };
        let tiled = tiled::TiledStage::new(
            engine,
            &prefix_model,
            &prefix_spec,
            (outs.clone(), records.clone()),
            (Vec::new(), Vec::new()),
            false,
        );
        let fixed = fixed::FixedStage::new(engine, model, spec, outs, records);
        let models = (&prefix_model, model);
        let mut stage = chained::ChainedStage::new(tiled, fixed, models, spec.model.input_size);
        let batch = stage
            .batch_to_allocate(spec.batch_size, budget, &todo)?
            .batch;
        pipeline::drive(job(batch), stage, emit)
    } else if spec.model.input_size > 0 {
        let stage = fixed::FixedStage::new(engine, model, spec, outs, records);
        let batch = stage
            .batch_to_allocate(spec.batch_size, budget, todo.len())?
            .batch;
        pipeline::drive(job(batch), stage, emit)
    } else {
        let stage = tiled::TiledStage::new(engine, model, spec, (outs, records), kept, write);
        let batch = stage
            .batch_to_allocate(spec.batch_size, budget, &todo)?
            .batch;
        pipeline::drive(job(batch), stage, emit)
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
