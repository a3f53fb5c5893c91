//! Elementwise binary ops of general tensors with numpy broadcasting (`shaders/nd_binary.wgsl`).

use super::{Bind, Step, pad_front};
use crate::model::{MAX_RANK, NdBinarySpec};

impl NdBinarySpec {
    /// CPU reference for one item.
    pub fn reference(&self, a: &[f32], b: &[f32]) -> Vec<f32> {
        (0..self.count() as usize)
            .map(|i| {
                let (mut rest, mut ia, mut ib) = (i, 0usize, 0usize);
                for k in (0..self.dims.len()).rev() {
                    let n = self.dims[k] as usize;
                    let at = rest % n;
                    rest /= n;
                    ia += at * self.a_strides[k] as usize;
                    ib += at * self.b_strides[k] as usize;
                }
                self.op.apply(a[ia], b[ib])
            })
            .collect()
    }
}

/// Mirror of `Params` in shaders/nd_binary.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NdBinaryParams {
    pub dims: [u32; MAX_RANK],
    pub a_strides: [u32; MAX_RANK],
    pub b_strides: [u32; MAX_RANK],
    pub count: u32,
    pub op: u32,
    pub a_item: u32,
    pub b_item: u32,
    pub _pad: [u32; 4],
}

/// Records `a op b` for every item; `a_item` / `b_item` are elements per item (0: a constant).
pub fn prepare(
    cx: Bind,
    spec: &NdBinarySpec,
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
    let pipeline = &kernels.nd_binary;
    let count = spec.count() as u32;
    let params = NdBinaryParams {
        dims: pad_front(&spec.dims, 1),
        a_strides: pad_front(&spec.a_strides, 0),
        b_strides: pad_front(&spec.b_strides, 0),
        count,
        op: spec.op as u32,
        a_item,
        b_item,
        _pad: [0; 4],
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
