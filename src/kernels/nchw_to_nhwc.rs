//! NCHW -> NHWC transpose (`shaders/nchw_to_nhwc.wgsl`), output flat per item.

use super::{Bind, Step};
use crate::model::ItemShape;

/// Mirror of `Params` in shaders/nchw_to_nhwc.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NchwToNhwcParams {
    pub c: u32,
    pub h: u32,
    pub w: u32,
    pub _pad: u32,
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
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.nchw_to_nhwc;
    let params = NchwToNhwcParams {
        c: s.c,
        h: s.h,
        w: s.w,
        _pad: 0,
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
