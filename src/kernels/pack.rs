//! Pack (`shaders/pack.wgsl`): 8-bit or 16-bit RGBA tiles -> one normalised float tensor
//! `[N, 3, H, W]`.

use super::shaders::redeclared;
use super::{Bind, Step};

const WORKGROUP_X: u32 = 64;

/// How 8-bit pixel values map to the model's input values: `v * scale + offset` per channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PixelMapping {
    pub scale: [f32; 3],
    pub offset: [f32; 3],
    /// Feed channels as B, G, R.
    pub bgr: bool,
}

impl PixelMapping {
    /// RGB in [0, 1].
    pub const UNIT: PixelMapping = PixelMapping {
        scale: [1.0 / 255.0; 3],
        offset: [0.0; 3],
        bgr: false,
    };

    /// RGB values as they are, in 0..=255: the output mapping of a chain's kept steps, whose
    /// values the model itself brings to 0..=255 (`chain::keep_steps`).
    pub const IDENTITY: PixelMapping = PixelMapping {
        scale: [1.0; 3],
        offset: [0.0; 3],
        bgr: false,
    };
}

/// How pixels travel to and from the GPU: 8-bit RGBA, one u32 a pixel (R in the low byte), or
/// 16-bit RGBA, two u32 a pixel (`R | G << 16`, `B | A << 16`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PixelDepth {
    #[default]
    Eight,
    Sixteen,
}

impl PixelDepth {
    /// u32 words per pixel.
    pub fn words(self) -> usize {
        match self {
            PixelDepth::Eight => 1,
            PixelDepth::Sixteen => 2,
        }
    }
}

/// Mirror of `Params` in shaders/pack.wgsl and shaders/unpack.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PackParams {
    pub pixels: u32,
    pub tiles: u32,
    pub bgr: u32,
    /// 16-bit pixels, two u32 each.
    pub wide: u32,
    pub scale: [f32; 4],
    pub offset: [f32; 4],
    /// Unpack: the model's output channels, 1 (grey), 3 (RGB) or 4 (RGBA); pack: 3.
    pub channels: u32,
    pub _pad: [u32; 3],
}

impl PackParams {
    pub fn new(pixels: u32, tiles: u32, map: &PixelMapping, depth: PixelDepth) -> Self {
        let (scale, offset) = (map.scale, map.offset);
        Self {
            pixels,
            tiles,
            bgr: map.bgr as u32,
            wide: (depth == PixelDepth::Sixteen) as u32,
            // The fourth channel (an RGBA output's alpha) maps as the first.
            scale: [scale[0], scale[1], scale[2], scale[0]],
            offset: [offset[0], offset[1], offset[2], offset[0]],
            channels: 3,
            _pad: [0; 3],
        }
    }
}

/// CPU reference: `tiles` tiles of `pixels` pixels of `depth` -> `[N, 3, pixels]`.
pub fn reference(src: &[u32], pixels: usize, map: &PixelMapping, depth: PixelDepth) -> Vec<f32> {
    let tiles = src.len() / (pixels * depth.words());
    let mut out = vec![0.0f32; tiles * 3 * pixels];
    for t in 0..tiles {
        for i in 0..pixels {
            let mut rgb = match depth {
                PixelDepth::Eight => {
                    let px = src[t * pixels + i];
                    [px & 0xff, (px >> 8) & 0xff, (px >> 16) & 0xff].map(|v| v as f32)
                }
                PixelDepth::Sixteen => {
                    let (rg, ba) = (src[2 * (t * pixels + i)], src[2 * (t * pixels + i) + 1]);
                    [rg & 0xffff, rg >> 16, ba & 0xffff].map(|v| v as f32 / 257.0)
                }
            };
            if map.bgr {
                rgb.reverse();
            }
            for c in 0..3 {
                out[(t * 3 + c) * pixels + i] = rgb[c] * map.scale[c] + map.offset[c];
            }
        }
    }
    out
}

