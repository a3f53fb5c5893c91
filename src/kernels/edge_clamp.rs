//! Edge clamp (`shaders/edge_clamp.wgsl`): a tile's pixels outside its image replaced by the
//! image's edge, from the batch's per-item geometry (see [`crate::model::EdgeClampSpec`]).

use super::{Bind, Step};
use crate::model::{EdgeClampSpec, ItemShape};

/// Mirror of `Params` in shaders/edge_clamp.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EdgeClampParams {
    pub c: u32,
    pub h: u32,
    pub w: u32,
    pub scale: i32,
    pub lost: i32,
    pub cut: u32,
    pub _pad: [u32; 2],
}

/// Where an item's tile lies: its first input pixel (`x0`, `y0`, negative where the tile's
/// context reaches past the image's top or left) and its image's `width` and `height`, in input
/// pixels; a width of 0 leaves the item as it is.
pub type Geometry = [i32; 4];

/// The source index of value pixel `i` of `len` whose image pixel is `first + i` (see the shader).
fn source(i: u32, first: i64, size: i64, len: u32) -> usize {
    let g = (first + i as i64).clamp(0, size - 1);
    (g - first).clamp(0, len as i64 - 1) as usize
}

/// CPU reference over `geometry.len()` items of input shape `s`.
pub fn reference(
    spec: EdgeClampSpec,
    input: &[f32],
    geometry: &[Geometry],
    s: ItemShape,
) -> Vec<f32> {
    let (h, w) = (s.h as usize, s.w as usize);
    let (scale, first) = (i64::from(spec.scale), i64::from(spec.lost + spec.cut));
    let cut = spec.cut as usize;
    let o = spec.output(s);
    let mut out = Vec::with_capacity(input.len());
    for (n, g) in geometry.iter().enumerate() {
        let [x0, y0, width, height] = g.map(i64::from);
        for c in 0..s.c as usize {
            let plane = &input[(n * s.c as usize + c) * h * w..][..h * w];
            for y in 0..o.h {
                for x in 0..o.w {
                    let (sx, sy) = if width > 0 {
                        (
                            source(x, scale * x0 + first, scale * width, o.w),
                            source(y, scale * y0 + first, scale * height, o.h),
                        )
                    } else {
                        (x as usize, y as usize)
                    };
                    out.push(plane[(sy + cut) * w + sx + cut]);
                }
            }
        }
    }
    out
}

pub fn prepare(
    cx: Bind,
    spec: EdgeClampSpec,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    geometry: &wgpu::Buffer,
    s: ItemShape,
) -> Step {
    let o = spec.output(s);
    let params = EdgeClampParams {
        c: o.c,
        h: o.h,
        w: o.w,
        scale: spec.scale as i32,
        lost: spec.lost as i32,
        cut: spec.cut,
        _pad: [0; 2],
    };
    super::step(
        cx.gpu,
        cx.label,
        &cx.kernels.edge_clamp,
        &params,
        &[src, dst, geometry],
        [o.w.div_ceil(16), o.h.div_ceil(4)],
        o.c,
    )
}
