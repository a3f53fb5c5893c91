// 2-D convolution, NCHW float32, with bias, padding, stride, dilation, groups and a fused activation.
//
// Register-blocked: one invocation computes ROWS output rows of one output column for a block of 16
// output channels (4 vec4 accumulators per row). For each input channel and kernel column it loads
// the input column once and reuses every value across the kernel rows, the output rows and the 16
// channels. Weights come from a uniform buffer: every invocation of a dispatch reads the same
// weights, which a uniform load broadcasts (on llvmpipe a storage load is a per-lane loop).
//
// One dispatch covers one block of 16 output channels and one chunk of input channels (a chunk's
// weights fit the 64 KiB uniform window); `Params` and the weights are bound with dynamic offsets.
// The first chunk starts from the bias, later chunks add to what `dst` holds, and the last adds a
// fused residual (a following Add) and applies the activation. K_H, STRIDE_H and DIL_H are pipeline constants so the row loops unroll.
//
// Keep `Params` in sync with `Conv2dParams` in src/kernels/conv2d.rs and the weight layout with
// `pack_weights` there: per (block, chunk) [ic in chunk][ky][kx][16 channels].
// Layers with at most 8 output channels a group run a `main` generated over these declarations
// instead (src/kernels/conv2d_narrow.rs): 4- or 8-channel blocks of several output pixels, the
// weights packed [ic in chunk][ky][kx][4 or 8 channels].
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

override K_H: u32 = 3u;
override STRIDE_H: u32 = 1u;
override DIL_H: u32 = 1u;
// A fused nearest upsample (`LayerOp::Conv2dUpsampled`): in_h x in_w is the upsampled input the
// kernel convolves; `src` holds it UP_H x UP_W times smaller, pixel (y, x) at (y / UP_H, x / UP_W).
override UP_H: u32 = 1u;
override UP_W: u32 = 1u;
// Invocations of a workgroup along y (blocks of output rows): 1 on a CPU's Vulkan; 2 on a GPU, so
// that a workgroup of 16 columns fills a 32-wide SIMD group (src/kernels/conv2d.rs,
// `group_rows_for`).
override WG_Y: u32 = 1u;

const ROWS: u32 = 8u;
const MAX_COL: u32 = 64u;

