// Batched matrix product with broadcasting over up to 4 batch dims: out[b, i, j] =
// alpha * sum_k A[b, i, k] B[b, k, j]. A and B are read through row and column strides, so a
// transposed operand (Gemm's transA / transB) costs nothing. One invocation per output element.
//
// Keep `Params` in sync with `MatMulParams` in src/kernels/matmul.rs.
struct Params {
    batch: vec4<u32>,        // output batch dims, outermost first; unused are 1
    a_batch: vec4<u32>,      // A's stride per batch dim (0 where broadcast)
    b_batch: vec4<u32>,
    m: u32,
    k: u32,
    n: u32,
    count: u32,              // output elements per item
    a_row: u32,              // A's strides along i and k
    a_col: u32,
    b_row: u32,              // B's strides along k and j
    b_col: u32,
    a_item: u32,             // elements per item; 0 for a constant
    b_item: u32,
    alpha: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let o = gid.x + gid.y * groups.x * 256u;
    if o >= p.count {
        return;
    }
    let j = o % p.n;
    let i = (o / p.n) % p.m;
    var rest = o / (p.n * p.m);
    var ia = gid.z * p.a_item + i * p.a_row;
    var ib = gid.z * p.b_item + j * p.b_col;
    for (var d = 3; d >= 0; d--) {
        let at = rest % p.batch[d];
        rest = rest / p.batch[d];
        ia += at * p.a_batch[d];
        ib += at * p.b_batch[d];
    }
    var acc = 0.0;
    for (var k = 0u; k < p.k; k++) {
        acc += a[ia + k * p.a_col] * b[ib + k * p.b_row];
    }
    dst[gid.z * p.count + o] = p.alpha * acc;
}
