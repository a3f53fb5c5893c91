//! Unpack (`shaders/unpack.wgsl`): float tensor `[N, C, H, W]` -> clamped 8-bit or 16-bit RGBA
//! pixels; C is 3 (RGB), 1 (grey, written into R, G and B) or 4 (RGBA).

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

/// CPU reference: `[N, channels, pixels]` -> RGBA pixels of `depth`: `channels` 3 (alpha
/// opaque), 1 (grey in R, G and B, mapped as channel 0; alpha opaque) or 4 (the fourth is alpha,
/// mapped as channel 0). `map` is the output mapping (see [`inverse`]).
pub fn reference(
    src: &[f32],
    pixels: usize,
    channels: usize,
    map: &PixelMapping,
    depth: PixelDepth,
) -> Vec<u32> {
    let tiles = src.len() / (channels * pixels);
    let mut out = Vec::with_capacity(tiles * pixels * depth.words());
    let (scale, offset) = (map.scale, map.offset);
    let (scale, offset) = (
        [scale[0], scale[1], scale[2], scale[0]],
        [offset[0], offset[1], offset[2], offset[0]],
    );
    for t in 0..tiles {
        for i in 0..pixels {
            let at = |c: usize| src[(t * channels + c) * pixels + i];
            let mut v = match channels {
                1 => [at(0); 4],
                _ => [at(0), at(1), at(2), at(channels.min(4) - 1)],
            };
            if map.bgr && channels != 1 {
                v[..3].reverse();
            }
            let (sc, of) = match channels {
                1 => ([scale[0]; 4], [offset[0]; 4]),
                _ => (scale, offset),
            };
            match depth {
                PixelDepth::Eight => {
                    let mut b = [0, 1, 2, 3].map(|c| to_byte(v[c], sc[c], of[c]));
                    if channels != 4 {
                        b[3] = 255;
                    }
                    out.push(b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24));
                }
                PixelDepth::Sixteen => {
                    let mut w = [0, 1, 2, 3].map(|c| to_word(v[c], sc[c], of[c]));
                    if channels != 4 {
                        w[3] = 65535;
                    }
                    out.extend([w[0] | (w[1] << 16), w[2] | (w[3] << 16)]);
                }
            }
        }
    }
    out
}

/// The tensor's layout: `pixels` a tile, up to `max_tiles` tiles, `channels` (1, 3 or 4) each.
#[derive(Clone, Copy, Debug)]
pub struct Unpacked {
    pub pixels: u32,
    pub max_tiles: u32,
    pub channels: u32,
}

impl Unpacked {
    pub fn new(pixels: u32, max_tiles: u32, channels: u32) -> Self {
        Self {
            pixels,
            max_tiles,
            channels,
        }
    }
}

/// Binds `src` (f32 tensor) and `dst` (pixels of `depth`). `map` is the output mapping.
pub fn prepare(
    cx: Bind,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    Unpacked {
        pixels,
        max_tiles,
        channels,
    }: Unpacked,
    map: &PixelMapping,
    depth: PixelDepth,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.unpack;
    let params = PackParams {
        channels,
        ..PackParams::new(pixels, max_tiles, map, depth)
    };
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