struct Params {
    in_c: u32,        // channels an item of `src` holds (more than the convolution reads where its
                      // input is a channel slice of a larger value: an in-place Concat)
    in_h: u32,
    in_w: u32,
    out_c: u32,       // channels an item of `dst` holds (more where the output is a slice)
    out_h: u32,
    out_w: u32,
    k_w: u32,
    stride_w: u32,
    dil_w: u32,
    pad_top: u32,
    pad_left: u32,
    ic_base: u32,     // first input channel of this chunk
    ic_count: u32,    // input channels in this chunk
    oc_base: u32,     // first output channel of this block (in dst: a slice's offset added)
    oc_end: u32,      // one past the last output channel of this block's group (likewise)
    first: u32,       // 1: start from the bias; 0: add to dst
    last: u32,        // 1: apply the activation
    activation: u32,  // 0 none, 1 leaky relu (alpha; relu is alpha 0), 2 clip(alpha, beta), 3 prelu, 4 hard swish
    alpha: f32,
    beta: f32,
    residual: u32,    // after the last chunk: 0 none, 1 add `skip` then activate, 2 activate then add
    bias: array<vec4<f32>, 4>,
    slope: array<vec4<f32>, 4>,  // prelu slopes of the block's 16 channels
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> weights: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<storage, read> src: array<act>;
@group(0) @binding(3) var<storage, read_write> dst: array<act>;
@group(0) @binding(4) var<storage, read> skip: array<act>;  // the residual (a fused Add)

// The activation of channels oc_base + 4 * group .. + 3.
fn activate(v: vec4<act>, group: u32) -> vec4<act> {
    switch p.activation {
        case 1u: { return select(v * act(p.alpha), v, v >= vec4<act>(0.0)); }
        case 2u: { return clamp(v, vec4<act>(act(p.alpha)), vec4<act>(act(p.beta))); }
        case 3u: { return select(v * vec4<act>(p.slope[group]), v, v >= vec4<act>(0.0)); }
        case 4u: { return v * clamp(v / act(6.0) + act(0.5), vec4<act>(0.0), vec4<act>(1.0)); }
        default: { return v; }
    }
}

// The accumulator of output row `oy`, channels oc_base + 4v .. + 3, as dst holds it.
fn load_acc(n: u32, oy: u32, ox: u32, v: u32) -> vec4<act> {
    var a = vec4<act>(0.0);
    for (var c = 0u; c < 4u; c++) {
        let oc = p.oc_base + v * 4u + c;
        if oc < p.oc_end {
            a[c] = dst[((n * p.out_c + oc) * p.out_h + oy) * p.out_w + ox];
        }
    }
    return a;
}

// The residual at output row `oy`, channels oc_base + 4v .. + 3.
fn load_skip(n: u32, oy: u32, ox: u32, v: u32) -> vec4<act> {
    var a = vec4<act>(0.0);
    for (var c = 0u; c < 4u; c++) {
        let oc = p.oc_base + v * 4u + c;
        if oc < p.oc_end {
            a[c] = skip[((n * p.out_c + oc) * p.out_h + oy) * p.out_w + ox];
        }
    }
    return a;
}

// Writes an accumulator; after the last chunk, adds the residual and applies the activation.
fn store_acc(n: u32, oy: u32, ox: u32, v: u32, acc: vec4<act>) {
    var out = acc;
    if p.last != 0u {
        if p.residual == 1u {
            out += load_skip(n, oy, ox, v);
        }
        out = activate(out, v);
        if p.residual == 2u {
            out += load_skip(n, oy, ox, v);
        }
    }
    for (var c = 0u; c < 4u; c++) {
        let oc = p.oc_base + v * 4u + c;
        if oc < p.oc_end {
            dst[((n * p.out_c + oc) * p.out_h + oy) * p.out_w + ox] = out[c];
        }
    }
}

@compute @workgroup_size(16, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    if ox >= p.out_w {
        return;
    }
    let oy0 = gid.y * ROWS;
    let n = gid.z;

    var acc: array<vec4<act>, 32>; // ROWS * 4
    for (var r = 0u; r < ROWS; r++) {
        let oy = min(oy0 + r, p.out_h - 1u);
        for (var v = 0u; v < 4u; v++) {
            if p.first != 0u {
                acc[r * 4u + v] = vec4<act>(p.bias[v]);
            } else {
                acc[r * 4u + v] = load_acc(n, oy, ox, v);
            }
        }
    }

    let col_len = (ROWS - 1u) * STRIDE_H + (K_H - 1u) * DIL_H + 1u;
    let ix0 = i32(ox * p.stride_w) - i32(p.pad_left);
    let iy0 = i32(oy0 * STRIDE_H) - i32(p.pad_top);
    let src_w = p.in_w / UP_W;
    let in_plane = (p.in_h / UP_H) * src_w;
    var col: array<act, MAX_COL>;
    for (var ic = 0u; ic < p.ic_count; ic++) {
        let plane = (n * p.in_c + p.ic_base + ic) * in_plane;
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix = ix0 + i32(kx * p.dil_w);
            if ix < 0 || ix >= i32(p.in_w) {
                continue;
            }
            for (var j = 0u; j < col_len; j++) {
                let iy = iy0 + i32(j);
                let inside = iy >= 0 && iy < i32(p.in_h);
                let y = u32(clamp(iy, 0, i32(p.in_h) - 1));
                col[j] = select(act(0.0), src[plane + y / UP_H * src_w + u32(ix) / UP_W], inside);
            }
            for (var ky = 0u; ky < K_H; ky++) {
                let wi = ((ic * K_H + ky) * p.k_w + kx) * 4u;
                let w0 = vec4<act>(weights[wi]);
                let w1 = vec4<act>(weights[wi + 1u]);
                let w2 = vec4<act>(weights[wi + 2u]);
                let w3 = vec4<act>(weights[wi + 3u]);
                for (var r = 0u; r < ROWS; r++) {
                    let x = col[r * STRIDE_H + ky * DIL_H];
                    acc[r * 4u] += x * w0;
                    acc[r * 4u + 1u] += x * w1;
                    acc[r * 4u + 2u] += x * w2;
                    acc[r * 4u + 3u] += x * w3;
                }
            }
        }
    }

    for (var r = 0u; r < ROWS; r++) {
        let oy = oy0 + r;
        if oy >= p.out_h {
            break;
        }
        for (var v = 0u; v < 4u; v++) {
            store_acc(n, oy, ox, v, acc[r * 4u + v]);
        }
    }
}
