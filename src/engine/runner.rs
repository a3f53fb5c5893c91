//! [`BatchRunner`]: everything one batch size and tile size needs, allocated once and reused
//! for every batch; batches are submitted and read back without waiting in between (two in
//! flight).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Result, anyhow, bail};

use super::memory::{ItemBytes, assign_values};
use super::shared::{Lease, SharedBuffers};
use super::{Engine, GpuModel, OutOfMemory, injected_out_of_memory};
use crate::gpu::{Gpu, TrackedBuffer};
use crate::kernels::Precision;
use crate::kernels::edge_clamp::Geometry;
use crate::kernels::pack::{PixelDepth, PixelMapping};
use crate::model::ItemShape;

mod floats;
mod lane;
mod profile;
use lane::{Lane, scratch_sizes};
pub use profile::StepTime;

/// Buffers and recorded steps for batches of up to `max_items` tiles of one size.
///
/// A batch is split into lanes when one buffer for all its items would exceed the adapter's
/// storage binding limit (128 MiB on many devices): each lane holds its own buffers for up to
/// `items_per_lane` items, and all lanes are recorded into the same pass and submit. The batch size
/// is then bounded by memory, not by the binding limit.
pub struct BatchRunner {
    pub max_items: u32,
    pub items_per_lane: u32,
    pub input: ItemShape,
    pub output: ItemShape,
    pub extra_outputs: Vec<ItemShape>,
    /// The scale of each of the first `extra_outputs` read back as pixels after the output (a
    /// chain's kept steps: [`crate::model::Model::image_outputs`]).
    pub image_outputs: Vec<u32>,
    /// Fed floats directly: no pack step.
    float_input: bool,
    /// The model clamps tiles to their image's edge: set each batch's geometry first.
    pub clamps_edges: bool,
    /// How pixels are uploaded and read back.
    pub depth: PixelDepth,
    precision: Precision,
    gpu: Arc<Gpu>,
    lanes: Vec<Lane>,
    /// One read-back buffer per batch in flight.
    read_back: [TrackedBuffer; 2],
    /// Which read-back buffers a submitted batch still owns (shared with its
    /// [`SubmittedPixels`], which frees its slot when collected or dropped).
    busy: Arc<[AtomicBool; 2]>,
    /// The most batches that were in flight at once.
    peak_in_flight: AtomicUsize,
    timer: Option<GpuTimer>,
}

/// What a runner is fed: pixels (packed on the GPU) or float tensors.
#[derive(Clone, Copy)]
enum Feed {
    Pixels(PixelDepth),
    Floats,
}

/// A pixel batch on the GPU whose results are not read yet: hand it to
/// [`BatchRunner::collect_pixels`]. While it runs, the next batch can be packed and submitted
/// (at most two in flight).
#[must_use = "a submitted batch holds a read-back buffer until it is collected"]
pub struct SubmittedPixels {
    index: wgpu::SubmissionIndex,
    items: u32,
    timed: bool,
    /// The read-back buffer it holds, and the bytes it fills.
    slot: Slot,
    bytes: u64,
}

/// A batch on the GPU whose every output is copied out in float: hand it to
/// [`BatchRunner::collect_floats`].
#[must_use = "a submitted batch is read with collect_floats"]
pub struct SubmittedFloats {
    index: wgpu::SubmissionIndex,
    items: u32,
    staging: TrackedBuffer,
    bytes: u64,
    /// Byte ranges in `staging`, per output and lane.
    ranges: Vec<Vec<std::ops::Range<usize>>>,
}

/// A read-back buffer a submitted batch holds; dropping it (collected or not) frees the slot.
struct Slot {
    busy: Arc<[AtomicBool; 2]>,
    index: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.busy[self.index].store(false, Ordering::Release);
    }
}

impl SubmittedPixels {
    pub fn items(&self) -> u32 {
        self.items
    }
}

impl SubmittedFloats {
    pub fn items(&self) -> u32 {
        self.items
    }
}

/// How a runner is fed, the most bytes a buffer may bind, and where its activations come from.
struct Build<'a> {
    feed: Feed,
    limit: u64,
    shared: Option<&'a SharedBuffers>,
}

