//! Decoding inputs: size limits, EXIF orientation applied, 8 or 16 bits a channel, the alpha
//! plane and the metadata outputs carry over.

use std::path::Path;

use image::{DynamicImage, GrayImage};

use crate::tiling::Pixels;

/// A decoded input: RGB(A) pixels (16-bit where the file has more than 8 bits a channel) and, if
/// the image is not opaque, its alpha plane (8 or 16-bit, as the pixels).
#[derive(Clone)]
pub(crate) struct Decoded {
    pub rgba: Pixels,
    pub alpha: Option<DynamicImage>,
    pub meta: Metadata,
    /// What the stage made of the image in the decode task ([`Prepare`]): for fixed-input
    /// models, the fitted input, so the thread that feeds the GPU does not resize photos.
    pub prepared: Option<Prepared>,
}

/// The fitted input of a fixed-input model: RGBA8 pixels at the model's size, and where the
/// image landed in them.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub input: Vec<u32>,
    pub placement: crate::analyze::Placement,
    /// The image's width and height.
    pub size: [u32; 2],
}

/// A stage's work on a decoded image, run in its decode task on the I/O pool.
pub(crate) type Prepare = std::sync::Arc<dyn Fn(&mut Decoded) + Send + Sync>;

/// What an output carries over from its input where the format holds it.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    /// The ICC colour profile.
    pub icc: Option<Vec<u8>>,
    /// The EXIF chunk, its orientation reset (the pixels were turned on reading).
    pub exif: Option<Vec<u8>>,
}

/// The largest image side batchwise decodes: a file that claims more gets a clear error.
pub const MAX_IMAGE_SIDE: u32 = 32768;

/// The host memory one image may take by default (its decoded pixels and its output's, the
/// model's scale included): `--max-memory` raises it.
pub const MAX_DECODE_BYTES: u64 = 4 << 30;

/// What one image may take, checked from its header before anything is allocated.
#[derive(Clone, Copy, Debug)]
pub struct ItemLimits {
    /// Host memory for the image: its file, decoded pixels and output pixels.
    pub max_bytes: u64,
    /// The model's scale (1 for fixed-input models, whose outputs are the image's size).
    pub scale: u32,
    /// The output is written by rows as they complete (PNG, TIFF), never held whole.
    pub streamed: bool,
    /// The output's scale where it is resampled from the model's (`--scale`): the output is
    /// then held whole at the model's scale, and again at this one.
    pub resampled: Option<f32>,
    /// A chain's kept steps (`--keep-steps`): the sum of their scales squared, each an output
    /// of its own at its step's scale (written by rows or held whole as the output is, and held
    /// whole beside a resampled one); 0 without.
    pub kept_area: u64,
}

