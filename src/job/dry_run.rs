//! The plan of a job without running it (`batchwise run --dry-run`): each input's output, what
//! is skipped or fails before it is read and why, the batch the run would allocate (Auto's
//! choice or the fixed one) and the GPU memory planned for it. Nothing is written: the files are
//! surveyed as the run plans them ([`super::plan::survey`]), the model's weights go to the GPU
//! (the plan needs their packed size) and no batch runs.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::chained::ChainedStage;
use super::fixed::FixedStage;
use super::plan::{collects, survey};
use super::stepwise::StepwiseStage;
use super::tiled::TiledStage;
use super::{AUTO_BATCH, JobSpec, lossy_path};
use crate::engine::Engine;

/// What a run of the job would do, as `--dry-run` prints it (`--json`: this, serialised).
#[derive(Clone, Debug, Serialize)]
pub struct DryRun {
    pub model: String,
    /// A chain's steps in order (empty for one model).
    pub steps: Vec<String>,
    /// The input side of a fixed-input model, or of a chain's last step when it is one (each
    /// whole image fitted to it); None for image-to-image models and chains.
    pub last_step_input: Option<u32>,
    /// A chain ending in a fixed-input model: the batch of whole images its last step runs
    /// beside `batch_size` tiles of the steps before it; None otherwise.
    pub image_batch_size: Option<u32>,
    /// A chain of image-to-image steps run step by step (each on its own tiles, its images
    /// handed to the next in memory), not composed: its tiles would redo more work.
    pub step_by_step: bool,
    pub adapter: String,
    /// The batch the run would allocate: Auto's choice, or the one asked for (never more than the
    /// job's tiles or images).
    pub batch_size: u32,
    /// Whether Auto chose it.
    pub batch_auto: bool,
    /// Tile size in input pixels (a fixed-input model's input size).
    pub tile_size: u32,
    pub memory_budget_bytes: u64,
    /// Weights plus `batch_size` items (8-bit pixels; a 16-bit image doubles the pixel buffers);
    /// for a chain ending in a fixed-input model, both models' weights, `batch_size` tiles and
    /// `image_batch_size` fitted images; for a chain run step by step, every step's weights and
    /// `batch_size` of its tiles (16-bit).
    pub planned_gpu_bytes: u64,
    pub weight_bytes: u64,
    pub bytes_per_item: u64,
    /// Items that would run, be skipped, fail before they are read, or are done already.
    pub to_run: usize,
    pub skipped: usize,
    pub failed: usize,
    pub done: usize,
    pub items: Vec<PlannedItem>,
}

