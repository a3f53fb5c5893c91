// Unpack: float tensor [N, C, H, W] -> clamped RGBA pixels: 8-bit, one u32 per pixel, or with
// `wide` set 16-bit, two u32 per pixel (R | G << 16, B | A << 16).
// C is 3 (RGB, alpha opaque), 1 (grey: R = G = B, alpha opaque) or 4 (RGBA: channel 3 is alpha).
// Each channel becomes round(clamp(value * scale[c] + offset[c], 0, 255)) (16-bit: the same value
// times 257, in 0..=65535); a grey channel maps as channel 0; with `bgr` set, channel 0 is blue.
//
// Keep `Params` in sync with `PackParams` in src/kernels/pack.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    pixels: u32,
    tiles: u32,
    bgr: u32,
    wide: u32,
    scale: vec4<f32>,
    offset: vec4<f32>,
    channels: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let t = gid.z;
    if i >= p.pixels || t >= p.tiles {
        return;
    }
    let base = t * p.channels * p.pixels + i;
    var x: vec4<f32>;
    if p.channels == 1u {
        x = vec4<f32>(f32(src[base]) * p.scale.x + p.offset.x);
    } else {
        var v = vec3<f32>(f32(src[base]), f32(src[base + p.pixels]), f32(src[base + 2u * p.pixels]));
        if p.bgr != 0u {
            v = v.zyx;
        }
        var a = 0.0;
        if p.channels == 4u {
            a = f32(src[base + 3u * p.pixels]);
        }
        x = vec4<f32>(v, a) * p.scale + p.offset;
    }
    let opaque = p.channels != 4u;
    if p.wide != 0u {
        var u = vec4<u32>(clamp(round(x * 257.0), vec4<f32>(0.0), vec4<f32>(65535.0)));
        if opaque {
            u.w = 65535u;
        }
        dst[2u * (t * p.pixels + i)] = u.x | (u.y << 16u);
        dst[2u * (t * p.pixels + i) + 1u] = u.z | (u.w << 16u);
    } else {
        var u = vec4<u32>(clamp(round(x), vec4<f32>(0.0), vec4<f32>(255.0)));
        if opaque {
            u.w = 255u;
        }
        dst[t * p.pixels + i] = u.x | (u.y << 8u) | (u.z << 16u) | (u.w << 24u);
    }
}
