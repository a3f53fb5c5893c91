// GlobalAveragePool: [N, C, H, W] -> [N, C, 1, 1], the mean of each plane. One invocation per plane
// (x: channel, z: item), summing in a loop (planes at the end of image networks are small: 7x7 for a 224 input).
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
