//! [`TiledUpscaler`]: runs an image-to-image model over tiles from many images, N tiles per submit.

use anyhow::{Result, bail};
use image::RgbaImage;

use crate::builtin::ImageModelSpec;
use crate::engine::memory::ItemBytes;
use crate::engine::shared::SharedBuffers;
use crate::engine::{BatchRunner, Engine, GpuModel, SubmittedPixels};
use crate::kernels::pack::PixelDepth;
use crate::tiling::{self, Pixels, TileRect};

/// Tile sizes tried by Auto, largest first: larger tiles waste less work on context.
pub const AUTO_TILE_SIZES: &[u32] = &[128, 96, 64, 48, 32, 16];

/// An image tiles are cut from: 8-bit RGBA, or a job's 8-bit or 16-bit [`Pixels`].
pub trait TileSource {
    /// Writes one tile with its context as `depth` words (see [`PixelDepth`]) into `out`.
    fn extract_tile(
        &self,
        rect: TileRect,
        tile: u32,
        context: u32,
        depth: PixelDepth,
        out: &mut [u32],
    );

    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
}

impl TileSource for RgbaImage {
    fn extract_tile(
        &self,
        rect: TileRect,
        tile: u32,
        context: u32,
        depth: PixelDepth,
        out: &mut [u32],
    ) {
        match depth {
            PixelDepth::Eight => tiling::extract(self, rect, tile, context, out),
            PixelDepth::Sixteen => tiling::extract_wide_from(self, rect, tile, context, out),
        }
    }

    fn size(&self) -> (u32, u32) {
        self.dimensions()
    }
}

impl TileSource for Pixels {
    fn extract_tile(
        &self,
        rect: TileRect,
        tile: u32,
        context: u32,
        depth: PixelDepth,
        out: &mut [u32],
    ) {
        match (depth, self) {
            (PixelDepth::Eight, Pixels::Eight(i)) => tiling::extract(i, rect, tile, context, out),
            (PixelDepth::Eight, Pixels::Sixteen(_)) => {
                tiling::extract(&self.to_rgba8(), rect, tile, context, out);
            }
            (PixelDepth::Sixteen, _) => tiling::extract_wide(self, rect, tile, context, out),
        }
    }

    fn size(&self) -> (u32, u32) {
        self.dimensions()
    }
}

/// A collected batch's outputs where the GPU left them ([`TiledUpscaler::collect_with`]): the
/// model's output, then each kept step's, each a plane per tile in the batch's order.
pub struct BatchOutputs<'a> {
    all: &'a [u32],
    parts: Vec<Part>,
    /// Words a pixel (the runner's [`PixelDepth`]).
    words: usize,
    items: usize,
}

/// Where one output's tiles lie in a batch's read-back words.
struct Part {
    at: usize,
    side: u32,
    crop: u32,
}

impl BatchOutputs<'_> {
    /// Output `output` of the batch's tile `item`; None past the batch.
    pub fn tile(&self, output: usize, item: usize) -> Option<TileOutput<'_>> {
        let part = self.parts.get(output)?;
        let len = (part.side * part.side) as usize * self.words;
        let at = part.at + item * len;
        (item < self.items).then_some(())?;
        Some(TileOutput {
            words: self.all.get(at..at + len)?,
            side: part.side,
            crop: part.crop,
        })
    }
}

/// One output tile as read back: `side^2` pixels of the runner's depth, whose core (the tile's
/// own pixels at the output's scale) starts `crop` pixels in on both axes.
#[derive(Clone, Copy)]
pub struct TileOutput<'a> {
    pub words: &'a [u32],
    pub side: u32,
    pub crop: u32,
}

impl<'a> TileOutput<'a> {
    /// The tile's pixels as `T` (`u32` at 8 bits a channel, `[u16; 4]` at 16) with its side and
    /// where its core starts: [`tiling::place`]'s source.
    fn source<T: bytemuck::Pod>(&self) -> (&'a [T], u32, u32) {
        (bytemuck::cast_slice(self.words), self.side, self.crop)
    }
}

