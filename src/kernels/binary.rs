//! Elementwise Add / Sub / Mul / Div with broadcasting (`shaders/binary.wgsl`).

use super::{Bind, Step};
use crate::model::{BinaryOp, ItemShape, broadcast};

/// Mirror of `Params` in shaders/binary.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BinaryParams {
    pub op: u32,
    pub out_c: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub a_strides: [u32; 4],
    pub b_strides: [u32; 4],
}

/// Strides (n, c, h, w) of `s` read at the coordinates of the broadcast output.
pub(crate) fn strides(s: ItemShape) -> [u32; 4] {
    let z = |d: u32, stride: u32| if d == 1 { 0 } else { stride };
    [s.c * s.h * s.w, z(s.c, s.h * s.w), z(s.h, s.w), z(s.w, 1)]
}

/// CPU reference over `n` items.
pub fn reference(
    op: BinaryOp,
    a: &[f32],
    sa: ItemShape,
    b: &[f32],
    sb: ItemShape,
    n: u32,
) -> Vec<f32> {
    let out = broadcast(sa, sb).expect("shapes broadcast");
    let (ta, tb) = (strides(sa), strides(sb));
    let mut v = Vec::with_capacity((n as u64 * out.elements()) as usize);
    for i in 0..n {
        for c in 0..out.c {
            for y in 0..out.h {
                for x in 0..out.w {
                    let at = [i, c, y, x];
                    let ia: u32 = at.iter().zip(ta).map(|(p, s)| p * s).sum();
                    let ib: u32 = at.iter().zip(tb).map(|(p, s)| p * s).sum();
                    v.push(op.apply(a[ia as usize], b[ib as usize]));
                }
            }
        }
    }
    v
}

pub fn prepare(
    cx: Bind,
    op: BinaryOp,
    a: &wgpu::Buffer,
    sa: ItemShape,
    b: &wgpu::Buffer,
    sb: ItemShape,
    dst: &wgpu::Buffer,
) -> Step {
    prepare_shared(cx, op, (a, sa, false), (b, sb, false), dst)
}

/// As [`prepare`], where an operand marked `true` is one item shared by the whole batch (a
/// constant): its batch stride is 0.
pub fn prepare_shared(
    cx: Bind,
    op: BinaryOp,
    (a, sa, a_shared): (&wgpu::Buffer, ItemShape, bool),
    (b, sb, b_shared): (&wgpu::Buffer, ItemShape, bool),
    dst: &wgpu::Buffer,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.binary;
    let out = broadcast(sa, sb).expect("shapes were checked");
    let shared = |mut s: [u32; 4], yes: bool| {
        if yes {
            s[0] = 0;
        }
        s
    };
    let params = BinaryParams {
        op: op as u32,
        out_c: out.c,
        out_h: out.h,
        out_w: out.w,
        a_strides: shared(strides(sa), a_shared),
        b_strides: shared(strides(sb), b_shared),
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[a, b, dst],
        [out.w.div_ceil(16), out.h.div_ceil(4)],
        out.c,
    )
}
