// 2-D convolution, NCHW float32, with bias, padding, stride, dilation, groups and a fused activation.
//
// Register-blocked: one invocation computes ROWS output rows of one output column for a block of 16
// output channels (4 vec4 accumulators per row). Each input value loaded is reused across the 16
// channels, and each weight vec4 across the ROWS rows, so there are few loads per multiply-add.
// Weights are packed by the host (see `pack_weights` in src/kernels/conv2d.rs) as
// [group][block][in_c_per_group][k_h][k_w][16 channels], zero-padded past out_c_per_group.
//
// Keep `Params` in sync with `Conv2dParams` in src/kernels/conv2d.rs.
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
    activation: u32,  // 0 none, 1 leaky relu (alpha; relu is alpha 0), 2 clip(alpha, beta)
    alpha: f32,
    beta: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const ROWS: u32 = 8u;
const OCV: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

fn activate(v: vec4<f32>) -> vec4<f32> {
    switch p.activation {
        case 1u: { return select(v * p.alpha, v, v >= vec4<f32>(0.0)); }
        case 2u: { return clamp(v, vec4<f32>(p.alpha), vec4<f32>(p.beta)); }
        default: { return v; }
    }
}

@compute @workgroup_size(16, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    if ox >= p.out_w {
        return;
    }
    let oy0 = gid.y * ROWS;
    let n = gid.z / p.blocks;
    let block = gid.z % p.blocks;
    let g = block / p.blocks_per_group;
    let oc0 = g * p.out_c_per_group + (block % p.blocks_per_group) * 16u;
    let oc_end = (g + 1u) * p.out_c_per_group;

    var acc: array<vec4<f32>, 32>; // ROWS * OCV
    for (var v = 0u; v < OCV; v++) {
        let b = bias[block * OCV + v];
        for (var r = 0u; r < ROWS; r++) {
            acc[r * OCV + v] = b;
        }
    }

    let ix0 = i32(ox * p.stride_w) - i32(p.pad_left);
    let iy0 = i32(oy0 * p.stride_h) - i32(p.pad_top);
    let taps = p.k_h * p.k_w;
    for (var ic = 0u; ic < p.in_c_per_group; ic++) {
        let plane = (n * p.in_c + g * p.in_c_per_group + ic) * p.in_h * p.in_w;
        let wrow = (block * p.in_c_per_group + ic) * taps;
        for (var ky = 0u; ky < p.k_h; ky++) {
            for (var kx = 0u; kx < p.k_w; kx++) {
                let ix = ix0 + i32(kx * p.dil_w);
                if ix < 0 || ix >= i32(p.in_w) {
                    continue;
                }
                let wi = (wrow + ky * p.k_w + kx) * OCV;
                let w0 = weights[wi];
                let w1 = weights[wi + 1u];
                let w2 = weights[wi + 2u];
                let w3 = weights[wi + 3u];
                for (var r = 0u; r < ROWS; r++) {
                    let iy = iy0 + i32(r * p.stride_h + ky * p.dil_h);
                    if iy >= 0 && iy < i32(p.in_h) {
                        let x = src[plane + u32(iy) * p.in_w + u32(ix)];
                        acc[r * OCV] += x * w0;
                        acc[r * OCV + 1u] += x * w1;
                        acc[r * OCV + 2u] += x * w2;
                        acc[r * OCV + 3u] += x * w3;
                    }
                }
            }
        }
    }

    for (var r = 0u; r < ROWS; r++) {
        let oy = oy0 + r;
        if oy >= p.out_h {
            break;
        }
        for (var v = 0u; v < OCV; v++) {
            let out = activate(acc[r * OCV + v]);
            for (var c = 0u; c < 4u; c++) {
                let oc = oc0 + v * 4u + c;
                if oc < oc_end {
                    dst[((n * p.out_c + oc) * p.out_h + oy) * p.out_w + ox] = out[c];
                }
            }
        }
    }
}
