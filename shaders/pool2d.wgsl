// MaxPool and AveragePool over NCHW planes, with padding, stride, dilation (max) and ONNX's
// count_include_pad for averages. Output sizes (ceil_mode included) are computed by the host.
//
// Keep `Params` in sync with `Pool2dParams` in src/kernels/pool2d.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
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
    average: u32,
    count_include_pad: u32,
    pad_bottom: u32,
    pad_right: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    let oy = gid.y;
    if ox >= p.out_w || oy >= p.out_h {
        return;
    }
    let base = gid.z * p.in_h * p.in_w; // gid.z = n * channels + c
    var best = -3.4028235e38;
    var sum = 0.0;
    var count = 0u;
    var padded = 0u;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = i32(oy * p.stride_h + ky * p.dil_h) - i32(p.pad_top);
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix = i32(ox * p.stride_w + kx * p.dil_w) - i32(p.pad_left);
            if iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w) {
                let v = f32(src[base + u32(iy) * p.in_w + u32(ix)]);
                best = max(best, v);
                sum += v;
                count += 1u;
            } else if iy < i32(p.in_h + p.pad_bottom) && ix < i32(p.in_w + p.pad_right) {
                // Inside the explicit padding (not the ceil_mode overhang): counts when asked.
                padded += 1u;
            }
        }
    }
    var v = best;
    if p.average != 0u {
        let n = select(count, count + padded, p.count_include_pad != 0u);
        v = sum / f32(max(n, 1u));
    }
    dst[(gid.z * p.out_h + oy) * p.out_w + ox] = act(v);
}
