//! PNG and TIFF outputs written by rows as their tiles land: the same pixels as an output written
//! whole, and no file at all when the write fails part way. The tiny test model (fixed 160 px
//! tiles: 64 px with 48 px of context) keeps them quick on a software GPU while an image spans
//! several bands of rows.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::path::Path;

use common::batchwise;

/// The tiny 2x model with 64 px tiles, a batch of 5.
const MODEL_ARGS: [&str; 6] = ["--tile-size", "64", "--context", "48", "-b", "5"];

/// Runs the tiny 2x model over `inputs` with 64 px tiles into `out` as `format`.
fn run(inputs: &Path, out: &Path, format: &str) -> serde_json::Value {
    let output = batchwise()
        .args(["run", "-m"])
        .arg(common::fixture("user/pixel_shuffle_2x.onnx"))
        .args(MODEL_ARGS)
        .args(["--json", "--format", format])
        .arg("-o")
        .arg(out)
        .arg(inputs)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{json:#}");
    json
}

/// An odd-sized photo-like image (203 x 291: 4 x 5 tiles of 64 px, the last row and column
/// partial) with an alpha plane that varies, and a 16-bit one (131 x 157).
fn inputs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let photo = image::open(common::fixture("photo-60x44.png"))
        .unwrap()
        .to_rgb8();
    let at = |x: u32, y: u32| photo.get_pixel(x % 60, y % 44);
    image::RgbaImage::from_fn(203, 291, |x, y| {
        let p = at(x, y);
        image::Rgba([p[0], p[1], p[2], ((x * 3 + y) % 256) as u8])
    })
    .save(dir.join("alpha.png"))
    .unwrap();
    image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(131, 157, |x, y| {
        let p = at(x, y);
        image::Rgb([0, 1, 2].map(|c| u16::from(p[c]) * 256 + (x * 7 + y * 3) as u16))
    })
    .save(dir.join("deep.png"))
    .unwrap();
}

/// A streamed PNG and TIFF decode to the same pixels, and to those of the lossless WebP output,
/// which is written whole (16-bit outputs narrowed to 8 bits as the WebP output is); the 16-bit
/// input stays 16-bit and the alpha is kept.
#[test]
fn streamed_png_and_tiff_equal_the_output_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let inputs_dir = dir.path().join("in");
    inputs(&inputs_dir);
    let decoded = |format: &str, ext: &str| {
        let out = dir.path().join(format);
        run(&inputs_dir, &out, format);
        ["alpha", "deep"].map(|stem| image::open(out.join(format!("{stem}.{ext}"))).unwrap())
    };
    let [png_alpha, png_deep] = decoded("png", "png");
    let [tiff_alpha, tiff_deep] = decoded("tiff", "tiff");
    let [webp_alpha, webp_deep] = decoded("webp", "webp");
    assert_eq!((png_alpha.width(), png_alpha.height()), (406, 582));
    assert_eq!(png_alpha.color(), image::ColorType::Rgba8);
    assert_eq!(png_deep.color(), image::ColorType::Rgb16);
    assert_eq!(png_alpha, tiff_alpha);
    assert_eq!(png_deep, tiff_deep);
    assert_eq!(png_alpha.to_rgba8(), webp_alpha.to_rgba8());
    assert_eq!(png_deep.to_rgb8(), webp_deep.to_rgb8());
    // The alpha plane varies: it was carried, not filled.
    let alpha = png_alpha.to_rgba8();
    assert!(alpha.pixels().any(|p| p[3] < 100) && alpha.pixels().any(|p| p[3] > 200));
}

/// A write that fails part way (the file size limit, `ulimit -f`) fails that image alone and
/// leaves no file for it, neither the output nor its temporary file; the other image is written.
#[cfg(target_os = "linux")]
#[test]
fn a_streamed_write_that_fails_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let inputs_dir = dir.path().join("in");
    std::fs::create_dir_all(&inputs_dir).unwrap();
    // Noise does not compress: its 2x PNG (about 1.4 MB) is far over the 256 KiB limit.
    let mut state = 0x9e37_79b9_u32;
    let noise = image::RgbImage::from_fn(301, 211, |_, _| {
        image::Rgb([0; 3].map(|_: u8| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        }))
    });
    noise.save(inputs_dir.join("noise.png")).unwrap();
    std::fs::copy(
        common::fixture("photo-60x44.png"),
        inputs_dir.join("small.png"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let bin = assert_cmd::cargo::cargo_bin("batchwise");
    // Writes past the limit fail with EFBIG instead of killing the process (SIGXFSZ ignored).
    let script = "trap '' XFSZ; ulimit -f 256; exec \"$@\"";
    let output = std::process::Command::new("bash")
        .args(["-c", script, "bash"])
        .arg(bin)
        .arg("run")
        .arg("-m")
        .arg(common::fixture("user/pixel_shuffle_2x.onnx"))
        .args(MODEL_ARGS)
        .args(["--json", "-o"])
        .arg(&out)
        .arg(&inputs_dir)
        .env("RUST_LOG", "error")
        .env("BATCHWISE_CONV_ROWS", "16")
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(3), "{json:#}");
    let status = |name: &str| {
        let items = json["items"].as_array().unwrap();
        let item = items
            .iter()
            .find(|i| i["input"].as_str().unwrap().ends_with(name))
            .unwrap();
        (item["status"].clone(), item["error"].clone())
    };
    let (noise_status, error) = status("noise.png");
    assert_eq!(noise_status, "failed", "{json:#}");
    assert!(error.as_str().unwrap().contains("cannot write"), "{error}");
    assert_eq!(status("small.png").0, "done", "{json:#}");
    let mut left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["batchwise-manifest.jsonl", "small.png"]);
}
