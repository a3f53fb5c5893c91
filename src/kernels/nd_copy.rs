//! Strided copies of general tensors (`shaders/nd_copy.wgsl`): Transpose, Slice, Concat, Split,
//! Expand, Tile, Reshape, SpaceToDepth and DepthToSpace are all one or more of these.

use super::{MAX_RANK, Step, pad_front};
use crate::gpu::Gpu;

/// For every index `i` of `dims`: `dst[dst_offset + i . dst_strides] = src[src_offset + i . src_strides]`.
/// Strides may be 0 (broadcast) or negative (a Slice with a negative step).
#[derive(Clone, Debug, PartialEq)]
pub struct CopySpec {
    pub dims: Vec<u32>,
    pub src_strides: Vec<i64>,
    pub src_offset: i64,
    pub dst_strides: Vec<i64>,
    pub dst_offset: i64,
}

impl CopySpec {
    /// A contiguous copy of `count` elements (Reshape, Flatten, Squeeze, Identity).
    pub fn contiguous(count: u32) -> Self {
        Self {
            dims: vec![count],
            src_strides: vec![1],
            src_offset: 0,
            dst_strides: vec![1],
            dst_offset: 0,
        }
    }

    pub fn count(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product()
    }

    /// Drops axes of size 1 and merges axes that are contiguous in both source and destination,
    /// so that up to `MAX_RANK` kernel dims cover specs of higher rank.
    pub fn simplified(&self) -> Self {
        let mut dims: Vec<u32> = Vec::new();
        let mut ss: Vec<i64> = Vec::new();
        let mut ds: Vec<i64> = Vec::new();
        for k in 0..self.dims.len() {
            let (n, s, d) = (self.dims[k], self.src_strides[k], self.dst_strides[k]);
            if n == 1 {
                continue;
            }
            if let (Some(&pn), Some(&ps), Some(&pd)) = (dims.last(), ss.last(), ds.last())
                && ps == s * n as i64
                && pd == d * n as i64
            {
                *dims.last_mut().expect("non-empty") = pn * n;
                *ss.last_mut().expect("non-empty") = s;
                *ds.last_mut().expect("non-empty") = d;
                continue;
            }
            dims.push(n);
            ss.push(s);
            ds.push(d);
        }
        Self {
            dims,
            src_strides: ss,
            src_offset: self.src_offset,
            dst_strides: ds,
            dst_offset: self.dst_offset,
        }
    }

    /// CPU reference for one item: copies `src` into `dst`.
    pub fn reference(&self, src: &[f32], dst: &mut [f32]) {
        let count = self.count() as usize;
        for i in 0..count {
            let (mut rest, mut s, mut d) = (i, self.src_offset, self.dst_offset);
            for k in (0..self.dims.len()).rev() {
                let n = self.dims[k] as usize;
                let at = (rest % n) as i64;
                rest /= n;
                s += at * self.src_strides[k];
                d += at * self.dst_strides[k];
            }
            dst[d as usize] = src[s as usize];
        }
    }
}

/// Mirror of `Params` in shaders/nd_copy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CopyParams {
    pub dims: [u32; MAX_RANK],
    pub src_strides: [i32; MAX_RANK],
    pub dst_strides: [i32; MAX_RANK],
    pub count: u32,
    pub src_offset: i32,
    pub dst_offset: i32,
    pub src_item: u32,
    pub dst_item: u32,
    pub _pad: [u32; 3],
}

/// Records `spec` for every item; `src_item` / `dst_item` are the elements per item of each
/// buffer (`src_item` 0: the source is a constant shared by all items).
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    gpu: &Gpu,
    pipeline: &wgpu::ComputePipeline,
    label: &str,
    spec: &CopySpec,
    src: &wgpu::Buffer,
    src_item: u32,
    dst: &wgpu::Buffer,
    dst_item: u32,
) -> Step {
    let s = spec.simplified();
    let narrow = |v: &[i64]| -> Vec<i32> { v.iter().map(|&x| x as i32).collect() };
    let count = s.count() as u32;
    let params = CopyParams {
        dims: pad_front(&s.dims, 1),
        src_strides: pad_front(&narrow(&s.src_strides), 0),
        dst_strides: pad_front(&narrow(&s.dst_strides), 0),
        count,
        src_offset: s.src_offset as i32,
        dst_offset: s.dst_offset as i32,
        src_item,
        dst_item,
        _pad: [0; 3],
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
