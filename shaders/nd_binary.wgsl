// Elementwise binary ops of two tensors of up to 8 dimensions with numpy broadcasting (stride 0
// where an input has size 1 or lacks the axis). One invocation per output element.
//
// Keep `Params` in sync with `NdBinaryParams` in src/kernels/nd_binary.rs, and the op codes with
// `BinaryOp` in src/kernels/binary.rs.
struct Params {
    dims: array<vec4<u32>, 2>,       // output dims, outermost first; unused leading dims are 1
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
    count: u32,                      // output elements per item
    op: u32,                         // 0 add, 1 sub, 2 mul, 3 div, 4 prelu, 5 pow, 6 max, 7 min
    a_item: u32,                     // elements per item of a; 0 for a constant
    b_item: u32,
    rank: u32,                       // dims in use (the last `rank`; at least 1)
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn apply(op: u32, x: f32, y: f32) -> f32 {
    switch op {
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return x / y; }
        case 4u: { return select(x * y, x, x >= 0.0); }
        case 5u: {
            // pow of a negative base is defined for whole exponents.
            let m = pow(abs(x), y);
            let odd = abs(y - 2.0 * floor(y * 0.5)) == 1.0;
            return select(select(pow(x, y), select(m, -m, odd), y == floor(y)), m, x >= 0.0);
        }
        case 6u: { return max(x, y); }
        case 7u: { return min(x, y); }
        default: { return x + y; }
    }
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if i >= p.count {
        return;
    }
    var rest = i;
    var ia = 0u;
    var ib = 0u;
    // Only the dims in use, the outermost without a division (see nd_copy.wgsl).
    let outer = 8 - i32(max(p.rank, 1u));
    for (var k = 7; k > outer; k--) {
        let n = p.dims[k / 4][k % 4];
        let at = rest % n;
        rest = rest / n;
        ia += at * p.a_strides[k / 4][k % 4];
        ib += at * p.b_strides[k / 4][k % 4];
    }
    ia += rest * p.a_strides[outer / 4][outer % 4];
    ib += rest * p.b_strides[outer / 4][outer % 4];
    dst[gid.z * p.count + i] = apply(p.op, a[gid.z * p.a_item + ia], b[gid.z * p.b_item + ib]);
}
