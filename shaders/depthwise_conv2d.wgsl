// Depthwise 2-D convolution (groups = input channels = output channels), NCHW float32, with bias,
// padding, stride, dilation and a fused activation. The engine runs an entry point generated per
// kernel shape from these declarations (src/kernels/depthwise_conv2d.rs: a block of output pixels
// of one channel an invocation, each input value loaded once); the `main` below, one invocation
// per output pixel and channel, runs shapes whose input patch does not fit that one.
//
// Keep `Params` in sync with `DepthwiseParams` in src/kernels/conv2d.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    channels: u32,
    in_h: u32,
    in_w: u32,
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
    activation: u32,  // 0 none, 1 leaky relu (alpha), 2 clip(alpha, beta), 3 prelu (slopes), 4 hard swish
    alpha: f32,
    beta: f32,
    // The generated kernel's channels of one item along x (the `main` below takes one along z).
    channels_per_z: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;  // [c][k_h][k_w]
@group(0) @binding(3) var<storage, read> bias_slope: array<f32>;  // bias [c], then slopes [c]
@group(0) @binding(4) var<storage, read_write> dst: array<act>;

// The fused activation of channel `c`.
fn activate(v: f32, c: u32) -> f32 {
    switch p.activation {
        case 1u: { return select(v * p.alpha, v, v >= 0.0); }
        case 2u: { return clamp(v, p.alpha, p.beta); }
        case 3u: { return select(v * bias_slope[p.channels + c], v, v >= 0.0); }
        case 4u: { return v * clamp(v / 6.0 + 0.5, 0.0, 1.0); }
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
    let c = gid.z % p.channels;
    let plane = gid.z * p.in_h * p.in_w; // gid.z = n * channels + c
    var acc = bias_slope[c];
    let iy0 = i32(oy * p.stride_h) - i32(p.pad_top);
    let ix0 = i32(ox * p.stride_w) - i32(p.pad_left);
    let w0 = c * p.k_h * p.k_w;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = iy0 + i32(ky * p.dil_h);
        if iy < 0 || iy >= i32(p.in_h) {
            continue;
        }
        let row = plane + u32(iy) * p.in_w;
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix = ix0 + i32(kx * p.dil_w);
            if ix >= 0 && ix < i32(p.in_w) {
                acc += f32(src[row + u32(ix)]) * weights[w0 + ky * p.k_w + kx];
            }
        }
    }
    dst[(gid.z * p.out_h + oy) * p.out_w + ox] = act(activate(acc, c));
}
