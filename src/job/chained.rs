//! The stage of a chain that ends in a fixed-input model (`-m enhance-low-light,classify`): the
//! image-to-image steps before it run as one composed model in tiles ([`TiledStage`]: one submit
//! a batch, the intermediates between those steps on the GPU), and each image they finish is
//! handed whole, in memory, to the fixed-input stage ([`FixedStage`]) in place of the encoder:
//! fitted to the last model's input, analysed, collected or written as that model alone does with
//! the processed image read from a file (16-bit where the input is, as a 16-bit PNG would hold).
//!
//! The fitting runs on the I/O pool, as a file's does in its decode task, so the thread that
//! feeds the GPU does not resample large processed images (110 ms for a 2048 x 1536 one to 224
//! px on the development machine).
//!
//! Both runners live side by side: a batch of `B` tiles and one of at most `B` fitted images
//! ([`ChainedStage::batch_to_allocate`] sizes `B` so that both models' weights and both batches
//! fit the budget); out-of-memory halving halves both. Batches of either kind go through the
//! pipeline's two places in flight: a batch of images as soon as it is full, or when no tile
//! waits, so that at most a batch and one landing's images wait whole in host memory.

use std::collections::VecDeque;
use std::path::Path;

use anyhow::{Result, anyhow};

use super::decode::Decoded;
use super::fixed::{Fitted, FixedStage};
use super::pipeline::{BatchFailure, Stage, WriteTask};
use super::tiled::TiledStage;
use super::{AUTO_BATCH, MAX_AUTO_BATCH, Sizing};
use crate::engine::{GpuModel, SubmittedFloats, SubmittedPixels};
use crate::upscale::TileRef;

pub(crate) struct ChainedStage<'a> {
    tiled: TiledStage<'a>,
    fixed: FixedStage<'a>,
    /// The composed steps before the last, and the last (fixed-input) model.
    models: (&'a GpuModel, &'a GpuModel),
    /// The last model's input side.
    size: u32,
    /// The most images a batch of the last step holds: the job's images, or `B`.
    fixed_max: u32,
    /// The I/O pool, where handed-on images are fitted (as files are in their decode tasks).
    io: Option<tokio::runtime::Handle>,
    /// Images handed on, being fitted to the last model's input, in order.
    fitting: VecDeque<(usize, tokio::task::JoinHandle<Decoded>)>,
    /// Images whose fitting task crashed, with why: failed at the next submit.
    broken: Vec<(usize, String)>,
}

/// A batch on the GPU: tiles of the steps before the last, or images of the last step.
pub(crate) enum Flight {
    Tiles((Vec<TileRef>, SubmittedPixels)),
    Images((Vec<Fitted>, SubmittedFloats)),
}

/// GPU memory a chain's job plans for: both models' weights, `B` tiles and the images' batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChainMemory {
    pub weight_bytes: u64,
    /// One tile of the steps before the last plus one fitted image of the last step.
    pub bytes_per_item: u64,
    pub total_bytes: u64,
}

impl<'a> ChainedStage<'a> {
    /// `tiled` runs `models.0` (the steps before the last) and hands its images to `fixed`,
    /// which runs `models.1` at its input side `size`.
    pub fn new(
        tiled: TiledStage<'a>,
        fixed: FixedStage<'a>,
        models: (&'a GpuModel, &'a GpuModel),
        size: u32,
    ) -> Self {
        Self {
            tiled: tiled.handing_off(),
            fixed,
            models,
            size,
            fixed_max: MAX_AUTO_BATCH,
            io: None,
            fitting: VecDeque::new(),
            broken: Vec::new(),
        }
    }

    /// The batch `B` to allocate: `asked`, or for Auto the largest (up to [`MAX_AUTO_BATCH`])
    /// with both models' weights, `B` tiles and `B` fitted images within `budget`. The tile batch
    /// is no larger than the job's tiles, the image batch than its images (`todo`).
    pub fn batch_to_allocate(&mut self, asked: u32, budget: u64, todo: &[&Path]) -> Result<Sizing> {
        // The tile side the job will use (a batch of 1 asked, no file read).
        let probe = self.tiled.batch_to_allocate(1, budget, &[])?;
        let batch = if asked == AUTO_BATCH {
            let (tile, image) = self.plans(probe.side)?;
            let room = budget.saturating_sub(tile.weight_bytes + image.weight_bytes);
            let per = (tile.bytes_per_item + image.bytes_per_item).max(1);
            ((room / per) as u32).clamp(1, MAX_AUTO_BATCH)
        } else {
            asked.max(1)
        };
        self.fixed_max = batch.min(todo.len().max(1) as u32);
        self.tiled.batch_to_allocate(batch, budget, todo)
    }

    /// The batch of images the last step runs for a tile batch of `batch`.
    pub fn image_batch(&self, batch: u32) -> u32 {
        batch.min(self.fixed_max)
    }

    /// The memory planned for `sizing` (from [`Self::batch_to_allocate`]).
    pub fn memory(&self, sizing: Sizing) -> Result<ChainMemory> {
        let (tile, image) = self.plans(sizing.side)?;
        let images = u64::from(self.image_batch(sizing.batch));
        Ok(ChainMemory {
            weight_bytes: tile.weight_bytes + image.weight_bytes,
            bytes_per_item: tile.bytes_per_item + image.bytes_per_item,
            total_bytes: tile.weight_bytes
                + image.weight_bytes
                + u64::from(sizing.batch) * tile.bytes_per_item
                + images * image.bytes_per_item,
        })
    }

