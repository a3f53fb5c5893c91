//! The tiled stage: image-to-image models (upscale, denoise, enhance). Each image is cut into
//! tiles with context, a batch holds tiles from as many images as it takes, output tiles are
//! stitched into the image, and a finished image is written on the I/O pool. PNG and TIFF
//! outputs are not held whole: tiles go out row-major, and each band of output rows (one row of
//! tiles) goes to the image's writer ([`super::export::stream`]) once its last tile lands. A
//! 16-bit image switches the job to 16-bit batches (8-bit images widen exactly), so that it comes
//! out 16-bit.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::Result;
use crossbeam_channel::Sender;
use image::DynamicImage;

use super::decode::{Decoded, Metadata};
use super::export::image::{Planes, write_image};
use super::export::resample::{out_size, resample, resamples};
use super::export::stream::{StreamedImage, band_channel, streams};
use super::naming::ExportOptions;
use super::pipeline::{BatchFailure, DECODE_AHEAD, Stage, WriteTask};
use super::resume::Record;
use super::{JobSpec, MAX_AUTO_BATCH, Sizing};
use crate::engine::shared::SharedBuffers;
use crate::engine::{BatchRunner, Engine, GpuModel, SubmittedPixels};
use crate::kernels::pack::PixelDepth;
use crate::tiling::{Pixels, TileRect};
use crate::upscale::{TileOutput, TileRef, TiledUpscaler};

/// An image being stitched from its output tiles.
struct InProgress {
    rgba: Pixels,
    out: Output,
    /// A chain's kept steps (`--keep-steps`): where each step's tiles go, at its scale.
    kept: Vec<(u32, Output)>,
    remaining_tiles: usize,
    tiles: usize,
}

/// Where an image's output tiles go.
enum Output {
    /// The whole output image, written once its last tile lands (JPEG, WebP: their encoders take
    /// the whole image; any format at a `--scale` that is not the model's, resampled to
    /// `resize_to` in the write task).
    Whole {
        pixels: Pixels,
        planes: Planes,
        meta: Metadata,
        resize_to: Option<(u32, u32)>,
    },
    /// Bands of rows, each sent to the writer once its last tile lands (PNG, TIFF).
    Rows(Bands),
}

/// An output written by rows: the bands of rows being stitched, and the writer they go to.
struct Bands {
    /// 16 bits a channel (else 8).
    wide: bool,
    /// The output's scale (the model's, or a kept step's).
    scale: u32,
    /// Output rows per band (the tile side at that scale) and the output's size.
    rows: u32,
    width: u32,
    height: u32,
    /// Tiles in one row of tiles.
    tiles_per_band: usize,
    /// Bands with tiles landed, by index from the top, with the tiles they still wait for.
    open: BTreeMap<u32, (Pixels, usize)>,
    /// The next band the writer takes.
    next: u32,
    /// The writer, until the first band starts it on the I/O pool.
    writer: Option<WriteTask>,
    rows_out: Sender<Pixels>,
}

impl Bands {
    /// Places one output tile in its band, then sends the bands that are complete, in order.
    /// False when the writer is gone (it failed and reports why).
    fn place(
        &mut self,
        upscaler: &TiledUpscaler,
        rect: TileRect,
        tile_out: TileOutput<'_>,
    ) -> bool {
        let index = rect.y / upscaler.tile;
        let (band, left) = self.open.entry(index).or_insert_with(|| {
            let rows = (self.height - index * self.rows).min(self.rows);
            (blank(self.wide, self.width, rows), self.tiles_per_band)
        });
        upscaler.place_scaled(band, TileRect { y: 0, ..rect }, tile_out, self.scale);
        *left -= 1;
        while let Some(entry) = self
            .open
            .first_entry()
            .filter(|e| *e.key() == self.next && e.get().1 == 0)
        {
            let (band, _) = entry.remove();
            self.next += 1;
            if self.rows_out.send(band).is_err() {
                return false;
            }
        }
        true
    }
}