/// The items a lane holds so that no buffer of one binds more than `limit` bytes (at most
/// `max_items`).
fn items_per_lane(
    model: &GpuModel,
    shapes: &[ItemShape],
    depth: PixelDepth,
    float_input: bool,
    limit: u64,
    max_items: u32,
) -> Result<u32> {
    let per_item =
        ItemBytes::from_shapes(&model.model, shapes, model.precision, depth, float_input)
            .with_scratch(model.scratch_bytes(shapes))
            .largest_buffer;
    let items = (limit / per_item).min(u64::from(max_items)) as u32;
    if items == 0 {
        let (h, w) = (shapes[0].h, shapes[0].w);
        bail!(
            "one tile of {w}x{h} needs a {} MiB buffer, more than this adapter binds ({} MiB); \
             use a smaller tile size (--tile-size)",
            per_item >> 20,
            limit >> 20
        );
    }
    Ok(items)
}

/// Two timestamps around a batch's compute pass, where the adapter has timestamp queries.
struct GpuTimer {
    queries: wgpu::QuerySet,
    resolve: TrackedBuffer,
    period_ns: f64,
}

impl BatchRunner {
    /// Allocates everything a batch of `max_items` tiles of `tile_h x tile_w` needs.
    pub fn new(
        engine: &Engine,
        model: &GpuModel,
        max_items: u32,
        tile_h: u32,
        tile_w: u32,
        input_map: &PixelMapping,
    ) -> Result<Self> {
        let limit = engine.gpu.limits.max_storage_buffer_binding_size;
        let depth = PixelDepth::Eight;
        let size = [tile_h, tile_w];
        Self::with_binding_limit(engine, model, max_items, size, input_map, limit, depth)
    }

    /// As [`Self::new`] with pixels of `depth`, its activations and scratch taken from `shared`
    /// (sized with [`Self::buffer_sizes`] for the same arguments). `size`: the tile's height
    /// and width.
    pub fn sharing(
        engine: &Engine,
        model: &GpuModel,
        max_items: u32,
        size: [u32; 2],
        input_map: &PixelMapping,
        depth: PixelDepth,
        shared: &SharedBuffers,
    ) -> Result<Self> {
        let limit = engine.gpu.limits.max_storage_buffer_binding_size;
        let how = Build {
            feed: Feed::Pixels(depth),
            limit,
            shared: Some(shared),
        };
        Self::build(engine, model, max_items, size, input_map, how)
    }

    /// The activation and scratch buffers (bytes, every lane's) that [`Self::sharing`] takes
    /// for these arguments: what a [`SharedBuffers`] is sized from.
    pub fn buffer_sizes(
        engine: &Engine,
        model: &GpuModel,
        max_items: u32,
        [tile_h, tile_w]: [u32; 2],
        depth: PixelDepth,
    ) -> Result<Vec<u64>> {
        let limit = engine.gpu.limits.max_storage_buffer_binding_size;
        let shapes = model.model.shapes(tile_h, tile_w)?;
        let max_items = max_items.max(1);
        let per_lane = items_per_lane(model, &shapes, depth, false, limit, max_items)?;
        let mut sizes = Vec::new();
        let mut left = max_items;
        while left > 0 {
            let items = left.min(per_lane);
            sizes.extend(assign_values(&model.model, &shapes, items, model.precision).1);
            sizes.extend(scratch_sizes(model, &shapes, items).into_iter().flatten());
            left -= items;
        }
        Ok(sizes)
    }

    /// As [`Self::new`] with pixels of `depth`, splitting the batch into lanes as if the adapter
    /// bound at most `limit` bytes per buffer (tests use it to exercise lanes on any adapter).
    /// `size`: the tile's height and width.
    pub fn with_binding_limit(
        engine: &Engine,
        model: &GpuModel,
        max_items: u32,
        size: [u32; 2],
        input_map: &PixelMapping,
        limit: u64,
        depth: PixelDepth,
    ) -> Result<Self> {
        let how = Build {
            feed: Feed::Pixels(depth),
            limit,
            shared: None,
        };
        Self::build(engine, model, max_items, size, input_map, how)
    }

