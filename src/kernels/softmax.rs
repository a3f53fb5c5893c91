//! Softmax, LogSoftmax and Hardmax along one axis (`shaders/softmax.wgsl`).

use super::Step;
use crate::gpu::Gpu;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftmaxKind {
    Softmax = 0,
    LogSoftmax = 1,
    /// 1 at the first maximum of the row, 0 elsewhere.
    Hardmax = 2,
}

/// The tensor seen as `[outer, len, inner]`, normalised along `len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct SoftmaxSpec {
    pub outer: u32,
    pub len: u32,
    pub inner: u32,
    pub kind: u32,
}

impl SoftmaxSpec {
    /// Softmax of `dims` along `axis` (opset 13 and later).
    pub fn along(kind: SoftmaxKind, dims: &[u32], axis: usize) -> Self {
        Self {
            outer: dims[..axis].iter().product(),
            len: dims[axis],
            inner: dims[axis + 1..].iter().product(),
            kind: kind as u32,
        }
    }

    /// CPU reference (f64) for one item.
    pub fn reference(&self, src: &[f32]) -> Vec<f32> {
        let (len, inner) = (self.len as usize, self.inner as usize);
        let mut out = vec![0.0; src.len()];
        for o in 0..self.outer as usize {
            for i in 0..inner {
                let at = |j: usize| o * len * inner + j * inner + i;
                let xs: Vec<f64> = (0..len).map(|j| src[at(j)] as f64).collect();
                let (arg, m) = xs
                    .iter()
                    .enumerate()
                    .fold((0, f64::MIN), |b, (j, &x)| if x > b.1 { (j, x) } else { b });
                let sum: f64 = xs.iter().map(|x| (x - m).exp()).sum();
                for (j, x) in xs.iter().enumerate() {
                    out[at(j)] = match self.kind {
                        0 => ((x - m).exp() / sum) as f32,
                        1 => (x - m - sum.ln()) as f32,
                        _ => (j == arg) as u8 as f32,
                    };
                }
            }
        }
        out
    }
}

pub fn prepare(
    gpu: &Gpu,
    pipeline: &wgpu::ComputePipeline,
    label: &str,
    spec: &SoftmaxSpec,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Step {
    super::step(
        gpu,
        label,
        pipeline,
        spec,
        &[src, dst],
        super::flat_groups(spec.outer * spec.inner),
        1,
    )
}
