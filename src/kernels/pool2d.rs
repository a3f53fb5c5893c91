//! MaxPool and AveragePool (`shaders/pool2d.wgsl`; 2x2 windows at stride 2 over whole planes
//! of a width a multiple of 8, `shaders/pool2x2.wgsl`: 4 outputs an invocation).

use super::{Bind, Step};
use crate::model::Pool2dSpec;

/// Mirror of `Params` in shaders/pool2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Pool2dParams {
    pub in_h: u32,
    pub in_w: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub k_h: u32,
    pub k_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub dil_h: u32,
    pub dil_w: u32,
    pub average: u32,
    pub count_include_pad: u32,
    pub pad_bottom: u32,
    pub pad_right: u32,
}

/// Mirror of `Params` in shaders/pool2x2.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Pool2x2Params {
    pub out_h: u32,
    pub out_w4: u32,
    pub average: u32,
    pub _pad: u32,
}

/// Whether pool2x2.wgsl runs `spec` on `h x w` planes: 2x2 windows at stride 2, no padding, the
/// input exactly twice the output, and output rows of whole vec4s.
pub fn is_2x2(spec: &Pool2dSpec, h: u32, w: u32) -> bool {
    spec.k == [2, 2]
        && spec.stride == [2, 2]
        && spec.dilation == [1, 1]
        && spec.pads == [0; 4]
        && h.is_multiple_of(2)
        && w.is_multiple_of(8)
}

/// CPU reference over `planes` planes of `h x w`, in f64.
pub fn reference(spec: &Pool2dSpec, input: &[f32], planes: u32, h: u32, w: u32) -> Vec<f32> {
    let (oh, ow) = spec.output_hw(h, w).expect("window fits");
    let mut out = Vec::new();
    for p in 0..planes as usize {
        for oy in 0..oh as i64 {
            for ox in 0..ow as i64 {
                let (mut best, mut sum, mut count, mut padded) = (f64::MIN, 0.0, 0, 0);
                for ky in 0..spec.k[0] as i64 {
                    let iy = oy * spec.stride[0] as i64 + ky * spec.dilation[0] as i64
                        - spec.pads[0] as i64;
                    for kx in 0..spec.k[1] as i64 {
                        let ix = ox * spec.stride[1] as i64 + kx * spec.dilation[1] as i64
                            - spec.pads[1] as i64;
                        if (0..h as i64).contains(&iy) && (0..w as i64).contains(&ix) {
                            let v = input[(p * h as usize + iy as usize) * w as usize + ix as usize]
                                as f64;
                            best = best.max(v);
                            sum += v;
                            count += 1;
                        } else if iy < (h + spec.pads[2]) as i64 && ix < (w + spec.pads[3]) as i64 {
                            padded += 1;
                        }
                    }
                }
                let v = if spec.average {
                    let n = if spec.count_include_pad {
                        count + padded
                    } else {
                        count
                    };
                    sum / n.max(1) as f64
                } else {
                    best
                };
                out.push(v as f32);
            }
        }
    }
    out
}

pub fn prepare(
    cx: Bind,
    spec: &Pool2dSpec,
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
    let (out_h, out_w) = spec.output_hw(h, w).expect("shapes were checked");
    if is_2x2(spec, h, w) {
        let params = Pool2x2Params {
            out_h,
            out_w4: out_w / 4,
            average: spec.average as u32,
            _pad: 0,
        };
        let groups = [(out_w / 4).div_ceil(16), out_h.div_ceil(4)];
        let buffers = [src, dst];
        return super::step(
            gpu,
            label,
            &kernels.pool2x2,
            &params,
            &buffers,
            groups,
            channels,
        );
    }
    let pipeline = &kernels.pool2d;
    let params = Pool2dParams {
        in_h: h,
        in_w: w,
        out_h,
        out_w,
        k_h: spec.k[0],
        k_w: spec.k[1],
        stride_h: spec.stride[0],
        stride_w: spec.stride[1],
        pad_top: spec.pads[0],
        pad_left: spec.pads[1],
        dil_h: spec.dilation[0],
        dil_w: spec.dilation[1],
        average: spec.average as u32,
        count_include_pad: spec.count_include_pad as u32,
        pad_bottom: spec.pads[2],
        pad_right: spec.pads[3],
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        [out_w.div_ceil(16), out_h.div_ceil(4)],
        channels,
    )
}