/// Host memory an image of `w` x `h` pixels of `color` takes through the job (`limits`' scale,
/// rows and resampling): the decoded pixels and their RGBA copy, and the output at the model's
/// scale with its copy for the encoder; an output written by rows (`streamed`) holds only its
/// alpha plane whole, where the image has one; a resampled one holds the model's output whole,
/// then the resampled output and its copy for the encoder.
pub(crate) fn item_bytes(w: u32, h: u32, color: image::ColorType, limits: &ItemLimits) -> u64 {
    let pixels = u64::from(w) * u64::from(h);
    let channel = u64::from(color.bytes_per_pixel() / color.channel_count().max(1)).clamp(1, 2);
    let rgba = 4 * channel;
    let scale = u64::from(limits.scale);
    let kept = pixels.saturating_mul(limits.kept_area);
    let out = pixels
        .saturating_mul(scale.saturating_mul(scale))
        .saturating_add(kept);
    let out_bytes = match (limits.resampled, limits.streamed, color.has_alpha()) {
        (Some(f), ..) => {
            let (rw, rh) = super::export::resample::out_size(w, h, f);
            let resampled = u64::from(rw) * u64::from(rh);
            return pixels
                .saturating_mul(u64::from(color.bytes_per_pixel()) + rgba)
                .saturating_add(out.saturating_mul(rgba))
                .saturating_add(kept.saturating_mul(rgba))
                .saturating_add(resampled.saturating_mul(rgba * 2));
        }
        (None, false, _) => rgba * 2,
        (None, true, true) => channel,
        (None, true, false) => 0,
    };
    pixels
        .saturating_mul(u64::from(color.bytes_per_pixel()) + rgba)
        .saturating_add(out.saturating_mul(out_bytes))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The advice an image over the limit gets.
fn raise(limits: ItemLimits) -> String {
    format!(
        "more than the {} one image may take; raise it with --max-memory MB (default {} MB)",
        gib(limits.max_bytes),
        MAX_DECODE_BYTES >> 20
    )
}

/// Reads and checks the file before decoding (it is decoded from memory, and counts against the
/// limit with the pixels): a regular file (a pipe, socket or device is never
/// opened), not empty, within the limit, not cut short (JPEG and PNG).
fn read_checked(path: &Path, limits: ItemLimits) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| {
        super::listing::dangling_link(path).unwrap_or_else(|| format!("cannot read: {e}"))
    })?;
    if meta.is_dir() {
        return Err("a folder, not an image file".into());
    }
    if let Some(kind) = super::listing::special_kind(meta.file_type()) {
        return Err(format!(
            "not a regular file ({kind}); batchwise reads only regular files and does not open it"
        ));
    }
    if meta.len() == 0 {
        return Err("the file is empty (0 bytes)".into());
    }
    if meta.len() > limits.max_bytes {
        return Err(format!(
            "the file is {}, {}",
            gib(meta.len()),
            raise(limits)
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

/// A regular image file, checked against `limits` from its header before any pixel is allocated,
/// complete (JPEG and PNG), decoded and turned upright by its EXIF orientation; with the metadata
/// its output carries over. The job's decoder and the app's thumbnails and viewer read with it.
pub fn read_upright(path: &Path, limits: ItemLimits) -> Result<(DynamicImage, Metadata), String> {
    read_with(path, limits, false).map(|(img, meta, _)| (img, meta))
}

/// As [`read_upright`], an RGB image read straight into RGBA where `rgba` (see [`read_rgba`]);
/// with the colour type of the file.
fn read_with(
    path: &Path,
    limits: ItemLimits,
    rgba: bool,
) -> Result<(DynamicImage, Metadata, image::ColorType), String> {
    use image::ImageDecoder as _;
    let bytes = read_checked(path, limits)?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes[..]))
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(MAX_IMAGE_SIDE);
    image_limits.max_image_height = Some(MAX_IMAGE_SIDE);
    image_limits.max_alloc = Some(limits.max_bytes);
    reader.limits(image_limits);
    if reader.format().is_none()
        && let Ok(format) = image::ImageFormat::from_path(path)
    {
        // No known signature: the extension says what the decoder should try.
        reader.set_format(format);
    }
    let Some(format) = reader.format() else {
        return Err("not an image batchwise can read (unknown format)".into());
    };
    let too_big = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => format!(
            "cannot decode: the image is larger than batchwise reads (at most {MAX_IMAGE_SIDE} px \
             a side and {} decoded): {e}",
            gib(limits.max_bytes)
        ),
        e => format!("cannot decode: {e}"),
    };
    let mut decoder = reader.into_decoder().map_err(too_big)?;
    // The memory the image and its output take, from the header, before any pixel is allocated.
    let (w, h) = decoder.dimensions();
    let need = item_bytes(w, h, decoder.color_type(), &limits).saturating_add(bytes.len() as u64);
    if need > limits.max_bytes {
        let out = match limits.scale {
            1 => String::new(),
            s => format!(
                ", {}x{} px out at {s}x",
                u64::from(w) * u64::from(s),
                u64::from(h) * u64::from(s)
            ),
        };
        return Err(format!(
            "the image needs about {} of memory ({w}x{h} px{out}), {}",
            gib(need),
            raise(limits)
        ));
    }
    check_complete(format, &bytes)?;
    let icc = decoder.icc_profile().ok().flatten();
    let exif = decoder.exif_metadata().ok().flatten().map(|mut chunk| {
        let _ = image::metadata::Orientation::remove_from_exif_chunk(&mut chunk);
        chunk
    });
    // EXIF orientation: the pixels as the camera meant them.
    let orientation = decoder.orientation().ok();
    let color = decoder.color_type();
    let mut img = match rgba {
        true => read_rgba(decoder),
        false => image::DynamicImage::from_decoder(decoder),
    }
    .map_err(too_big)?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    if img.width() == 0 || img.height() == 0 {
        return Err("the image is empty (0 pixels)".into());
    }
    Ok((img, Metadata { icc, exif }, color))
}

