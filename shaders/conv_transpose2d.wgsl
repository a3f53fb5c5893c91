// 2-D transposed convolution, NCHW float32, with bias, padding, stride, dilation, groups and a fused
// activation. Gather form: one invocation computes one output pixel for 4 output channels (a vec4),
// visiting only the taps whose input position lands on the stride grid.
// Weights are packed by the host (see `pack_weights` in src/kernels/conv_transpose2d.rs) as
// [group][block of 4][in_c_per_group][k_h][k_w] vec4, zero-padded past out_c_per_group.
//
// Keep `Params` in sync with `ConvTranspose2dParams` in src/kernels/conv_transpose2d.rs.
struct Params {
    in_c: u32,
    in_h: u32,
    in_w: u32,
    out_c: u32,
    out_h: u32,
    out_w: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    dil_h: u32,
    dil_w: u32,
    in_c_per_group: u32,
    out_c_per_group: u32,
    blocks_per_group: u32,
    blocks: u32,
    activation: u32,
    alpha: f32,
    beta: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

fn activate(v: vec4<f32>) -> vec4<f32> {
    switch p.activation {
        case 1u: { return select(v * p.alpha, v, v >= vec4<f32>(0.0)); }
        case 2u: { return clamp(v, vec4<f32>(p.alpha), vec4<f32>(p.beta)); }
        case 4u: { return v * clamp(v / 6.0 + 0.5, vec4<f32>(0.0), vec4<f32>(1.0)); }
        default: { return v; }
    }
}

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    let oy = gid.y;
    if ox >= p.out_w || oy >= p.out_h {
        return;
    }
    let n = gid.z / p.blocks;
    let block = gid.z % p.blocks;
    let g = block / p.blocks_per_group;
    let oc0 = g * p.out_c_per_group + (block % p.blocks_per_group) * 4u;
    let oc_end = (g + 1u) * p.out_c_per_group;

    var acc = bias[block];
    let taps = p.k_h * p.k_w;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let ty = i32(oy + p.pad_top) - i32(ky * p.dil_h);
        if ty < 0 || ty % i32(p.stride_h) != 0 {
            continue;
        }
        let iy = u32(ty) / p.stride_h;
        if iy >= p.in_h {
            continue;
        }
        for (var kx = 0u; kx < p.k_w; kx++) {
            let tx = i32(ox + p.pad_left) - i32(kx * p.dil_w);
            if tx < 0 || tx % i32(p.stride_w) != 0 {
                continue;
            }
            let ix = u32(tx) / p.stride_w;
            if ix >= p.in_w {
                continue;
            }
            let tap = ky * p.k_w + kx;
            var s = (n * p.in_c + g * p.in_c_per_group) * p.in_h * p.in_w + iy * p.in_w + ix;
            var w = block * p.in_c_per_group * taps + tap;
            for (var ic = 0u; ic < p.in_c_per_group; ic++) {
                acc += src[s] * weights[w];
                s += p.in_h * p.in_w;
                w += taps;
            }
        }
    }

    let out = activate(acc);
    for (var c = 0u; c < 4u; c++) {
        let oc = oc0 + c;
        if oc < oc_end {
            dst[((n * p.out_c + oc) * p.out_h + oy) * p.out_w + ox] = out[c];
        }
    }
}
