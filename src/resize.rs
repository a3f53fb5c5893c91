//! Resizing images on the CPU: photos fitted to a fixed-input model, the segmenter's mask and an
//! upscaler's alpha plane stretched to the output, outputs resampled to `--scale`.
//!
//! fast_image_resize's separable convolutions (AVX2 / SSE4.1 / NEON where the CPU has them): a
//! 1920 x 1280 photo fitted to 224 px takes 2-3 ms instead of 12-16 (BENCHMARKS.md, "Fused
//! channel Pads, wide data movement, 7x7 maps and CPU resizing"). That work runs on the same cores that feed the GPU, and on lavapipe on the
//! cores that are the GPU. Each channel is filtered on its own (alpha not premultiplied), as
//! image's `resize` does: a model reads the colour channels as the file holds them.

use fast_image_resize as fir;
use image::imageops::FilterType;
use image::{ImageBuffer, Pixel};

/// `img` resized to `w` x `h` (at least 1 x 1) with `filter`; image's `resize` where
/// fast_image_resize refuses the pair (no pixel type of it: none that batchwise resizes).
pub fn resize<P>(
    img: &ImageBuffer<P, Vec<P::Subpixel>>,
    w: u32,
    h: u32,
    filter: FilterType,
) -> ImageBuffer<P, Vec<P::Subpixel>>
where
    P: Pixel + 'static,
    ImageBuffer<P, Vec<P::Subpixel>>: fir::IntoImageView + fir::IntoImageViewMut,
{
    let (w, h) = (w.max(1), h.max(1));
    if img.dimensions() == (w, h) {
        return img.clone();
    }
    let algorithm = match filter {
        FilterType::Nearest => fir::ResizeAlg::Nearest,
        FilterType::Triangle => fir::ResizeAlg::Convolution(fir::FilterType::Bilinear),
        FilterType::CatmullRom => fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom),
        FilterType::Gaussian => fir::ResizeAlg::Convolution(fir::FilterType::Gaussian),
        FilterType::Lanczos3 => fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3),
    };
    let options = fir::ResizeOptions::new()
        .resize_alg(algorithm)
        .use_alpha(false);
    let mut out = ImageBuffer::new(w, h);
    match fir::Resizer::new().resize(img, &mut out, &options) {
        Ok(()) => out,
        Err(_) => image::imageops::resize(img, w, h, filter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgba, RgbaImage};

    /// A smooth gradient (each channel its own, alpha too) resized down and up by both
    /// libraries: within 2 levels of image's `resize` everywhere (fixed-point coefficients
    /// against float ones), alpha kept per pixel rather than premultiplied.
    #[test]
    fn matches_image_resize_within_rounding() {
        let img = RgbaImage::from_fn(97, 61, |x, y| {
            Rgba([
                (x * 2) as u8,
                (y * 4) as u8,
                ((x + y) % 200) as u8,
                (40 + y * 3) as u8,
            ])
        });
        for (w, h, filter) in [
            (32, 20, FilterType::CatmullRom),
            (224, 224, FilterType::CatmullRom),
            (50, 31, FilterType::Triangle),
            (150, 90, FilterType::Lanczos3),
        ] {
            let ours = resize(&img, w, h, filter);
            let theirs = image::imageops::resize(&img, w, h, filter);
            let worst = ours
                .as_raw()
                .iter()
                .zip(theirs.as_raw())
                .map(|(&a, &b)| a.abs_diff(b))
                .max();
            assert!(worst <= Some(2), "{w}x{h} {filter:?}: {worst:?}");
        }
        let gray = GrayImage::from_fn(16, 16, |x, _| Luma([(x * 16) as u8]));
        assert_eq!(
            resize(&gray, 4, 4, FilterType::Triangle).dimensions(),
            (4, 4)
        );
        assert_eq!(resize(&gray, 16, 16, FilterType::Triangle), gray);
    }
}
