//! DepthToSpace (`shaders/depth_to_space.wgsl`): channels to space, DCR or CRD, with a crop.

use super::{Bind, Step};
use crate::model::DepthToSpaceSpec;

/// Mirror of `Params` in shaders/depth_to_space.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DepthToSpaceParams {
    pub in_c: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub out_c: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub block_h: u32,
    pub block_w: u32,
    pub crd: u32,
    pub _pad: [u32; 3],
}

/// CPU reference on `n` items of `c x h x w`.
pub fn reference(
    spec: &DepthToSpaceSpec,
    input: &[f32],
    n: u32,
    c: u32,
    h: u32,
    w: u32,
) -> Vec<f32> {
    let (oc, oh, ow) = spec.output_chw(c, h, w).expect("valid shape");
    let [bh, bw] = spec.block;
    let mut out = Vec::with_capacity((n * oc * oh * ow) as usize);
    for b in 0..n {
        for ch in 0..oc {
            for y in 0..oh {
                for x in 0..ow {
                    let (by, bx) = (y % bh, x % bw);
                    let ic = if spec.crd {
                        (ch * bh + by) * bw + bx
                    } else {
                        (by * bw + bx) * oc + ch
                    };
                    out.push(input[(((b * c + ic) * h + y / bh) * w + x / bw) as usize]);
                }
            }
        }
    }
    out
}

pub fn prepare(
    cx: Bind,
    spec: &DepthToSpaceSpec,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    c: u32,
    h: u32,
    w: u32,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.depth_to_space;
    let (out_c, out_h, out_w) = spec.output_chw(c, h, w).expect("shapes were checked");
    let params = DepthToSpaceParams {
        in_c: c,
        in_h: h,
        in_w: w,
        out_c,
        out_h,
        out_w,
        block_h: spec.block[0],
        block_w: spec.block[1],
        crd: spec.crd as u32,
        _pad: [0; 3],
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        [out_w.div_ceil(16), out_h.div_ceil(4)],
        out_c,
    )
}
