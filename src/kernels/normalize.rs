//! Row normalisation (`shaders/normalize.wgsl`): InstanceNormalization and LayerNormalization.

use super::{Bind, Step};
use crate::model::NormSpec;

impl NormSpec {
    /// CPU reference (f64) for one item; `affine` holds the scales, then the biases.
    pub fn reference(&self, src: &[f32], affine: &[f32]) -> Vec<f32> {
        let len = self.len as usize;
        let bias_at = self.affine_len();
        let mut out = vec![0.0; src.len()];
        for r in 0..self.rows as usize {
            let row = &src[r * len..(r + 1) * len];
            let mean = row.iter().map(|&x| x as f64).sum::<f64>() / len as f64;
            let var = row.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / len as f64;
            let inv = 1.0 / (var + self.eps as f64).sqrt();
            for (j, &x) in row.iter().enumerate() {
                let s = if self.per_element {
                    j
                } else {
                    r % self.channels as usize
                };
                out[r * len + j] = ((x as f64 - mean) * inv * affine[s] as f64
                    + affine[bias_at + s] as f64) as f32;
            }
        }
        out
    }
}

/// Mirror of `Params` in shaders/normalize.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NormParams {
    pub rows: u32,
    pub len: u32,
    pub channels: u32,
    pub per_element: u32,
    pub eps: f32,
    pub bias_at: u32,
    pub _pad: [u32; 2],
}

pub fn prepare(
    cx: Bind,
    spec: &NormSpec,
    src: &wgpu::Buffer,
    affine: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.normalize;
    let params = NormParams {
        rows: spec.rows,
        len: spec.len,
        channels: spec.channels.max(1),
        per_element: spec.per_element as u32,
        eps: spec.eps,
        bias_at: spec.affine_len() as u32,
        _pad: [0; 2],
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, affine, dst],
        super::flat_groups(spec.rows),
        1,
    )
}
