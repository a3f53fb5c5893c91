// A product by a constant matrix, per batch item: out[oc, q] = bias[oc] + sum_ic W[oc, ic] x[ic, q],
// with a fused activation (ReLU / LeakyReLU / Clip / PRelu) and residual Add. A 1x1 convolution is
// this product with x the NCHW input (q its pixels); Gemm and MatMul by a constant B are too (q the
// rows of A, oc the columns of B). x, out and the residual are read through strides, so both
// layouts (and a transposed A) are the one kernel. Where an item has few q (a 1x1 convolution
// over a 7x7 or 1x1 map: a classifier's head), the items are folded into q: one dispatch row
// runs q_item x items q, so the invocations of a workgroup are not left idle.
//
// Register-blocked: one invocation computes OC_BLOCK output channels of PIX consecutive q. For
// each input channel it loads its PIX values of x once and multiplies them by OC_BLOCK weights.
// The weights sit in a window bound with a dynamic offset: every invocation of a workgroup reads
// the same weight (the channel block is the workgroup's y), which llvmpipe loads once and
// broadcasts (a load whose address differs per lane is a loop over the lanes). The window holds
// one input-channel chunk of one or more channel blocks; one dispatch per window: the first chunk
// starts from the bias, later ones add to what `dst` holds, the last adds the residual and applies
// the activation. Declared here as a 64 KiB uniform window (the split Winograd's products);
// 1x1 convolutions run the variant with the whole matrix one storage binding (`gemm::Weights`),
// so one dispatch covers every block and input channel.
//
// `gemm::Blocking::source` (src/kernels/gemm.rs) generates the `main` that runs, with every
// accumulator a named variable (a private array indexed in a loop spills on llvmpipe); the loop
// `main` here is the same computation, kept for reading and validation.
//
// Keep `Params` in sync with `GemmParams` in src/kernels/gemm.rs and the weight layout with
// `pack` there: per window [block][ic in chunk][OC_BLOCK channels].
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

const OC_BLOCK: u32 = 16u;
const PIX: u32 = 4u; // the loop main keeps one vec4 of q

