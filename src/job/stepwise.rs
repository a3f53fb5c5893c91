//! A chain of image-to-image models run step by step (`-m enhance-low-light,upscale-photo-2x`
//! in tiles smaller than its images). Composed into one model ([`crate::chain::compose`]), the
//! chain's tile carries the context of every step, so the first step computes the later steps'
//! context again for every tile: 156 px a side instead of 142 for those two at 128 px tiles.
//! Where that costs more work than a step's hand-off does ([`step_specs`]), each step runs as a
//! tiled stage of its own model ([`TiledStage`]) on its own tiles and context, exactly as the
//! steps run as separate jobs, and hands each image it finishes to the next step whole, in host
//! memory, at 16 bits a channel: no encode, no file, no decode between the steps. The last step
//! writes the image at the input's depth, with the input's alpha.
//!
//! Every step's runner lives side by side, `B` tiles each, but their activations and scratch
//! are one set of buffers ([`SharedBuffers`]: the steps' batches run one after another on the
//! queue), so a batch's memory is the largest step's, not the sum: only the weights and pixel
//! buffers add up. [`StepwiseStage::batch_to_allocate`] sizes `B` so that all of it fits the
//! budget; out-of-memory halving halves all. The batch submitted is of the latest step with tiles waiting, so that images move
//! on and leave host memory as soon as they can.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Result;
use image::DynamicImage;

use super::decode::Decoded;
use super::pipeline::{BatchFailure, Stage, WriteTask};
use super::tiled::TiledStage;
use super::{AUTO_BATCH, JobSpec, MAX_AUTO_BATCH, Sizing};
use crate::engine::memory::ItemBytes;
use crate::engine::shared::{SharedBuffers, pooled};
use crate::engine::{Engine, GpuModel, SubmittedPixels};
use crate::kernels::pack::PixelDepth;
use crate::tiling::Pixels;
use crate::upscale::{AUTO_TILE_SIZES, TileRef};

/// Run step by step where the composed chain does more than this much more work, on a CPU's
/// Vulkan (lavapipe): the hand-off's read-back, stitching and upload cost about that there, where
/// compute is nearly all of the time.
const STEPWISE_ABOVE: f64 = 1.02;

/// The same on a GPU: the hand-off's host work (twice the stitching and tiling of the composed
/// chain's, on one thread) weighs more against a GPU's compute, so the chain stays composed, its
/// intermediates on the GPU, unless its tiles would redo a quarter more work. Not measured: no
/// GPU was at hand (`BATCHWISE_CHAIN` fixes the choice to compare).
const STEPWISE_ABOVE_ON_A_GPU: f64 = 1.25;

/// The job of each step of `spec`'s chain, where the chain runs step by step ([`StepwiseStage`]):
/// a chain of image-to-image steps only, in tiles, none kept (`--keep-steps` reads the steps
/// out of the composed chain), the output at the chain's own scale, and the composed chain's
/// multiply-adds per input tile of `tile` px above the steps' on their own tiles by more than
/// `above` ([`STEPWISE_ABOVE`]). None: run the composed chain.
fn step_specs(spec: &JobSpec, tile: u32, above: f64) -> Result<Option<Vec<JobSpec>>> {
    let chain = &spec.model;
    let resampled = spec
        .export
        .scale
        .is_some_and(|s| super::export::resample::resamples(Some(s), chain.spec.scale));
    if chain.steps.len() < 2
        || chain.input_size > 0
        || chain.tiling != crate::chain::Tiling::Tiles
        || !chain.model.image_outputs.is_empty()
        || resampled
    {
        return Ok(None);
    }
    // A tile beyond what a model may compute is the composed job's to refuse, with its reason.
    let macs = |model: &crate::model::Model, context: u32| {
        let side = tile.checked_add(2 * context)?;
        model.macs_per_item(side, side).ok()
    };
    let Some(composed) = macs(&chain.model, chain.spec.context) else {
        return Ok(None);
    };
    let (mut steps, mut area) = (0u64, 1u64);
    for step in &chain.steps {
        let Some(m) = macs(&step.model, step.spec.context) else {
            return Ok(None);
        };
        // A step after an upscale has that many more tiles per tile of the chain's input.
        steps = steps.saturating_add(m.saturating_mul(area));
        area = area.saturating_mul(u64::from(step.spec.scale).pow(2));
    }
    if (composed as f64) <= above * steps as f64 {
        return Ok(None);
    }
    let last = chain.steps.len() - 1;
    let specs = chain.steps.iter().enumerate().map(|(k, step)| {
        let mut export = spec.export.clone();
        if k < last {
            // An intermediate is handed on, never written or resampled.
            export.scale = None;
        }
        JobSpec {
            model: step.clone(),
            export,
            ..spec.clone()
        }
    });
    Ok(Some(specs.collect()))
}

