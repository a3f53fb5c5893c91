//! Elementwise binary ops of general tensors with numpy broadcasting (`shaders/nd_binary.wgsl`).

use super::binary::BinaryOp;
use super::{MAX_RANK, Step, contiguous_strides, pad_front};
use crate::gpu::Gpu;

/// `out = a op b` over `dims`, each input read through its strides (0 where it broadcasts).
#[derive(Clone, Debug, PartialEq)]
pub struct NdBinarySpec {
    pub op: BinaryOp,
    pub dims: Vec<u32>,
    pub a_strides: Vec<u32>,
    pub b_strides: Vec<u32>,
}

/// The numpy broadcast of two shapes, or None when they do not broadcast.
pub fn broadcast_dims(a: &[u32], b: &[u32]) -> Option<Vec<u32>> {
    let rank = a.len().max(b.len());
    let at = |v: &[u32], k: usize| {
        let skip = rank - v.len();
        if k < skip { 1 } else { v[k - skip] }
    };
    (0..rank)
        .map(|k| match (at(a, k), at(b, k)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Strides of `dims` read at the coordinates of the broadcast shape `out` (0 where broadcast).
pub fn broadcast_strides(dims: &[u32], out: &[u32]) -> Vec<u32> {
    let own = contiguous_strides(dims);
    let skip = out.len() - dims.len();
    (0..out.len())
        .map(|k| {
            if k < skip || dims[k - skip] == 1 {
                0
            } else {
                own[k - skip]
            }
        })
        .collect()
}

impl NdBinarySpec {
    pub fn new(op: BinaryOp, a: &[u32], b: &[u32]) -> Option<Self> {
        let dims = broadcast_dims(a, b)?;
        (dims.len() <= MAX_RANK).then(|| Self {
            op,
            a_strides: broadcast_strides(a, &dims),
            b_strides: broadcast_strides(b, &dims),
            dims,
        })
    }

    pub fn count(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product()
    }

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
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    gpu: &Gpu,
    pipeline: &wgpu::ComputePipeline,
    label: &str,
    spec: &NdBinarySpec,
    a: &wgpu::Buffer,
    a_item: u32,
    b: &wgpu::Buffer,
    b_item: u32,
    dst: &wgpu::Buffer,
) -> Step {
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
