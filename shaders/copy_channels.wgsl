// Copies `count` channels of an NCHW tensor into another at a channel offset: Concat on the channel
// axis (one dispatch per input) and Split / Slice of channels (one per output).
//
// The channels copied are one contiguous run of `count * plane` values in each item of both
// tensors, so the dispatch runs over that run (x, then rows of `row` values in y) and the items
// (z): as fast for 8192 channels of 1x1 (a detector's flattened heads) as for 3 of 384x384.
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
    plane: u32,  // values per channel (h * w)
    row: u32,    // values per dispatch row: 64 x the workgroups in x
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.row + gid.x;
    if gid.x >= p.row || i >= p.count * p.plane {
        return;
    }
    let n = gid.z;
    dst[(n * p.dst_c + p.dst_offset) * p.plane + i] = src[(n * p.src_c + p.src_offset) * p.plane + i];
}
