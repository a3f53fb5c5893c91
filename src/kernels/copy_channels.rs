//! Channel copies (`shaders/copy_channels.wgsl`): Concat and Split on the channel axis.

use super::{Bind, Step};

/// Mirror of `Params` in shaders/copy_channels.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CopyChannelsParams {
    pub src_c: u32,
    pub src_offset: u32,
    pub dst_c: u32,
    pub dst_offset: u32,
    pub count: u32,
    pub plane: u32,
    pub row: u32,
    pub _pad: u32,
}

/// Workgroups in x of a copy's dispatch (each 64 values of the run); longer runs take rows.
const MAX_GROUPS_X: u32 = 1024;

/// Where a copy reads and writes, in channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelCopy {
    pub src_c: u32,
    pub src_offset: u32,
    pub dst_c: u32,
    pub dst_offset: u32,
    pub count: u32,
}

/// CPU reference: copies into `dst` (n items of `dst_c x plane`).
pub fn reference(copy: ChannelCopy, src: &[f32], dst: &mut [f32], n: u32, plane: usize) {
    for i in 0..n {
        for c in 0..copy.count {
            let s = ((i * copy.src_c + copy.src_offset + c) as usize) * plane;
            let d = ((i * copy.dst_c + copy.dst_offset + c) as usize) * plane;
            dst[d..d + plane].copy_from_slice(&src[s..s + plane]);
        }
    }
}

pub fn prepare(
    cx: Bind,
    copy: ChannelCopy,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    h: u32,
    w: u32,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    // Planes of a multiple of `per` values copy `per` a load ([`per_load`]).
    let per = per_load(h * w, kernels.eight_a_load);
    let pipeline = match per {
        1 => kernels.copy_channels.clone(),
        _ => kernels.generated("copy_channels", &wide_source(per)),
    };
    let plane = h * w / per;
    // The run of `count` channels each item copies, 64 loads a workgroup, up to 1024 workgroups
    // a row (then more rows).
    let run = copy.count * plane;
    let groups_x = run.div_ceil(64).clamp(1, MAX_GROUPS_X);
    let params = CopyChannelsParams {
        src_c: copy.src_c,
        src_offset: copy.src_offset,
        dst_c: copy.dst_c,
        dst_offset: copy.dst_offset,
        count: copy.count,
        plane,
        row: 64 * groups_x,
        _pad: 0,
    };
    let rows = run.div_ceil(params.row).max(1);
    super::step(
        gpu,
        label,
        &pipeline,
        &params,
        &[src, dst],
        [groups_x, rows],
        1,
    )
}

/// Values a load: 8 (`vec4<u64>`, where `eight`: a CPU adapter, float32) or 4 (`vec4`) where
/// the planes hold a multiple of that (every offset then does too), else 1. On lavapipe a load
/// is a loop over the lanes: a SimpleGate's two halves of 32 channels of 160 x 160 copied in
/// 10.8 ms each, one value a load.
pub fn per_load(plane: u32, eight: bool) -> u32 {
    match plane {
        p if eight && p.is_multiple_of(8) => 8,
        p if p.is_multiple_of(4) => 4,
        _ => 1,
    }
}

/// copy_channels.wgsl moving `per` (4 or 8) values a load: the same indices, in units of
/// `per` values (`Params::plane` and `row` given in them).
pub fn wide_source(per: u32) -> String {
    let element = if per == 8 { "vec4<u64>" } else { "vec4<act>" };
    super::shader("copy_channels.wgsl").replace("array<act>", &format!("array<{element}>"))
}
