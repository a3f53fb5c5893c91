// Across the channels at each pixel of [N, C, H, W] (`LayerOp::AcrossChannels`): a reduction
// over the channels to [N, 1, H, W] (ReduceSum, ReduceMean, ReduceMax, ... over axis 1), or
// each pixel's channels normalized to mean 0 and variance 1 (a layer norm over the channels, as
// NAFNet's LayerNorm2d computes it: (x - mean) / sqrt(var + epsilon)). One invocation per pixel,
// or per 4 pixels: src/kernels/across_channels.rs swaps `vec` and `vec_act` for vec4s where the
// planes hold a multiple of 4 (on lavapipe a load is a loop over the lanes). The channels are
// read in a loop at a stride of the plane; the sums are in f32.
//
// Keep `Params` in sync with `AcrossParams` in src/kernels/across_channels.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;
// The values of one invocation: one pixel's here.
alias vec = f32;
alias vec_act = act;

struct Params {
    channels: u32,
    pixels: u32,   // per plane, in `vec`s
    op: u32,       // ReduceOp's codes (0 sum, 1 mean, 2 max, 3 min, 4 prod, 5 sum of squares,
                   // 6 l1, 7 l2, 8 log sum, 9 log sum exp); 16 normalize
    epsilon: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec_act>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec_act>;

const NORMALIZE: u32 = 16u;

// A norm's per-channel scale and shift (a layer norm's affine, `fold_affine::after_norms`):
// src/kernels/across_channels.rs swaps this for one that reads them from a binding of its own.
fn affine_of(x: vec, c: u32) -> vec { return x; }

fn at(base: u32, c: u32) -> vec {
    return vec(src[base + c * p.pixels]);
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let q = gid.x + gid.y * groups.x * 256u;
    if q >= p.pixels {
        return;
    }
    let base = gid.z * p.channels * p.pixels + q;
    let n = f32(p.channels);
    var acc = vec(0.0);
    switch p.op {
        case 2u, 9u: { acc = vec(-3.40282347e38); }
        case 3u: { acc = vec(3.40282347e38); }
        case 4u: { acc = vec(1.0); }
        default: {}
    }
    for (var c = 0u; c < p.channels; c++) {
        let x = at(base, c);
        switch p.op {
            case 2u, 9u: { acc = max(acc, x); }
            case 3u: { acc = min(acc, x); }
            case 4u: { acc *= x; }
            case 5u, 7u: { acc += x * x; }
            case 6u: { acc += abs(x); }
            default: { acc += x; }
        }
    }
    if p.op == NORMALIZE {
        let mean = acc / n;
        var sq = vec(0.0);
        for (var c = 0u; c < p.channels; c++) {
            let d = at(base, c) - mean;
            sq += d * d;
        }
        let scale = 1.0 / sqrt(sq / n + p.epsilon);
        for (var c = 0u; c < p.channels; c++) {
            dst[base + c * p.pixels] = vec_act(affine_of((at(base, c) - mean) * scale, c));
        }
        return;
    }
    if p.op == 9u {
        // log(sum(exp(x - max))) + max, for range.
        let m = acc;
        acc = vec(0.0);
        for (var c = 0u; c < p.channels; c++) {
            acc += exp(at(base, c) - m);
        }
        acc = log(acc) + m;
    }
    switch p.op {
        case 1u: { acc /= n; }
        case 7u: { acc = sqrt(acc); }
        case 8u: { acc = log(acc); }
        default: {}
    }
    dst[gid.z * p.pixels + q] = vec_act(acc);
}
