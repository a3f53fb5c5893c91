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
}

/// What an output carries over from its input where the format holds it.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    /// The ICC colour profile.
    pub icc: Option<Vec<u8>>,
    /// The EXIF chunk, its orientation reset (the pixels were turned on reading).
    pub exif: Option<Vec<u8>>,
}

/// The largest image side batchwise decodes, and the most memory one decode may take: a file that
/// claims more gets a clear error instead of exhausting memory.
pub const MAX_IMAGE_SIDE: u32 = 32768;

pub const MAX_DECODE_BYTES: u64 = 4 << 30;

pub(crate) fn decode(path: &Path) -> Result<Decoded, String> {
    use image::ImageDecoder as _;
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| format!("cannot open: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    if reader.format().is_none() {
        return Err("not an image batchwise can read (unknown format)".into());
    }
    let too_big = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => format!(
            "cannot decode: the image is larger than batchwise reads (at most {MAX_IMAGE_SIDE} px \
             a side and {} GiB decoded): {e}",
            MAX_DECODE_BYTES >> 30
        ),
        e => format!("cannot decode: {e}"),
    };
    let mut decoder = reader.into_decoder().map_err(too_big)?;
    let icc = decoder.icc_profile().ok().flatten();
    let exif = decoder.exif_metadata().ok().flatten().map(|mut chunk| {
        let _ = image::metadata::Orientation::remove_from_exif_chunk(&mut chunk);
        chunk
    });
    // EXIF orientation: the pixels as the camera meant them.
    let orientation = decoder.orientation().ok();
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(too_big)?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    if img.width() == 0 || img.height() == 0 {
        return Err("the image is empty (0 pixels)".into());
    }
    let deep = img.color().bytes_per_pixel() / img.color().channel_count() > 1;
    let has_alpha = img.color().has_alpha();
    // The pixels once, at their depth, and the alpha plane where it is not fully opaque.
    let (rgba, alpha) = if deep {
        let rgba = img.to_rgba16();
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
        let rgba = img.to_rgba8();
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
        meta: Metadata { icc, exif },
    })
}
