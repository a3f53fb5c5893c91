// MaxPool and AveragePool of 2x2 windows at stride 2 without padding over whole planes (the input
// twice the output) whose output width is a multiple of 4: an invocation reads its two input rows'
// 8 values as 4 vec4s and writes 4 outputs as one (on lavapipe a load or store is a loop over the
// lanes, so 4 values a pass). pool2d.wgsl runs every other pool.
//
// Keep `Params` in sync with `Pool2x2Params` in src/kernels/pool2d.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    out_h: u32,
    out_w4: u32,   // output width / 4: vec4s an output row (an input row holds twice as many)
    average: u32,  // 1: the mean of the 4 values (no padding: always 4), else the largest
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<act>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<act>>;

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let oy = gid.y;
    if x >= p.out_w4 || oy >= p.out_h {
        return;
    }
    // gid.z = n * channels + c: planes of 2 out_h input rows of 2 out_w4 vec4s.
    let row = 2u * p.out_w4;
    let top = (gid.z * 2u * p.out_h + 2u * oy) * row + 2u * x;
    let a = vec4<f32>(src[top]);
    let b = vec4<f32>(src[top + 1u]);
    let c = vec4<f32>(src[top + row]);
    let d = vec4<f32>(src[top + row + 1u]);
    var v: vec4<f32>;
    if p.average != 0u {
        let l = a + c;
        let r = b + d;
        v = vec4<f32>(l.x + l.y, l.z + l.w, r.x + r.y, r.z + r.w) * 0.25;
    } else {
        let l = max(a, c);
        let r = max(b, d);
        v = vec4<f32>(max(l.x, l.y), max(l.z, l.w), max(r.x, r.y), max(r.z, r.w));
    }
    dst[(gid.z * p.out_h + oy) * p.out_w4 + x] = vec4<act>(v);
}