/// The pixels of an RGB image (8 or 16-bit) read straight into an RGBA buffer, the alpha filled
/// in place, so that a big image is held once (not as RGB and then as RGBA); other colour types
/// as they decode.
fn read_rgba(decoder: impl image::ImageDecoder) -> image::ImageResult<DynamicImage> {
    let (w, h) = decoder.dimensions();
    let px = w as usize * h as usize;
    let sized = || image::ImageError::Limits(image::error::LimitErrorKind::DimensionError.into());
    match decoder.color_type() {
        image::ColorType::Rgb8 => {
            let mut buf = vec![0u8; px * 4];
            decoder.read_image(&mut buf[..px * 3])?;
            widen_in_place(&mut buf, u8::MAX);
            image::RgbaImage::from_raw(w, h, buf)
                .map(DynamicImage::ImageRgba8)
                .ok_or_else(sized)
        }
        image::ColorType::Rgb16 => {
            let mut buf = vec![0u16; px * 4];
            decoder.read_image(&mut bytemuck::cast_slice_mut(&mut buf)[..px * 6])?;
            widen_in_place(&mut buf, u16::MAX);
            crate::tiling::Rgba16Image::from_raw(w, h, buf)
                .map(DynamicImage::ImageRgba16)
                .ok_or_else(sized)
        }
        _ => DynamicImage::from_decoder(decoder),
    }
}

/// Spreads RGB samples at the start of `buf` into RGBA over all of it, alpha `opaque`: from the
/// last pixel back, so that no sample is overwritten before it is moved.
fn widen_in_place<T: Copy>(buf: &mut [T], opaque: T) {
    for i in (0..buf.len() / 4).rev() {
        let [r, g, b] = [buf[3 * i], buf[3 * i + 1], buf[3 * i + 2]];
        buf[4 * i..4 * i + 4].copy_from_slice(&[r, g, b, opaque]);
    }
}

pub(crate) fn decode(path: &Path, limits: ItemLimits) -> Result<Decoded, String> {
    let (img, meta, color) = read_with(path, limits, true)?;
    let deep = img.color().bytes_per_pixel() / img.color().channel_count() > 1;
    let has_alpha = color.has_alpha();
    // The pixels once, at their depth (no copy where they were read as RGBA), and the alpha
    // plane where it is not fully opaque.
    let (rgba, alpha) = if deep {
        let rgba = img.into_rgba16();
        let alpha = has_alpha
            .then(|| {
                let a = image::ImageBuffer::from_fn(rgba.width(), rgba.height(), |x, y| {
                    image::Luma([rgba.get_pixel(x, y)[3]])
                });
                a.pixels().any(|p| p[0] != u16::MAX).then_some(a)
            })
            .flatten()
            .map(DynamicImage::ImageLuma16);
        (Pixels::Sixteen(rgba), alpha)
    } else {
        let rgba = img.into_rgba8();
        let alpha = has_alpha
            .then(|| {
                let a = GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                    image::Luma([rgba.get_pixel(x, y)[3]])
                });
                a.pixels().any(|p| p[0] != u8::MAX).then_some(a)
            })
            .flatten()
            .map(DynamicImage::ImageLuma8);
        (Pixels::Eight(rgba), alpha)
    };
    Ok(Decoded {
        rgba,
        alpha,
        meta,
        prepared: None,
    })
}

/// Fails a JPEG or PNG file that ends before its end marker (a copy or download cut short):
/// decoders fill the missing part and call it done. Other formats, and damage the walk over the
/// file's structure cannot see, are left to the decoder.
fn check_complete(format: image::ImageFormat, bytes: &[u8]) -> Result<(), String> {
    let complete = match format {
        image::ImageFormat::Png => png_complete(bytes),
        image::ImageFormat::Jpeg => jpeg_complete(bytes),
        _ => true,
    };
    if complete {
        Ok(())
    } else {
        Err(format!(
            "the file is truncated: its {format:?} data ends before the image does ({} bytes; a \
             copy or download cut short?)",
            bytes.len()
        ))
    }
}

/// Whether the PNG's chunks run to its IEND chunk within the file.
fn png_complete(bytes: &[u8]) -> bool {
    let mut pos = 8usize;
    while let Some(head) = bytes.get(pos..pos + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if &head[4..8] == b"IEND" {
            return bytes.len() >= pos + 12;
        }
        pos = pos.saturating_add(12).saturating_add(len);
    }
    false
}

