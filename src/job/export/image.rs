//! Image outputs: PNG (at its compression level), JPEG (with quality), WebP (lossless, or lossy
//! with quality) and TIFF, RGB, grey or RGBA ([`Planes`]), alpha where the format holds it, 16
//! bits where it does, the ICC profile (where its colour space is the output's) and EXIF carried
//! over; written to a temporary file and renamed, so there is never a partial output.

use std::path::Path;

use image::DynamicImage;

use super::super::decode::Metadata;
use super::super::naming::{ExportOptions, OutputFormat};
use super::super::resume::Record;
use super::encode::webp_lossy;
use super::write_atomic_then;
use crate::tiling::Pixels;

/// What an output image holds beside its pixels' colour: which channels it writes, and whose
/// alpha.
#[derive(Clone, Debug)]
pub(crate) enum Planes {
    /// RGB, with the input's alpha plane (resized to the output) where it has one.
    Rgb(Option<DynamicImage>),
    /// One grey channel, the pixels' red (a model's 1-channel output: the unpack wrote it into
    /// R, G and B). The input's alpha is not carried.
    Grey,
    /// RGBA as the pixels hold them (a model's 4-channel output: its fourth channel is the
    /// alpha). The input's alpha is not carried.
    Rgba,
}

impl Planes {
    /// The planes of a model's output of `channels` (1 grey, 4 RGBA, else RGB with the input's
    /// `alpha`).
    pub fn of_model(channels: u32, alpha: Option<DynamicImage>) -> Planes {
        match channels {
            1 => Planes::Grey,
            4 => Planes::Rgba,
            _ => Planes::Rgb(alpha),
        }
    }

    /// Whether the output is grey (what its ICC profile must describe).
    pub fn is_grey(&self) -> bool {
        matches!(self, Planes::Grey)
    }

    /// Whether the output has an alpha channel (where its format holds one).
    pub fn has_alpha(&self) -> bool {
        matches!(self, Planes::Rgb(Some(_)) | Planes::Rgba)
    }
}

/// Encodes `rgba` as `planes` says (RGB with the input's alpha resized to it, grey or RGBA;
/// alpha where the format holds it) as `export` says (its format for this output:
/// [`ExportOptions::for_output`]) into a temporary file beside `path`, then renames it: never
/// a partial output file.
pub(crate) fn write_image(
    path: &Path,
    rgba: Pixels,
    planes: Planes,
    meta: &Metadata,
    export: &ExportOptions,
    record: Option<&Record>,
) -> Result<(), String> {
    // The ICC profile and EXIF travel where the encoder takes them (PNG, JPEG, WebP; TIFF: the
    // profile here, the EXIF below).
    fn with_meta<E: image::ImageEncoder>(mut e: E, meta: &Metadata) -> E {
        if let Some(icc) = &meta.icc {
            let _ = e.set_icc_profile(icc.clone());
        }
        if let Some(exif) = &meta.exif {
            let _ = e.set_exif_metadata(exif.clone());
        }
        e
    }
    let export = &export.for_output(path);
    // WebP holds no grey: grey outputs are written as RGB (R = G = B) there. JPEG holds no
    // alpha: the input's is not composed (a model's own is dropped below).
    let planes = match (export.format, planes) {
        (OutputFormat::Webp, Planes::Grey) | (OutputFormat::Jpeg, Planes::Rgb(Some(_))) => {
            Planes::Rgb(None)
        }
        (_, planes) => planes,
    };
    let meta = &meta.for_output(planes.is_grey());
    let record = |tmp: &Path| record.map_or(Ok(()), |r| r.append_written(tmp));
    // JPEG and WebP hold 8 bits a channel; PNG and TIFF keep 16-bit images 16-bit.
    let img = compose(rgba, planes);
    let img = match (export.format, img) {
        (OutputFormat::Jpeg, img) if img.color().has_alpha() => {
            DynamicImage::ImageRgb8(img.to_rgb8())
        }
        (OutputFormat::Jpeg | OutputFormat::Webp, img) => eight_bits(img),
        (_, img) => img,
    };
    write_atomic_then(
        path,
        |tmp| {
            let file = std::fs::File::create(tmp)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let result = match export.format {
                OutputFormat::Jpeg => img.write_with_encoder(with_meta(
                    image::codecs::jpeg::JpegEncoder::new_with_quality(
                        &mut w,
                        export.quality.clamp(1, 100),
                    ),
                    meta,
                )),
                OutputFormat::Webp if export.webp_lossless => img.write_with_encoder(with_meta(
                    image::codecs::webp::WebPEncoder::new_lossless(&mut w),
                    meta,
                )),
                OutputFormat::Webp => {
                    let bytes = webp_lossy(&img, export.quality, meta)
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    std::io::Write::write_all(&mut w, &bytes).map_err(image::ImageError::IoError)
                }
                OutputFormat::Tiff => super::tiff_file::write_whole(&mut w, &img, meta)
                    .map_err(|e| image::ImageError::IoError(std::io::Error::other(e))),
                OutputFormat::Png | OutputFormat::Same => img.write_with_encoder(with_meta(
                    image::codecs::png::PngEncoder::new_with_quality(
                        &mut w,
                        export.png_compression.image_type(),
                        image::codecs::png::FilterType::Adaptive,
                    ),
                    meta,
                )),
            };
            result
                .and_then(|()| std::io::Write::flush(&mut w).map_err(image::ImageError::IoError))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        },
        record,
    )
}

