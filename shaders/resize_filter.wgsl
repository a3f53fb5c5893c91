// Bilinear or bicubic resize of NCHW planes with ONNX's coordinate transformation modes, as
// onnxruntime computes them: linear clamps the source coordinate to the image; cubic takes the 4
// taps around the unclamped coordinate and clamps each tap's index (exclude_outside = 0).
//
// Keep `Params` in sync with `ResizeFilterParams` in src/kernels/resize_filter.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    coords: u32,  // 0 half_pixel, 1 pytorch_half_pixel, 2 align_corners, 3 asymmetric
    cubic: u32,   // 0 linear, 1 cubic, 2 nearest
    scale_h: f32, // out / in, as the model gives it
    scale_w: f32,
    cubic_a: f32, // cubic_coeff_a, -0.75 by default
    nearest_mode: u32, // 0 round_prefer_floor, 1 round_prefer_ceil, 2 floor, 3 ceil
    exclude_outside: u32, // cubic: taps outside the image weigh 0, the rest are renormalised
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;

fn source_unclamped(o: u32, in_len: u32, out_len: u32, scale: f32) -> f32 {
    var x: f32;
    switch p.coords {
        // ONNX measures the resized length as in * scale, before rounding to whole pixels.
        case 1u: { x = select(0.0, (f32(o) + 0.5) / scale - 0.5, f32(in_len) * scale > 1.0); }
        case 2u: {
            let resized = f32(in_len) * scale;
            x = select(0.0, f32(o) * f32(in_len - 1u) / (resized - 1.0), resized > 1.0);
        }
        case 3u: { x = f32(o) / scale; }
        case 4u: {
            // half_pixel_symmetric: about the centre when the output rounds to whole pixels.
            let adjustment = f32(out_len) / (f32(in_len) * scale);
            x = f32(in_len) / 2.0 * (1.0 - adjustment) + (f32(o) + 0.5) / scale - 0.5;
        }
        default: { x = (f32(o) + 0.5) / scale - 0.5; }
    }
    return x;
}

fn source(o: u32, in_len: u32, out_len: u32, scale: f32) -> f32 {
    return clamp(source_unclamped(o, in_len, out_len, scale), 0.0, f32(in_len - 1u));
}

// The source index of a nearest-neighbour sample at coordinate x, rounded as ONNX's nearest_mode
// says and clamped to the image.
fn nearest(x: f32, len: u32) -> u32 {
    var i: f32;
    switch p.nearest_mode {
        case 1u: { i = select(round(x), ceil(x), fract(x) == 0.5); }
        case 2u: { i = floor(x); }
        case 3u: { i = ceil(x); }
        default: { i = select(round(x), floor(x), fract(x) == 0.5); }
    }
    return u32(clamp(i, 0.0, f32(len - 1u)));
}

// Keys' cubic convolution weights of the taps at -1, 0, 1, 2 for fraction t.
fn cubic_weights(t: f32) -> vec4<f32> {
    let a = p.cubic_a;
    let t1 = t + 1.0;
    let t2 = 1.0 - t;
    let t3 = 2.0 - t;
    return vec4<f32>(
        ((a * t1 - 5.0 * a) * t1 + 8.0 * a) * t1 - 4.0 * a,
        ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0,
        ((a + 2.0) * t2 - (a + 3.0)) * t2 * t2 + 1.0,
        ((a * t3 - 5.0 * a) * t3 + 8.0 * a) * t3 - 4.0 * a,
    );
}

// The weights of the taps around x, with exclude_outside applied.
fn tap_weights(x: f32, len: u32) -> vec4<f32> {
    var w = cubic_weights(x - floor(x));
    if p.exclude_outside == 1u {
        for (var k = 0; k < 4; k++) {
            let at = i32(floor(x)) + k - 1;
            if at < 0 || at >= i32(len) {
                w[k] = 0.0;
            }
        }
        w = w / (w.x + w.y + w.z + w.w);
    }
    return w;
}

fn cubic(plane_base: u32, oy: u32, ox: u32) -> f32 {
    let y = source_unclamped(oy, p.in_h, p.out_h, p.scale_h);
    let x = source_unclamped(ox, p.in_w, p.out_w, p.scale_w);
    let yf = floor(y);
    let xf = floor(x);
    let wy = tap_weights(y, p.in_h);
    let wx = tap_weights(x, p.in_w);
    var sum = 0.0;
    for (var j = 0; j < 4; j++) {
        let iy = u32(clamp(i32(yf) + j - 1, 0, i32(p.in_h) - 1));
        var row = 0.0;
        for (var i = 0; i < 4; i++) {
            let ix = u32(clamp(i32(xf) + i - 1, 0, i32(p.in_w) - 1));
            row += wx[i] * f32(src[plane_base + iy * p.in_w + ix]);
        }
        sum += wy[j] * row;
    }
    return sum;
}

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    let oy = gid.y;
    if ox >= p.out_w || oy >= p.out_h {
        return;
    }
    let plane = gid.z; // n * channels + c
    if p.cubic == 2u {
        let y = nearest(source_unclamped(oy, p.in_h, p.out_h, p.scale_h), p.in_h);
        let x = nearest(source_unclamped(ox, p.in_w, p.out_w, p.scale_w), p.in_w);
        dst[(plane * p.out_h + oy) * p.out_w + ox] = src[(plane * p.in_h + y) * p.in_w + x];
        return;
    }
    if p.cubic != 0u {
        dst[(plane * p.out_h + oy) * p.out_w + ox] = act(cubic(plane * p.in_h * p.in_w, oy, ox));
        return;
    }
    let y = source(oy, p.in_h, p.out_h, p.scale_h);
    let x = source(ox, p.in_w, p.out_w, p.scale_w);
    let y0 = u32(floor(y));
    let x0 = u32(floor(x));
    let y1 = min(y0 + 1u, p.in_h - 1u);
    let x1 = min(x0 + 1u, p.in_w - 1u);
    let fy = y - f32(y0);
    let fx = x - f32(x0);
    let base = plane * p.in_h * p.in_w;
    let top = mix(f32(src[base + y0 * p.in_w + x0]), f32(src[base + y0 * p.in_w + x1]), fx);
    let bottom = mix(f32(src[base + y1 * p.in_w + x0]), f32(src[base + y1 * p.in_w + x1]), fx);
    dst[(plane * p.out_h + oy) * p.out_w + ox] = act(mix(top, bottom, fy));
}

// `linear`: bilinear resize (ONNX mode linear, any coordinate transformation mode) as `main`'s
// linear path computes it, laid out for llvmpipe: an invocation computes one
// output column over ROWS output rows. Its two horizontal taps and their weight are computed once,
// and each input row it needs is read and interpolated horizontally once (an upscale by 2 reads
// 5-6 rows for 8 output rows, not 16): a row is reused while consecutive output rows fall between
// the same two input rows. Lanes of a workgroup hold consecutive columns, so every read and write
// of a row is a contiguous run.

// Output rows an invocation computes (keep in sync with `LINEAR_ROWS` in src/kernels/resize_filter.rs).
const ROWS: u32 = 8u;

@compute @workgroup_size(16, 4, 1)
fn linear(@builtin(global_invocation_id) gid: vec3<u32>) {
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