/// Whether the JPEG's segments and entropy-coded data run to its EOI marker within the file.
/// Bytes that are not a marker where one is due are the decoder's to judge (true).
fn jpeg_complete(bytes: &[u8]) -> bool {
    let mut pos = 2usize;
    loop {
        let Some(&first) = bytes.get(pos) else {
            return false;
        };
        if first != 0xFF {
            return true;
        }
        let Some(&marker) = bytes.get(pos + 1) else {
            return false;
        };
        match marker {
            0xD9 => return true,
            // Fill bytes, and markers without a length.
            0xFF => pos += 1,
            0x01 | 0xD0..=0xD7 => pos += 2,
            _ => {
                let Some(len) = bytes.get(pos + 2..pos + 4) else {
                    return false;
                };
                pos += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
                if marker == 0xDA {
                    // Entropy-coded data: up to the next marker that is not a stuffed 0xFF or a
                    // restart marker.
                    loop {
                        let Some(&b) = bytes.get(pos) else {
                            return false;
                        };
                        let next = bytes.get(pos + 1).copied();
                        if b == 0xFF && !matches!(next, Some(0x00 | 0xD0..=0xD7)) {
                            break;
                        }
                        pos += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(format: image::ImageFormat) -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 9]));
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), format)
            .unwrap();
        bytes
    }

    #[test]
    fn whole_files_are_complete_and_cut_ones_are_not() {
        for (format, complete) in [
            (image::ImageFormat::Png, png_complete as fn(&[u8]) -> bool),
            (image::ImageFormat::Jpeg, jpeg_complete),
        ] {
            let bytes = encoded(format);
            assert!(complete(&bytes), "{format:?}");
            for cut in [bytes.len() - 1, bytes.len() / 2, 12] {
                assert!(!complete(&bytes[..cut]), "{format:?} cut at {cut}");
            }
        }
    }

    /// The case: a 1-bit PNG of 30000 x 30000 (inside the side limit, a few bytes on
    /// disk) through a 4x model fails alone from its header, before any pixel is allocated.
    #[test]
    fn an_image_whose_output_is_too_big_fails_from_its_header() {
        fn chunk(png: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
            png.extend((data.len() as u32).to_be_bytes());
            let body: Vec<u8> = kind.iter().chain(data).copied().collect();
            let crc = !body.iter().fold(!0u32, |c, &b| {
                (0..8).fold(c ^ u32::from(b), |c, _| {
                    (c >> 1) ^ (0xedb8_8320 & (c & 1).wrapping_neg())
                })
            });
            png.extend(&body);
            png.extend(crc.to_be_bytes());
        }
        let mut ihdr = 30000u32.to_be_bytes().to_vec();
        ihdr.extend(30000u32.to_be_bytes());
        ihdr.extend([1, 0, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &[0x78, 0x01]);
        chunk(&mut png, b"IEND", &[]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        std::fs::write(&path, png).unwrap();
        let limits = ItemLimits {
            max_bytes: MAX_DECODE_BYTES,
            scale: 4,
            streamed: false,
            resampled: None,
            kept_area: 0,
        };
        let Err(e) = decode(&path, limits) else {
            panic!("decoded");
        };
        assert!(
            e.contains("30000x30000 px, 120000x120000 px out at 4x") && e.contains("--max-memory"),
            "{e}"
        );
    }

    #[test]
    fn the_output_at_scale_counts_against_the_limit() {
        let rgba = image::ColorType::Rgba8;
        let at = |scale: u32, streamed: bool| ItemLimits {
            max_bytes: 0,
            scale,
            streamed,
            resampled: None,
            kept_area: 0,
        };
        // 30000 x 30000 at 4x: the output alone is 57.6 GB.
        assert!(item_bytes(30000, 30000, rgba, &at(4, false)) > 100 << 30);
        assert_eq!(item_bytes(10, 10, rgba, &at(2, false)), 100 * 8 + 400 * 8);
        assert_eq!(
            item_bytes(u32::MAX, u32::MAX, rgba, &at(u32::MAX, false)),
            u64::MAX
        );
        // A chain's kept step at 1x (--keep-steps), held whole beside the 2x output.
        let kept = ItemLimits {
            kept_area: 1,
            ..at(2, false)
        };
        assert_eq!(item_bytes(10, 10, rgba, &kept), 100 * 8 + (400 + 100) * 8);
        // Written by rows: the output's alpha plane alone is held whole.
        assert_eq!(item_bytes(10, 10, rgba, &at(2, true)), 100 * 8 + 400);
        let rgb16 = image::ColorType::Rgb16;
        assert_eq!(item_bytes(10, 10, rgb16, &at(2, true)), 100 * (6 + 8));
        // Resampled (4x written at 3x): the 40x40 output once, the 30x30 one twice.
        let resampled = ItemLimits {
            resampled: Some(3.0),
            ..at(4, true)
        };
        assert_eq!(
            item_bytes(10, 10, rgba, &resampled),
            100 * 8 + 1600 * 4 + 900 * 8
        );
    }
}
