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
    let pipeline = &kernels.copy_channels;
    // The run of `count` channels each item copies, 64 values a workgroup, up to 1024 workgroups
    // a row (then more rows).
    let run = copy.count * h * w;
    let groups_x = run.div_ceil(64).clamp(1, MAX_GROUPS_X);
    let params = CopyChannelsParams {
        src_c: copy.src_c,
        src_offset: copy.src_offset,
        dst_c: copy.dst_c,
        dst_offset: copy.dst_offset,
        count: copy.count,
        plane: h * w,
        row: 64 * groups_x,
        _pad: 0,
    };
    let rows = run.div_ceil(params.row).max(1);
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        [groups_x, rows],
        1,
    )
}