struct Params {
    q_count: u32,    // q a dispatch covers: q_item, or (items folded into q) q_item x items
    q_item: u32,     // q per item (pixels of a 1x1 convolution, rows of a matrix product)
    in_cs: u32,      // x's stride along input channels
    in_qs: u32,      // x's stride along q
    in_item: u32,    // x's elements per item
    out_cs: u32,     // out's stride along output channels (the residual's too)
    out_qs: u32,
    out_item: u32,
    out_c: u32,
    ic_base: u32,    // first input channel of this dispatch's chunk
    ic_count: u32,
    oc_base: u32,    // first output channel of this dispatch's first block
    first: u32,      // 1: start from the bias; 0: add to dst
    last: u32,       // 1: apply the residual and the activation
    activation: u32, // 0 none, 1 leaky relu (alpha; relu is alpha 0), 2 clip(alpha, beta), 3 prelu, 4 hard swish
    alpha: f32,
    beta: f32,
    residual: u32,   // after the last chunk: 0 none, 1 add `skip` then activate, 2 activate then add
    slope_base: u32, // where the PRelu slopes start in `bias_slope`, in vec4s
    skip_item: u32,  // the residual's elements an item (laid out as out)
    skip_c: u32,     // the residual's channels: those past them read 0 (a fused channel Pad)
    block_stride: u32, // vec4s from one channel block's weights to the next's (256-byte aligned)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> weights: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<uniform> bias_slope: array<vec4<f32>, 4096>; // bias, then PRelu slopes
@group(0) @binding(3) var<storage, read> src: array<act>;
@group(0) @binding(4) var<storage, read_write> dst: array<act>;
@group(0) @binding(5) var<storage, read> skip: array<act>; // the residual (a fused Add)

fn activate(v: vec4<act>, oc: u32) -> vec4<act> {
    switch p.activation {
        case 1u: { return select(v * act(p.alpha), v, v >= vec4<act>(0.0)); }
        case 2u: { return clamp(v, vec4<act>(act(p.alpha)), vec4<act>(act(p.beta))); }
        case 3u: {
            let s = act(bias_slope[p.slope_base + oc / 4u][oc % 4u]);
            return select(v * s, v, v >= vec4<act>(0.0));
        }
        case 4u: { return v * clamp(v / act(6.0) + act(0.5), vec4<act>(0.0), vec4<act>(1.0)); }
        default: { return v; }
    }
}

// The bias of channels oc .. oc + 3 (oc a multiple of 4), or zero after the first chunk.
fn start(oc: u32) -> vec4<act> {
    return select(vec4<act>(0.0), vec4<act>(bias_slope[oc / 4u]), p.first != 0u);
}

// Where q (clamped to the dispatch's last) of the z-th item lies in a tensor of `item` elements
// an item and stride `qs` along q: q counts on into the items after it where items are folded.
fn q_at(z: u32, q: u32, item: u32, qs: u32) -> u32 {
    let c = min(q, p.q_count - 1u);
    return (z + c / p.q_item) * item + (c % p.q_item) * qs;
}

// Where q0 .. q0 + 3 of item `n` lie in a tensor of `item` elements an item laid out as out
// (before the channel's offset): computed once an invocation, not per channel (an integer
// division is a per-lane loop on llvmpipe).
fn positions(n: u32, q0: u32, item: u32) -> vec4<u32> {
    return vec4<u32>(
        q_at(n, q0, item, p.out_qs),
        q_at(n, q0 + 1u, item, p.out_qs),
        q_at(n, q0 + 2u, item, p.out_qs),
        q_at(n, q0 + 3u, item, p.out_qs),
    );
}

// In out, and in the residual (`skip_item` elements an item).
fn out_at(n: u32, q0: u32) -> vec4<u32> {
    return positions(n, q0, p.out_item);
}

fn skip_at(n: u32, q0: u32) -> vec4<u32> {
    return positions(n, q0, p.skip_item);
}

// The residual of channel `oc` at `ks` (from `skip_at`), 0 past its channels.
fn skip4(oc: u32, ks: vec4<u32>) -> vec4<act> {
    if oc >= p.skip_c {
        return vec4<act>(0.0);
    }
    let at = ks + vec4<u32>(oc * p.out_cs);
    return vec4<act>(skip[at.x], skip[at.y], skip[at.z], skip[at.w]);
}

// Writes channel `oc` at q0 .. q0 + 3 (at `qs` in out, from `out_at`; `ks` in the residual):
// adds what dst holds after the first chunk, the residual and the activation after the last.
fn store4(oc: u32, q0: u32, qs: vec4<u32>, ks: vec4<u32>, acc: vec4<act>) {
    if oc >= p.out_c {
        return;
    }
    let at = qs + vec4<u32>(oc * p.out_cs);
    var v = acc;
    if p.first == 0u {
        v += vec4<act>(dst[at.x], dst[at.y], dst[at.z], dst[at.w]);
    }
    if p.last != 0u {
        if p.residual == 1u {
            v += skip4(oc, ks);
        }
        v = activate(v, oc);
        if p.residual == 2u {
            v += skip4(oc, ks);
        }
    }
    for (var i = 0u; i < 4u; i++) {
        if q0 + i < p.q_count {
            dst[at[i]] = v[i];
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let q0 = gid.x * PIX;
    let n = gid.z;
    let oc0 = p.oc_base + wid.y * OC_BLOCK;
    var acc: array<vec4<act>, 16>; // [channel][PIX / 4]
    for (var o = 0u; o < OC_BLOCK; o++) {
        acc[o] = vec4<act>(start(oc0 + o / 4u * 4u)[o % 4u]);
    }
    var qs: vec4<u32>;
    for (var i = 0u; i < PIX; i++) {
        qs[i] = q_at(n, q0 + i, p.in_item, p.in_qs);
    }
    let x0 = p.ic_base * p.in_cs;
    let w0 = wid.y * p.block_stride;
    for (var ic = 0u; ic < p.ic_count; ic++) {
        let row = x0 + ic * p.in_cs;
        let x = vec4<act>(src[row + qs.x], src[row + qs.y], src[row + qs.z], src[row + qs.w]);
        for (var o = 0u; o < OC_BLOCK; o++) {
            acc[o] += x * act(weights[w0 + ic * (OC_BLOCK / 4u) + o / 4u][o % 4u]);
        }
    }
    let out_qs = out_at(n, q0);
    let skip_qs = skip_at(n, q0);
    for (var o = 0u; o < OC_BLOCK; o++) {
        store4(oc0 + o, q0, out_qs, skip_qs, acc[o]);
    }
}
