//! NCHW -> NHWC transpose (`shaders/nchw_to_nhwc.wgsl`), output flat per item, or written in
//! place into a Concat's buffer (`prepare_into`).

use super::{Bind, Step};
use crate::model::ItemShape;

/// Mirror of `Params` in shaders/nchw_to_nhwc.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NchwToNhwcParams {
    pub c: u32,
    pub h: u32,
    pub w: u32,
    /// Values an item of `dst` holds, and where this output starts in it.
    pub dst_item: u32,
    pub dst_offset: u32,
    pub _pad: [u32; 3],
}

/// CPU reference over `n` items.
pub fn reference(input: &[f32], n: u32, s: ItemShape) -> Vec<f32> {
    let (c, h, w) = (s.c as usize, s.h as usize, s.w as usize);
    let mut out = vec![0.0; input.len()];
    for b in 0..n as usize {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    out[b * c * h * w + (y * w + x) * c + ch] =
                        input[((b * c + ch) * h + y) * w + x];
                }
            }
        }
    }
    out
}

pub fn prepare(cx: Bind, src: &wgpu::Buffer, dst: &wgpu::Buffer, s: ItemShape) -> Step {
    prepare_into(cx, src, dst, s, None)
}

/// As [`prepare`], the output written at `offset` of items of `item` values (`Some((item,
/// offset))`: a slice of a Concat done in place, `engine::placement`).
pub fn prepare_into(
    cx: Bind,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    s: ItemShape,
    slice: Option<(u32, u32)>,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.nchw_to_nhwc;
    let (dst_item, dst_offset) = slice.unwrap_or((s.c * s.h * s.w, 0));
    let params = NchwToNhwcParams {
        c: s.c,
        h: s.h,
        w: s.w,
        dst_item,
        dst_offset,
        _pad: [0; 3],
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        [s.w.div_ceil(16), s.h.div_ceil(4)],
        s.c,
    )
}
