//! [`Lane`]: the buffers and recorded steps of up to `items` batch items, bound once.

use std::sync::Arc;

use super::super::memory::assign_values;
use super::super::shared::Lease;
use super::super::{Engine, GpuModel, steps};
use crate::gpu::TrackedBuffer;
use crate::kernels::edge_clamp::Geometry;
use crate::kernels::pack::{PixelDepth, PixelMapping};
use crate::kernels::winograd_gemm::Scratch;
use crate::kernels::{Bind, Kernels, Step, pack, unpack};
use crate::model::ItemShape;

/// Everything `items` batch items need on the GPU, bound and recorded once.
pub(super) struct Lane {
    pub(super) items: u32,
    pub(super) pixels_in: TrackedBuffer,
    pub(super) pixels_out: TrackedBuffer,
    /// Each item's [`Geometry`], for the model's edge clamps (zero: none).
    pub(super) geometry: TrackedBuffer,
    /// Activations, and the split Winograd's V and M shared by its layers (None: no layer runs
    /// it): the runner's own, or shared with other runners ([`SharedBuffers`]).
    pub(super) values: Vec<Arc<TrackedBuffer>>,
    pub(super) scratch: Option<[Arc<TrackedBuffer>; 2]>,
    pub(super) model_out: usize,
    pub(super) extra_out: Vec<usize>,
    /// The buffer holding the model input (value 0).
    pub(super) model_in: usize,
    pub(super) pack: Step,
    /// Each model layer's steps, with the layer's index.
    pub(super) layers: Vec<(usize, Step)>,
    /// Float -> 8 or 16-bit RGBA, for models whose output is an image (RGB, grey, RGBA).
    pub(super) unpack: Option<Step>,
    /// A chain's kept steps: each one's pixels and the unpack that fills them (with `unpack`).
    pub(super) kept: Vec<(TrackedBuffer, Step)>,
}

/// The split Winograd's scratch (V, M) a lane of `items` allocates; None where no layer runs it.
pub(super) fn scratch_sizes(
    model: &GpuModel,
    shapes: &[ItemShape],
    items: u32,
) -> Option<[u64; 2]> {
    let bytes = model.scratch_bytes(shapes);
    (bytes[0] > 0).then(|| bytes.map(|b| (b * u64::from(items)).next_multiple_of(4)))
}

impl Lane {
    pub(super) fn new(
        engine: &Engine,
        model: &GpuModel,
        shapes: &[ItemShape],
        items: u32,
        input_map: &PixelMapping,
        depth: PixelDepth,
        lease: &mut Lease,
    ) -> Self {
        let gpu = &engine.gpu;
        let m = &model.model;
        let (buffer_of, sizes, placement) = assign_values(m, shapes, items, model.precision);
        let (storage, copy_src) = (wgpu::BufferUsages::STORAGE, wgpu::BufferUsages::COPY_SRC);
        let values: Vec<Arc<TrackedBuffer>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| lease.take(gpu, &format!("activations {i}"), s))
            .collect();
        let in_px = shapes[0].h * shapes[0].w;
        let out_px = shapes[m.output].h * shapes[m.output].w;
        let word_bytes = 4 * depth.words() as u64;
        let pixels_in = gpu.create_buffer(
            "pixels in",
            word_bytes * in_px.max(1) as u64 * items as u64,
            storage | wgpu::BufferUsages::COPY_DST,
        );
        let unpacks = m.unpacks_output(shapes[m.output]);
        let pixels_out = gpu.create_buffer(
            "pixels out",
            if unpacks {
                word_bytes * out_px.max(1) as u64 * items as u64
            } else {
                4
            },
            storage | copy_src,
        );
        let geometry = gpu.create_buffer(
            "item geometry",
            std::mem::size_of::<Geometry>() as u64 * items as u64,
            storage | wgpu::BufferUsages::COPY_DST,
        );
        let scratch = scratch_sizes(model, shapes, items)
            .map(|sizes| sizes.map(|size| lease.take(gpu, "winograd scratch", size)));
        let k = engine.kernels_for(model.precision);
        let pack = pack::prepare(
            Bind::new(gpu, k, "pack"),
            &pixels_in,
            &values[buffer_of[0]],
            in_px,
            items,
            input_map,
            depth,
        );
        let binding = steps::Binding {
            gpu,
            k,
            shapes,
            values: &values,
            buffer_of: &buffer_of,
            placement: &placement,
            geometry: &geometry,
            scratch: scratch.as_ref().map(|[v, m]| Scratch { v, m }),
        };
        let layers = steps::all_layer_steps(&binding, &model.layers, &m.layers);
        let unpack = unpacks.then(|| {
            unpack::prepare(
                Bind::new(gpu, k, "unpack"),
                &values[buffer_of[m.output]],
                &pixels_out,
                unpack::Unpacked::new(out_px, items, shapes[m.output].c),
                &unpack::inverse(input_map),
                depth,
            )
        });
        let kept = m.image_outputs.iter().zip(&m.extra_outputs);
        let kept = kept
            .filter(|_| unpacks)
            .map(|(_, &v)| {
                let px = shapes[v].h * shapes[v].w;
                let bytes = word_bytes * px.max(1) as u64 * items as u64;
                let out = gpu.create_buffer("kept step pixels", bytes, storage | copy_src);
                let bind = Bind::new(gpu, k, "unpack kept step");
                let map = PixelMapping::IDENTITY;
                let src = &values[buffer_of[v]];
                let unpacked = unpack::Unpacked::new(px, items, shapes[v].c);
                let step = unpack::prepare(bind, src, &out, unpacked, &map, depth);
                (out, step)
            })
            .collect();
        Self {
            kept,
            items,
            pixels_in,
            pixels_out,
            geometry,
            model_out: buffer_of[m.output],
            model_in: buffer_of[0],
            extra_out: m.extra_outputs.iter().map(|&v| buffer_of[v]).collect(),
            values,
            scratch,
            pack,
            layers,
            unpack,
        }
    }

    /// Every step this lane records, in order.
    pub(super) fn steps(&self) -> impl Iterator<Item = &Step> {
        std::iter::once(&self.pack)
            .chain(self.layers.iter().map(|(_, s)| s))
            .chain(&self.unpack)
            .chain(self.kept.iter().map(|(_, s)| s))
    }

    /// The most workgroups in z a step of this lane takes per item, and that step's label.
    pub(super) fn widest_in_z(&self) -> (u32, &str) {
        self.steps()
            .map(|s| (s.z_per_item(), s.label.as_str()))
            .max_by_key(|&(z, _)| z)
            .unwrap_or((1, "pack"))
    }

    pub(super) fn dispatches(&self) -> usize {
        self.steps().map(Step::dispatches).sum()
    }

    /// The first step whose kernel did not compile, named with the compiler's error (`kernels`:
    /// the pipelines of the lane's precision, which compiled its steps).
    pub(super) fn compile_error(&self, kernels: &Kernels) -> Option<String> {
        self.steps().find_map(|s| {
            let e = kernels.compile_error(s)?;
            Some(format!("layer {}: {e}", s.label))
        })
    }
}
