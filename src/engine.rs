//! The engine: a model's weights on the GPU, and [`BatchRunner`]s that run N tiles per submit.
//!
//! A batch is recorded as one command encoder and one submit: pack (8-bit pixels -> float tensor),
//! every layer, unpack (float -> 8-bit), and the copy to the read-back buffer.

use std::sync::Arc;

use anyhow::{Result, anyhow, bail};

use crate::gpu::{AdapterChoice, Gpu, TrackedBuffer};
use crate::kernels::conv_transpose2d::ConvTranspose2dLayer;
use crate::kernels::conv2d::Conv2dLayer;
use crate::kernels::pack::PixelMapping;
use crate::kernels::{Kernels, Step, pack, unpack};
use crate::model::{ItemShape, LayerOp, Model};

/// A device with its compiled pipelines.
pub struct Engine {
    pub gpu: Arc<Gpu>,
    kernels: Kernels,
}

enum GpuLayer {
    Conv2d(Conv2dLayer),
    ConvTranspose2d(ConvTranspose2dLayer),
}

/// A model whose weights live on the GPU.
pub struct GpuModel {
    pub model: Arc<Model>,
    layers: Vec<GpuLayer>,
}

impl Engine {
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        let gpu = Arc::new(Gpu::new(choice)?);
        let kernels = Kernels::new(&gpu);
        Ok(Self { gpu, kernels })
    }

    /// Uploads a model's weights.
    pub fn load(&self, model: Arc<Model>) -> Result<GpuModel> {
        let gpu = &self.gpu;
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let layers = model
            .layers
            .iter()
            .map(|l| match &l.op {
                LayerOp::Conv2d(s) => GpuLayer::Conv2d(Conv2dLayer::upload(
                    gpu,
                    &l.name,
                    s.clone(),
                    &l.weights,
                    &l.bias,
                )),
                LayerOp::ConvTranspose2d(s) => GpuLayer::ConvTranspose2d(
                    ConvTranspose2dLayer::upload(gpu, &l.name, s.clone(), &l.weights, &l.bias),
                ),
            })
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!(
                "the GPU ran out of memory loading the weights of {}: {e}",
                model.name
            );
        }
        Ok(GpuModel { model, layers })
    }
}

/// Bytes a batch of `items` needs for activations, as the runner allocates them (liveness reuse).
pub fn activation_bytes(model: &Model, shapes: &[ItemShape], items: u32) -> u64 {
    plan_buffers(model, shapes, items).iter().sum()
}

/// Assigns each value to a buffer, reusing a buffer once its value is no longer read.
/// Returns the buffer sizes; `assign_values` gives the value -> buffer mapping.
fn plan_buffers(model: &Model, shapes: &[ItemShape], items: u32) -> Vec<u64> {
    assign_values(model, shapes, items).1
}

fn assign_values(model: &Model, shapes: &[ItemShape], items: u32) -> (Vec<usize>, Vec<u64>) {
    let bytes = |v: usize| shapes[v].elements() * 4 * items as u64;
    let mut last_read = vec![0usize; model.value_count];
    for (i, l) in model.layers.iter().enumerate() {
        last_read[l.input] = i;
    }
    let mut sizes: Vec<u64> = vec![bytes(0)];
    let mut free: Vec<usize> = Vec::new();
    let mut buffer_of = vec![usize::MAX; model.value_count];
    buffer_of[0] = 0;
    for (i, l) in model.layers.iter().enumerate() {
        let need = bytes(l.output);
        // Best fit among free buffers, growing the largest one if none fits.
        let pick = free
            .iter()
            .enumerate()
            .filter(|(_, b)| sizes[**b] >= need)
            .min_by_key(|(_, b)| sizes[**b])
            .map(|(k, _)| k)
            .or_else(|| {
                free.iter()
                    .enumerate()
                    .max_by_key(|(_, b)| sizes[**b])
                    .map(|(k, _)| k)
            });
        let buf = match pick {
            Some(k) => {
                let b = free.swap_remove(k);
                sizes[b] = sizes[b].max(need);
                b
            }
            None => {
                sizes.push(need);
                sizes.len() - 1
            }
        };
        buffer_of[l.output] = buf;
        if last_read[l.input] == i && l.input != model.output {
            free.push(buffer_of[l.input]);
        }
    }
    (buffer_of, sizes)
}