/// One input's fate in a [`DryRun`].
#[derive(Clone, Debug, Serialize)]
pub struct PlannedItem {
    #[serde(serialize_with = "lossy_path")]
    pub input: PathBuf,
    /// Where its output goes (the collected file for classify, embed and detect-faces).
    #[serde(serialize_with = "lossy_path")]
    pub output: PathBuf,
    /// With `--keep-steps`, the files of the chain's kept steps beside the output.
    #[serde(serialize_with = "lossy_paths", skip_serializing_if = "Vec::is_empty")]
    pub kept_steps: Vec<PathBuf>,
    pub action: PlannedAction,
    /// Why it is skipped, fails or is done already.
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlannedAction {
    Run,
    Skip,
    Fail,
    /// Finished by an earlier run of the same job (resume).
    Done,
}

/// Plans `spec` as [`super::run`] would, and stops before the first batch.
pub fn dry_run(engine: &Engine, spec: &JobSpec) -> Result<DryRun> {
    let (planned, _, _) = survey(spec)?;
    // With --keep-steps the memory planned counts the kept steps' buffers.
    let keeping = super::keeping_steps(spec)?;
    let whole = super::plan::whole_images(&keeping, &planned)?;
    let spec: &JobSpec = whole.as_ref().unwrap_or(&keeping);
    let budget = super::memory_budget(engine, spec);
    let todo: Vec<&Path> = (0..planned.inputs.len())
        .filter(|&i| planned.todo(i))
        .map(|i| planned.inputs[i].as_path())
        .collect();
    if let Some(specs) = super::stepwise::plan(engine, spec, &todo)? {
        let models = super::stepwise::load(engine, &specs)?;
        let none = (Vec::new(), Vec::new());
        let stage = StepwiseStage::new(engine, &specs, models.iter().collect(), none, false);
        let sizing = stage.batch_to_allocate(spec.batch_size, budget, &todo)?;
        let m = stage.memory(sizing, budget)?;
        let mut dry = describe(
            engine,
            spec,
            &planned,
            (budget, sizing, None),
            (m.weight_bytes, m.bytes_per_item, m.total_bytes),
        );
        dry.step_by_step = true;
        return Ok(dry);
    }
    let model = engine.load_with(spec.model.model.clone(), spec.precision)?;
    if let Some(prefix) = crate::chain::prefix(&spec.model)? {
        // A chain ending in a fixed-input model: both models, a batch of tiles and one of images.
        let prefix_model = engine.load_with(prefix.model.clone(), spec.precision)?;
        let prefix_spec = JobSpec {
            model: prefix,
            ..spec.clone()
        };
        let tiled = TiledStage::new(
            engine,
            &prefix_model,
            &prefix_spec,
            (Vec::new(), Vec::new()),
            (Vec::new(), Vec::new()),
            false,
        );
        let fixed = FixedStage::new(engine, &model, spec, Vec::new(), Vec::new());
        let size = spec.model.input_size;
        let mut stage = ChainedStage::new(tiled, fixed, (&prefix_model, &model), size);
        let sizing = stage.batch_to_allocate(spec.batch_size, budget, &todo)?;
        let memory = stage.memory(sizing)?;
        let planned_memory = (
            memory.weight_bytes,
            memory.bytes_per_item,
            memory.total_bytes,
        );
        let images = Some(stage.image_batch(sizing.batch));
        return Ok(describe(
            engine,
            spec,
            &planned,
            (budget, sizing, images),
            planned_memory,
        ));
    }
    let sizing = if spec.model.input_size > 0 {
        FixedStage::new(engine, &model, spec, Vec::new(), Vec::new()).batch_to_allocate(
            spec.batch_size,
            budget,
            todo.len(),
        )?
    } else {
        let none = (Vec::new(), Vec::new());
        let kept = (Vec::new(), Vec::new());
        let stage = TiledStage::new(engine, &model, spec, none, kept, false);
        stage.batch_to_allocate(spec.batch_size, budget, &todo)?
    };
    let memory = crate::engine::plan(&model, sizing.side, sizing.side, sizing.batch)?;
    let planned_memory = (
        memory.weight_bytes,
        memory.bytes_per_item,
        memory.total_bytes(),
    );
    Ok(describe(
        engine,
        spec,
        &planned,
        (budget, sizing, None),
        planned_memory,
    ))
}

/// The [`DryRun`] of the surveyed job `planned`, with its sizing (the budget, the batch and,
/// for a chain ending in a fixed-input model, its batch of images) and its GPU memory
/// (weights, per item, total).
fn describe(
    engine: &Engine,
    spec: &JobSpec,
    planned: &super::plan::Planned,
    (budget, sizing, image_batch): (u64, super::Sizing, Option<u32>),
    (weight_bytes, bytes_per_item, planned_gpu_bytes): (u64, u64, u64),
) -> DryRun {
    let collected = super::export::for_model(&spec.model)
        .filter(|_| collects(spec))
        .map(|e| e.path(&spec.output_dir));
    let items: Vec<PlannedItem> = (0..planned.inputs.len())
        .map(|i| {
            let (action, reason) = if let Some(why) = &planned.skips[i] {
                (PlannedAction::Skip, Some(why.clone()))
            } else if let Some(why) = &planned.failures[i] {
                (PlannedAction::Fail, Some(why.clone()))
            } else if planned.resumed[i] {
                let why = "done by an earlier run of this job (resume)";
                (PlannedAction::Done, Some(why.to_owned()))
            } else {
                (PlannedAction::Run, None)
            };
            PlannedItem {
                input: planned.inputs[i].clone(),
                output: collected
                    .clone()
                    .unwrap_or_else(|| planned.outputs[i].clone()),
                kept_steps: planned.kept[i].clone(),
                action,
                reason,
            }
        })
        .collect();
    let count = |a: PlannedAction| items.iter().filter(|i| i.action == a).count();
    DryRun {
        model: spec.model.id.clone(),
        steps: spec.model.steps.iter().map(|s| s.id.clone()).collect(),
        last_step_input: (spec.model.input_size > 0).then_some(spec.model.input_size),
        image_batch_size: image_batch,
        step_by_step: false,
        adapter: engine.gpu.adapter.name.clone(),
        batch_size: sizing.batch,
        batch_auto: spec.batch_size == AUTO_BATCH,
        tile_size: sizing.tile,
        memory_budget_bytes: budget,
        planned_gpu_bytes,
        weight_bytes,
        bytes_per_item,
        to_run: count(PlannedAction::Run),
        skipped: count(PlannedAction::Skip),
        failed: count(PlannedAction::Fail),
        done: count(PlannedAction::Done),
        items,
    }
}

fn lossy_paths<S: serde::Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}