/// One tile of one image, waiting for a batch.
#[derive(Clone, Copy, Debug)]
pub struct TileRef {
    pub image: usize,
    pub rect: TileRect,
}

pub struct TiledUpscaler {
    runner: BatchRunner,
    pub spec: ImageModelSpec,
    pub tile: u32,
    /// Output pixels to drop on each side of an output tile.
    crop: u32,
    scratch: std::cell::RefCell<Vec<u32>>,
}

impl TiledUpscaler {
    /// Plans batches of `batch` tiles; `tile` None picks the largest tile size that fits the adapter.
    pub fn new(
        engine: &Engine,
        model: &GpuModel,
        spec: ImageModelSpec,
        batch: u32,
        tile: Option<u32>,
    ) -> Result<Self> {
        Self::with_depth(engine, model, spec, batch, tile, PixelDepth::Eight, None)
    }

    /// As [`Self::new`], moving pixels of `depth` to and from the GPU; the runner's activations
    /// taken from `shared` where given (size it with [`BatchRunner::buffer_sizes`] at
    /// [`Self::tile_for`]'s tile plus context).
    pub fn with_depth(
        engine: &Engine,
        model: &GpuModel,
        spec: ImageModelSpec,
        batch: u32,
        tile: Option<u32>,
        depth: PixelDepth,
        shared: Option<&SharedBuffers>,
    ) -> Result<Self> {
        let Some(shared) = shared else {
            let limit = engine.gpu.limits.max_storage_buffer_binding_size;
            return Self::with_binding_limit(engine, model, spec, batch, tile, limit, depth);
        };
        let tile = Self::tile_for(engine, model, &spec, tile, depth)?;
        let side = tile + 2 * spec.context;
        let map = &spec.input_map;
        let runner = BatchRunner::sharing(engine, model, batch, [side, side], map, depth, shared)?;
        Self::around(runner, model, spec, tile)
    }

    /// As [`Self::with_depth`] with a lower buffer binding limit, to exercise lanes in tests.
    pub fn with_binding_limit(
        engine: &Engine,
        model: &GpuModel,
        spec: ImageModelSpec,
        batch: u32,
        tile: Option<u32>,
        limit: u64,
        depth: PixelDepth,
    ) -> Result<Self> {
        let tile = Self::tile_for(engine, model, &spec, tile, depth)?;
        let side = tile + 2 * spec.context;
        let runner = BatchRunner::with_binding_limit(
            engine,
            model,
            batch,
            [side, side],
            &spec.input_map,
            limit,
            depth,
        )?;
        Self::around(runner, model, spec, tile)
    }

    /// The tile size a runner takes: `tile`, or None the largest that fits the adapter (a model
    /// lowered at one input size: its own).
    pub fn tile_for(
        engine: &Engine,
        model: &GpuModel,
        spec: &ImageModelSpec,
        tile: Option<u32>,
        depth: PixelDepth,
    ) -> Result<u32> {
        // A model lowered at one input size takes tiles of exactly that size.
        let fixed = model.model.static_shapes.as_ref().map(|s| s[0].h);
        let tile = match (tile, fixed) {
            (Some(0), _) => bail!("the tile size must be at least 1 pixel"),
            (_, Some(side)) if side <= 2 * spec.context => bail!(
                "{} takes fixed {side}x{side} tiles, too small for {} px of context per side",
                model.model.name,
                spec.context
            ),
            (Some(t), Some(side)) if t + 2 * spec.context != side => bail!(
                "{} takes fixed {side}x{side} tiles: with {} px of context the tile size is {}",
                model.model.name,
                spec.context,
                side - 2 * spec.context
            ),
            (_, Some(side)) => side - 2 * spec.context,
            (Some(t), None) => t,
            (None, None) => auto_tile(engine, model, spec, depth)?,
        };
        Ok(tile)
    }