pub(crate) struct TiledStage<'a> {
    engine: &'a Engine,
    model: &'a GpuModel,
    spec: &'a JobSpec,
    outputs: Vec<PathBuf>,
    records: Vec<Option<Record>>,
    /// Each item's files of a chain's kept steps and their records (`--keep-steps`; else empty).
    kept: Vec<Vec<PathBuf>>,
    kept_records: Vec<Vec<Option<Record>>>,
    upscaler: Option<TiledUpscaler>,
    /// The tile size, fixed by the first runner (None before: the user's or Auto).
    tile: Option<u32>,
    depth: PixelDepth,
    /// A 16-bit image arrived: the next runner takes 16-bit pixels.
    wants_wide: bool,
    in_progress: HashMap<usize, InProgress>,
    /// Images whose last tile landed since [`Stage::partial`] was asked, with their tiles.
    landed_whole: Vec<(usize, usize)>,
    pending: VecDeque<TileRef>,
    /// PNG and TIFF outputs are written by rows (not when nothing is written, `bench`, nor when
    /// outputs are resampled to another scale: [`super::export::resample`]).
    stream: bool,
    /// Finished images are handed on ([`Self::take_finished`]) instead of written: the steps of
    /// a chain before its fixed-input step ([`super::chained`]).
    hand_off: bool,
    handed: Vec<(usize, Decoded)>,
    /// Outputs are 16-bit whatever the input's depth: a chain's step handing its images to the
    /// next one step by step ([`super::stepwise`]).
    wide_out: bool,
    /// Images whose output is 8-bit though their input (a chain's 16-bit intermediate) is not.
    narrow: std::collections::HashSet<usize>,
    /// Outputs are written at all (not `bench`).
    write: bool,
}

impl<'a> TiledStage<'a> {
    pub fn new(
        engine: &'a Engine,
        model: &'a GpuModel,
        spec: &'a JobSpec,
        (outputs, records): (Vec<PathBuf>, Vec<Option<Record>>),
        (kept, kept_records): (Vec<Vec<PathBuf>>, Vec<Vec<Option<Record>>>),
        write: bool,
    ) -> Self {
        Self {
            kept,
            kept_records,
            write,
            stream: write && !resamples(spec.export.scale, spec.model.spec.scale),
            engine,
            model,
            spec,
            outputs,
            records,
            upscaler: None,
            tile: spec.tile_size,
            depth: PixelDepth::Eight,
            // A grey map is computed at 16 bits (see `output_at`).
            wants_wide: spec.model.model.output_channels == 1,
            in_progress: HashMap::new(),
            landed_whole: Vec::new(),
            pending: VecDeque::new(),
            hand_off: false,
            handed: Vec::new(),
            wide_out: false,
            narrow: Default::default(),
        }
    }

    /// This stage as a step of a chain run step by step ([`super::stepwise`]): batches at 16
    /// bits a channel from the first, and where `hand_off`, its images handed on at 16 bits.
    pub fn stepwise(self, hand_off: bool) -> Self {
        let this = Self {
            wants_wide: true,
            depth: PixelDepth::Sixteen,
            wide_out: hand_off,
            ..self
        };
        if hand_off { this.handing_off() } else { this }
    }

    /// Takes a decoded image whose output is 8-bit whatever its depth (a chain's last step,
    /// fed the 16-bit intermediate of an 8-bit input).
    pub fn admit_narrow(&mut self, index: usize, image: Decoded) {
        self.narrow.insert(index);
        self.admit(index, image);
    }

    /// The tiles of an image of `width` x `height` (the runner is built).
    pub fn tiles_of(&self, width: u32, height: u32) -> usize {
        self.upscaler().tiles(width, height).len()
    }

    /// This stage with its finished images handed on whole, in memory, not written.
    pub fn handing_off(self) -> Self {
        Self {
            hand_off: true,
            stream: false,
            ..self
        }
    }

