// Pad an NCHW tensor: channels (constant) and height/width (constant, edge or reflect), as ONNX Pad.
//
// Keep `Params` in sync with `PadParams` in src/kernels/pad.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    in_c: u32,
    in_h: u32,
    in_w: u32,
    out_c: u32,
    out_h: u32,
    out_w: u32,
    c_before: u32,
    top: u32,
    left: u32,
    mode: u32,   // 0 constant, 1 edge, 2 reflect
    value: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;

// Maps an output coordinate to the input along one axis; -1 means outside (constant mode).
fn source(o: i32, before: u32, len: u32) -> i32 {
    let n = i32(len);
    var i = o - i32(before);
    if i >= 0 && i < n {
        return i;
    }
    switch p.mode {
        case 1u: { return clamp(i, 0, n - 1); }
        case 2u: {
            if n == 1 {
                return 0;
            }
            let period = 2 * (n - 1);
            i = abs(i) % period;
            return select(i, period - i, i >= n);
        }
        default: { return -1; }
    }
}

@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    let oy = gid.y;
    if ox >= p.out_w || oy >= p.out_h {
        return;
    }
    let n = gid.z / p.out_c;
    let oc = gid.z % p.out_c;
    let c = i32(oc) - i32(p.c_before);
    let y = source(i32(oy), p.top, p.in_h);
    let x = source(i32(ox), p.left, p.in_w);
    var v = act(p.value);
    if c >= 0 && c < i32(p.in_c) && y >= 0 && x >= 0 {
        v = src[((n * p.in_c + u32(c)) * p.in_h + u32(y)) * p.in_w + u32(x)];
    }
    dst[((n * p.out_c + oc) * p.out_h + oy) * p.out_w + ox] = v;
}
