// Pack: RGBA pixels of many tiles -> one normalised float tensor [N, 3, H, W].
// `src` holds the tiles one after another: 8-bit pixels one u32 each (R in the low byte), or with
// `wide` set 16-bit pixels two u32 each (R | G << 16, B | A << 16).
// Each channel becomes `value * scale[c] + offset[c]` with value in 0..=255 (16-bit values are
// divided by 257, so 65535 is 255); with `bgr` set, channel 0 takes blue, so models trained on BGR
// input see BGR.
//
// Keep `Params` in sync with `PackParams` in src/kernels/pack.rs.
// The activation element type; the float16 variant of this shader swaps it for f16.
alias act = f32;

struct Params {
    pixels: u32,     // H * W, pixels per tile
    tiles: u32,
    bgr: u32,
    wide: u32,
    scale: vec4<f32>,
    offset: vec4<f32>,
    channels: u32,   // unpack's; 3 here
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<act>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let t = gid.z;
    if i >= p.pixels || t >= p.tiles {
        return;
    }
    var rgb: vec3<f32>;
    if p.wide != 0u {
        let rg = src[2u * (t * p.pixels + i)];
        let ba = src[2u * (t * p.pixels + i) + 1u];
        rgb = vec3<f32>(f32(rg & 0xffffu), f32(rg >> 16u), f32(ba & 0xffffu)) / 257.0;
    } else {
        let px = src[t * p.pixels + i];
        rgb = vec3<f32>(f32(px & 0xffu), f32((px >> 8u) & 0xffu), f32((px >> 16u) & 0xffu));
    }
    if p.bgr != 0u {
        rgb = rgb.zyx;
    }
    let v = rgb * p.scale.xyz + p.offset.xyz;
    let base = t * 3u * p.pixels + i;
    dst[base] = act(v.x);
    dst[base + p.pixels] = act(v.y);
    dst[base + 2u * p.pixels] = act(v.z);
}