/// Binds `src` (pixels of `depth`) and `dst` (f32 tensor) for tiles of `pixels` pixels.
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
    let per = per_invocation(pixels, depth, kernels.eight_a_load);
    let pipeline = match per {
        1 => kernels.pack.clone(),
        _ => kernels.generated("pack", &wide_source(per)),
    };
    let params = PackParams::new(pixels, max_tiles, map, depth);
    super::step(
        gpu,
        label,
        &pipeline,
        &params,
        &[src, dst],
        [pixels.div_ceil(per * WORKGROUP_X), 1],
        1,
    )
}

/// Pixels an invocation packs: 8 (`vec4<u64>` loads and stores: `eight`, a CPU adapter) or 4
/// (`vec4`) where the tiles' pixels are a multiple of that, 8-bit ones; else 1. On llvmpipe
/// every load and store is a loop over the lanes, so a pixel a load and three stores a pixel
/// cost 4-8x the wide ones (BENCHMARKS.md, "Fused channel Pads, wide data movement, ...").
pub fn per_invocation(pixels: u32, depth: PixelDepth, eight: bool) -> u32 {
    match depth {
        PixelDepth::Eight if eight && pixels.is_multiple_of(8) => 8,
        PixelDepth::Eight if pixels.is_multiple_of(4) => 4,
        PixelDepth::Eight | PixelDepth::Sixteen => 1,
    }
}

/// pack.wgsl's `main` for 8-bit pixels, `per` (4 or 8) an invocation: one load of the pixels,
/// one store a channel (8 values a `vec4<u64>`, float32, where `per` is 8).
pub fn wide_source(per: u32) -> String {
    let shader = super::shader("pack.wgsl");
    let head = &shader[..shader
        .find("@compute")
        .expect("pack.wgsl has an entry point")];
    let (src, dst) = match per {
        8 => ("vec4<u64>", "vec4<u64>"),
        _ => ("vec4<u32>", "vec4<act>"),
    };
    let mut w = redeclared(&redeclared(head, "src", src), "dst", dst);
    if per == 8 {
        w.push_str(super::eight::HELPERS);
    }
    let load = match per {
        8 => {
            "let xx = src[at / 8u]; let a = channels(bitcast<vec4<u32>>(lo8(xx))); \
              let b = channels(bitcast<vec4<u32>>(hi8(xx)));"
        }
        _ => "let a = channels(src[at / 4u]);",
    };
    // One store a channel, unrolled (a private array indexed in a loop stays in memory).
    let store = |k: u32| match per {
        8 => format!("dst[(base + {k}u * p.pixels) / 8u] = pack8(a[{k}], b[{k}]);"),
        _ => format!("dst[(base + {k}u * p.pixels) / 4u] = vec4<act>(a[{k}]);"),
    };
    let stores = (0..3).map(store).collect::<Vec<_>>().join("\n    ");
    w.push_str(&format!(
        "
// The three mapped channels of 4 pixels (R in each word's low byte).
fn channels(px: vec4<u32>) -> array<vec4<f32>, 3> {{
    let r = vec4<f32>(px & vec4<u32>(0xffu));
    let g = vec4<f32>((px >> vec4<u32>(8u)) & vec4<u32>(0xffu));
    let b = vec4<f32>((px >> vec4<u32>(16u)) & vec4<u32>(0xffu));
    let first = select(r, b, p.bgr != 0u);
    let last = select(b, r, p.bgr != 0u);
    return array<vec4<f32>, 3>(
        first * p.scale.x + p.offset.x,
        g * p.scale.y + p.offset.y,
        last * p.scale.z + p.offset.z,
    );
}}

// Generated (src/kernels/pack.rs): {per} pixels an invocation.
@compute @workgroup_size({WORKGROUP_X}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
    let i = gid.x * {per}u;
    let t = gid.z;
    if i >= p.pixels || t >= p.tiles {{
        return;
    }}
    let at = t * p.pixels + i;
    {load}
    let base = t * 3u * p.pixels + i;
    {stores}
}}
"
    ));
    w
}