    /// The images finished since the last call (with [`Self::handing_off`]), at the model's
    /// scale and the input's depth, as a decoded image of that size would be.
    pub fn take_finished(&mut self) -> Vec<(usize, Decoded)> {
        std::mem::take(&mut self.handed)
    }

    /// The runner for batches of `batch`, its activations taken from `shared` where given.
    pub fn build(&mut self, batch: u32, shared: Option<&SharedBuffers>) -> Result<()> {
        // Freed before the new one is made: both may not fit at once.
        self.upscaler = None;
        if self.wants_wide {
            self.depth = PixelDepth::Sixteen;
        }
        let (engine, model, spec) = (self.engine, self.model, self.spec.model.spec);
        let (tile, depth) = (self.tile, self.depth);
        let u = TiledUpscaler::with_depth(engine, model, spec, batch, tile, depth, shared)?;
        self.tile = Some(u.tile);
        self.upscaler = Some(u);
        Ok(())
    }

    /// The activation and scratch buffers (bytes) [`Self::build`] takes for `batch`: what a
    /// [`SharedBuffers`] is sized from.
    pub fn buffer_sizes(&self, batch: u32) -> Result<Vec<u64>> {
        let depth = if self.wants_wide {
            PixelDepth::Sixteen
        } else {
            self.depth
        };
        let spec = &self.spec.model.spec;
        let tile = TiledUpscaler::tile_for(self.engine, self.model, spec, self.tile, depth)?;
        let side = tile + 2 * spec.context;
        BatchRunner::buffer_sizes(self.engine, self.model, batch, [side, side], depth)
    }

    /// Frees the runner (before a new one is allocated beside another stage's).
    pub fn release(&mut self) {
        self.upscaler = None;
    }

    fn upscaler(&self) -> &TiledUpscaler {
        self.upscaler
            .as_ref()
            .expect("the pipeline builds the runner before using the stage")
    }

    /// The batch size to allocate: `asked`, or for Auto the largest batch (up to
    /// [`MAX_AUTO_BATCH`]) whose planned weights and per-tile memory fit `budget` at the tile
    /// size the job will use; either way no larger than the job's tiles (image headers are read
    /// until they hold a full batch, so a big job reads few; where one cannot be read, the job's
    /// size is not known and the batch stays). With the tile size it is planned at.
    pub fn batch_to_allocate(&self, asked: u32, budget: u64, todo: &[&Path]) -> Result<Sizing> {
        let model_spec = self.spec.model.spec;
        let probe = TiledUpscaler::new(self.engine, self.model, model_spec, 1, self.tile)?;
        let tile = probe.tile;
        drop(probe);
        let side = tile + 2 * model_spec.context;
        let sizing = |batch: u32| Sizing { batch, tile, side };
        let fits = if asked == super::AUTO_BATCH {
            let plan = crate::engine::plan(self.model, side, side, 1)?;
            let room = budget.saturating_sub(plan.weight_bytes);
            ((room / plan.bytes_per_item.max(1)) as u32).clamp(1, MAX_AUTO_BATCH)
        } else {
            asked.max(1)
        };
        let mut tiles = 0usize;
        for path in todo {
            if tiles >= fits as usize {
                break;
            }
            // Regular files only: a named pipe would block the reader.
            let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
            match regular
                .then(|| image::image_dimensions(path).ok())
                .flatten()
            {
                Some((w, h)) => tiles += crate::tiling::grid(w, h, tile).len(),
                None if asked == super::AUTO_BATCH => {}
                None => return Ok(sizing(fits)),
            }
        }
        Ok(sizing(fits.min(tiles.max(1) as u32)))
    }

    /// Whether image `i`'s output is written by rows (PNG, TIFF at the model's scale).
    fn streams_image(&self, i: usize) -> bool {
        self.stream && streams(self.spec.export.for_output(&self.outputs[i]).format)
    }

