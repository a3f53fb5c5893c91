// Bilinear upsampling by exactly 2 in both dimensions with half_pixel coordinates (ONNX Resize,
// mode linear, coordinate_transformation_mode half_pixel or pytorch_half_pixel): output
// (2i + a, 2j + b) is 0.75 of input (i, j) plus 0.25 of its neighbour towards a and b, clamped
// at the edges, in each dimension: what resize_filter.wgsl's `linear` computes for these shapes.
//
// Laid out for llvmpipe, where each load or store is a pass of a loop over the lanes: one
// invocation reads 4 input columns of 3 rows (a vec4 and one value each side a row) and writes
// 2 output rows of 8 columns, 2 vec4s a row (on a CPU adapter one `vec4<u64>`: the generator in
// src/kernels/resize2x.rs swaps `dst` and `store8`). Input rows a multiple of 4 wide.
//
// Keep `Params` in sync with `Resize2xParams` in src/kernels/resize2x.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    in_h: u32,
    in_w: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<act>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<act>>;

// Output columns 8q .. 8q + 7 of one row, `at` the vec4 index of the first.
fn store8(at: u32, lo: vec4<f32>, hi: vec4<f32>) {
    dst[at] = vec4<act>(lo);
    dst[at + 1u] = vec4<act>(hi);
}

// Input row `y` at vec4 column `q` upsampled along x: its 8 outputs (lo, hi), the value left of
// the vec4 and right of it clamped into the row. In float32 whatever `act` is (as
// resize_filter.wgsl interpolates).
struct Row {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn row(at: u32, q: u32, row4: u32) -> Row {
    let v = vec4<f32>(src[at]);
    let left = select(v.x, f32(src[at - min(q, 1u)].w), q > 0u);
    let right = select(v.w, f32(src[at + select(0u, 1u, q + 1u < row4)].x), q + 1u < row4);
    return Row(
        0.75 * v.xxyy + 0.25 * vec4<f32>(left, v.y, v.x, v.z),
        0.75 * v.zzww + 0.25 * vec4<f32>(v.y, v.w, v.z, right),
    );
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row4 = p.in_w / 4u;
    let cells = p.in_h * row4;
    let cell = gid.x + gid.y * groups.x * 256u;
    if cell >= cells {
        return;
    }
    let i = cell / row4;
    let q = cell - i * row4;
    let plane = gid.z * cells;
    let up = row(plane + (max(i, 1u) - 1u) * row4 + q, q, row4);
    let mid = row(plane + cell, q, row4);
    let down = row(plane + min(i + 1u, p.in_h - 1u) * row4 + q, q, row4);
    let near = 0.75;
    let far = 0.25;
    // Output rows 2i and 2i + 1 are 2 * row4 vec4s long; the plane has 4 * cells of them.
    let out_row = 2u * row4;
    let at = gid.z * 4u * cells + 2u * i * out_row + 2u * q;
    store8(at, near * mid.lo + far * up.lo, near * mid.hi + far * up.hi);
    store8(at + out_row, near * mid.lo + far * down.lo, near * mid.hi + far * down.hi);
}
