//! `--scale`: a model's output written at another scale than the model's (a 4x model at 2x or
//! 3x), resampled with Lanczos3 (`crate::resize`, separable, 3 lobes). An output that is
//! resampled is held whole at the model's scale (not written by rows): the filter's support
//! reaches across the bands of rows the tiles finish, so the stage keeps the whole output and
//! the write task on the I/O pool resamples it before encoding.

use crate::resize::resize;
use image::imageops::FilterType;

use crate::tiling::Pixels;

/// The filter outputs are resampled with.
pub const FILTER: FilterType = FilterType::Lanczos3;

/// The output size of a `w` x `h` input at `scale`: each side rounded, at least 1 px.
pub fn out_size(w: u32, h: u32, scale: f32) -> (u32, u32) {
    let side = |s: u32| ((f64::from(s) * f64::from(scale)).round() as u32).max(1);
    (side(w), side(h))
}

/// Whether outputs at `scale` differ from the model's own (`model_scale`) and are resampled.
pub fn resamples(scale: Option<f32>, model_scale: u32) -> bool {
    scale.is_some_and(|s| (s - model_scale as f32).abs() > 1e-6)
}

/// `pixels` resampled to `w` x `h` (Lanczos3), at their depth; as they are when already that
/// size.
pub fn resample(pixels: Pixels, w: u32, h: u32) -> Pixels {
    if pixels.dimensions() == (w, h) {
        return pixels;
    }
    match pixels {
        Pixels::Eight(p) => Pixels::Eight(resize(&p, w, h, FILTER)),
        Pixels::Sixteen(p) => Pixels::Sixteen(resize(&p, w, h, FILTER)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_and_the_models_own_scale_is_not_resampled() {
        assert_eq!(out_size(60, 44, 1.5), (90, 66));
        assert_eq!(out_size(61, 45, 1.5), (92, 68)); // 91.5 and 67.5 round up
        assert_eq!(out_size(3, 1, 0.1), (1, 1));
        assert!(!resamples(None, 4));
        assert!(!resamples(Some(4.0), 4));
        assert!(resamples(Some(3.0), 4));
        let p = Pixels::Eight(image::RgbaImage::from_fn(8, 6, |x, y| {
            image::Rgba([(x * 30) as u8, (y * 40) as u8, 7, 255])
        }));
        let same = resample(p.clone(), 8, 6);
        assert_eq!(same.to_rgba8().as_raw(), p.to_rgba8().as_raw());
        assert_eq!(resample(p, 12, 9).dimensions(), (12, 9));
    }
}
