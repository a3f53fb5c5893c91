//! WGSL compute kernels: one file per op in `shaders/`, its host side, and its CPU reference here.
//!
//! Each host module holds the `#[repr(C)]` mirror of its shader's `Params`, the weight packing the
//! shader expects, a CPU reference used by the tests, and a `prepare` that binds buffers into a
//! [`Step`] ready to record.

pub mod conv2d;
pub mod conv_transpose2d;
pub mod pack;
pub mod unpack;

use crate::gpu::{Gpu, TrackedBuffer};

/// Every shader the engine compiles, by file name, embedded at build time from `shaders/`.
pub const SHADERS: &[(&str, &str)] = &[
    ("conv2d.wgsl", include_str!("../../shaders/conv2d.wgsl")),
    (
        "conv_transpose2d.wgsl",
        include_str!("../../shaders/conv_transpose2d.wgsl"),
    ),
    ("pack.wgsl", include_str!("../../shaders/pack.wgsl")),
    ("unpack.wgsl", include_str!("../../shaders/unpack.wgsl")),
];

fn shader(name: &str) -> &'static str {
    SHADERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, src)| *src)
        .expect("every kernel's shader is listed in SHADERS")
}

/// The compiled pipelines, built once per device and reused for every batch.
pub struct Kernels {
    pub conv2d: wgpu::ComputePipeline,
    pub conv_transpose2d: wgpu::ComputePipeline,
    pub pack: wgpu::ComputePipeline,
    pub unpack: wgpu::ComputePipeline,
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Self {
        Self {
            conv2d: gpu.compute_pipeline("conv2d", shader("conv2d.wgsl")),
            conv_transpose2d: gpu
                .compute_pipeline("conv_transpose2d", shader("conv_transpose2d.wgsl")),
            pack: gpu.compute_pipeline("pack", shader("pack.wgsl")),
            unpack: gpu.compute_pipeline("unpack", shader("unpack.wgsl")),
        }
    }
}

/// An activation fused into the kernel that produces a value.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    #[default]
    None,
    /// `x < 0 ? alpha * x : x`; ReLU is `alpha = 0`.
    LeakyRelu { alpha: f32 },
    /// `clamp(x, min, max)`.
    Clip { min: f32, max: f32 },
}

impl Activation {
    /// The shader's `(activation, alpha, beta)` encoding.
    pub(crate) fn encode(self) -> (u32, f32, f32) {
        match self {
            Activation::None => (0, 0.0, 0.0),
            Activation::LeakyRelu { alpha } => (1, alpha, 0.0),
            Activation::Clip { min, max } => (2, min, max),
        }
    }

    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    x * alpha
                }
            }
            Activation::Clip { min, max } => x.clamp(min, max),
        }
    }
}

/// One kernel launch, bound and ready to record for any batch of up to the planned size.
pub struct Step {
    pub label: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    /// Workgroups in x and y.
    groups_xy: [u32; 2],
    /// Workgroups in z for each batch item (z = items * this).
    groups_z_per_item: u32,
    /// Keeps the step's uniform alive as long as its bind group.
    _params: TrackedBuffer,
}

impl Step {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, items: u32) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(
            self.groups_xy[0],
            self.groups_xy[1],
            items * self.groups_z_per_item,
        );
    }
}

/// Builds a [`Step`] from a params struct and the buffers bound after it (bindings 1..).
pub(crate) fn step<P: bytemuck::Pod>(
    gpu: &Gpu,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    params: &P,
    buffers: &[&wgpu::Buffer],
    groups_xy: [u32; 2],
    groups_z_per_item: u32,
) -> Step {
    let params_buf = gpu.create_buffer_init(
        label,
        bytemuck::bytes_of(params),
        wgpu::BufferUsages::UNIFORM,
    );
    let mut all: Vec<&wgpu::Buffer> = vec![&params_buf];
    all.extend_from_slice(buffers);
    let bind_group = gpu.bind_group(label, pipeline, &all);
    Step {
        label: label.to_owned(),
        pipeline: pipeline.clone(),
        bind_group,
        groups_xy,
        groups_z_per_item,
        _params: params_buf,
    }
}
