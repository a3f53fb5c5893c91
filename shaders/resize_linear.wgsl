// Bilinear resize of NCHW planes with ONNX's coordinate transformation modes. Source coordinates
// outside the image clamp to its edge, as onnxruntime does.
//
// Keep `Params` in sync with `ResizeLinearParams` in src/kernels/resize_linear.rs.
struct Params {
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    coords: u32,  // 0 half_pixel, 1 pytorch_half_pixel, 2 align_corners, 3 asymmetric
    _pad: u32,
    scale_h: f32, // out / in, as the model gives it
    scale_w: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn source(o: u32, in_len: u32, out_len: u32, scale: f32) -> f32 {
    var x: f32;
    switch p.coords {
        case 1u: { x = select(0.0, (f32(o) + 0.5) / scale - 0.5, out_len > 1u); }
        case 2u: { x = select(0.0, f32(o) * f32(in_len - 1u) / f32(out_len - 1u), out_len > 1u); }
        case 3u: { x = f32(o) / scale; }
        default: { x = (f32(o) + 0.5) / scale - 0.5; }
    }
    return clamp(x, 0.0, f32(in_len - 1u));
}

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    let oy = gid.y;
    if ox >= p.out_w || oy >= p.out_h {
        return;
    }
    let plane = gid.z; // n * channels + c
    let y = source(oy, p.in_h, p.out_h, p.scale_h);
    let x = source(ox, p.in_w, p.out_w, p.scale_w);
    let y0 = u32(floor(y));
    let x0 = u32(floor(x));
    let y1 = min(y0 + 1u, p.in_h - 1u);
    let x1 = min(x0 + 1u, p.in_w - 1u);
    let fy = y - f32(y0);
    let fx = x - f32(x0);
    let base = plane * p.in_h * p.in_w;
    let top = mix(src[base + y0 * p.in_w + x0], src[base + y0 * p.in_w + x1], fx);
    let bottom = mix(src[base + y1 * p.in_w + x0], src[base + y1 * p.in_w + x1], fx);
    dst[(plane * p.out_h + oy) * p.out_w + ox] = mix(top, bottom, fy);
}
