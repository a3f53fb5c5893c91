// Softmax, LogSoftmax and Hardmax along one axis of a tensor seen as [outer, len, inner].
// One invocation per (outer, inner) row.
//
// Keep `Params` in sync with `SoftmaxParams` in src/kernels/softmax.rs.
struct Params {
    outer: u32,
    len: u32,
    inner: u32,
    kind: u32,  // 0 softmax, 1 log softmax, 2 hardmax (1 at the first maximum)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = gid.x + gid.y * groups.x * 256u;
    if row >= p.outer * p.inner {
        return;
    }
    let base = gid.z * p.outer * p.len * p.inner + (row / p.inner) * p.len * p.inner + row % p.inner;
    var m = src[base];
    var arg = 0u;
    for (var j = 1u; j < p.len; j++) {
        let x = src[base + j * p.inner];
        if x > m {
            m = x;
            arg = j;
        }
    }
    if p.kind == 2u {
        for (var j = 0u; j < p.len; j++) {
            dst[base + j * p.inner] = select(0.0, 1.0, j == arg);
        }
        return;
    }
    var sum = 0.0;
    for (var j = 0u; j < p.len; j++) {
        sum += exp(src[base + j * p.inner] - m);
    }
    let log_sum = log(sum);
    for (var j = 0u; j < p.len; j++) {
        let x = src[base + j * p.inner] - m;
        dst[base + j * p.inner] = select(exp(x) / sum, x - log_sum, p.kind == 1u);
    }
}