/// `img` at 8 bits a channel (JPEG and WebP hold no more), its colour type otherwise kept.
fn eight_bits(img: DynamicImage) -> DynamicImage {
    match img {
        DynamicImage::ImageRgb16(_) => DynamicImage::ImageRgb8(img.to_rgb8()),
        DynamicImage::ImageRgba16(_) => DynamicImage::ImageRgba8(img.to_rgba8()),
        DynamicImage::ImageLuma16(_) => DynamicImage::ImageLuma8(img.to_luma8()),
        img => img,
    }
}

/// The image to encode, at the depth of `rgba`: RGB, or RGBA with the input's alpha (resized
/// to the image) when there is one; grey (the red channel); or RGBA as it is.
fn compose(rgba: Pixels, planes: Planes) -> DynamicImage {
    let filter = image::imageops::FilterType::CatmullRom;
    let alpha = match planes {
        Planes::Rgb(alpha) => alpha,
        Planes::Grey => {
            let (w, h) = rgba.dimensions();
            let grey = match rgba {
                Pixels::Eight(i) => {
                    image::GrayImage::from_raw(w, h, red(i.as_raw())).map(DynamicImage::ImageLuma8)
                }
                Pixels::Sixteen(i) => image::ImageBuffer::from_raw(w, h, red(i.as_raw()))
                    .map(DynamicImage::ImageLuma16),
            };
            return grey.expect("a pixel's red sample for each pixel");
        }
        Planes::Rgba => {
            return match rgba {
                Pixels::Eight(i) => DynamicImage::ImageRgba8(i),
                Pixels::Sixteen(i) => DynamicImage::ImageRgba16(i),
            };
        }
    };
    match (rgba, alpha) {
        (Pixels::Eight(mut rgba), Some(a)) => {
            let a = crate::resize::resize(&a.to_luma8(), rgba.width(), rgba.height(), filter);
            for (p, a) in rgba.pixels_mut().zip(a.pixels()) {
                p[3] = a[0];
            }
            DynamicImage::ImageRgba8(rgba)
        }
        (Pixels::Sixteen(mut rgba), Some(a)) => {
            let a = crate::resize::resize(&a.to_luma16(), rgba.width(), rgba.height(), filter);
            for (p, a) in rgba.pixels_mut().zip(a.pixels()) {
                p[3] = a[0];
            }
            DynamicImage::ImageRgba16(rgba)
        }
        (Pixels::Eight(rgba), None) => DynamicImage::ImageRgba8(rgba).to_rgb8().into(),
        (Pixels::Sixteen(rgba), None) => DynamicImage::ImageRgba16(rgba).to_rgb16().into(),
    }
}

/// The red samples of RGBA samples (a grey output's value is in R, G and B).
pub(crate) fn red<T: Copy>(rgba: &[T]) -> Vec<T> {
    rgba.chunks_exact(4).map(|p| p[0]).collect()
}
