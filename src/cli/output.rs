//! `run`'s output options beyond format, quality and name: the output scale (`--scale`) and the
//! PNG compression level.

use crate::job::export::encode::PngCompression;

/// Output scale and PNG compression (flattened into `run`'s flags, under "Output").
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output scale when it is not the model's: a 4x model written at 2x or 3x (or 1.5), the
    /// model's output resampled with Lanczos3. Image-to-image models only. Such outputs are
    /// held whole at the model's scale before they are resampled (PNG and TIFF outputs at the
    /// model's own scale are written by rows); --max-memory counts it. Default: the model's.
    #[arg(long, value_parser = parse_scale, help_heading = "Output", value_name = "F")]
    pub scale: Option<f32>,
    /// PNG compression: fast (fdeflate; stored where it would grow noisy data), balanced (zlib
    /// 6), best (zlib 9, smallest and slowest), or a zlib level 0-9 (0: stored).
    #[arg(long, default_value = "fast", value_parser = clap::value_parser!(PngCompression), help_heading = "Output", value_name = "fast|balanced|best|0-9")]
    pub png_compression: PngCompression,
    /// With a chain (-m a,b), also write each step's result but the last beside the output,
    /// named by the step: photo.png and photo.enhance-low-light.png (same folder and format).
    /// Each is what the step alone would write (its output clamped, 8 or 16-bit), at the
    /// step's own scale (--scale resamples the final output only).
    #[arg(long, help_heading = "Output")]
    pub keep_steps: bool,
}

impl clap::builder::ValueParserFactory for PngCompression {
    type Parser = fn(&str) -> Result<PngCompression, String>;
    fn value_parser() -> Self::Parser {
        |s| s.parse()
    }
}

/// A scale above 0 and at most [`crate::job::MAX_SCALE`].
fn parse_scale(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(f) if f > 0.0 && f <= crate::job::MAX_SCALE => Ok(f),
        _ => Err(format!(
            "{s:?} is not an output scale above 0 and at most {} (for example 2, 3 or 1.5)",
            crate::job::MAX_SCALE
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_positive_and_bounded() {
        assert_eq!(parse_scale("1.5"), Ok(1.5));
        assert_eq!(parse_scale("3"), Ok(3.0));
        for bad in ["0", "-2", "17", "x", "NaN", "inf"] {
            assert!(parse_scale(bad).is_err(), "{bad}");
        }
    }
}