    /// The write of a finished image, for the I/O pool (resampled there first where
    /// `resize_to` says).
    fn write_task(
        &self,
        (path, record): (&Path, &Option<Record>),
        pixels: Pixels,
        planes: Planes,
        meta: Metadata,
        resize_to: Option<(u32, u32)>,
    ) -> WriteTask {
        let (path, record) = (path.to_path_buf(), record.clone());
        let export: ExportOptions = self.spec.export.clone();
        Box::new(move || {
            let pixels = match resize_to {
                Some((w, h)) => resample(pixels, w, h),
                None => pixels,
            };
            write_image(&path, pixels, planes, &meta, &export, record.as_ref()).map(|()| None)
        })
    }

    /// Where image `i`'s output tiles go: a whole image, or bands of rows for a writer (whose
    /// task starts with the first band). A grey or RGBA output does not carry the input's alpha.
    fn output(
        &self,
        i: usize,
        rgba: &Pixels,
        alpha: Option<DynamicImage>,
        meta: Metadata,
    ) -> Output {
        let planes = Planes::of_model(self.spec.model.model.output_channels, alpha);
        let scale = self.spec.model.spec.scale;
        let file = (self.outputs[i].as_path(), &self.records[i]);
        let wide = self.wide_out || (wide_input(rgba) && !self.narrow.contains(&i));
        let out = (self.streams_image(i), wide);
        self.output_at(file, scale, out, rgba, (planes, meta))
    }

    /// Where image `i`'s kept steps' tiles go (`--keep-steps`), each with its scale: written at
    /// that scale (`--scale` resamples the final output only), by rows where the format allows.
    fn kept_outputs(
        &self,
        i: usize,
        rgba: &Pixels,
        alpha: Option<&DynamicImage>,
        meta: &Metadata,
    ) -> Vec<(u32, Output)> {
        let (Some(paths), Some(records)) = (self.kept.get(i), self.kept_records.get(i)) else {
            return Vec::new();
        };
        let scales = &self.upscaler().runner().image_outputs;
        paths
            .iter()
            .zip(records)
            .zip(scales)
            .map(|((path, record), &scale)| {
                let rows = self.write && streams(self.spec.export.for_output(path).format);
                // A chain's steps give RGB; the input's alpha goes with each, as with the output.
                let extra = (Planes::of_model(3, alpha.cloned()), meta.clone());
                let out = (rows, wide_input(rgba));
                let out = self.output_at((path, record), scale, out, rgba, extra);
                (scale, out)
            })
            .collect()
    }

    /// An output at `path` of `scale` times `rgba`'s size: a whole image (resampled where
    /// `--scale` asks, for the final output), or bands of rows (`rows`); 16-bit where `wide`.
    fn output_at(
        &self,
        (path, record): (&Path, &Option<Record>),
        scale: u32,
        (rows, wide): (bool, bool),
        rgba: &Pixels,
        (planes, meta): (Planes, Metadata),
    ) -> Output {
        let (w, h) = rgba.dimensions();
        let (width, height) = (w * scale, h * scale);
        // A grey map (probability, depth) is continuous: 16 bits whatever the input's depth.
        let wide = wide || matches!(planes, Planes::Grey);
        if !rows {
            let resize_to = self
                .spec
                .export
                .scale
                .filter(|&s| scale == self.spec.model.spec.scale && resamples(Some(s), scale))
                .map(|s| out_size(w, h, s));
            return Output::Whole {
                pixels: blank(wide, width, height),
                planes,
                meta,
                resize_to,
            };
        }
        let tile = self.upscaler().tile;
        let (rows_out, rows_in) = band_channel();
        let writing = StreamedImage {
            path: path.to_path_buf(),
            format: self.spec.export.for_output(path).format,
            png_compression: self.spec.export.png_compression,
            width,
            height,
            wide,
            planes,
            meta,
            record: record.clone(),
        };
        Output::Rows(Bands {
            wide,
            scale,
            rows: tile * scale,
            width,
            height,
            tiles_per_band: w.div_ceil(tile) as usize,
            open: BTreeMap::new(),
            next: 0,
            writer: Some(Box::new(move || writing.write(&rows_in).map(|()| None))),
            rows_out,
        })
    }
}

