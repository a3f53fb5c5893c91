// Bilinear resize of NCHW planes (ONNX mode linear, any coordinate transformation mode), as
// resize_filter.wgsl's linear path computes it, laid out for llvmpipe: an invocation computes one
// output column over ROWS output rows. Its two horizontal taps and their weight are computed once,
// and each input row it needs is read and interpolated horizontally once (an upscale by 2 reads
// 5-6 rows for 8 output rows, not 16): a row is reused while consecutive output rows fall between
// the same two input rows. Lanes of a workgroup hold consecutive columns, so every read and write
// of a row is a contiguous run.
//
// `Params` is resize_filter.wgsl's (`ResizeFilterParams` in src/kernels/resize_filter.rs).
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    coords: u32,  // 0 half_pixel, 1 pytorch_half_pixel, 2 align_corners, 3 asymmetric, 4 half_pixel_symmetric
    cubic: u32,   // 0 here
    scale_h: f32,
    scale_w: f32,
    cubic_a: f32,
    nearest_mode: u32,
    exclude_outside: u32,
    _pad2: u32,
}

// Output rows an invocation computes (keep in sync with `LINEAR_ROWS` in src/kernels/resize_filter.rs).
const ROWS: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;

// resize_filter.wgsl's source coordinate, clamped to the image.
fn source(o: u32, in_len: u32, out_len: u32, scale: f32) -> f32 {
    var x: f32;
    switch p.coords {
        case 1u: { x = select(0.0, (f32(o) + 0.5) / scale - 0.5, f32(in_len) * scale > 1.0); }
        case 2u: {
            let resized = f32(in_len) * scale;
            x = select(0.0, f32(o) * f32(in_len - 1u) / (resized - 1.0), resized > 1.0);
        }
        case 3u: { x = f32(o) / scale; }
        case 4u: {
            let adjustment = f32(out_len) / (f32(in_len) * scale);
            x = f32(in_len) / 2.0 * (1.0 - adjustment) + (f32(o) + 0.5) / scale - 0.5;
        }
        default: { x = (f32(o) + 0.5) / scale - 0.5; }
    }
    return clamp(x, 0.0, f32(in_len - 1u));
}

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    let oy0 = gid.y * ROWS;
    if ox >= p.out_w || oy0 >= p.out_h {
        return;
    }
    let x = source(ox, p.in_w, p.out_w, p.scale_w);
    let x0 = u32(floor(x));
    let x1 = min(x0 + 1u, p.in_w - 1u);
    let fx = x - f32(x0);
    let plane = gid.z; // n * channels + c
    let base = plane * p.in_h * p.in_w;
    // The horizontally interpolated input rows `row0` and `row0 + 1` (clamped), once read; none
    // yet (`in_h` is no row, and neither is `in_h + 1`).
    var row0 = p.in_h;
    var top = 0.0;
    var bottom = 0.0;
    let rows = min(ROWS, p.out_h - oy0);
    for (var r = 0u; r < rows; r++) {
        let oy = oy0 + r;
        let y = source(oy, p.in_h, p.out_h, p.scale_h);
        let y0 = u32(floor(y));
        let fy = y - f32(y0);
        if y0 != row0 {
            let y1 = min(y0 + 1u, p.in_h - 1u);
            if y0 == row0 + 1u {
                top = bottom;
            } else {
                let at = base + y0 * p.in_w;
                top = mix(f32(src[at + x0]), f32(src[at + x1]), fx);
            }
            let at = base + y1 * p.in_w;
            bottom = mix(f32(src[at + x0]), f32(src[at + x1]), fx);
            row0 = y0;
        }
        dst[(plane * p.out_h + oy) * p.out_w + ox] = act(mix(top, bottom, fy));
    }
}
