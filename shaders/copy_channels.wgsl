// Copies `count` channels of an NCHW tensor into another at a channel offset: Concat on the channel
// axis (one dispatch per input) and Split / Slice of channels (one per output).
//
// Keep `Params` in sync with `CopyChannelsParams` in src/kernels/copy_channels.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    src_c: u32,
    src_offset: u32,
    dst_c: u32,
    dst_offset: u32,
    count: u32,
    h: u32,
    w: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if gid.x >= p.w || gid.y >= p.h {
        return;
    }
    let n = gid.z / p.count;
    let c = gid.z % p.count;
    let pixel = gid.y * p.w + gid.x;
    let plane = p.h * p.w;
    dst[(n * p.dst_c + p.dst_offset + c) * plane + pixel] =
        src[(n * p.src_c + p.src_offset + c) * plane + pixel];
}
