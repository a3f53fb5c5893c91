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
    pub cut: i32,
    pub in_h: u32,
    pub in_w: u32,
}

/// Where an item's tile lies: its first input pixel (`x0`, `y0`, negative where the tile's
/// context reaches past the image's top or left) and its image's `width` and `height`, in input
/// pixels; a width of 0 leaves the item as it is.
pub type Geometry = [i32; 4];

/// The input index of output pixel `i` along one axis, input pixel 0 being image pixel `origin`
/// and output pixel `i` input pixel `i + cut`; the image is `size` pixels (0: no image, the item
/// as it is) and the input `len` (see the shader).
fn source(i: u32, origin: i64, cut: i64, size: i64, len: u32) -> usize {
    let at = i64::from(i) + cut;
    let at = if size > 0 {
        (origin + at).clamp(0, size - 1) - origin
    } else {
        at
    };
    at.clamp(0, i64::from(len) - 1) as usize
}

/// CPU reference over `geometry.len()` items of input shape `s`.
pub fn reference(
    spec: EdgeClampSpec,
    input: &[f32],
    geometry: &[Geometry],
    s: ItemShape,
) -> Vec<f32> {
    let (h, w) = (s.h as usize, s.w as usize);
    let (scale, lost, cut) = (
        i64::from(spec.scale),
        i64::from(spec.lost),
        i64::from(spec.cut),
    );
    let o = spec.output(s);
    let mut out = Vec::with_capacity(input.len());
    for (n, g) in geometry.iter().enumerate() {
        let [x0, y0, width, height] = g.map(i64::from);
        for c in 0..s.c as usize {
            let plane = &input[(n * s.c as usize + c) * h * w..][..h * w];
            for y in 0..o.h {
                let sy = source(y, scale * y0 + lost, cut, scale * height, s.h);
                for x in 0..o.w {
                    let sx = source(x, scale * x0 + lost, cut, scale * width, s.w);
                    out.push(plane[sy * w + sx]);
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
        lost: spec.lost,
        cut: spec.cut,
        in_h: s.h,
        in_w: s.w,
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
