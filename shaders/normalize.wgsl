// Normalisation of rows: y = (x - mean) / sqrt(var + eps) * scale + bias, mean and variance over
// each row of `len` contiguous elements. InstanceNormalization: a row per (n, c), scale and bias
// per channel. LayerNormalization: a row per leading index, scale and bias per element of the row.
// One invocation per row, two passes (mean, then variance) for accuracy.
//
// Keep `Params` in sync with `NormParams` in src/kernels/normalize.rs.
struct Params {
    rows: u32,       // rows per item
    len: u32,
    channels: u32,   // per-channel mode: scale index = row % channels
    per_element: u32,// 1: scale index = position in the row
    eps: f32,
    bias_at: u32,    // offset of the bias in `affine`
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> affine: array<f32>;   // scale, then bias
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = gid.x + gid.y * groups.x * 256u;
    if row >= p.rows {
        return;
    }
    let base = (gid.z * p.rows + row) * p.len;
    var sum = 0.0;
    for (var j = 0u; j < p.len; j++) {
        sum += src[base + j];
    }
    let mean = sum / f32(p.len);
    var sq = 0.0;
    for (var j = 0u; j < p.len; j++) {
        let d = src[base + j] - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(sq / f32(p.len) + p.eps);
    for (var j = 0u; j < p.len; j++) {
        let s = select(row % p.channels, j, p.per_element == 1u);
        dst[base + j] = (src[base + j] - mean) * inv * affine[s] + affine[p.bias_at + s];
    }
}
