//! Pad (`shaders/pad.wgsl`): channels with a constant, height and width constant / edge / reflect.

use super::{Bind, Step};
use crate::model::{ItemShape, PadMode, PadSpec};

/// Mirror of `Params` in shaders/pad.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PadParams {
    pub in_c: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub out_c: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub c_before: u32,
    pub top: u32,
    pub left: u32,
    pub mode: u32,
    pub value: f32,
    pub _pad: u32,
}

fn source(o: i64, before: u32, len: u32, mode: PadMode) -> Option<usize> {
    let n = len as i64;
    let i = o - before as i64;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        PadMode::Constant => None,
        PadMode::Edge => Some(i.clamp(0, n - 1) as usize),
        PadMode::Reflect if n == 1 => Some(0),
        PadMode::Reflect => {
            let period = 2 * (n - 1);
            let r = i.abs() % period;
            Some(if r >= n { period - r } else { r } as usize)
        }
    }
}

/// CPU reference over `n` items.
pub fn reference(spec: &PadSpec, input: &[f32], n: u32, s: ItemShape) -> Vec<f32> {
    let o = spec.output(s);
    let mut out = Vec::with_capacity((n as u64 * o.elements()) as usize);
    for b in 0..n {
        for oc in 0..o.c {
            let c = oc as i64 - spec.channels[0] as i64;
            for oy in 0..o.h {
                let y = source(oy as i64, spec.height[0], s.h, spec.mode);
                for ox in 0..o.w {
                    let x = source(ox as i64, spec.width[0], s.w, spec.mode);
                    out.push(match (c >= 0 && c < s.c as i64, y, x) {
                        (true, Some(y), Some(x)) => {
                            input[(((b * s.c) as usize + c as usize) * s.h as usize + y)
                                * s.w as usize
                                + x]
                        }
                        _ => spec.value,
                    });
                }
            }
        }
    }
    out
}

pub fn prepare(
    cx: Bind,
    spec: &PadSpec,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    s: ItemShape,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.pad;
    let o = spec.output(s);
    let params = PadParams {
        in_c: s.c,
        in_h: s.h,
        in_w: s.w,
        out_c: o.c,
        out_h: o.h,
        out_w: o.w,
        c_before: spec.channels[0],
        top: spec.height[0],
        left: spec.width[0],
        mode: spec.mode as u32,
        value: spec.value,
        _pad: 0,
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        [o.w.div_ceil(16), o.h.div_ceil(4)],
        o.c,
    )
}
