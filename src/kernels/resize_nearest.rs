//! Resize by whole factors, nearest neighbour (`shaders/resize_nearest.wgsl`).

use super::{Bind, Step};

/// Mirror of `Params` in shaders/resize_nearest.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ResizeNearestParams {
    pub channels: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub scale_h: u32,
    pub scale_w: u32,
    pub _pad: u32,
}

/// CPU reference: `planes` planes of `h x w`, each pixel repeated `scale` times per axis.
pub fn reference(input: &[f32], planes: u32, h: u32, w: u32, scale: [u32; 2]) -> Vec<f32> {
    let (oh, ow) = (h * scale[0], w * scale[1]);
    let mut out = Vec::with_capacity((planes * oh * ow) as usize);
    for p in 0..planes {
        for y in 0..oh {
            for x in 0..ow {
                out.push(input[((p * h + y / scale[0]) * w + x / scale[1]) as usize]);
            }
        }
    }
    out
}

pub fn prepare(
    cx: Bind,
    scale: [u32; 2],
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    channels: u32,
    h: u32,
    w: u32,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.resize_nearest;
    let (out_h, out_w) = (h * scale[0], w * scale[1]);
    let params = ResizeNearestParams {
        channels,
        in_h: h,
        in_w: w,
        out_h,
        out_w,
        scale_h: scale[0],
        scale_w: scale[1],
        _pad: 0,
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        [out_w.div_ceil(16), h.div_ceil(4)],
        channels,
    )
}
