// Elementwise activations and affine maps of an NCHW tensor, one invocation per element.
//
// Keep `Params` and the op codes in sync with `UnaryParams` / `UnaryOp` in src/kernels/unary.rs.
struct Params {
    op: u32,  // 0 relu/leaky (alpha), 1 clip (alpha, beta), 2 sigmoid, 3 tanh, 4 hardswish,
              // 5 hardsigmoid (alpha, beta), 6 gelu, 7 erf, 8 affine: x * alpha + beta,
              // 9 gelu, tanh approximation
    channels: u32,
    h: u32,
    w: u32,
    alpha: f32,
    beta: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// Abramowitz and Stegun 7.1.26: |error| <= 1.5e-7.
fn erf_approx(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-x * x));
}

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if gid.x >= p.w || gid.y >= p.h {
        return;
    }
    let i = (gid.z * p.h + gid.y) * p.w + gid.x; // gid.z = n * channels + c
    let x = src[i];
    var y: f32;
    switch p.op {
        case 0u: { y = select(x * p.alpha, x, x >= 0.0); }
        case 1u: { y = clamp(x, p.alpha, p.beta); }
        case 2u: { y = 1.0 / (1.0 + exp(-x)); }
        case 3u: { y = tanh(x); }
        case 4u: { y = x * clamp(x / 6.0 + 0.5, 0.0, 1.0); }
        case 5u: { y = clamp(x * p.alpha + p.beta, 0.0, 1.0); }
        case 6u: { y = 0.5 * x * (1.0 + erf_approx(x * 0.70710678)); }
        case 7u: { y = erf_approx(x); }
        case 9u: { y = 0.5 * x * (1.0 + tanh(0.7978845608 * (x + 0.044715 * x * x * x))); }
        default: { y = x * p.alpha + p.beta; }
    }
    dst[i] = y;
}
