//! Strided copies of general tensors (`shaders/nd_copy.wgsl`): Transpose, Slice, Concat, Split,
//! Expand, Tile, Reshape, SpaceToDepth and DepthToSpace are all one or more of these.

use super::{Bind, Step, pad_front};
use crate::model::{CopySpec, MAX_RANK};

impl CopySpec {
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
    /// The dims in use: `dims`' last `rank`.
    pub rank: u32,
    pub _pad: [u32; 2],
}

/// Records `spec` for every item; `src_item` / `dst_item` are the elements per item of each
/// buffer (`src_item` 0: the source is a constant shared by all items).
pub fn prepare(
    cx: Bind,
    spec: &CopySpec,
    src: &wgpu::Buffer,
    src_item: u32,
    dst: &wgpu::Buffer,
    dst_item: u32,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.nd_copy;
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
        rank: s.dims.len() as u32,
        _pad: [0; 2],
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
