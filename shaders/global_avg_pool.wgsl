// GlobalAveragePool: [N, C, H, W] -> [N, C, 1, 1], the mean of each plane, in two entry points:
// - `main`: one invocation per plane (x: channel, z: item), summing in a loop: for small planes
//   (7x7 at the end of a classifier), where many planes keep the GPU busy.
// - `plane`: one workgroup per plane (x: channel, z: item); its 64 invocations read the plane 64
//   neighbouring values at a time and add up their sums in workgroup memory: for large planes
//   (squeeze-and-excite blocks on 128x128 maps), where one invocation per plane would leave a GPU
//   nearly idle while each walks 16384 values.
//
// Keep `Params` in sync with `GlobalAvgPoolParams` in src/kernels/global_avg_pool.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    channels: u32,
    pixels: u32,  // H * W
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let n = gid.z;
    let channels = p.channels;
    if c >= channels {
        return;
    }
    let base = (n * channels + c) * p.pixels;
    var sum = 0.0;
    for (var i = 0u; i < p.pixels; i++) {
        sum += f32(src[base + i]);
    }
    dst[n * channels + c] = act(sum / f32(p.pixels));
}

const PLANE_LANES: u32 = 64u;
var<workgroup> partial: array<f32, PLANE_LANES>;

@compute @workgroup_size(64, 1, 1)
fn plane(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let c = wg.x;
    let n = wg.z;
    let base = (n * p.channels + c) * p.pixels;
    var sum = 0.0;
    for (var i = lane; i < p.pixels; i += PLANE_LANES) {
        sum += f32(src[base + i]);
    }
    partial[lane] = sum;
    workgroupBarrier();
    for (var half = PLANE_LANES / 2u; half > 0u; half /= 2u) {
        if lane < half {
            partial[lane] += partial[lane + half];
        }
        workgroupBarrier();
    }
    if lane == 0u {
        dst[n * p.channels + c] = act(partial[0] / f32(p.pixels));
    }
}