    /// `runner`, checked to turn tiles of `tile` (plus context) into tiles at `spec`'s scale.
    fn around(
        runner: BatchRunner,
        model: &GpuModel,
        spec: ImageModelSpec,
        tile: u32,
    ) -> Result<Self> {
        let side = tile + 2 * spec.context;
        let out = runner.output;
        let want = tile * spec.scale;
        if out.h != out.w || out.h < want || !(out.h - want).is_multiple_of(2) {
            bail!(
                "{} turns a {side}x{side} tile into {}x{}, which does not match scale {} with {} px \
                 of context",
                model.model.name,
                out.w,
                out.h,
                spec.scale,
                spec.context
            );
        }
        Ok(Self {
            crop: (out.h - want) / 2,
            runner,
            spec,
            tile,
            scratch: Default::default(),
        })
    }

    pub fn depth(&self) -> PixelDepth {
        self.runner.depth
    }

    pub fn batch_size(&self) -> u32 {
        self.runner.max_items
    }

    pub fn runner(&self) -> &BatchRunner {
        &self.runner
    }

    pub fn tiles(&self, width: u32, height: u32) -> Vec<TileRect> {
        tiling::grid(width, height, self.tile)
    }

    /// Runs up to `batch_size` tiles in one submit and returns each tile's output pixels
    /// (`(tile * scale)^2` RGBA8, cropped to the tile's core).
    pub fn run_tiles<I: TileSource>(
        &self,
        images: &[&I],
        tiles: &[TileRef],
    ) -> Result<Vec<Vec<u32>>> {
        self.run_tiles_timed(images, tiles, false)
            .map(|(out, _)| out)
    }

    /// As [`Self::run_tiles`], with the batch's GPU time in milliseconds when `timed` and the adapter
    /// has timestamp queries.
    pub fn run_tiles_timed<I: TileSource>(
        &self,
        images: &[&I],
        tiles: &[TileRef],
        timed: bool,
    ) -> Result<(Vec<Vec<u32>>, Option<f64>)> {
        let submitted = self.submit_tiles(images, tiles, timed)?;
        self.collect_tiles(submitted)
    }

    /// Cuts `tiles` (with their context) out of `images` and submits them as one batch without
    /// waiting for it; [`Self::collect_tiles`] gives the outputs. Two batches can be in flight.
    pub fn submit_tiles<I: TileSource>(
        &self,
        images: &[&I],
        tiles: &[TileRef],
        timed: bool,
    ) -> Result<SubmittedPixels> {
        let side = self.tile + 2 * self.spec.context;
        let depth = self.depth();
        let words = (side * side) as usize * depth.words();
        let mut input = self.scratch.borrow_mut();
        input.resize(words * tiles.len(), 0);
        for (t, chunk) in tiles.iter().zip(input.chunks_exact_mut(words)) {
            images[t.image].extract_tile(t.rect, self.tile, self.spec.context, depth, chunk);
        }
        let items = tiles.len() as u32;
        self.set_geometry(tiles.iter().map(|t| (t.rect, images[t.image].size())))?;
        self.runner.submit_pixels(&input, items, timed)
    }

    /// Tells a model that clamps tiles to their image's edge (a chain) where the next batch's
    /// tiles lie: each tile's rectangle and its image's size.
    fn set_geometry(
        &self,
        tiles: impl ExactSizeIterator<Item = (TileRect, (u32, u32))>,
    ) -> Result<()> {
        if !self.runner.clamps_edges {
            return Ok(());
        }
        let items = tiles.len() as u32;
        let context = self.spec.context as i32;
        let geometry: Vec<_> = tiles
            .map(|(rect, (w, h))| {
                [
                    rect.x as i32 - context,
                    rect.y as i32 - context,
                    w as i32,
                    h as i32,
                ]
            })
            .collect();
        self.runner.set_geometry(&geometry, items)
    }

