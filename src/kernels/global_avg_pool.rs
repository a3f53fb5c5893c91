//! GlobalAveragePool (`shaders/global_avg_pool.wgsl`).

use super::{Bind, Step};

/// Mirror of `Params` in shaders/global_avg_pool.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GlobalAvgPoolParams {
    pub channels: u32,
    pub pixels: u32,
    pub _pad: [u32; 2],
}

/// CPU reference in f64: the mean of each of `planes` planes of `pixels` values.
pub fn reference(input: &[f32], pixels: usize) -> Vec<f32> {
    input
        .chunks_exact(pixels)
        .map(|p| (p.iter().map(|&v| v as f64).sum::<f64>() / pixels as f64) as f32)
        .collect()
}

/// Which entry point of shaders/global_avg_pool.wgsl averages the planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// One invocation per plane, summing in a loop.
    Loop,
    /// One workgroup per plane, 64 partial sums added in workgroup memory.
    Plane,
}

/// Planes of at least this many values run one workgroup per plane on a GPU.
pub const PLANE_MIN_PIXELS: u32 = 1024;

/// `Plane` for large planes on a GPU, where one invocation per plane leaves most of it idle (on
/// an H200, remove-background's 16 planes of 128x128 took 28% of the model, 1.65 ms at batch 16).
/// On a CPU's Vulkan (lavapipe) a few long loops keep its cores busy and the workgroup barriers
/// cost more: `Loop` (0.54 against 0.88 ms there on the same layer at batch 4).
pub fn entry_for(gpu: &crate::gpu::Gpu, channels: u32, pixels: u32) -> Entry {
    let on_gpu = gpu.adapter.device_type != "Cpu";
    let fits = channels <= gpu.limits.max_compute_workgroups_per_dimension;
    if on_gpu && fits && pixels >= PLANE_MIN_PIXELS {
        Entry::Plane
    } else {
        Entry::Loop
    }
}

pub fn prepare(
    cx: Bind,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    channels: u32,
    pixels: u32,
) -> Step {
    let entry = entry_for(cx.gpu, channels, pixels);
    prepare_entry(cx, src, dst, channels, pixels, entry)
}

/// [`prepare`] with the entry point given.
pub fn prepare_entry(
    cx: Bind,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    channels: u32,
    pixels: u32,
    entry: Entry,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let (pipeline, groups) = match entry {
        Entry::Plane => (&kernels.global_avg_pool_plane, [channels, 1]),
        Entry::Loop => (&kernels.global_avg_pool, [channels.div_ceil(64), 1]),
    };
    let params = GlobalAvgPoolParams {
        channels,
        pixels,
        _pad: [0; 2],
    };
    super::step(gpu, label, pipeline, &params, &[src, dst], groups, 1)
}
