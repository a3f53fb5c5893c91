//! Softmax, LogSoftmax and Hardmax along one axis (`shaders/softmax.wgsl`).

use super::{Bind, Step};
use crate::model::SoftmaxSpec;

impl SoftmaxSpec {
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

pub fn prepare(cx: Bind, spec: &SoftmaxSpec, src: &wgpu::Buffer, dst: &wgpu::Buffer) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.softmax;
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