    /// Each model's plan for one item: a tile of `side` px, a fitted image.
    fn plans(&self, side: u32) -> Result<(crate::engine::MemoryPlan, crate::engine::MemoryPlan)> {
        let tile = crate::engine::plan(self.models.0, side, side, 1)?;
        let image = crate::engine::plan(self.models.1, self.size, self.size, 1)?;
        Ok((tile, image))
    }

    /// Hands the images the tiles finished on to be fitted on the I/O pool (on this thread
    /// where there is none), then to the last step.
    fn hand_on(&mut self) {
        let prepare = self.fixed.prepare();
        for (i, mut image) in self.tiled.take_finished() {
            match (&self.io, &prepare) {
                (Some(io), Some(prepare)) => {
                    let prepare = prepare.clone();
                    let task = io.spawn_blocking(move || {
                        prepare(&mut image);
                        image
                    });
                    self.fitting.push_back((i, task));
                }
                _ => self.fixed.admit(i, image),
            }
        }
    }

    /// Admits the fitted images to the last step, in order: those whose fitting is done, and
    /// where `wait`, the first one however long it takes.
    fn collect_fitted(&mut self, mut wait: bool) {
        while let Some((_, task)) = self.fitting.front() {
            if !wait && !task.is_finished() {
                break;
            }
            wait = false;
            // Fitting tasks are started only where there is an I/O pool.
            let (Some(io), Some((i, task))) = (self.io.as_ref(), self.fitting.pop_front()) else {
                break;
            };
            match io.block_on(task) {
                Ok(image) => self.fixed.admit(i, image),
                Err(e) => self.broken.push((i, format!("{e}"))),
            }
        }
    }
}

impl Stage for ChainedStage<'_> {
    type Flight = Flight;

    /// Both runners, freed first (both old ones may not fit beside a new one).
    fn rebuild(&mut self, batch: u32) -> Result<()> {
        self.tiled.release();
        self.fixed.release();
        self.tiled.rebuild(batch)?;
        self.fixed.rebuild(self.image_batch(batch))
    }

    fn batch_size(&self) -> u32 {
        self.tiled.batch_size()
    }

    fn tile_size(&self) -> u32 {
        self.tiled.tile_size()
    }

    fn decode_ahead(&self) -> usize {
        self.tiled.decode_ahead()
    }

    /// A batch of tiles and a batch of images.
    fn dispatches(&self) -> usize {
        self.tiled.dispatches() + self.fixed.dispatches()
    }

    fn use_io(&mut self, io: &tokio::runtime::Handle) {
        self.io = Some(io.clone());
    }

    fn admit(&mut self, index: usize, image: Decoded) {
        self.tiled.admit(index, image);
    }

    fn waiting(&self) -> usize {
        self.tiled.waiting() + self.fitting.len() + self.broken.len() + self.fixed.waiting()
    }

    fn needs_rebuild(&self) -> bool {
        self.tiled.needs_rebuild()
    }

    /// A full batch of images first (their pixels may be held whole), else tiles, else the
    /// images that wait once every fitting has ended (waited for: nothing else is left to run).
    fn submit(&mut self) -> Result<Self::Flight, BatchFailure> {
        self.collect_fitted(false);
        loop {
            if !self.broken.is_empty() {
                let (images, why): (Vec<usize>, Vec<String>) = self.broken.drain(..).unzip();
                let error = anyhow!(
                    "fitting the processed image to the last step's input crashed: {}",
                    why.join("; ")
                );
                return Err(BatchFailure { images, error });
            }
            let images = self.fixed.waiting();
            let full = images >= self.fixed.batch_size() as usize;
            let last = self.tiled.waiting() == 0 && self.fitting.is_empty();
            if images > 0 && (full || last) {
                return self.fixed.submit().map(Flight::Images);
            }
            if self.tiled.waiting() > 0 {
                return self.tiled.submit().map(Flight::Tiles);
            }
            // Only images being fitted are left (the pipeline submits when something waits).
            self.collect_fitted(true);
        }
    }

    fn land(
        &mut self,
        flight: Self::Flight,
        start: &mut dyn FnMut(usize, WriteTask),
    ) -> Result<(), BatchFailure> {
        match flight {
            Flight::Tiles(f) => {
                let landed = self.tiled.land(f, start);
                self.hand_on();
                self.collect_fitted(false);
                landed
            }
            Flight::Images(f) => self.fixed.land(f, start),
        }
    }

    fn forget(&mut self, index: usize) -> bool {
        let tiles = self.tiled.forget(index);
        let before = self.fitting.len() + self.broken.len();
        // A fitting task forgotten runs to its end and is dropped.
        self.fitting.retain(|(i, _)| *i != index);
        self.broken.retain(|(i, _)| *i != index);
        let handed = self.fitting.len() + self.broken.len() < before;
        self.fixed.forget(index) || tiles || handed
    }

    fn in_progress(&self) -> Vec<usize> {
        let mut all = self.tiled.in_progress();
        all.extend(self.fitting.iter().map(|(i, _)| *i));
        all.extend(self.broken.iter().map(|(i, _)| *i));
        all.extend(self.fixed.in_progress());
        all
    }

    fn partial(&mut self) -> Vec<(usize, usize, usize)> {
        self.tiled.partial()
    }
}
