//! NCNN import: a `.param` text graph and its `.bin` weights (float32 or float16-flagged), lowered
//! to the same [`Model`] as ONNX files. This is the format Upscayl and the ncnn upscalers ship.
//!
//! Layers: Input, Split, Convolution, ConvolutionDepthWise, Deconvolution (with their fused
//! activations), ReLU / LeakyReLU and PReLU (fused into the convolution before them or alone),
//! Sigmoid, Concat, Pooling (max, average, global average), Padding, PixelShuffle, Interp (nearest,
//! whole factors), BinaryOp and Eltwise (add, sub, mul, div of two blobs). Anything else is refused
//! with the layer's name and type; so is a `.param` line that does not fit its type (a blob count,
//! a size out of range), never a panic.
//!
//! `param.rs` parses the text into layer lines, `weights.rs` reads the `.bin` in layer order, and
//! the `Builder` of `build.rs` lowers each line to IR layers (`conv.rs`: convolutions and
//! activations, `spatial.rs`: pooling, padding, resampling); [`crate::passes::run`] then rewrites
//! the model.

mod build;
mod conv;
mod param;
mod spatial;
mod weights;

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::model::Model;

/// Loads `param` and the `.bin` beside it (same stem).
pub fn load(param: &Path) -> Result<Model> {
    let bin = param.with_extension("bin");
    let text = std::fs::read_to_string(param)
        .with_context(|| format!("cannot read {}", param.display()))?;
    let data = std::fs::read(&bin)
        .with_context(|| format!("cannot read the weights {}", bin.display()))?;
    load_bytes(&text, &data, &param.display().to_string())
}

/// Lowers the `.param` text `param` with its `.bin` bytes `bin`; `name` names the model.
pub fn load_bytes(param: &str, bin: &[u8], name: &str) -> Result<Model> {
    let lines = param::parse(param)?;
    let mut builder = build::Builder::new(&lines, bin);
    for l in &lines {
        builder.lower(l)?;
    }
    let model = builder.finish(name)?;
    crate::model::limits::check(&model)?;
    let (model, _) = crate::passes::run(model);
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::load_bytes;

    const INPUT: &str = "Input data 0 1 data 0=8 1=8 2=3";
    const CONV: &str = "Convolution conv 1 1 data out 0=3 1=1 6=9";

    /// A `.param` of `lines` with the magic and counts lines.
    fn param(lines: &[&str]) -> String {
        let blobs = lines.len() + 1;
        format!("7767517\n{} {blobs}\n{}\n", lines.len(), lines.join("\n"))
    }

    /// The weights of [`CONV`]: a tag, then nine float32 zeros.
    fn bin() -> Vec<u8> {
        vec![0; 4 + 9 * 4]
    }

    #[test]
    fn a_tiny_model_loads() {
        let model = load_bytes(&param(&[INPUT, CONV]), &bin(), "t").unwrap();
        assert_eq!((model.input_channels, model.output_channels), (3, 3));
        assert_eq!(model.output_name, "out");
        assert_eq!(model.layers.len(), 1);
    }

    /// Lines that once indexed past a list, looked up a missing blob or overflowed a u32: each is
    /// an error naming the layer.
    #[test]
    fn bad_layer_lines_are_errors_not_panics() {
        let cases: &[(&[&str], &str)] = &[
            (&["Input data 0 0", CONV], "layer data (Input)"),
            (&[INPUT, "Split sp 0 2 a b", CONV], "layer sp (Split)"),
            (
                &[INPUT, "Convolution conv 1 0 data 0=3 1=1 6=9"],
                "layer conv",
            ),
            (&[INPUT, "Concat cat 0 1 out 0=1"], "layer cat (Concat)"),
            (
                &[INPUT, "Deconvolution up 1 1 data out 0=1073741824 1=2 6=9"],
                "layer up (Deconvolution)",
            ),
            (
                &[INPUT, "Convolution big 1 1 data out 0=65536 1=65536 6=9"],
                "layer big",
            ),
            (
                &[INPUT, "Convolution conv 1 2 data out x 0=3 1=1 6=9"],
                "layer conv",
            ),
            (&[INPUT, CONV, "Sigmoid sig 1 1 data out"], "layer sig"),
            (
                &[INPUT, "Convolution conv 1 1 data out 0=3 1=1 3=0 6=9"],
                "layer conv",
            ),
            (&[INPUT, "PReLU pr 1 1 data out 0=-1"], "layer pr (PReLU)"),
            (&[INPUT, "PixelShuffle ps 1 1 data out 0=65536"], "layer ps"),
            (
                &[INPUT, "Padding pad 1 1 data out 7=4294967295"],
                "layer pad",
            ),
            (&[INPUT, "Sigmoid sig 2 1 data data out"], "layer sig"),
            // An upscale factor beyond the limits (it panicked once the GPU started).
            (
                &[
                    INPUT,
                    CONV,
                    "Interp up 1 1 out big 0=1 1=67108864.0 2=67108864.0",
                ],
                "layer up (Resize)",
            ),
            (
                &[
                    INPUT,
                    CONV,
                    "Pooling pool 1 1 out big 0=0 1=2 2=2 3=1000000",
                ],
                "layer pool",
            ),
        ];
        for (lines, want) in cases {
            let text = param(lines);
            let result = std::panic::catch_unwind(|| load_bytes(&text, &bin(), "t").map(|_| ()));
            let e = match result {
                Ok(Err(e)) => format!("{e:#}"),
                Ok(Ok(())) => panic!("{lines:?} loaded"),
                Err(_) => panic!("{lines:?} panicked"),
            };
            assert!(e.contains(want), "{lines:?}: {e}");
        }
    }
}