/// Host memory one image's last intermediate (the largest: 16-bit RGBA at the scale of the steps
/// before the last) may take, held whole while the next step runs, for its job to run step by
/// step (`--max-memory` lower still); a job with a larger image keeps the composed chain, which
/// streams its output by rows. 256 MiB: a 12 Mpx photo brightened before an upscale, not after.
const MAX_INTERMEDIATE_BYTES: u64 = 256 << 20;

/// The job of each step, where `spec`'s chain runs step by step on `engine`'s adapter at the
/// tile its job would use (the one asked for, else Auto's largest, [`AUTO_TILE_SIZES`]) and the
/// intermediates of every image of `todo` that can be read fit [`MAX_INTERMEDIATE_BYTES`].
pub(crate) fn plan(
    engine: &Engine,
    spec: &JobSpec,
    todo: &[&Path],
) -> Result<Option<Vec<JobSpec>>> {
    let specs = choose(engine, spec)?;
    Ok(specs.filter(|_| intermediates_fit(spec, todo)))
}

/// Whether the last intermediate of every image of `todo` whose header reads fits the bound.
fn intermediates_fit(spec: &JobSpec, todo: &[&Path]) -> bool {
    let steps = &spec.model.steps;
    let before: u64 = steps[..steps.len().saturating_sub(1)]
        .iter()
        .map(|s| u64::from(s.spec.scale))
        .product();
    let limit = spec
        .max_item_bytes
        .map_or(MAX_INTERMEDIATE_BYTES, |m| m.min(MAX_INTERMEDIATE_BYTES));
    todo.iter().all(|path| {
        // Regular files only: a named pipe would block the reader.
        let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
        match regular
            .then(|| image::image_dimensions(path).ok())
            .flatten()
        {
            Some((w, h)) => u64::from(w) * u64::from(h) * before * before * 8 <= limit,
            // It fails when the job reads it, whichever way the chain runs.
            None => true,
        }
    })
}

/// [`plan`]'s choice from the work alone.
fn choose(engine: &Engine, spec: &JobSpec) -> Result<Option<Vec<JobSpec>>> {
    let tile = spec.tile_size.unwrap_or(AUTO_TILE_SIZES[0]);
    // `BATCHWISE_CHAIN=composed` or `steps` fixes the choice where both can run (benchmarks).
    let above = match std::env::var("BATCHWISE_CHAIN").as_deref() {
        Ok("composed") => return Ok(None),
        Ok("steps") => 0.0,
        _ if engine.gpu.adapter.device_type == "Cpu" => STEPWISE_ABOVE,
        _ => STEPWISE_ABOVE_ON_A_GPU,
    };
    step_specs(spec, tile, above)
}

/// Each step's model loaded, in the job's precision.
pub(crate) fn load(engine: &Engine, specs: &[JobSpec]) -> Result<Vec<GpuModel>> {
    specs
        .iter()
        .map(|s| engine.load_with(s.model.model.clone(), s.precision))
        .collect()
}

/// GPU memory a chain run step by step plans for: every step's weights, and `B` tiles of each
/// step's pixel buffers and of the largest step's activations (shared).
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepsMemory {
    pub weight_bytes: u64,
    /// One tile of every step.
    pub bytes_per_item: u64,
    pub total_bytes: u64,
}