    /// A runner fed float tensors `[items, C, H, W]` directly (any channel count, no pack step):
    /// for conformance tests and models whose input is not an image.
    pub fn float_input(
        engine: &Engine,
        model: &GpuModel,
        max_items: u32,
        h: u32,
        w: u32,
    ) -> Result<Self> {
        let limit = engine.gpu.limits.max_storage_buffer_binding_size;
        let map = PixelMapping::UNIT;
        let how = Build {
            feed: Feed::Floats,
            limit,
            shared: None,
        };
        Self::build(engine, model, max_items, [h, w], &map, how)
    }

    fn build(
        engine: &Engine,
        model: &GpuModel,
        max_items: u32,
        [tile_h, tile_w]: [u32; 2],
        input_map: &PixelMapping,
        Build {
            feed,
            limit,
            shared,
        }: Build,
    ) -> Result<Self> {
        let (float_input, depth) = match feed {
            Feed::Pixels(depth) => (false, depth),
            Feed::Floats => (true, PixelDepth::Eight),
        };
        let limit = limit.min(engine.gpu.limits.max_storage_buffer_binding_size);
        let gpu = &engine.gpu;
        let m = &model.model;
        if m.input_channels != 3 && !float_input {
            bail!(
                "{} takes {} input channels; batchwise feeds RGB images (3 channels)",
                m.name,
                m.input_channels
            );
        }
        let max_items = max_items.max(1);
        if let Some(e) = injected_out_of_memory("BATCHWISE_FAIL_BATCHES_ABOVE", max_items) {
            return Err(e.into());
        }
        let shapes = m.shapes(tile_h, tile_w)?;
        let output = shapes[m.output];
        let unpacks = m.unpacks_output(output) && !float_input;
        let words = 4 * depth.words() as u64;
        // The output's pixels and a chain's kept steps', read back together.
        let kept = m.extra_outputs.iter().take(m.image_outputs.len());
        let out_pixel_bytes = if unpacks {
            words * kept.fold(output.h * output.w, |n, &v| n + shapes[v].h * shapes[v].w) as u64
        } else {
            0
        };
        let mut items_per_lane =
            items_per_lane(model, &shapes, depth, float_input, limit, max_items)?;
        let mut lease = Lease::new(shared);
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut lanes = Vec::new();
        let mut left = max_items;
        while left > 0 {
            let items = left.min(items_per_lane);
            let lane = Lane::new(engine, model, &shapes, items, input_map, depth, &mut lease);
            // A dispatch has at most so many workgroups in z, where a step takes some per item
            // (a Concat of thousands of channels on a 1x1 map, a workgroup per channel): such a
            // step bounds the items of a lane, and the lanes are made again that size.
            let z_limit = gpu.limits.max_compute_workgroups_per_dimension;
            let (z, step) = lane.widest_in_z();
            if items * z > z_limit {
                items_per_lane = z_limit / z;
                if items_per_lane == 0 {
                    bail!(
                        "layer {step} needs {z} workgroups an item, more than a dispatch holds ({z_limit})"
                    );
                }
                (lanes, left, lease) = (Vec::new(), max_items, Lease::new(shared));
                continue;
            }
            if let Some(e) = lane.compile_error(engine.kernels_for(model.precision)) {
                bail!("{e}");
            }
            lanes.push(lane);
            left -= items;
        }
        let input = shapes[0];
        // Models whose output is not an image read floats into buffers of their own.
        let read_back = [0, 1].map(|_| {
            gpu.create_buffer(
                "pixels read back",
                out_pixel_bytes * max_items as u64,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )
        });
        let timer = gpu
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| GpuTimer {
                queries: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("batch timer"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                }),
                resolve: gpu.create_buffer(
                    "batch timer",
                    16,
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                ),
                period_ns: gpu.queue.get_timestamp_period() as f64,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(OutOfMemory(format!(
                "the GPU ran out of memory allocating a batch of {max_items} tiles of \
                 {tile_w}x{tile_h}: {e}; use a smaller batch size or tile size"
            ))
            .into());
        }
        Ok(Self {
            max_items,
            items_per_lane,
            input,
            output,
            extra_outputs: m.extra_outputs.iter().map(|&v| shapes[v]).collect(),
            image_outputs: m.image_outputs.clone(),
            float_input,
            clamps_edges: m
                .layers
                .iter()
                .any(|l| matches!(l.op, crate::model::LayerOp::EdgeClamp(_))),
            depth,
            precision: model.precision,
            gpu: gpu.clone(),
            lanes,
            read_back,
            busy: Default::default(),
            peak_in_flight: AtomicUsize::new(0),
            timer,
        })
    }

    /// Bytes this runner holds on the GPU (activations, pixel and read-back buffers).
    pub fn allocated_bytes(&self) -> u64 {
        self.lanes
            .iter()
            .map(|l| {
                l.values.iter().map(|b| b.size()).sum::<u64>()
                    + l.scratch.iter().flatten().map(|b| b.size()).sum::<u64>()
                    + l.pixels_in.size()
                    + l.pixels_out.size()
                    + l.kept.iter().map(|(b, _)| b.size()).sum::<u64>()
            })
            .sum::<u64>()
            + self.read_back.iter().map(|b| b.size()).sum::<u64>()
    }

    /// The most batches this runner had submitted and not yet collected at one time.
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::Relaxed)
    }

    /// Submits the recorded batch under error scopes: a validation error fails it, running out of
    /// memory gives [`OutOfMemory`].
    fn submit_encoder(&self, encoder: wgpu::CommandEncoder) -> Result<wgpu::SubmissionIndex> {
        let device = &self.gpu.device;
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let index = self.gpu.queue.submit([encoder.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            let _ = pollster::block_on(oom.pop());
            return Err(anyhow!("the GPU rejected the batch: {e}"));
        }
        if let Some(e) = pollster::block_on(oom.pop()) {
            return Err(
                OutOfMemory(format!("the GPU ran out of memory running the batch: {e}")).into(),
            );
        }
        Ok(index)
    }

    fn in_flight(&self) -> usize {
        self.busy
            .iter()
            .filter(|b| b.load(Ordering::Acquire))
            .count()
    }

    /// Number of kernel dispatches in one full batch.
    pub fn dispatches(&self) -> usize {
        self.lanes.iter().map(Lane::dispatches).sum()
    }

    /// How many of `items` each lane takes, in order.
    fn split(&self, items: u32) -> impl Iterator<Item = (&Lane, u32)> {
        let mut left = items;
        self.lanes.iter().map_while(move |lane| {
            let take = left.min(lane.items);
            left -= take;
            (take > 0).then_some((lane, take))
        })
    }

    /// Records the whole batch as one compute pass: for every lane pack, every layer, and (for
    /// 8-bit output) unpack.
    fn record(&self, encoder: &mut wgpu::CommandEncoder, items: u32, unpack: bool, timed: bool) {
        let timestamp_writes =
            self.timer
                .as_ref()
                .filter(|_| timed)
                .map(|t| wgpu::ComputePassTimestampWrites {
                    query_set: &t.queries,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("batch"),
                timestamp_writes,
            });
            for (lane, n) in self.split(items) {
                if !self.float_input {
                    lane.pack.record(&mut pass, n);
                }
                for (_, step) in &lane.layers {
                    step.record(&mut pass, n);
                }
                if let Some(step) = lane.unpack.as_ref().filter(|_| unpack) {
                    step.record(&mut pass, n);
                    for (_, step) in &lane.kept {
                        step.record(&mut pass, n);
                    }
                }
            }
        }
        if let Some(t) = self.timer.as_ref().filter(|_| timed) {
            encoder.resolve_query_set(&t.queries, 0..2, &t.resolve, 0);
        }
    }

    /// Sets where each of the next batch's `items` lies in its image, for the model's edge
    /// clamps (a chain's steps); until set, every item is left as it is.
    pub fn set_geometry(&self, geometry: &[Geometry], items: u32) -> Result<()> {
        self.write_lanes(geometry, items, 1, |lane| &lane.geometry)
    }

    fn upload(&self, pixels: &[u32], items: u32) -> Result<()> {
        let per_item = (self.input.h * self.input.w) as usize * self.depth.words();
        self.write_lanes(pixels, items, per_item, |lane| &lane.pixels_in)
    }

    /// Checks `items` and writes each lane's share of `data` (`per_item` values an item) to the
    /// buffer `target` picks in that lane.
    fn write_lanes<T: bytemuck::Pod>(
        &self,
        data: &[T],
        items: u32,
        per_item: usize,
        target: impl Fn(&Lane) -> &TrackedBuffer,
    ) -> Result<()> {
        if items == 0 || items > self.max_items {
            bail!("a batch holds 1 to {} items, not {items}", self.max_items);
        }
        if data.len() != items as usize * per_item {
            bail!(
                "{items} items need {} values, got {}",
                items as usize * per_item,
                data.len()
            );
        }
        let mut at = 0;
        for (lane, n) in self.split(items) {
            let len = n as usize * per_item;
            let bytes: &[u8] = bytemuck::cast_slice(&data[at..at + len]);
            // Writes go in whole 4 bytes (an odd count of float16 values gets a zero after it).
            let mut padded;
            let bytes = if bytes.len().is_multiple_of(4) {
                bytes
            } else {
                padded = bytes.to_vec();
                padded.resize(bytes.len().next_multiple_of(4), 0);
                &padded[..]
            };
            self.gpu.queue.write_buffer(target(lane), 0, bytes);
            at += len;
        }
        Ok(())
    }

    /// Runs `items` tiles (RGBA8 pixels, R in the low byte, tile after tile) in one submit and returns
    /// the output tiles as RGBA8 pixels.
    pub fn run(&self, pixels: &[u32], items: u32) -> Result<Vec<u32>> {
        self.run_timed(pixels, items, false).map(|(out, _)| out)
    }

    /// As [`Self::run`]; with `timed`, also the GPU time of the batch in milliseconds where the
    /// adapter has timestamp queries.
    pub fn run_timed(
        &self,
        pixels: &[u32],
        items: u32,
        timed: bool,
    ) -> Result<(Vec<u32>, Option<f64>)> {
        let submitted = self.submit_pixels(pixels, items, timed)?;
        self.collect_pixels(submitted)
    }

    /// Uploads `items` tiles, records the batch with its read-back copy and submits it without
    /// waiting. At most two batches are in flight; collect one before submitting a third.
    pub fn submit_pixels(
        &self,
        pixels: &[u32],
        items: u32,
        timed: bool,
    ) -> Result<SubmittedPixels> {
        if self.lanes.iter().any(|l| l.unpack.is_none()) {
            bail!("this model's output is not a 3-channel image; read it with run_f32");
        }
        if let Some(e) = injected_out_of_memory("BATCHWISE_FAIL_RUNS_ABOVE", items) {
            return Err(e.into());
        }
        let Some(slot) = self.busy.iter().position(|b| !b.load(Ordering::Acquire)) else {
            bail!("two batches are in flight already; collect one first");
        };
        // The timer's query buffer is shared: a timed batch runs alone.
        let timed = timed && self.in_flight() == 0;
        self.upload(pixels, items)?;
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("batch"),
            });
        self.record(&mut encoder, items, true, timed);
        // The output's pixels, then each kept step's, each item after item.
        let word = 4 * self.depth.words() as u64;
        let kept = self.extra_outputs.iter().take(self.image_outputs.len());
        let mut at = 0;
        for (k, shape) in std::iter::once(&self.output).chain(kept).enumerate() {
            for (lane, n) in self.split(items) {
                let bytes = word * (shape.h * shape.w) as u64 * n as u64;
                let from = if k == 0 {
                    &lane.pixels_out
                } else {
                    &lane.kept[k - 1].0
                };
                encoder.copy_buffer_to_buffer(from, 0, &self.read_back[slot], at, bytes);
                at += bytes;
            }
        }
        let index = self.submit_encoder(encoder)?;
        self.busy[slot].store(true, Ordering::Release);
        let slot = Slot {
            busy: self.busy.clone(),
            index: slot,
        };
        self.peak_in_flight
            .fetch_max(self.in_flight(), Ordering::Relaxed);
        Ok(SubmittedPixels {
            index,
            items,
            timed,
            slot,
            bytes: at,
        })
    }

    /// Waits for a batch from [`Self::submit_pixels`] (not for any submitted after it) and returns
    /// its output tiles as RGBA8 pixels (then each kept step's tiles, [`Self::image_outputs`]),
    /// with the GPU time when it was timed.
    pub fn collect_pixels(&self, submitted: SubmittedPixels) -> Result<(Vec<u32>, Option<f64>)> {
        self.collect_pixels_with(submitted, <[u32]>::to_vec)
    }

    /// As [`Self::collect_pixels`], handing the words to `read` where the GPU left them (mapped)
    /// instead of copying them out first: a batch of 64 tiles of 512 px is 64 MiB.
    pub fn collect_pixels_with<R>(
        &self,
        submitted: SubmittedPixels,
        read: impl FnOnce(&[u32]) -> R,
    ) -> Result<(R, Option<f64>)> {
        let SubmittedPixels {
            index,
            timed,
            slot,
            bytes,
            ..
        } = submitted;
        let out = self
            .gpu
            .read_mapped(&self.read_back[slot.index], bytes, Some(index), |bytes| {
                match bytemuck::try_cast_slice(bytes) {
                    Ok(words) => read(words),
                    // A mapping is aligned to at least 8 bytes; copied should one ever not be.
                    Err(_) => read(&bytemuck::pod_collect_to_vec(bytes)),
                }
            });
        drop(slot);
        let out = out?;
        let gpu_ms = match self.timer.as_ref().filter(|_| timed) {
            Some(t) => {
                let ticks: Vec<u64> =
                    bytemuck::pod_collect_to_vec(&self.gpu.read_back(&t.resolve, 16)?);
                Some(ticks[1].saturating_sub(ticks[0]) as f64 * t.period_ns / 1e6)
            }
            None => None,
        };
        Ok((out, gpu_ms))
    }

    /// Runs `items` tiles and returns the model's float output `[items, C, H, W]` (before unpacking
    /// for image models).
    pub fn run_f32(&self, pixels: &[u32], items: u32) -> Result<Vec<f32>> {
        Ok(self.run_f32_all(pixels, items)?.swap_remove(0))
    }

    /// Runs `items` float inputs `[items, C, H, W]` (a runner made with [`Self::float_input`]) and
    /// returns every output.
    pub fn run_floats(&self, input: &[f32], items: u32) -> Result<Vec<Vec<f32>>> {
        fn target(lane: &Lane) -> &TrackedBuffer {
            &lane.values[lane.model_in]
        }
        if !self.float_input {
            bail!("this runner packs 8-bit pixels; make it with BatchRunner::float_input");
        }
        let per_item = self.input.elements() as usize;
        match self.precision {
            Precision::F32 => self.write_lanes(input, items, per_item, target)?,
            Precision::F16 => {
                let half: Vec<half::f16> = input.iter().map(|&x| half::f16::from_f32(x)).collect();
                self.write_lanes(&half, items, per_item, target)?;
            }
        }
        self.collect_floats(self.submit_outputs(items)?)
    }

    /// Runs `items` tiles and returns every output: the main one, then the extra ones, each
    /// `[items, ...]` in float.
    pub fn run_f32_all(&self, pixels: &[u32], items: u32) -> Result<Vec<Vec<f32>>> {
        let submitted = self.submit_f32(pixels, items)?;
        self.collect_floats(submitted)
    }

    /// Uploads `items` tiles and submits the batch, reading every output in float, without
    /// waiting: collect it with [`Self::collect_floats`].
    pub fn submit_f32(&self, pixels: &[u32], items: u32) -> Result<SubmittedFloats> {
        self.upload(pixels, items)?;
        self.submit_outputs(items)
    }
}

// Runners and their batches in flight can move between threads: checked at compile time.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<BatchRunner>();
    send_sync::<SubmittedPixels>();
    send_sync::<SubmittedFloats>();
    send_sync::<super::GpuModel>();
};
