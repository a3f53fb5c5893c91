// Resize by whole factors with nearest neighbour: out[y, x] = in[y / scale_h, x / scale_w], which is
// ONNX Resize mode=nearest with coordinate_transformation_mode=asymmetric and nearest_mode=floor
// (and every other nearest mode whose sample points land inside the same source pixel).
//
// Keep `Params` in sync with `ResizeNearestParams` in src/kernels/resize_nearest.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    scale_h: u32,
    scale_w: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;

// One invocation per output column of one input row: it reads the input value once and writes it
// to the `scale_h` output rows it covers. Neighbouring invocations write neighbouring columns.
@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    let iy = gid.y;
    if ox >= p.out_w || iy >= p.in_h {
        return;
    }
    let plane = gid.z; // n * channels + c
    let ix = min(ox / p.scale_w, p.in_w - 1u);
    let v = src[(plane * p.in_h + iy) * p.in_w + ix];
    let first = (plane * p.out_h + iy * p.scale_h) * p.out_w + ox;
    for (var r = 0u; r < p.scale_h; r++) {
        dst[first + r * p.out_w] = v;
    }
}
