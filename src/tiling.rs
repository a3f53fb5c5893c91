//! Cutting images into fixed-size tiles with context, and stitching the outputs back.
//!
//! Every tile has the same input size, `tile + 2 * context` on each side, so tiles from different
//! images fill one batch. Pixels outside the image repeat the nearest edge pixel, which is what the
//! model would see if the whole image were padded that way: with `context` at least the model's
//! receptive radius, the stitched output equals the output for the whole image, with no seams.

use image::RgbaImage;

/// The part of an image a tile is responsible for, in input pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileRect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// The tiles covering a `width x height` image, row by row.
pub fn grid(width: u32, height: u32, tile: u32) -> Vec<TileRect> {
    let mut tiles = Vec::new();
    for y in (0..height).step_by(tile as usize) {
        for x in (0..width).step_by(tile as usize) {
            tiles.push(TileRect {
                x,
                y,
                w: tile.min(width - x),
                h: tile.min(height - y),
            });
        }
    }
    tiles
}

/// Writes the input pixels of one tile (`(tile + 2 * context)^2`, RGBA8 with R in the low byte)
/// into `out`, repeating edge pixels outside the image.
pub fn extract(image: &RgbaImage, rect: TileRect, tile: u32, context: u32, out: &mut [u32]) {
    let side = tile + 2 * context;
    debug_assert_eq!(out.len(), (side * side) as usize);
    let (w, h) = image.dimensions();
    let raw = image.as_raw();
    for ty in 0..side {
        let y = (rect.y as i64 + ty as i64 - context as i64).clamp(0, h as i64 - 1) as usize;
        let row = &mut out[(ty * side) as usize..((ty + 1) * side) as usize];
        for (tx, px) in row.iter_mut().enumerate() {
            let x = (rect.x as i64 + tx as i64 - context as i64).clamp(0, w as i64 - 1) as usize;
            let i = (y * w as usize + x) * 4;
            *px = u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], 255]);
        }
    }
}

/// A 16-bit RGBA image.
pub type Rgba16Image = image::ImageBuffer<image::Rgba<u16>, Vec<u16>>;

/// An image as a job holds it: 8-bit, or 16-bit where the file had more than 8 bits a channel.
#[derive(Clone, Debug)]
pub enum Pixels {
    Eight(RgbaImage),
    Sixteen(Rgba16Image),
}

impl Pixels {
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Pixels::Eight(i) => i.dimensions(),
            Pixels::Sixteen(i) => i.dimensions(),
        }
    }

    /// A blank image of this depth.
    pub fn blank_like(&self, width: u32, height: u32) -> Pixels {
        match self {
            Pixels::Eight(_) => Pixels::Eight(RgbaImage::new(width, height)),
            Pixels::Sixteen(_) => Pixels::Sixteen(Rgba16Image::new(width, height)),
        }
    }

    /// The image at 8 bits a channel (a copy for 16-bit images).
    pub fn to_rgba8(&self) -> std::borrow::Cow<'_, RgbaImage> {
        match self {
            Pixels::Eight(i) => std::borrow::Cow::Borrowed(i),
            Pixels::Sixteen(i) => {
                std::borrow::Cow::Owned(image::DynamicImage::ImageRgba16(i.clone()).to_rgba8())
            }
        }
    }
}

/// As [`extract`], for 16-bit pixels: two u32 a pixel (`R | G << 16`, `B | A << 16`) in `out`
/// (`2 * (tile + 2 * context)^2` words); 8-bit images are widened exactly (`v * 257`).
pub fn extract_wide(image: &Pixels, rect: TileRect, tile: u32, context: u32, out: &mut [u32]) {
    match image {
        Pixels::Eight(i) => extract_wide_from(i, rect, tile, context, out),
        Pixels::Sixteen(i) => {
            let fetch = |x, y| {
                let p: &image::Rgba<u16> = i.get_pixel(x, y);
                [p[0], p[1], p[2]].map(u32::from)
            };
            extract_words(i.dimensions(), fetch, rect, tile, context, out);
        }
    }
}

/// As [`extract_wide`] for an 8-bit image.
pub fn extract_wide_from(
    image: &RgbaImage,
    rect: TileRect,
    tile: u32,
    context: u32,
    out: &mut [u32],
) {
    let fetch = |x, y| {
        let p = image.get_pixel(x, y);
        [p[0], p[1], p[2]].map(|v| v as u32 * 257)
    };
    extract_words(image.dimensions(), fetch, rect, tile, context, out);
}

fn extract_words(
    (w, h): (u32, u32),
    fetch: impl Fn(u32, u32) -> [u32; 3],
    rect: TileRect,
    tile: u32,
    context: u32,
    out: &mut [u32],
) {
    let side = tile + 2 * context;
    debug_assert_eq!(out.len(), 2 * (side * side) as usize);
    for ty in 0..side {
        let y = (rect.y as i64 + ty as i64 - context as i64).clamp(0, h as i64 - 1) as u32;
        for tx in 0..side {
            let x = (rect.x as i64 + tx as i64 - context as i64).clamp(0, w as i64 - 1) as u32;
            let [r, g, b] = fetch(x, y);
            let at = 2 * (ty * side + tx) as usize;
            out[at] = r | (g << 16);
            out[at + 1] = b | (0xffff << 16);
        }
    }
}

