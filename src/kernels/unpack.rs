//! Unpack (`shaders/unpack.wgsl`): float tensor `[N, 3, H, W]` -> clamped 8-bit or 16-bit RGBA
//! pixels.

use super::pack::{PackParams, PixelDepth, PixelMapping};
use super::{Bind, Step};

const WORKGROUP_X: u32 = 64;

/// The mapping back to 8 bits: the inverse of a model's input mapping, `v * 255` for [0, 1].
pub fn inverse(map: &PixelMapping) -> PixelMapping {
    let scale = map.scale.map(|s| 1.0 / s);
    let offset = [0, 1, 2].map(|c| -map.offset[c] / map.scale[c]);
    PixelMapping {
        scale,
        offset,
        bgr: map.bgr,
    }
}

/// Converts one float to a byte exactly as the shader does (round half to even, clamp).
pub fn to_byte(v: f32, scale: f32, offset: f32) -> u32 {
    (v * scale + offset).round_ties_even().clamp(0.0, 255.0) as u32
}

/// Converts one float to a 16-bit value exactly as the shader does (the byte value times 257,
/// rounded half to even, clamped).
pub fn to_word(v: f32, scale: f32, offset: f32) -> u32 {
    ((v * scale + offset) * 257.0)
        .round_ties_even()
        .clamp(0.0, 65535.0) as u32
}

/// CPU reference: `[N, 3, pixels]` -> RGBA pixels of `depth`, alpha opaque. `map` is the output
/// mapping (see [`inverse`]).
pub fn reference(src: &[f32], pixels: usize, map: &PixelMapping, depth: PixelDepth) -> Vec<u32> {
    let tiles = src.len() / (3 * pixels);
    let mut out = Vec::with_capacity(tiles * pixels * depth.words());
    for t in 0..tiles {
        for i in 0..pixels {
            let mut v = [0, 1, 2].map(|c| src[(t * 3 + c) * pixels + i]);
            if map.bgr {
                v.reverse();
            }
            match depth {
                PixelDepth::Eight => {
                    let b = [0, 1, 2].map(|c| to_byte(v[c], map.scale[c], map.offset[c]));
                    out.push(b[0] | (b[1] << 8) | (b[2] << 16) | (255 << 24));
                }
                PixelDepth::Sixteen => {
                    let w = [0, 1, 2].map(|c| to_word(v[c], map.scale[c], map.offset[c]));
                    out.extend([w[0] | (w[1] << 16), w[2] | (65535 << 16)]);
                }
            }
        }
    }
    out
}

/// Binds `src` (f32 tensor) and `dst` (pixels of `depth`). `map` is the output mapping.
pub fn prepare(
    cx: Bind,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    pixels: u32,
    max_tiles: u32,
    map: &PixelMapping,
    depth: PixelDepth,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.unpack;
    let params = PackParams::new(pixels, max_tiles, map, depth);
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        [pixels.div_ceil(WORKGROUP_X), 1],
        1,
    )
}
