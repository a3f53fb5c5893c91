//! Reductions over any set of axes (`shaders/reduce.wgsl`): ReduceMean, ReduceSum, ReduceMax, ...

use super::{Bind, Step, pad_front};
use crate::model::{MAX_RANK, ReduceSpec};

impl ReduceSpec {
    /// CPU reference for one item.
    pub fn reference(&self, src: &[f32]) -> Vec<f32> {
        let [(kd, ks), (rd, rs)] = self.split();
        let walk = |mut i: usize, dims: &[u32], strides: &[u32]| {
            let mut o = 0;
            for k in (0..dims.len()).rev() {
                o += (i % dims[k] as usize) * strides[k] as usize;
                i /= dims[k] as usize;
            }
            o
        };
        let reduced: usize = rd.iter().map(|&d| d as usize).product();
        (0..self.count() as usize)
            .map(|i| {
                let base = walk(i, &kd, &ks);
                let xs: Vec<f32> = (0..reduced)
                    .map(|r| src[base + walk(r, &rd, &rs)])
                    .collect();
                self.op.apply(&xs)
            })
            .collect()
    }
}

/// Mirror of `Params` in shaders/reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReduceParams {
    pub kept: [u32; MAX_RANK],
    pub kept_strides: [u32; MAX_RANK],
    pub reduced: [u32; MAX_RANK],
    pub reduced_strides: [u32; MAX_RANK],
    pub count: u32,
    pub reduced_count: u32,
    pub op: u32,
    pub src_item: u32,
    pub _pad: [u32; 4],
}

pub fn prepare(cx: Bind, spec: &ReduceSpec, src: &wgpu::Buffer, dst: &wgpu::Buffer) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.reduce;
    let [(kd, ks), (rd, rs)] = spec.split();
    let count = spec.count();
    let params = ReduceParams {
        kept: pad_front(&kd, 1),
        kept_strides: pad_front(&ks, 0),
        reduced: pad_front(&rd, 1),
        reduced_strides: pad_front(&rs, 0),
        count,
        reduced_count: rd.iter().product(),
        op: spec.op as u32,
        src_item: spec.dims.iter().product(),
        _pad: [0; 4],
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        super::flat_groups(count),
        1,
    )
}
