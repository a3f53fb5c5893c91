// A strided copy of up to 8 dimensions: for every index i of `dims`,
// dst[dst_offset + i . dst_strides] = src[src_offset + i . src_strides]. One invocation per element.
// Transpose, Slice (any step), Concat and Split on any axis, Expand, Tile, Reshape, SpaceToDepth
// and DepthToSpace of general tensors are all this copy with different strides.
//
// Keep `Params` in sync with `CopyParams` in src/kernels/nd_copy.rs.
struct Params {
    dims: array<vec4<u32>, 2>,        // outermost first; unused leading dims are 1
    src_strides: array<vec4<i32>, 2>,
    dst_strides: array<vec4<i32>, 2>,
    count: u32,                       // elements copied per item
    src_offset: i32,
    dst_offset: i32,
    src_item: u32,                    // elements per item of src; 0 for a constant shared by all items
    dst_item: u32,
    rank: u32,                        // dims in use (the last `rank`; at least 1)
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if i >= p.count {
        return;
    }
    var rest = i;
    var s = p.src_offset;
    var d = p.dst_offset;
    // Only the dims in use, the outermost without a division (one an element fewer each: an
    // integer division is a loop over the lanes on a CPU's Vulkan).
    let outer = 8 - i32(max(p.rank, 1u));
    for (var k = 7; k > outer; k--) {
        let n = p.dims[k / 4][k % 4];
        let at = i32(rest % n);
        rest = rest / n;
        s += at * p.src_strides[k / 4][k % 4];
        d += at * p.dst_strides[k / 4][k % 4];
    }
    s += i32(rest) * p.src_strides[outer / 4][outer % 4];
    d += i32(rest) * p.dst_strides[outer / 4][outer % 4];
    dst[gid.z * p.dst_item + u32(d)] = src[gid.z * p.src_item + u32(s)];
}
