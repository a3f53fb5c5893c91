//! Bilinear upsampling by exactly 2 with half_pixel coordinates (`shaders/resize2x.wgsl`): the
//! decoder upsamplings of segmentation nets, 4 input columns an invocation, rows read and
//! written whole vec4s (on a CPU adapter written 8 values a store, `super::eight`), where
//! resize_filter.wgsl's general `linear` reads and writes one value a load.

use super::{Bind, Step};
use crate::model::{Coords, Filter, ResizeFilterSpec};

/// Mirror of `Params` in shaders/resize2x.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Resize2xParams {
    pub in_h: u32,
    pub in_w: u32,
    pub _pad: [u32; 2],
}

/// Whether `spec` on an `h x w` input is a bilinear upsampling by exactly 2 with half_pixel
/// coordinates (pytorch_half_pixel is the same for outputs over 1 pixel) on rows a multiple of
/// 4 wide: what resize2x.wgsl computes.
pub fn applies(spec: &ResizeFilterSpec, h: u32, w: u32) -> bool {
    let coords = matches!(spec.coords, Coords::HalfPixel | Coords::PytorchHalfPixel);
    spec.filter == Filter::Linear
        && coords
        && spec.output_hw(h, w) == (2 * h, 2 * w)
        && spec.scales(h, w) == [2.0, 2.0]
        && w.is_multiple_of(4)
        && h > 0
}

/// The WGSL: resize2x.wgsl, writing 8 values a store as a `vec4<u64>` where `eight`.
pub fn source(eight: bool) -> String {
    let shader = super::shader("resize2x.wgsl");
    if !eight {
        return shader.to_owned();
    }
    let dst = "var<storage, read_write> dst: array<vec4<act>>;";
    let store = "    dst[at] = vec4<act>(lo);\n    dst[at + 1u] = vec4<act>(hi);\n";
    assert!(
        shader.contains(dst) && shader.contains(store),
        "resize2x.wgsl declares dst and store8"
    );
    shader
        .replace(dst, "var<storage, read_write> dst: array<vec4<u64>>;")
        .replace(store, "    dst[at / 2u] = pack8(lo, hi);\n")
        + super::eight::HELPERS
}

/// The step upsampling `channels` planes of `h x w` from `src` into `dst` ([`applies`] holds).
pub fn prepare(
    cx: Bind,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    channels: u32,
    h: u32,
    w: u32,
) -> Step {
    let pipeline = cx
        .kernels
        .generated("resize2x", &source(cx.kernels.eight_a_load));
    let params = Resize2xParams {
        in_h: h,
        in_w: w,
        _pad: [0; 2],
    };
    super::step(
        cx.gpu,
        cx.label,
        &pipeline,
        &params,
        &[src, dst],
        super::flat_groups(h * w / 4),
        channels,
    )
}