/// Copies the part of one output plane (`src`, `src_side` wide, starting at `crop`) that belongs to
/// `rect` into `dst` (`dst_w` wide), everything scaled by `scale`.
pub fn place<T: Copy>(
    dst: &mut [T],
    dst_w: u32,
    src: &[T],
    src_side: u32,
    crop: u32,
    rect: TileRect,
    scale: u32,
) {
    let (w, h) = (rect.w * scale, rect.h * scale);
    for y in 0..h {
        let s = ((crop + y) * src_side + crop) as usize;
        let d = ((rect.y * scale + y) * dst_w + rect.x * scale) as usize;
        dst[d..d + w as usize].copy_from_slice(&src[s..s + w as usize]);
    }
}

/// As [`place`], converting each pixel with `f` (between 8 and 16 bits a channel); the source is
/// `(src, src_side, crop)`.
pub fn place_map<S: Copy, D>(
    dst: &mut [D],
    dst_w: u32,
    (src, src_side, crop): (&[S], u32, u32),
    rect: TileRect,
    scale: u32,
    f: impl Fn(S) -> D,
) {
    let (w, h) = (rect.w * scale, rect.h * scale);
    for y in 0..h {
        let s = ((crop + y) * src_side + crop) as usize;
        let d = ((rect.y * scale + y) * dst_w + rect.x * scale) as usize;
        let row = &src[s..s + w as usize];
        for (d, &s) in dst[d..d + w as usize].iter_mut().zip(row) {
            *d = f(s);
        }
    }
}

/// A 16-bit RGBA pixel as an 8-bit one (each channel to the nearest of the 256 levels).
pub fn narrow(p: [u16; 4]) -> u32 {
    u32::from_le_bytes(p.map(|v| ((v as u32 * 255 + 32767) / 65535) as u8))
}

/// An 8-bit RGBA pixel as a 16-bit one, exactly (`v * 257`).
pub fn widen(p: u32) -> [u16; 4] {
    p.to_le_bytes().map(|v| v as u16 * 257)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_rounds_to_the_nearest_level_and_undoes_widening() {
        for v in 0..=255u8 {
            let p = u32::from_le_bytes([v, 255 - v, v / 2, 255]);
            assert_eq!(narrow(widen(p)), p);
        }
        assert_eq!(widen(0xff00_80ff), [65535, 32896, 0, 65535]);
        for v in (0..=65535u16).step_by(7) {
            let nearest = (v as f64 / 257.0).round() as u32;
            assert_eq!(narrow([v, 0, 0, 65535]), nearest | 0xff00_0000, "{v}");
        }
    }

    #[test]
    fn a_mapped_place_converts_the_core_of_its_source() {
        // A 4x4 source whose core is the 2x2 block one pixel in, placed at (1, 0) scaled by 1.
        let src: Vec<u32> = (0..16).collect();
        let mut dst = vec![[0u16; 4]; 3 * 2];
        let rect = TileRect {
            x: 1,
            y: 0,
            w: 2,
            h: 2,
        };
        place_map(&mut dst, 3, (&src, 4, 1), rect, 1, widen);
        let first = |d: &[u16; 4]| d[0] / 257;
        let got: Vec<u16> = dst.iter().map(first).collect();
        assert_eq!(got, [0, 5, 6, 0, 9, 10]);
    }

    #[test]
    fn grid_covers_every_pixel_once() {
        let (w, h, t) = (70, 33, 32);
        let mut hits = vec![0u8; (w * h) as usize];
        for r in grid(w, h, t) {
            for y in r.y..r.y + r.h {
                for x in r.x..r.x + r.w {
                    hits[(y * w + x) as usize] += 1;
                }
            }
        }
        assert!(hits.iter().all(|&c| c == 1));
        assert_eq!(grid(w, h, t).len(), 3 * 2);
    }

    #[test]
    fn extract_repeats_edges() {
        let img = RgbaImage::from_fn(3, 2, |x, y| image::Rgba([x as u8, y as u8, 7, 0]));
        let mut out = vec![0u32; 16];
        extract(
            &img,
            TileRect {
                x: 0,
                y: 0,
                w: 2,
                h: 2,
            },
            2,
            1,
            &mut out,
        );
        let at = |tx: usize, ty: usize| out[ty * 4 + tx].to_le_bytes();
        assert_eq!(at(0, 0), [0, 0, 7, 255]); // clamped from (-1, -1)
        assert_eq!(at(3, 3), [2, 1, 7, 255]); // (2, 2) clamps to (2, 1)
        assert_eq!(at(2, 1), [1, 0, 7, 255]);
    }

    #[test]
    fn place_copies_the_cropped_core() {
        let src: Vec<u32> = (0..36).collect(); // 6x6 tile
        let mut dst = vec![0u32; 8 * 8];
        place(
            &mut dst,
            8,
            &src,
            6,
            1,
            TileRect {
                x: 2,
                y: 1,
                w: 2,
                h: 2,
            },
            2,
        );
        assert_eq!(dst[2 * 8 + 4..2 * 8 + 8], [7, 8, 9, 10]);
        assert_eq!(dst[5 * 8 + 4..5 * 8 + 8], [25, 26, 27, 28]);
        assert_eq!(dst[0], 0);
    }
}
