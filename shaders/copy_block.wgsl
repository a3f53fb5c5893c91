// Copies a block of an NCHW tensor into another at an offset: Concat and Split on the height or
// width axis, Slice, and (flat mode) Reshape/Flatten, which keep the element order.
//
// Keep `Params` in sync with `CopyBlockParams` in src/kernels/copy_block.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    src_shape: vec4<u32>,  // c, h, w, elements per item
    src_offset: vec4<u32>, // c, h, w, 0
    dst_shape: vec4<u32>,
    dst_offset: vec4<u32>,
    region: vec4<u32>,     // c, h, w, flat (1: copy elements 0..region.w*... as one run)
    src_step: vec4<i32>,   // c, h, w steps in the source (1: a block; negative: backwards)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;

const FLAT_ROW: u32 = 1024u;

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if p.region.w != 0u {
        // Flat: gid.z is the item, (gid.y, gid.x) a position in rows of FLAT_ROW elements.
        let i = gid.y * FLAT_ROW + gid.x;
        if gid.x >= FLAT_ROW || i >= p.src_shape.w {
            return;
        }
        dst[gid.z * p.dst_shape.w + i] = src[gid.z * p.src_shape.w + i];
        return;
    }
    let x = gid.x;
    let y = gid.y;
    if x >= p.region.z || y >= p.region.y {
        return;
    }
    let n = gid.z / p.region.x;
    let c = gid.z % p.region.x;
    let sc = u32(i32(p.src_offset.x) + i32(c) * p.src_step.x);
    let sy = u32(i32(p.src_offset.y) + i32(y) * p.src_step.y);
    let sx = u32(i32(p.src_offset.z) + i32(x) * p.src_step.z);
    let s = (sc * p.src_shape.y + sy) * p.src_shape.z + sx;
    let d = ((p.dst_offset.x + c) * p.dst_shape.y + p.dst_offset.y + y) * p.dst_shape.z
        + p.dst_offset.z + x;
    dst[n * p.dst_shape.w + d] = src[n * p.src_shape.w + s];
}