    /// Waits for a batch from [`Self::submit_tiles`] and returns each tile's output pixels
    /// (`(tile * scale)^2` pixels of the runner's depth, cropped to the tile's core), with the GPU
    /// time when timed.
    pub fn collect_tiles(
        &self,
        submitted: SubmittedPixels,
    ) -> Result<(Vec<Vec<u32>>, Option<f64>)> {
        let items = submitted.items() as usize;
        let core = self.tile * self.spec.scale;
        let words = self.depth().words();
        let whole = TileRect {
            x: 0,
            y: 0,
            w: self.tile,
            h: self.tile,
        };
        self.collect_with(submitted, |outputs| {
            (0..items)
                .filter_map(|i| outputs.tile(0, i))
                .map(|o| {
                    let mut px = vec![0u32; (core * core) as usize * words];
                    match self.depth() {
                        PixelDepth::Eight => {
                            place_from(&mut px, core, o.source(), whole, self.spec.scale);
                        }
                        PixelDepth::Sixteen => {
                            let wide: &mut [[u16; 4]] = bytemuck::cast_slice_mut(&mut px);
                            place_from(wide, core, o.source(), whole, self.spec.scale);
                        }
                    }
                    px
                })
                .collect()
        })
    }

    /// Waits for a batch from [`Self::submit_tiles`] and hands `read` its outputs where the GPU
    /// left them (the model's, then each kept step's: a chain's `--keep-steps`), so that each
    /// tile is copied once, into its image: returns what `read` returns, with the GPU time when
    /// timed.
    pub fn collect_with<R>(
        &self,
        submitted: SubmittedPixels,
        read: impl FnOnce(&BatchOutputs<'_>) -> R,
    ) -> Result<(R, Option<f64>)> {
        let items = submitted.items() as usize;
        let words = self.depth().words();
        let kept = self
            .runner
            .extra_outputs
            .iter()
            .zip(&self.runner.image_outputs);
        let mut at = 0;
        let mut parts = Vec::new();
        for (side, scale) in std::iter::once((self.runner.output.w, self.spec.scale))
            .chain(kept.map(|(shape, &scale)| (shape.w, scale)))
        {
            // The context lost by padding-free layers is cropped symmetrically.
            let crop = side.saturating_sub(self.tile * scale) / 2;
            let len = (side * side) as usize * words;
            parts.push(Part { at, side, crop });
            at += len * items;
        }
        self.runner.collect_pixels_with(submitted, |all| {
            read(&BatchOutputs {
                all,
                parts,
                words,
                items,
            })
        })
    }

    /// Writes one tile's output into a job's image at `scale` (the model's, or a chain's kept
    /// step's), converting between 8 and 16 bits where the image and the runner differ.
    pub fn place_scaled(&self, out: &mut Pixels, rect: TileRect, tile: TileOutput<'_>, scale: u32) {
        let w = out.dimensions().0;
        match (self.depth(), out) {
            (PixelDepth::Eight, Pixels::Eight(img)) => {
                let dst: &mut [u32] = bytemuck::cast_slice_mut(img);
                place_from(dst, w, tile.source(), rect, scale);
            }
            (PixelDepth::Sixteen, Pixels::Sixteen(img)) => {
                let dst: &mut [[u16; 4]] = bytemuck::cast_slice_mut(img.as_mut());
                place_from(dst, w, tile.source(), rect, scale);
            }
            (PixelDepth::Sixteen, Pixels::Eight(img)) => {
                let dst: &mut [u32] = bytemuck::cast_slice_mut(img);
                tiling::place_map(dst, w, tile.source(), rect, scale, tiling::narrow);
            }
            (PixelDepth::Eight, Pixels::Sixteen(img)) => {
                let dst: &mut [[u16; 4]] = bytemuck::cast_slice_mut(img.as_mut());
                tiling::place_map(dst, w, tile.source(), rect, scale, tiling::widen);
            }
        }
    }

    /// Writes one tile's output into the upscaled image.
    pub fn place(&self, out: &mut RgbaImage, rect: TileRect, tile: TileOutput<'_>) {
        let w = out.width();
        let dst: &mut [u32] = bytemuck::cast_slice_mut(out);
        place_from(dst, w, tile.source(), rect, self.spec.scale);
    }

    /// Upscales whole images, filling every batch with tiles from as many images as it takes.
    pub fn upscale_all(&self, images: &[RgbaImage]) -> Result<Vec<RgbaImage>> {
        let s = self.spec.scale;
        let mut outs: Vec<RgbaImage> = images
            .iter()
            .map(|i| RgbaImage::new(i.width() * s, i.height() * s))
            .collect();
        let all: Vec<TileRef> = images
            .iter()
            .enumerate()
            .flat_map(|(image, i)| {
                self.tiles(i.width(), i.height())
                    .into_iter()
                    .map(move |rect| TileRef { image, rect })
            })
            .collect();
        let refs: Vec<&RgbaImage> = images.iter().collect();
        // Each batch is submitted before the one ahead of it is read back.
        let mut in_flight: Option<(&[TileRef], SubmittedPixels)> = None;
        for batch in all.chunks(self.batch_size() as usize) {
            let submitted = self.submit_tiles(&refs, batch, false)?;
            if let Some((tiles, previous)) = in_flight.replace((batch, submitted)) {
                self.place_batch(&mut outs, tiles, previous)?;
            }
        }
        if let Some((tiles, previous)) = in_flight {
            self.place_batch(&mut outs, tiles, previous)?;
        }
        Ok(outs)
    }

    /// Collects a batch of `tiles` into `outs`.
    fn place_batch(
        &self,
        outs: &mut [RgbaImage],
        tiles: &[TileRef],
        submitted: SubmittedPixels,
    ) -> Result<()> {
        self.collect_with(submitted, |o| {
            for (i, t) in tiles.iter().enumerate() {
                if let Some(tile) = o.tile(0, i) {
                    self.place(&mut outs[t.image], t.rect, tile);
                }
            }
        })
        .map(drop)
    }

    /// The model's float output for a whole image, stitched from tiles: planar `[3, H*s, W*s]`.
    pub fn upscale_f32(&self, image: &RgbaImage) -> Result<Vec<f32>> {
        let s = self.spec.scale;
        let (w, h) = (image.width() * s, image.height() * s);
        let side = self.tile + 2 * self.spec.context;
        let px = (side * side) as usize;
        let out_side = self.runner.output.w;
        let out_plane = (out_side * out_side) as usize;
        let mut planes = vec![0.0f32; 3 * (w * h) as usize];
        let tiles = self.tiles(image.width(), image.height());
        for batch in tiles.chunks(self.batch_size() as usize) {
            let mut input = vec![0u32; px * batch.len()];
            for (rect, chunk) in batch.iter().zip(input.chunks_exact_mut(px)) {
                tiling::extract(image, *rect, self.tile, self.spec.context, chunk);
            }
            self.set_geometry(batch.iter().map(|&r| (r, image.dimensions())))?;
            let out = self.runner.run_f32(&input, batch.len() as u32)?;
            for (rect, o) in batch.iter().zip(out.chunks_exact(3 * out_plane)) {
                for c in 0..3 {
                    let dst = &mut planes[c * (w * h) as usize..(c + 1) * (w * h) as usize];
                    let src = &o[c * out_plane..(c + 1) * out_plane];
                    tiling::place(dst, w, src, out_side, self.crop, *rect, s);
                }
            }
        }
        Ok(planes)
    }
}

/// [`tiling::place`] from a [`TileOutput::source`].
fn place_from<T: Copy>(
    dst: &mut [T],
    w: u32,
    (src, side, crop): (&[T], u32, u32),
    rect: TileRect,
    scale: u32,
) {
    tiling::place(dst, w, src, side, crop, rect, scale);
}

/// The tile Auto picks for `model`: the largest of [`AUTO_TILE_SIZES`] whose single item's largest
/// buffer (the split Winograd's scratch included) fits the adapter's binding limit (a batch larger
/// than one binding is split into lanes).
fn auto_tile(
    engine: &Engine,
    model: &GpuModel,
    spec: &ImageModelSpec,
    depth: PixelDepth,
) -> Result<u32> {
    let limit = engine.gpu.limits.max_storage_buffer_binding_size;
    for &tile in AUTO_TILE_SIZES {
        let side = tile + 2 * spec.context;
        let Ok(item) = ItemBytes::of_loaded(model, side, side, depth) else {
            continue;
        };
        if item.largest_buffer <= limit {
            return Ok(tile);
        }
    }
    bail!(
        "even {}-pixel tiles do not fit this adapter's buffer binding limit",
        AUTO_TILE_SIZES.last().copied().unwrap_or(16)
    )
}
