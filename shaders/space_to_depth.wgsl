// SpaceToDepth: [N, C, H, W] -> [N, C * bh * bw, H / bh, W / bw] in ONNX's order (output channel
// (by * bw + bx) * C + c holds input channel c at row y * bh + by, column x * bw + bx); rows and
// columns past the last whole block are dropped. A strided patch convolution's input
// (`passes::patch_conv`: a k x k convolution of stride k is this and a 1x1 convolution).
// One invocation per output value, z the item and output channel.
//
// Keep `Params` in sync with `SpaceToDepthParams` in src/kernels/space_to_depth.rs.
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
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    if x >= p.out_w || y >= p.out_h {
        return;
    }
    let n = gid.z / p.out_c;
    let oc = gid.z % p.out_c;
    let c = oc % p.in_c;
    let block = oc / p.in_c;
    let by = block / p.block_w;
    let bx = block % p.block_w;
    let v = src[((n * p.in_c + c) * p.in_h + y * p.block_h + by) * p.in_w + x * p.block_w + bx];
    dst[((n * p.out_c + oc) * p.out_h + y) * p.out_w + x] = v;
}
