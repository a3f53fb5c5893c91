// A product by a constant matrix for items of one q each (a 1x1 convolution on a 1x1 map: a
// classifier's head; a Gemm of one row an item): out[n, oc] = bias[oc] + sum_ic W[oc, ic] x[n, ic],
// with gemm.wgsl's fused activation and residual. gemm.wgsl runs q across a workgroup's
// invocations and a channel block per workgroup, one dispatch per 64 KiB weight window: for a
// head on 8 items that leaves one busy invocation in each of ~100 dispatches. Here one dispatch
// covers every channel and input channel: each invocation computes 4 output channels (a vec4 of
// weights, adjacent invocations adjacent vec4s) of ROWS items, reading the weights from gemm's own
// packed buffer bound as storage (no second copy): per channel block and input-channel chunk,
// `offsets` gives where the chunk's [ic][OC_BLOCK] weights start.
//
// Keep `Params` in sync with `GemvParams` in src/kernels/gemv.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

const ROWS: u32 = 8u; // items an invocation; keep in sync with gemv::ROWS

struct Params {
    rows: u32,       // items the bound buffers hold (the dispatch covers the batch's)
    in_cs: u32,      // x's stride along input channels
    in_item: u32,    // x's elements per item
    out_cs: u32,     // out's (and the residual's) stride along output channels
    out_item: u32,
    in_c: u32,
    out_c: u32,
    oc_block: u32,   // gemm's channel block (a multiple of 4)
    chunk: u32,      // input channels per chunk of gemm's packing
    chunks: u32,     // chunks per block
    activation: u32, // as gemm.wgsl: 0 none, 1 leaky relu, 2 clip, 3 prelu, 4 hard swish
    alpha: f32,
    beta: f32,
    residual: u32,   // 0 none, 1 add `skip` then activate, 2 activate then add
    slope_base: u32, // where the PRelu slopes start in `bias_slope`, in vec4s
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>; // [block][chunk], in vec4s
@group(0) @binding(3) var<uniform> bias_slope: array<vec4<f32>, 4096>; // bias, then PRelu slopes
@group(0) @binding(4) var<storage, read> src: array<act>;
@group(0) @binding(5) var<storage, read_write> dst: array<act>;
@group(0) @binding(6) var<storage, read> skip: array<act>;

fn x_at(n: u32, ic: u32) -> act {
    return src[min(n, p.rows - 1u) * p.in_item + ic * p.in_cs];
}

// Writes channels oc .. oc + 3 of item n: the residual and the activation applied.
fn store(n: u32, oc: u32, acc: vec4<act>) {
    if n >= p.rows {
        return;
    }
    var at = vec4<u32>(0u);
    for (var i = 0u; i < 4u; i++) {
        at[i] = n * p.out_item + min(oc + i, p.out_c - 1u) * p.out_cs;
    }
    var v = acc;
    if p.residual == 1u {
        v += vec4<act>(skip[at.x], skip[at.y], skip[at.z], skip[at.w]);
    }
    switch p.activation {
        case 1u: { v = select(v * act(p.alpha), v, v >= vec4<act>(0.0)); }
        case 2u: { v = clamp(v, vec4<act>(act(p.alpha)), vec4<act>(act(p.beta))); }
        case 3u: {
            let s = vec4<act>(bias_slope[p.slope_base + oc / 4u]);
            v = select(v * s, v, v >= vec4<act>(0.0));
        }
        case 4u: { v = v * clamp(v / act(6.0) + act(0.5), vec4<act>(0.0), vec4<act>(1.0)); }
        default: {}
    }
    if p.residual == 2u {
        v += vec4<act>(skip[at.x], skip[at.y], skip[at.z], skip[at.w]);
    }
    for (var i = 0u; i < 4u; i++) {
        if oc + i < p.out_c {
            dst[at[i]] = v[i];
        }
    }
}

// x: groups of ROWS items (the items folded into x); y: 64 output channel quads a workgroup.
// The items come from the workgroup's id, so that the compiler knows x's loads are the same for
// every invocation (one load, not one per lane, on llvmpipe).
@compute @workgroup_size(1, 64, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let oc = gid.y * 4u;
    if oc >= p.out_c {
        return;
    }
    let n0 = wid.x * ROWS;
    let block = oc / p.oc_block;
    let lane = (oc % p.oc_block) / 4u;
    let quads = p.oc_block / 4u;
    let b = vec4<act>(bias_slope[oc / 4u]);
    var a0 = b;
    var a1 = b;
    var a2 = b;
    var a3 = b;
    var a4 = b;
    var a5 = b;
    var a6 = b;
    var a7 = b;
    for (var c = 0u; c < p.chunks; c++) {
        let ic0 = c * p.chunk;
        let count = min(p.chunk, p.in_c - ic0);
        let w0 = offsets[block * p.chunks + c] + lane;
        for (var i = 0u; i < count; i++) {
            let w = vec4<act>(weights[w0 + i * quads]);
            let ic = ic0 + i;
            a0 += x_at(n0, ic) * w;
            a1 += x_at(n0 + 1u, ic) * w;
            a2 += x_at(n0 + 2u, ic) * w;
            a3 += x_at(n0 + 3u, ic) * w;
            a4 += x_at(n0 + 4u, ic) * w;
            a5 += x_at(n0 + 5u, ic) * w;
            a6 += x_at(n0 + 6u, ic) * w;
            a7 += x_at(n0 + 7u, ic) * w;
        }
    }
    store(n0, oc, a0);
    store(n0 + 1u, oc, a1);
    store(n0 + 2u, oc, a2);
    store(n0 + 3u, oc, a3);
    store(n0 + 4u, oc, a4);
    store(n0 + 5u, oc, a5);
    store(n0 + 6u, oc, a6);
    store(n0 + 7u, oc, a7);
}

// The CPU adapter's order (lavapipe): an invocation is one item, a workgroup 8 items and one
// channel block of 16 to 32 channels (4 to 8 quads), so each input value, loaded per lane,
// serves the block's channels. The weights' addresses are the same for a workgroup's
// invocations, but llvmpipe (Mesa 22.3) still loads a storage value lane by lane; 2.2-2.4x
// `main` there all the same (BENCHMARKS.md, "The classifier head on lavapipe").
@compute @workgroup_size(8, 1, 1)
fn items(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = gid.x;
    let block = wid.y;
    let oc0 = block * p.oc_block;
    let quads = p.oc_block / 4u;
    let b0 = oc0 / 4u;
    var a0 = vec4<act>(bias_slope[b0]);
    var a1 = vec4<act>(bias_slope[b0 + 1u]);
    var a2 = vec4<act>(bias_slope[b0 + 2u]);
    var a3 = vec4<act>(bias_slope[b0 + 3u]);
    var a4 = vec4<act>(bias_slope[b0 + 4u]);
    var a5 = vec4<act>(bias_slope[b0 + 5u]);
    var a6 = vec4<act>(bias_slope[b0 + 6u]);
    var a7 = vec4<act>(bias_slope[b0 + 7u]);
    for (var c = 0u; c < p.chunks; c++) {
        let ic0 = c * p.chunk;
        let count = min(p.chunk, p.in_c - ic0);
        let w0 = offsets[block * p.chunks + c];
        for (var i = 0u; i < count; i++) {
            let x = x_at(n, ic0 + i);
            let w = w0 + i * quads;
            a0 += x * vec4<act>(weights[w]);
            a1 += x * vec4<act>(weights[w + 1u]);
            a2 += x * vec4<act>(weights[w + 2u]);
            a3 += x * vec4<act>(weights[w + 3u]);
            // Uniform branches: a block of 20-28 channels loads no weights past its own.
            if quads > 4u {
                a4 += x * vec4<act>(weights[w + 4u]);
            }
            if quads > 5u {
                a5 += x * vec4<act>(weights[w + 5u]);
            }
            if quads > 6u {
                a6 += x * vec4<act>(weights[w + 6u]);
            }
            if quads > 7u {
                a7 += x * vec4<act>(weights[w + 7u]);
            }
        }
    }
    store(n, oc0, a0);
    store(n, oc0 + 4u, a1);
    store(n, oc0 + 8u, a2);
    store(n, oc0 + 12u, a3);
    if quads > 4u {
        store(n, oc0 + 16u, a4);
    }
    if quads > 5u {
        store(n, oc0 + 20u, a5);
    }
    if quads > 6u {
        store(n, oc0 + 24u, a6);
    }
    if quads > 7u {
        store(n, oc0 + 28u, a7);
    }
}
