// DepthToSpace: [N, C * bh * bw, H, W] -> [N, C, H * bh, W * bw], in ONNX's DCR or CRD order, and
// optionally cropped at the bottom and right (out_h, out_w smaller than H * bh, W * bw).
//
// Keep `Params` in sync with `DepthToSpaceParams` in src/kernels/depth_to_space.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    in_c: u32,
    in_h: u32,
    in_w: u32,
    out_c: u32,
    out_h: u32,
    out_w: u32,
    block_h: u32,
    block_w: u32,
    crd: u32,  // 0: DCR, channel (by * bw + bx) * C + c; 1: CRD, channel c * bh * bw + by * bw + bx
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
    let n = gid.z / p.out_c;
    let c = gid.z % p.out_c;
    let by = oy % p.block_h;
    let bx = ox % p.block_w;
    var ic = (by * p.block_w + bx) * p.out_c + c;
    if p.crd != 0u {
        ic = (c * p.block_h + by) * p.block_w + bx;
    }
    let v = src[((n * p.in_c + ic) * p.in_h + oy / p.block_h) * p.in_w + ox / p.block_w];
    dst[((n * p.out_c + c) * p.out_h + oy) * p.out_w + ox] = v;
}
