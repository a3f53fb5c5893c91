// Batched matrix product with broadcasting over up to 4 batch dims: out[b, i, j] =
// alpha * sum_k A[b, i, k] B[b, k, j]. A and B are read through row and column strides, so a
// transposed operand (Gemm's transA / transB) costs nothing.
//
// Tiled: a workgroup of WX x WY invocations computes a tile of TM = RM WY rows by TN = RN WX
// columns, each invocation an RM x RN register block. Per step of KT along k the workgroup copies
// the TM x KT slice of A and the KT x TN slice of B into workgroup memory (zeros past the edges),
// then every invocation reads its 4 rows and 4 columns from there KT times: each value loaded
// from A or B serves TN or TM multiply-adds instead of one. `matmul::Tiling::source`
// (src/kernels/matmul.rs) sets WX, WY, RM and RN per shape (a skinny product gets a wide tile).
//
// Workgroups: x the column tiles, y the row tiles, z `z_groups` per batch item; a workgroup runs
// the batch entries z, z + z_groups, ... (flattened, the last batch dim innermost), and the tiles
// x, x + groups.x, ... (and so in y) where there are more tiles than a dispatch has workgroups.
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
    batches: u32,            // product of `batch`
    z_groups: u32,           // workgroups in z per item
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

const WX: u32 = 8u;
const WY: u32 = 8u;
const RM: u32 = 8u; // rows of an invocation's block, a multiple of 4
const RN: u32 = 8u; // columns, a multiple of 4
const TM: u32 = RM * WY;
const TN: u32 = RN * WX;
const KT: u32 = 16u;

// vec4s of 4 rows (of A) or 4 columns (of B), so an invocation reads 4 values a load.
var<workgroup> ta: array<vec4<f32>, TM / 4u * KT>; // [kk][row / 4]
var<workgroup> tb: array<vec4<f32>, TN / 4u * KT>; // [kk][column / 4]

// The offsets of batch entry `bi` of `item` in A and B.
fn bases(item: u32, bi: u32) -> vec2<u32> {
    var rest = bi;
    var at = vec2<u32>(item * p.a_item, item * p.b_item);
    for (var d = 3; d >= 0; d--) {
        let x = rest % p.batch[d];
        rest = rest / p.batch[d];
        at += x * vec2<u32>(p.a_batch[d], p.b_batch[d]);
    }
    return at;
}

// Row i, columns j0 .. j0 + 3 of the output, those inside it.
fn store4(base: u32, i: u32, j0: u32, v: vec4<f32>) {
    if i >= p.m {
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        if j0 + c < p.n {
            dst[base + i * p.n + j0 + c] = p.alpha * v[c];
        }
    }
}

// Copies the TM x KT slice of A at (i0, k0) and the KT x TN slice of B at (k0, j0) into `ta` and
// `tb`, zeros past the edges: each invocation every (WX WY)-th vec4, k fastest.
fn load_tiles(li: u32, at: vec2<u32>, i0: u32, j0: u32, k0: u32) {
    for (var e = li; e < TM / 4u * KT; e += WX * WY) {
        let k = k0 + e % KT;
        let i = i0 + e / KT * 4u;
        var v = vec4<f32>(0.0);
        if k < p.k {
            let o = at.x + k * p.a_col;
            for (var r = 0u; r < 4u; r++) {
                if i + r < p.m {
                    v[r] = a[o + (i + r) * p.a_row];
                }
            }
        }
        ta[(e % KT) * (TM / 4u) + e / KT] = v;
    }
    for (var e = li; e < TN / 4u * KT; e += WX * WY) {
        let k = k0 + e % KT;
        let j = j0 + e / KT * 4u;
        var v = vec4<f32>(0.0);
        if k < p.k {
            let o = at.y + k * p.b_row;
            for (var c = 0u; c < 4u; c++) {
                if j + c < p.n {
                    v[c] = b[o + (j + c) * p.b_col];
                }
            }
        }
        tb[(e % KT) * (TN / 4u) + e / KT] = v;
    }
}

@compute @workgroup_size(WX, WY, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let item = wid.z / p.z_groups;
    for (var bi = wid.z % p.z_groups; bi < p.batches; bi += p.z_groups) {
        for (var it = wid.y; it < (p.m + TM - 1u) / TM; it += groups.y) {
            for (var jt = wid.x; jt < (p.n + TN - 1u) / TN; jt += groups.x) {
                tile(lid, item, bi, it * TM, jt * TN);
            }
        }
    }
}

// The TM x TN tile at (i0, j0) of batch entry `bi` of `item`: the invocation's RM x RN block
// in acc[row][column / 4]. (`matmul::Tiling::source` generates this function unrolled, every
// accumulator a named variable: a private array indexed in a loop spills on llvmpipe.)
fn tile(lid: vec3<u32>, item: u32, bi: u32, i0: u32, j0: u32) {
    let at = bases(item, bi);
    var acc: array<array<vec4<f32>, RN / 4u>, RM>;
    for (var k0 = 0u; k0 < p.k; k0 += KT) {
        load_tiles(lid.y * WX + lid.x, at, i0, j0, k0);
        workgroupBarrier();
        for (var kk = 0u; kk < KT; kk++) {
            for (var r = 0u; r < RM; r++) {
                let av = ta[kk * (TM / 4u) + lid.y * (RM / 4u) + r / 4u][r % 4u];
                for (var h = 0u; h < RN / 4u; h++) {
                    acc[r][h] += av * tb[kk * (TN / 4u) + lid.x * (RN / 4u) + h];
                }
            }
        }
        workgroupBarrier();
    }
    let base = item * p.count + bi * p.m * p.n;
    for (var r = 0u; r < RM; r++) {
        for (var h = 0u; h < RN / 4u; h++) {
            store4(base, i0 + lid.y * RM + r, j0 + lid.x * RN + 4u * h, acc[r][h]);
        }
    }
}