impl Stage for TiledStage<'_> {
    /// The tiles of the batch, and the batch on the GPU.
    type Flight = (Vec<TileRef>, SubmittedPixels);

    fn rebuild(&mut self, batch: u32) -> Result<()> {
        self.build(batch, None)
    }

    fn batch_size(&self) -> u32 {
        self.upscaler().batch_size()
    }

    fn tile_size(&self) -> u32 {
        self.tile.unwrap_or(0)
    }

    fn decode_ahead(&self) -> usize {
        DECODE_AHEAD
    }

    fn dispatches(&self) -> usize {
        self.upscaler().runner().dispatches()
    }

    fn admit(&mut self, index: usize, image: Decoded) {
        let Decoded {
            rgba, alpha, meta, ..
        } = image;
        let (w, h) = rgba.dimensions();
        self.wants_wide |= matches!(rgba, Pixels::Sixteen(_));
        let tiles = self.upscaler().tiles(w, h);
        self.pending
            .extend(tiles.iter().map(|&rect| TileRef { image: index, rect }));
        let kept = self.kept_outputs(index, &rgba, alpha.as_ref(), &meta);
        let out = self.output(index, &rgba, alpha, meta);
        self.in_progress.insert(
            index,
            InProgress {
                rgba,
                out,
                kept,
                remaining_tiles: tiles.len(),
                tiles: tiles.len(),
            },
        );
    }

    fn waiting(&self) -> usize {
        self.pending.len()
    }

    fn needs_rebuild(&self) -> bool {
        self.wants_wide && self.depth == PixelDepth::Eight
    }

    fn submit(&mut self) -> Result<Self::Flight, BatchFailure> {
        let take = self.pending.len().min(self.batch_size() as usize);
        let tiles: Vec<TileRef> = self.pending.drain(..take).collect();
        let mut images: Vec<usize> = tiles.iter().map(|t| t.image).collect();
        images.dedup();
        let refs: Vec<&Pixels> = images.iter().map(|i| &self.in_progress[i].rgba).collect();
        let local: Vec<TileRef> = tiles
            .iter()
            .map(|t| TileRef {
                image: images.iter().position(|&i| i == t.image).unwrap_or(0),
                rect: t.rect,
            })
            .collect();
        match self.upscaler().submit_tiles(&refs, &local, false) {
            Ok(s) => Ok((tiles, s)),
            Err(error) => {
                // The tiles wait again: a smaller batch may take them.
                for t in tiles.into_iter().rev() {
                    self.pending.push_front(t);
                }
                Err(BatchFailure { images, error })
            }
        }
    }

    fn land(
        &mut self,
        (tiles, s): Self::Flight,
        start: &mut dyn FnMut(usize, WriteTask),
    ) -> Result<(), BatchFailure> {
        let mut images: Vec<usize> = tiles.iter().map(|t| t.image).collect();
        images.dedup();
        let upscaler = self.upscaler.as_ref().expect("built");
        let scale = self.spec.model.spec.scale;
        let (in_progress, pending) = (&mut self.in_progress, &mut self.pending);
        let placed = upscaler.collect_with(s, |outs| {
            for (item, t) in tiles.iter().enumerate() {
                // Tiles of an image that failed in another batch are dropped.
                let Some(image) = in_progress.get_mut(&t.image) else {
                    continue;
                };
                image.remaining_tiles -= 1;
                // The tile's output, then each kept step's.
                let kept = image.kept.iter_mut().map(|(s, out)| (*s, out));
                let mut written = true;
                for (k, (scale, out)) in std::iter::once((scale, &mut image.out))
                    .chain(kept)
                    .enumerate()
                {
                    if let Some(o) = outs.tile(k, item) {
                        written &= place_tile(upscaler, out, (t, scale, o), start);
                    }
                }
                if !written {
                    // A writer failed (and reports why): the rest of the image is not run.
                    in_progress.remove(&t.image);
                    pending.retain(|p| p.image != t.image);
                }
            }
        });
        if let Err(error) = placed {
            return Err(BatchFailure { images, error });
        }
        for i in images {
            if self
                .in_progress
                .get(&i)
                .is_some_and(|p| p.remaining_tiles == 0)
                && let Some(item) = self.in_progress.remove(&i)
            {
                self.landed_whole.push((i, item.tiles));
                self.narrow.remove(&i);
                if self.hand_off {
                    // The next step's input: its own outputs never carry the input's alpha.
                    if let Output::Whole { pixels, meta, .. } = item.out {
                        let image = Decoded {
                            rgba: pixels,
                            alpha: None,
                            meta,
                            prepared: None,
                        };
                        self.handed.push((i, image));
                    }
                    continue;
                }
                let files = std::iter::once((&self.outputs[i], &self.records[i]));
                let kept_files = self.kept.get(i).into_iter().flatten();
                let kept_files = kept_files.zip(self.kept_records.get(i).into_iter().flatten());
                let outs = std::iter::once(item.out).chain(item.kept.into_iter().map(|(_, o)| o));
                for ((path, record), out) in files.chain(kept_files).zip(outs) {
                    // A streamed image's writer ends with its last band, sent above.
                    if let Output::Whole {
                        pixels,
                        planes,
                        meta,
                        resize_to,
                    } = out
                    {
                        let task = self.write_task((path, record), pixels, planes, meta, resize_to);
                        start(i, task);
                    }
                }
            }
        }
        Ok(())
    }

    fn forget(&mut self, index: usize) -> bool {
        self.narrow.remove(&index);
        let was = self.in_progress.remove(&index).is_some();
        self.pending.retain(|t| t.image != index);
        let handed = self.handed.len();
        self.handed.retain(|(i, _)| *i != index);
        was || self.handed.len() < handed
    }

    fn in_progress(&self) -> Vec<usize> {
        self.in_progress.keys().copied().collect()
    }

    /// Whether every output is written by rows (`--format same` may mix: counted as whole).
    fn streams_rows(&self) -> bool {
        self.stream && streams(self.spec.export.format)
    }

    fn partial(&mut self) -> Vec<(usize, usize, usize)> {
        let mut partial: Vec<_> = self
            .in_progress
            .iter()
            .filter(|(_, p)| p.remaining_tiles < p.tiles)
            .map(|(&i, p)| (i, p.tiles - p.remaining_tiles, p.tiles))
            .chain(self.landed_whole.drain(..).map(|(i, n)| (i, n, n)))
            .collect();
        partial.sort_unstable();
        partial
    }
}

/// Places one tile's output `o` (at `scale`) in `out`, starting a writer of rows with its first
/// tile. False when that writer is gone (it failed and reports why).
fn place_tile(
    upscaler: &TiledUpscaler,
    out: &mut Output,
    (t, scale, o): (&TileRef, u32, TileOutput<'_>),
    start: &mut dyn FnMut(usize, WriteTask),
) -> bool {
    match out {
        Output::Whole { pixels, .. } => {
            upscaler.place_scaled(pixels, t.rect, o, scale);
            true
        }
        Output::Rows(bands) => {
            if let Some(writer) = bands.writer.take() {
                start(t.image, writer);
            }
            bands.place(upscaler, t.rect, o)
        }
    }
}

/// Whether an image is 16 bits a channel.
fn wide_input(rgba: &Pixels) -> bool {
    matches!(rgba, Pixels::Sixteen(_))
}

/// A blank image of 16 bits a channel where `wide`, else 8.
fn blank(wide: bool, width: u32, height: u32) -> Pixels {
    if wide {
        Pixels::Sixteen(crate::tiling::Rgba16Image::new(width, height))
    } else {
        Pixels::Eight(image::RgbaImage::new(width, height))
    }
}