pub(crate) struct StepwiseStage<'a> {
    engine: &'a Engine,
    /// Each step's stage: all but the last hand their images on; the last writes them.
    steps: Vec<TiledStage<'a>>,
    models: Vec<&'a GpuModel>,
    /// Each step's scale.
    scales: Vec<u32>,
    /// Each image in progress: its alpha (the last step's output carries it), and whether it
    /// is 8-bit (its output is then 8-bit too).
    alpha: HashMap<usize, Option<DynamicImage>>,
    eight: HashSet<usize>,
    /// Each image's tiles landed in the steps it finished, and its tiles in all steps.
    landed_before: HashMap<usize, usize>,
    total: HashMap<usize, usize>,
}

impl<'a> StepwiseStage<'a> {
    /// `specs` from [`step_specs`], `models` their models loaded; `outputs` and `records` the
    /// job's (the last step writes them).
    pub fn new(
        engine: &'a Engine,
        specs: &'a [JobSpec],
        models: Vec<&'a GpuModel>,
        (outputs, records): (Vec<std::path::PathBuf>, Vec<Option<super::resume::Record>>),
        write: bool,
    ) -> Self {
        let last = specs.len().saturating_sub(1);
        let steps = specs
            .iter()
            .zip(&models)
            .enumerate()
            .map(|(k, (spec, model))| {
                let files = (outputs.clone(), records.clone());
                let none = (Vec::new(), Vec::new());
                TiledStage::new(engine, model, spec, files, none, write && k == last)
                    .stepwise(k < last)
            })
            .collect();
        Self {
            engine,
            steps,
            models,
            scales: specs.iter().map(|s| s.model.spec.scale).collect(),
            alpha: HashMap::new(),
            eight: HashSet::new(),
            landed_before: HashMap::new(),
            total: HashMap::new(),
        }
    }

    /// The batch `B` to allocate for every step: `asked`, or for Auto the largest (up to
    /// [`MAX_AUTO_BATCH`]) with every step's weights and `B` of its tiles within `budget`; no
    /// larger than the first step's tiles of the job (`todo`).
    pub fn batch_to_allocate(&self, asked: u32, budget: u64, todo: &[&Path]) -> Result<Sizing> {
        let batch = if asked == AUTO_BATCH {
            let memory = self.memory_at(1, budget)?;
            let room = budget.saturating_sub(memory.weight_bytes);
            ((room / memory.bytes_per_item.max(1)) as u32).clamp(1, MAX_AUTO_BATCH)
        } else {
            asked.max(1)
        };
        self.steps[0].batch_to_allocate(batch, budget, todo)
    }

    /// The memory planned for `sizing` (from [`Self::batch_to_allocate`]).
    pub fn memory(&self, sizing: Sizing, budget: u64) -> Result<StepsMemory> {
        self.memory_at(sizing.batch, budget)
    }

    fn memory_at(&self, batch: u32, budget: u64) -> Result<StepsMemory> {
        let (mut weight_bytes, mut pixels, mut shared) = (0, 0, Vec::new());
        for (step, model) in self.steps.iter().zip(&self.models) {
            // The tile side this step will use (a batch of 1 asked, no file read).
            let side = step.batch_to_allocate(1, budget, &[])?.side;
            let item = ItemBytes::of_loaded(model, side, side, PixelDepth::Sixteen)?;
            weight_bytes += model.weight_bytes;
            pixels += item.pixels;
            shared.push(step.buffer_sizes(1)?);
        }
        let bytes_per_item = pixels + pooled(&shared).iter().sum::<u64>();
        Ok(StepsMemory {
            weight_bytes,
            bytes_per_item,
            total_bytes: weight_bytes + u64::from(batch) * bytes_per_item,
        })
    }

    /// Hands the images step `k` finished to the next step.
    fn hand_on(&mut self, k: usize) {
        let last = self.steps.len() - 1;
        for (i, mut image) in self.steps[k].take_finished() {
            if k + 1 == last {
                image.alpha = self.alpha.remove(&i).flatten();
                if self.eight.remove(&i) {
                    self.steps[last].admit_narrow(i, image);
                    continue;
                }
            }
            self.steps[k + 1].admit(i, image);
        }
    }
}

