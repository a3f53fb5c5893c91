// Edge clamp: copies an NCHW tensor of tiles, replacing each tile's pixels that lie outside its
// image by the image's nearest edge pixel, as if the image had been padded by edge replication.
// A chain runs it on a step's input, so that a step sees what it would see on the previous
// step's whole output image.
//
// The output is the input less `cut` pixels at each border (context the steps before used), or
// more where `cut` is negative (a step padding its own input on a tile covering its whole image).
// Pixel (x, y) of the input of item n is image pixel (scale * x0 + lost + x, scale * y0 + lost +
// y), with `geometry[n] = (x0, y0, width, height)`: the item's first input pixel and its image's
// size, in input pixels (`scale` value pixels each); width 0 leaves the item as it is (cut, or
// padded with its own edge).
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
    cut: i32,
    in_h: u32,
    in_w: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;
@group(0) @binding(3) var<storage, read> geometry: array<vec4<i32>>;

// The input index of output pixel `i` along one axis: input pixel 0 is image pixel `origin`,
// output pixel `i` is input pixel `i + cut`, moved into the image's `0 .. size` (size 0: no
// image) and into the input's `0 .. len`.
fn source(i: u32, origin: i32, size: i32, len: u32) -> u32 {
    var at = i32(i) + p.cut;
    if size > 0 {
        at = clamp(origin + at, 0, size - 1) - origin;
    }
    return u32(clamp(at, 0, i32(len) - 1));
}

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    if x >= p.w || y >= p.h {
        return;
    }
    let g = geometry[gid.z / p.c];
    let sx = source(x, p.scale * g.x + p.lost, p.scale * g.z, p.in_w);
    let sy = source(y, p.scale * g.y + p.lost, p.scale * g.w, p.in_h);
    let in_plane = gid.z * p.in_h * p.in_w;
    dst[gid.z * p.h * p.w + y * p.w + x] = src[in_plane + sy * p.in_w + sx];
}
