// Elementwise Add, Sub, Mul, Div (and PRelu with its slopes) of two NCHW tensors with numpy broadcasting: a dimension of size 1
// in an input has stride 0 there. One invocation per output element.
//
// Keep `Params` in sync with `BinaryParams` in src/kernels/binary.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    op: u32,          // 0 add, 1 sub, 2 mul, 3 div, 4 prelu (a < 0 ? a * b : a), 5 pow, 6 max, 7 min
    out_c: u32,
    out_h: u32,
    out_w: u32,
    a_strides: vec4<u32>, // n, c, h, w (0 where broadcast)
    b_strides: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<act>;
@group(0) @binding(2) var<storage, read> b: array<act>;
@group(0) @binding(3) var<storage, read_write> dst: array<act>;

// pow of a negative base is defined for whole exponents (WGSL's pow is exp2(y * log2(x))).
fn pow_whole(x: f32, y: f32) -> f32 {
    let m = pow(abs(x), y);
    let odd = abs(y - 2.0 * floor(y * 0.5)) == 1.0;
    return select(select(pow(x, y), select(m, -m, odd), y == floor(y)), m, x >= 0.0);
}

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    if x >= p.out_w || y >= p.out_h {
        return;
    }
    let n = gid.z / p.out_c;
    let c = gid.z % p.out_c;
    let at = vec4<u32>(n, c, y, x);
    let va = a[dot(at, p.a_strides)];
    let vb = b[dot(at, p.b_strides)];
    var v: act;
    switch p.op {
        case 1u: { v = va - vb; }
        case 2u: { v = va * vb; }
        case 3u: { v = va / vb; }
        case 4u: { v = select(va * vb, va, va >= 0.0); }
        case 5u: { v = act(pow_whole(f32(va), f32(vb))); }
        case 6u: { v = max(va, vb); }
        case 7u: { v = min(va, vb); }
        default: { v = va + vb; }
    }
    dst[((n * p.out_c + c) * p.out_h + y) * p.out_w + x] = v;
}