/// Buffers and recorded steps for batches of up to `max_items` tiles of one size.
pub struct BatchRunner {
    pub max_items: u32,
    pub input: ItemShape,
    pub output: ItemShape,
    gpu: Arc<Gpu>,
    pixels_in: TrackedBuffer,
    pixels_out: TrackedBuffer,
    read_back: TrackedBuffer,
    model_out: usize,
    values: Vec<TrackedBuffer>,
    pack: Step,
    layers: Vec<Step>,
    unpack: Step,
    timer: Option<GpuTimer>,
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
        let gpu = &engine.gpu;
        let m = &model.model;
        if m.input_channels != 3 || m.output_channels != 3 {
            bail!(
                "{} maps {} channels to {}; the image pipeline runs 3 -> 3 channel models",
                m.name,
                m.input_channels,
                m.output_channels
            );
        }
        let max_items = max_items.max(1);
        let shapes = m.shapes(tile_h, tile_w)?;
        let (buffer_of, sizes) = assign_values(m, &shapes, max_items);
        let limit = gpu.limits.max_storage_buffer_binding_size;
        if let Some(big) = sizes.iter().copied().max().filter(|&b| b > limit) {
            bail!(
                "a batch of {max_items} tiles of {tile_w}x{tile_h} needs a {} MiB buffer, more than \
                 this adapter binds ({} MiB); use a smaller batch size (--batch-size) or tile size \
                 (--tile-size)",
                big >> 20,
                limit >> 20
            );
        }
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let storage = wgpu::BufferUsages::STORAGE;
        let values: Vec<TrackedBuffer> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                gpu.create_buffer(
                    &format!("activations {i}"),
                    s,
                    storage | wgpu::BufferUsages::COPY_SRC,
                )
            })
            .collect();
        let input = shapes[0];
        let output = shapes[m.output];
        let in_px = input.h * input.w;
        let out_px = output.h * output.w;
        let pixels_in = gpu.create_buffer(
            "pixels in",
            4 * in_px as u64 * max_items as u64,
            storage | wgpu::BufferUsages::COPY_DST,
        );
        let out_bytes = 4 * out_px as u64 * max_items as u64;
        let pixels_out = gpu.create_buffer(
            "pixels out",
            out_bytes,
            storage | wgpu::BufferUsages::COPY_SRC,
        );
        let read_back = gpu.create_buffer(
            "pixels read back",
            out_bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let k = &engine.kernels;
        let pack = pack::prepare(
            gpu,
            &k.pack,
            &pixels_in,
            &values[buffer_of[0]],
            in_px,
            max_items,
            input_map,
        );
        let layers = model
            .layers
            .iter()
            .zip(&m.layers)
            .map(|(g, l)| {
                let src = &values[buffer_of[l.input]];
                let dst = &values[buffer_of[l.output]];
                let s = shapes[l.input];
                match g {
                    GpuLayer::Conv2d(c) => c.prepare(gpu, k, &l.name, src, dst, s.h, s.w),
                    GpuLayer::ConvTranspose2d(c) => {
                        c.prepare(gpu, &k.conv_transpose2d, &l.name, src, dst, s.h, s.w)
                    }
                }
            })
            .collect();
        let unpack = unpack::prepare(
            gpu,
            &k.unpack,
            &values[buffer_of[m.output]],
            &pixels_out,
            out_px,
            max_items,
            &unpack::inverse(input_map),
        );
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
            bail!(
                "the GPU ran out of memory allocating a batch of {max_items} tiles of \
                 {tile_w}x{tile_h}: {e}; use a smaller batch size or tile size"
            );
        }
        Ok(Self {
            max_items,
            input,
            output,
            gpu: gpu.clone(),
            pixels_in,
            pixels_out,
            read_back,
            model_out: buffer_of[m.output],
            values,
            pack,
            layers,
            unpack,
            timer,
        })
    }

    /// Bytes this runner holds on the GPU (activations, pixel and read-back buffers, uniforms).
    pub fn allocated_bytes(&self) -> u64 {
        self.values.iter().map(|b| b.size()).sum::<u64>()
            + self.pixels_in.size()
            + self.pixels_out.size()
            + self.read_back.size()
    }

    /// Records the whole batch as one compute pass: pack, every layer, and (for 8-bit output) unpack.
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
            self.pack.record(&mut pass, items);
            for step in &self.layers {
                step.record(&mut pass, items);
            }
            if unpack {
                self.unpack.record(&mut pass, items);
            }
        }
        if let Some(t) = self.timer.as_ref().filter(|_| timed) {
            encoder.resolve_query_set(&t.queries, 0..2, &t.resolve, 0);
        }
    }

    /// Number of kernel dispatches in one batch.
    pub fn dispatches(&self) -> usize {
        self.pack.dispatches()
            + self.layers.iter().map(Step::dispatches).sum::<usize>()
            + self.unpack.dispatches()
    }

    fn upload(&self, pixels: &[u32], items: u32) -> Result<()> {
        if items == 0 || items > self.max_items {
            bail!("a batch holds 1 to {} items, not {items}", self.max_items);
        }
        let expected = (items * self.input.h * self.input.w) as usize;
        if pixels.len() != expected {
            bail!("{items} tiles need {expected} pixels, got {}", pixels.len());
        }
        self.gpu
            .queue
            .write_buffer(&self.pixels_in, 0, bytemuck::cast_slice(pixels));
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
        self.upload(pixels, items)?;
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("batch"),
            });
        self.record(&mut encoder, items, true, timed);
        let bytes = 4 * (items * self.output.h * self.output.w) as u64;
        encoder.copy_buffer_to_buffer(&self.pixels_out, 0, &self.read_back, 0, bytes);
        let scope = self
            .gpu
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        self.gpu.queue.submit([encoder.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(anyhow!("the GPU rejected the batch: {e}"));
        }
        let out = self.gpu.map_read(&self.read_back, bytes)?;
        let gpu_ms = match self.timer.as_ref().filter(|_| timed) {
            Some(t) => {
                let ticks = self.gpu.read_back(&t.resolve, 16)?;
                let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&ticks);
                Some(ticks[1].saturating_sub(ticks[0]) as f64 * t.period_ns / 1e6)
            }
            None => None,
        };
        Ok((bytemuck::pod_collect_to_vec(&out), gpu_ms))
    }

    /// Runs `items` tiles and returns the model's float output `[items, 3, H, W]`, before unpacking.
    pub fn run_f32(&self, pixels: &[u32], items: u32) -> Result<Vec<f32>> {
        self.upload(pixels, items)?;
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("batch"),
            });
        self.record(&mut encoder, items, false, false);
        self.gpu.queue.submit([encoder.finish()]);
        let bytes = 4 * self.output.elements() * items as u64;
        let out = self.gpu.read_back(&self.values[self.model_out], bytes)?;
        Ok(bytemuck::pod_collect_to_vec(&out))
    }
}
