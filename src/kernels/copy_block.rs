//! Block copies (`shaders/copy_block.wgsl`): Concat / Split on height or width, Slice, and flat
//! copies for Reshape and Flatten.

use super::{Bind, Step};
use crate::model::ItemShape;

const FLAT_ROW: u32 = 1024;

/// Mirror of `Params` in shaders/copy_block.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CopyBlockParams {
    pub src_shape: [u32; 4],
    pub src_offset: [u32; 4],
    pub dst_shape: [u32; 4],
    pub dst_offset: [u32; 4],
    pub region: [u32; 4],
    /// Source steps (c, h, w): 1 for a block, other for a strided Slice, negative backwards.
    pub src_step: [i32; 4],
}

/// A block of `size` (c, h, w) from `src` at `src_offset`, every `src_step`-th element per axis
/// (1: a plain block), to `dst` at `dst_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub src: ItemShape,
    pub src_offset: [u32; 3],
    pub src_step: [i32; 3],
    pub dst: ItemShape,
    pub dst_offset: [u32; 3],
    pub size: [u32; 3],
}

/// CPU reference over `n` items into `dst`.
pub fn reference(b: &Block, src: &[f32], dst: &mut [f32], n: u32) {
    let (se, de) = (b.src.elements() as usize, b.dst.elements() as usize);
    for i in 0..n as usize {
        for c in 0..b.size[0] {
            for y in 0..b.size[1] {
                for x in 0..b.size[2] {
                    let at = |a: usize, i: u32| {
                        (i64::from(b.src_offset[a]) + i64::from(i) * i64::from(b.src_step[a]))
                            as u32
                    };
                    let s = (at(0, c) * b.src.h + at(1, y)) * b.src.w + at(2, x);
                    let d = ((b.dst_offset[0] + c) * b.dst.h + b.dst_offset[1] + y) * b.dst.w
                        + b.dst_offset[2]
                        + x;
                    dst[i * de + d as usize] = src[i * se + s as usize];
                }
            }
        }
    }
}

fn shape4(s: ItemShape) -> [u32; 4] {
    [s.c, s.h, s.w, s.elements() as u32]
}

pub fn prepare(cx: Bind, b: &Block, src: &wgpu::Buffer, dst: &wgpu::Buffer) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.copy_block;
    let params = CopyBlockParams {
        src_shape: shape4(b.src),
        src_offset: [b.src_offset[0], b.src_offset[1], b.src_offset[2], 0],
        dst_shape: shape4(b.dst),
        dst_offset: [b.dst_offset[0], b.dst_offset[1], b.dst_offset[2], 0],
        region: [b.size[0], b.size[1], b.size[2], 0],
        src_step: [b.src_step[0], b.src_step[1], b.src_step[2], 0],
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        [b.size[2].div_ceil(16), b.size[1].div_ceil(4)],
        b.size[0],
    )
}

/// Copies every element of each item in order (`src` and `dst` hold the same count per item).
pub fn prepare_flat(
    cx: Bind,
    src_shape: ItemShape,
    dst_shape: ItemShape,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.copy_block;
    let elements = src_shape.elements() as u32;
    let params = CopyBlockParams {
        src_shape: shape4(src_shape),
        src_offset: [0; 4],
        dst_shape: shape4(dst_shape),
        dst_offset: [0; 4],
        region: [1, 1, 1, 1],
        src_step: [1, 1, 1, 0],
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        [
            FLAT_ROW.div_ceil(16),
            elements.div_ceil(FLAT_ROW).div_ceil(4),
        ],
        1,
    )
}
