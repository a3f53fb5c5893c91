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

pub fn prepare(
    cx: Bind,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    channels: u32,
    pixels: u32,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.global_avg_pool;
    let params = GlobalAvgPoolParams {
        channels,
        pixels,
        _pad: [0; 2],
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        [channels.div_ceil(64), 1],
        1,
    )
}
