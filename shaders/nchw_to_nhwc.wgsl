// Transposes NCHW to NHWC (channels last), written as one flat vector per item: the layout a
// detector's heads reshape to [anchors, values] before concatenating (written in place into the
// Concat's buffer: `dst_item` and `dst_offset`).
//
// Keep `Params` in sync with `NchwToNhwcParams` in src/kernels/nchw_to_nhwc.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    c: u32,
    h: u32,
    w: u32,
    dst_item: u32,   // values an item of `dst` holds (more where it is a Concat's, in place)
    dst_offset: u32, // where this output starts in an item of `dst`
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    if x >= p.w || y >= p.h {
        return;
    }
    let n = gid.z / p.c;
    let c = gid.z % p.c;
    dst[n * p.dst_item + p.dst_offset + (y * p.w + x) * p.c + c] = src[((n * p.c + c) * p.h + y) * p.w + x];
}
