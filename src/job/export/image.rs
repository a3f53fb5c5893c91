//! Image outputs: PNG (at its compression level), JPEG (with quality), WebP (lossless, or lossy
//! with quality) and TIFF, alpha where the format holds it, 16 bits where it does, the ICC
//! profile (where its colour space is the output's) and EXIF carried over (TIFF: the ICC
//! profile); written to a temporary file and renamed, so there is never a partial output.

use std::path::Path;

use image::DynamicImage;

use super::super::decode::Metadata;
use super::super::naming::{ExportOptions, OutputFormat};
use super::super::resume::Record;
use super::encode::webp_lossy;
use super::write_atomic_then;
use crate::tiling::Pixels;

/// Encodes `rgba` (with `alpha`, resized to it, where the format holds alpha) as `export` says
/// (its format for this output: [`ExportOptions::for_output`]) into a temporary file beside
/// `path`, then renames it: never a partial output file.
pub(crate) fn write_image(
    path: &Path,
    rgba: Pixels,
    alpha: Option<DynamicImage>,
    meta: &Metadata,
    export: &ExportOptions,
    record: Option<&Record>,
) -> Result<(), String> {
    // The ICC profile and EXIF travel where the encoder takes them (PNG, JPEG, WebP; TIFF: the
    // profile).
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
    let meta = &meta.for_output(false);
    let record = |tmp: &Path| record.map_or(Ok(()), |r| r.append_written(tmp));
    // JPEG holds no alpha: the pixels alone. JPEG and WebP hold 8 bits a channel; PNG and TIFF
    // keep 16-bit images 16-bit.
    let img = compose(rgba, alpha.filter(|_| export.format != OutputFormat::Jpeg));
    let img = match (export.format, img) {
        (OutputFormat::Jpeg | OutputFormat::Webp, DynamicImage::ImageRgb16(i)) => {
            DynamicImage::ImageRgb8(DynamicImage::ImageRgb16(i).to_rgb8())
        }
        (OutputFormat::Jpeg | OutputFormat::Webp, DynamicImage::ImageRgba16(i)) => {
            DynamicImage::ImageRgba8(DynamicImage::ImageRgba16(i).to_rgba8())
        }
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
                OutputFormat::Tiff => img.write_with_encoder(with_meta(
                    image::codecs::tiff::TiffEncoder::new(&mut w),
                    meta,
                )),
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

/// The image to encode: RGB, or RGBA with `alpha` (resized to the image) when there is one, at
/// the depth of `rgba`.
fn compose(rgba: Pixels, alpha: Option<DynamicImage>) -> DynamicImage {
    let filter = image::imageops::FilterType::CatmullRom;
    match (rgba, alpha) {
        (Pixels::Eight(mut rgba), Some(a)) => {
            let a = image::imageops::resize(&a.to_luma8(), rgba.width(), rgba.height(), filter);
            for (p, a) in rgba.pixels_mut().zip(a.pixels()) {
                p[3] = a[0];
            }
            DynamicImage::ImageRgba8(rgba)
        }
        (Pixels::Sixteen(mut rgba), Some(a)) => {
            let a = image::imageops::resize(&a.to_luma16(), rgba.width(), rgba.height(), filter);
            for (p, a) in rgba.pixels_mut().zip(a.pixels()) {
                p[3] = a[0];
            }
            DynamicImage::ImageRgba16(rgba)
        }
        (Pixels::Eight(rgba), None) => DynamicImage::ImageRgba8(rgba).to_rgb8().into(),
        (Pixels::Sixteen(rgba), None) => DynamicImage::ImageRgba16(rgba).to_rgb16().into(),
    }
}
