//! GlobalAveragePool (`shaders/global_avg_pool.wgsl`).

use super::shaders::redeclared;
use super::{Bind, Step};

/// Mirror of `Params` in shaders/global_avg_pool.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GlobalAvgPoolParams {
    pub channels: u32,
    pub pixels: u32,
    pub _pad: [u32; 2],
}

/// CPU reference in f64: the mean of each of `planes` planes of `pixels` values.
pub fn reference(input: &[f32], pixels: usize) -> Vec<f32> {
    input
        .chunks_exact(pixels)
        .map(|p| (p.iter().map(|&v| v as f64).sum::<f64>() / pixels as f64) as f32)
        .collect()
}

/// Which entry point of shaders/global_avg_pool.wgsl averages the planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// One invocation per plane, summing in a loop.
    Loop,
    /// One workgroup per plane, 64 partial sums added in workgroup memory.
    Plane,
}

/// Planes of at least this many values run one workgroup per plane on a GPU.
pub const PLANE_MIN_PIXELS: u32 = 1024;

/// `Plane` for large planes on a GPU, where one invocation per plane leaves most of it idle (on
/// an H200, remove-background's 16 planes of 128x128 took 28% of the model, 1.65 ms at batch 16).
/// On a CPU's Vulkan (lavapipe) a few long loops keep its cores busy and the workgroup barriers
/// cost more: `Loop` (0.54 against 0.88 ms there on the same layer at batch 4).
pub fn entry_for(gpu: &crate::gpu::Gpu, channels: u32, pixels: u32) -> Entry {
    let on_gpu = gpu.adapter.device_type != "Cpu";
    let fits = channels <= gpu.limits.max_compute_workgroups_per_dimension;
    if on_gpu && fits && pixels >= PLANE_MIN_PIXELS {
        Entry::Plane
    } else {
        Entry::Loop
    }
}

pub fn prepare(
    cx: Bind,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    channels: u32,
    pixels: u32,
) -> Step {
    let entry = entry_for(cx.gpu, channels, pixels);
    prepare_entry(cx, src, dst, channels, pixels, entry)
}

/// [`prepare`] with the entry point given.
pub fn prepare_entry(
    cx: Bind,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    channels: u32,
    pixels: u32,
    entry: Entry,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let per = match entry {
        Entry::Loop => per_load(pixels, kernels.eight_a_load),
        Entry::Plane => 1,
    };
    let (pipeline, groups) = match entry {
        Entry::Plane => (kernels.global_avg_pool_plane.clone(), [channels, 1]),
        Entry::Loop if per > 1 => (
            kernels.generated("global_avg_pool", &wide_source(per)),
            [channels.div_ceil(64), 1],
        ),
        Entry::Loop => (kernels.global_avg_pool.clone(), [channels.div_ceil(64), 1]),
    };
    let params = GlobalAvgPoolParams {
        channels,
        pixels,
        _pad: [0; 2],
    };
    super::step(gpu, label, &pipeline, &params, &[src, dst], groups, 1)
}

/// Values the loop entry reads a load: 8 (`vec4<u64>`, where `eight`: a CPU adapter, float32)
/// or 4 (`vec4`) where the planes hold a multiple of that, else 1. On llvmpipe each load is a
/// loop over the lanes: remove-background's 16 planes of 128 x 128 sum in 40% of the time.
pub fn per_load(pixels: u32, eight: bool) -> u32 {
    match pixels {
        p if eight && p.is_multiple_of(8) => 8,
        p if p.is_multiple_of(4) => 4,
        _ => 1,
    }
}

/// global_avg_pool.wgsl's loop `main`, `per` (4 or 8) values a load, summed in 4 lanes of a
/// vec4 (then added up).
pub fn wide_source(per: u32) -> String {
    let shader = super::shader("global_avg_pool.wgsl");
    let head = &shader[..shader
        .find("@compute")
        .expect("global_avg_pool.wgsl has an entry point")];
    let element = if per == 8 { "vec4<u64>" } else { "vec4<act>" };
    let mut w = redeclared(head, "src", element);
    if per == 8 {
        w.push_str(super::eight::HELPERS);
    }
    let add = match per {
        8 => "let x = src[base + i]; sum += lo8(x) + hi8(x);",
        _ => "sum += vec4<f32>(src[base + i]);",
    };
    w.push_str(&format!(
        "
// Generated (src/kernels/global_avg_pool.rs): one invocation a plane, {per} values a load.
@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
    let c = gid.x;
    let n = gid.z;
    if c >= p.channels {{
        return;
    }}
    let count = p.pixels / {per}u;
    let base = (n * p.channels + c) * count;
    var sum = vec4<f32>(0.0);
    for (var i = 0u; i < count; i++) {{
        {add}
    }}
    dst[n * p.channels + c] = act((sum.x + sum.y + sum.z + sum.w) / f32(p.pixels));
}}
"
    ));
    w
}
