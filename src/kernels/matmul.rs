//! Batched matrix products with broadcasting (`shaders/matmul.wgsl`): MatMul, and Gemm's product.

use super::{Bind, Step};
use crate::model::MatMulSpec;

impl MatMulSpec {
    /// CPU reference (f64 accumulation) for one item.
    pub fn reference(&self, a: &[f32], b: &[f32]) -> Vec<f32> {
        let (m, n) = (self.m as usize, self.n as usize);
        (0..self.count() as usize)
            .map(|o| {
                let (j, i) = (o % n, (o / n) % m);
                let mut rest = o / (n * m);
                let (mut ia, mut ib) = (i * self.a_row as usize, j * self.b_col as usize);
                for d in (0..self.batch.len()).rev() {
                    let at = rest % self.batch[d] as usize;
                    rest /= self.batch[d] as usize;
                    ia += at * self.a_batch[d] as usize;
                    ib += at * self.b_batch[d] as usize;
                }
                let sum: f64 = (0..self.k as usize)
                    .map(|k| {
                        a[ia + k * self.a_col as usize] as f64
                            * b[ib + k * self.b_row as usize] as f64
                    })
                    .sum();
                (self.alpha as f64 * sum) as f32
            })
            .collect()
    }
}

/// Mirror of `Params` in shaders/matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatMulParams {
    pub batch: [u32; 4],
    pub a_batch: [u32; 4],
    pub b_batch: [u32; 4],
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub count: u32,
    pub a_row: u32,
    pub a_col: u32,
    pub b_row: u32,
    pub b_col: u32,
    pub a_item: u32,
    pub b_item: u32,
    pub alpha: f32,
    pub _pad: u32,
}

/// Records the product for every item; `a_item` / `b_item` are elements per item (0: a constant).
pub fn prepare(
    cx: Bind,
    spec: &MatMulSpec,
    a: &wgpu::Buffer,
    a_item: u32,
    b: &wgpu::Buffer,
    b_item: u32,
    dst: &wgpu::Buffer,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.matmul;
    let four = |v: &[u32], fill: u32| {
        let mut out = [fill; 4];
        out[4 - v.len()..].copy_from_slice(v);
        out
    };
    let count = spec.count();
    let params = MatMulParams {
        batch: four(&spec.batch, 1),
        a_batch: four(&spec.a_batch, 0),
        b_batch: four(&spec.b_batch, 0),
        m: spec.m,
        k: spec.k,
        n: spec.n,
        count,
        a_row: spec.a_row,
        a_col: spec.a_col,
        b_row: spec.b_row,
        b_col: spec.b_col,
        a_item,
        b_item,
        alpha: spec.alpha,
        _pad: 0,
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[a, b, dst],
        super::flat_groups(count),
        1,
    )
}
