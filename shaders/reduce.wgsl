// Reductions over any set of axes of a tensor of up to 8 dimensions (ReduceMean, ReduceSum, ...).
// One invocation per output element: it walks the reduced axes of its slice.
//
// Keep `Params` in sync with `ReduceParams` in src/kernels/reduce.rs.
struct Params {
    kept: array<vec4<u32>, 2>,          // output dims (the kept axes), outermost first
    kept_strides: array<vec4<u32>, 2>,  // their strides in the input
    reduced: array<vec4<u32>, 2>,       // the reduced axes
    reduced_strides: array<vec4<u32>, 2>,
    count: u32,                         // output elements per item
    reduced_count: u32,                 // elements reduced into each output
    op: u32,  // 0 sum, 1 mean, 2 max, 3 min, 4 prod, 5 sum of squares, 6 l1, 7 l2, 8 log sum, 9 log sum exp
    src_item: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn offset_of(r: u32) -> u32 {
    var rest = r;
    var o = 0u;
    for (var k = 7; k >= 0; k--) {
        let n = p.reduced[k / 4][k % 4];
        o += (rest % n) * p.reduced_strides[k / 4][k % 4];
        rest = rest / n;
    }
    return o;
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if i >= p.count {
        return;
    }
    var rest = i;
    var base = gid.z * p.src_item;
    for (var k = 7; k >= 0; k--) {
        let n = p.kept[k / 4][k % 4];
        base += (rest % n) * p.kept_strides[k / 4][k % 4];
        rest = rest / n;
    }
    var acc: f32;
    switch p.op {
        case 2u, 9u: { acc = -3.40282347e38; }
        case 3u: { acc = 3.40282347e38; }
        case 4u: { acc = 1.0; }
        default: { acc = 0.0; }
    }
    for (var r = 0u; r < p.reduced_count; r++) {
        let x = src[base + offset_of(r)];
        switch p.op {
            case 2u, 9u: { acc = max(acc, x); }
            case 3u: { acc = min(acc, x); }
            case 4u: { acc *= x; }
            case 5u, 7u: { acc += x * x; }
            case 6u: { acc += abs(x); }
            default: { acc += x; }
        }
    }
    if p.op == 9u {
        // log(sum(exp(x - max))) + max, for range.
        let m = acc;
        acc = 0.0;
        for (var r = 0u; r < p.reduced_count; r++) {
            acc += exp(src[base + offset_of(r)] - m);
        }
        acc = log(acc) + m;
    }
    switch p.op {
        case 1u: { acc /= f32(p.reduced_count); }
        case 7u: { acc = sqrt(acc); }
        case 8u: { acc = log(acc); }
        default: {}
    }
    dst[gid.z * p.count + i] = acc;
}