impl Stage for StepwiseStage<'_> {
    /// The step, its tiles and the batch on the GPU.
    type Flight = (usize, (Vec<TileRef>, SubmittedPixels));

    /// Every step's runner, freed first (the old ones may not fit beside new ones), their
    /// activations and scratch in one set of buffers.
    fn rebuild(&mut self, batch: u32) -> Result<()> {
        for step in &mut self.steps {
            step.release();
        }
        let sizes: Vec<Vec<u64>> = (self.steps.iter())
            .map(|step| step.buffer_sizes(batch))
            .collect::<Result<_>>()?;
        // The runners hold the buffers they take; the rest go with the pool.
        let shared = SharedBuffers::new(&self.engine.gpu, &sizes)?;
        for step in &mut self.steps {
            step.build(batch, Some(&shared))?;
        }
        Ok(())
    }

    fn batch_size(&self) -> u32 {
        self.steps[0].batch_size()
    }

    fn tile_size(&self) -> u32 {
        self.steps[0].tile_size()
    }

    fn decode_ahead(&self) -> usize {
        self.steps[0].decode_ahead()
    }

    /// A batch of each step.
    fn dispatches(&self) -> usize {
        self.steps.iter().map(Stage::dispatches).sum()
    }

    fn admit(&mut self, index: usize, mut image: Decoded) {
        let (mut w, mut h) = image.rgba.dimensions();
        let mut total = 0;
        for (step, scale) in self.steps.iter().zip(&self.scales) {
            total += step.tiles_of(w, h);
            (w, h) = (w * scale, h * scale);
        }
        self.total.insert(index, total);
        self.alpha.insert(index, image.alpha.take());
        if matches!(image.rgba, Pixels::Eight(_)) {
            self.eight.insert(index);
        }
        self.steps[0].admit(index, image);
    }

    fn waiting(&self) -> usize {
        self.steps.iter().map(Stage::waiting).sum()
    }

    fn needs_rebuild(&self) -> bool {
        self.steps.iter().any(Stage::needs_rebuild)
    }

    /// A batch of the latest step with tiles waiting.
    fn submit(&mut self) -> Result<Self::Flight, BatchFailure> {
        let k = (0..self.steps.len())
            .rev()
            .find(|&k| self.steps[k].waiting() > 0)
            .unwrap_or(0);
        self.steps[k].submit().map(|f| (k, f))
    }

    fn land(
        &mut self,
        (k, flight): Self::Flight,
        start: &mut dyn FnMut(usize, WriteTask),
    ) -> Result<(), BatchFailure> {
        let landed = self.steps[k].land(flight, start);
        if k + 1 < self.steps.len() {
            self.hand_on(k);
        }
        landed
    }

    fn forget(&mut self, index: usize) -> bool {
        let mut was = false;
        for step in &mut self.steps {
            was |= step.forget(index);
        }
        self.alpha.remove(&index);
        self.eight.remove(&index);
        self.landed_before.remove(&index);
        self.total.remove(&index);
        was
    }

    fn in_progress(&self) -> Vec<usize> {
        let mut all: Vec<usize> = self.steps.iter().flat_map(Stage::in_progress).collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    fn streams_rows(&self) -> bool {
        self.steps.last().is_some_and(Stage::streams_rows)
    }

    fn step_by_step(&self) -> bool {
        true
    }

    /// Each image's tiles landed in every step against its tiles in all steps; whole once its
    /// last step's last tile landed.
    fn partial(&mut self) -> Vec<(usize, usize, usize)> {
        let last = self.steps.len() - 1;
        let mut all = std::collections::BTreeMap::new();
        for k in 0..self.steps.len() {
            for (i, landed, tiles) in self.steps[k].partial() {
                let before = self.landed_before.get(&i).copied().unwrap_or(0);
                let total = self.total.get(&i).copied().unwrap_or(before + tiles);
                if k == last && landed == tiles {
                    self.landed_before.remove(&i);
                    self.total.remove(&i);
                    all.insert(i, (total, total));
                    continue;
                }
                if landed == tiles {
                    self.landed_before.insert(i, before + tiles);
                }
                // Not whole before its last step's last tile, whatever the counts say.
                let landed = (before + landed).min(total.saturating_sub(1));
                let seen = all.entry(i).or_insert((landed, total));
                seen.0 = seen.0.max(landed);
            }
        }
        all.into_iter().map(|(i, (l, t))| (i, l, t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(model: &str, tile: u32) -> JobSpec {
        let model = crate::chain::resolve(model, &Default::default()).unwrap();
        JobSpec {
            tile_size: Some(tile),
            ..JobSpec::new(model, Vec::new(), Default::default())
        }
    }

    /// Small tiles redo much of the later step's context: step by step, each step its own job
    /// (the output's `--scale` only on the last); huge tiles redo little: composed.
    #[test]
    fn small_tiles_run_step_by_step_and_huge_ones_composed() {
        let chain = "enhance-low-light,upscale-photo-2x";
        let mut small = spec(chain, 16);
        small.export.scale = Some(2.0);
        let specs = step_specs(&small, 16, STEPWISE_ABOVE).unwrap().unwrap();
        let ids: Vec<&str> = specs.iter().map(|s| s.model.id.as_str()).collect();
        assert_eq!(ids, ["enhance-low-light", "upscale-photo-2x"]);
        assert_eq!(specs[0].export.scale, None);
        assert_eq!(specs[1].export.scale, Some(2.0));
        assert!(
            step_specs(&spec(chain, 1024), 1024, STEPWISE_ABOVE)
                .unwrap()
                .is_none()
        );
        // A tile no model may compute is left to the composed job to refuse.
        assert!(
            step_specs(&spec(chain, 1 << 20), 1 << 20, 0.0)
                .unwrap()
                .is_none()
        );
    }

    /// An image whose intermediate (16-bit, at the scale of the steps before the last) would
    /// take more host memory than the bound keeps the composed chain, which streams; an image
    /// that cannot be read does not decide it.
    #[test]
    fn images_whose_intermediates_are_too_large_keep_the_composed_chain() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("photo.png");
        image::RgbaImage::new(64, 32).save(&photo).unwrap();
        let missing = dir.path().join("missing.png");
        let todo = [photo.as_path(), missing.as_path()];
        // Upscaled 2x before its last step: 128 x 64 x 8 bytes.
        let mut upscale_first = spec("upscale-photo-2x,enhance-low-light", 16);
        upscale_first.max_item_bytes = Some(128 * 64 * 8);
        assert!(intermediates_fit(&upscale_first, &todo));
        upscale_first.max_item_bytes = Some(128 * 64 * 8 - 1);
        assert!(!intermediates_fit(&upscale_first, &todo));
        // Brightened first: the intermediate is the input's size.
        let mut brighten_first = spec("enhance-low-light,upscale-photo-2x", 16);
        brighten_first.max_item_bytes = Some(64 * 32 * 8);
        assert!(intermediates_fit(&brighten_first, &todo));
    }

    /// What only the composed chain does stays composed: kept steps, a fixed-input last step,
    /// whole images, an output resampled to another scale; one model is not a chain.
    #[test]
    fn what_only_the_composed_chain_does_stays_composed() {
        let chain = "enhance-low-light,upscale-photo-2x";
        let none = |s: &JobSpec| step_specs(s, 16, 0.0).unwrap().is_none();
        let mut keep = spec(chain, 16);
        keep.model = crate::chain::keep_steps(&keep.model).unwrap();
        assert!(none(&keep));
        assert!(none(&spec("enhance-low-light,classify", 16)));
        let mut whole = spec(chain, 16);
        whole.model = crate::chain::for_whole_images(&whole.model)
            .unwrap()
            .unwrap();
        assert!(none(&whole));
        let mut resampled = spec(chain, 16);
        resampled.export.scale = Some(3.0);
        assert!(none(&resampled));
        assert!(none(&spec("upscale-photo-2x", 16)));
        assert!(!none(&spec(chain, 16)));
    }
}
