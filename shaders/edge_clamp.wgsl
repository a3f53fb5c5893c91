// Edge clamp: copies an NCHW tensor of tiles, replacing each tile's pixels that lie outside its
// image by the image's nearest edge pixel, as if the image had been padded by edge replication.
// A chain runs it on a step's input, so that a step sees what it would see on the previous
// step's whole output image.
//
// The output is the input less `cut` pixels at each border (context the steps before used).
// Pixel (x, y) of the input of item n is image pixel (scale * x0 + lost + x, scale * y0 + lost +
// y), with `geometry[n] = (x0, y0, width, height)`: the item's first input pixel and its image's
// size, in input pixels (`scale` value pixels each); width 0 leaves the item as it is (cut).
//
// Keep `Params` in sync with `EdgeClampParams` in src/kernels/edge_clamp.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    c: u32,
    h: u32,
    w: u32,
    scale: i32,
    lost: i32,
    cut: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;
@group(0) @binding(3) var<storage, read> geometry: array<vec4<i32>>;

// The source index along one axis: the value pixel `i` of `len`, whose image pixel is
// `first + i`, moved into the image's `0 .. size`.
fn source(i: u32, first: i32, size: i32, len: u32) -> u32 {
    let g = clamp(first + i32(i), 0, size - 1);
    return u32(clamp(g - first, 0, i32(len) - 1));
}

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    if x >= p.w || y >= p.h {
        return;
    }
    let n = gid.z / p.c;
    let g = geometry[n];
    var sx = x;
    var sy = y;
    if g.z > 0 {
        let first = p.lost + i32(p.cut);
        sx = source(x, p.scale * g.x + first, p.scale * g.z, p.w);
        sy = source(y, p.scale * g.y + first, p.scale * g.w, p.h);
    }
    let in_w = p.w + 2u * p.cut;
    let in_plane = gid.z * (p.h + 2u * p.cut) * in_w;
    dst[gid.z * p.h * p.w + y * p.w + x] = src[in_plane + (sy + p.cut) * in_w + sx + p.cut];
}
