//! Output control on the command line: `--scale` (resampled with Lanczos3), `--format same`,
//! lossy WebP with `--quality`, `--png-compression`, the ICC profile in TIFF outputs and only
//! where its colour space is the output's, and the EXIF in TIFF outputs.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::path::{Path, PathBuf};

use common::batchwise;
use image::{ImageDecoder as _, ImageEncoder as _};

/// Runs `batchwise run --tile-size 32 EXTRA -o OUT INPUTS`, expecting success.
fn run(out: &Path, extra: &[&str], inputs: &[PathBuf]) {
    let output = batchwise()
        .args(["run", "--tile-size", "32"])
        .args(extra)
        .arg("-o")
        .arg(out)
        .args(inputs)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An ICC profile of colour space `space` (a header the colour-space check reads; decoders pass
/// the bytes through).
fn profile(space: &[u8; 4]) -> Vec<u8> {
    let mut p: Vec<u8> = (0..300u32).map(|i| (i * 13 % 251) as u8).collect();
    p[16..20].copy_from_slice(space);
    p
}

/// A PNG of the fixture's top-left 20 x 9 pixels (RGB, or grey) with `icc`.
fn png_with_icc(path: &Path, grey: bool, icc: Vec<u8>) {
    let img = image::open(common::fixture("photo-60x44.png"))
        .unwrap()
        .crop_imm(0, 0, 20, 9);
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut bytes);
    encoder.set_icc_profile(icc).unwrap();
    match grey {
        true => encoder.write_image(img.to_luma8().as_raw(), 20, 9, image::ExtendedColorType::L8),
        false => encoder.write_image(
            img.to_rgb8().as_raw(),
            20,
            9,
            image::ExtendedColorType::Rgb8,
        ),
    }
    .unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A 2x model at `--scale 1.5` writes 90 x 66 from 60 x 44, and its output is the 2x output
/// resampled with Lanczos3: the scaled output is held whole and resampled by the same filter
/// (`batchwise::resize`, over RGBA), so the two agree exactly (tolerance 0 levels), as PNG and as
/// TIFF. A
/// fixed-input model refuses `--scale` with the reason.
#[test]
fn a_2x_model_at_scale_1_5_is_its_output_resampled() {
    let dir = tempfile::tempdir().unwrap();
    let input = vec![common::fixture("photo-60x44.png")];
    let plain = dir.path().join("plain");
    run(&plain, &[], &input);
    let full = image::open(plain.join("photo-60x44.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(full.dimensions(), (120, 88));
    let rgba = image::DynamicImage::ImageRgb8(full).to_rgba8();
    let lanczos = image::imageops::FilterType::Lanczos3;
    let want = image::DynamicImage::ImageRgba8(batchwise::resize::resize(&rgba, 90, 66, lanczos))
        .to_rgb8();
    for format in ["png", "tiff"] {
        let out = dir.path().join(format);
        run(
            &out,
            &[
                "--scale",
                "1.5",
                "--format",
                format,
                "--name",
                "{stem}_x{scale}.{ext}",
            ],
            &input,
        );
        let got = image::open(out.join(format!("photo-60x44_x1.5.{format}")))
            .unwrap()
            .to_rgb8();
        assert_eq!(got.dimensions(), (90, 66), "{format}");
        let worst = got
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert_eq!(worst, 0, "{format}");
    }
    // The model's own scale is written as without --scale (by rows, not resampled).
    let same = dir.path().join("same");
    run(&same, &["--scale", "2"], &input);
    assert_eq!(
        std::fs::read(same.join("photo-60x44.png")).unwrap(),
        std::fs::read(plain.join("photo-60x44.png")).unwrap()
    );
    let refused = batchwise()
        .args(["run", "-m", "classify", "--scale", "2", "-o"])
        .arg(dir.path().join("c"))
        .args(&input)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(e.contains("not an image-to-image model"), "{e}");
    let bad = batchwise()
        .args(["run", "--scale", "0", "-o", "x", "y.png"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// `--format same`: JPEG, PNG, WebP and TIFF inputs give outputs of their own format (by
/// content, not only by name); a BMP, which batchwise does not write, gives a PNG.
#[test]
fn format_same_writes_each_output_in_its_inputs_format() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let small = image::open(common::fixture("photo-60x44.png"))
        .unwrap()
        .crop_imm(0, 0, 20, 9)
        .to_rgb8();
    for name in ["a.jpg", "b.png", "c.webp", "d.tif", "e.bmp"] {
        small.save(inputs.join(name)).unwrap();
    }
    let out = dir.path().join("out");
    run(&out, &["--format", "same"], std::slice::from_ref(&inputs));
    for (name, format) in [
        ("a.jpg", image::ImageFormat::Jpeg),
        ("b.png", image::ImageFormat::Png),
        ("c.webp", image::ImageFormat::WebP),
        ("d.tiff", image::ImageFormat::Tiff),
        ("e.png", image::ImageFormat::Png),
    ] {
        let reader = image::ImageReader::open(out.join(name))
            .unwrap()
            .with_guessed_format()
            .unwrap();
        assert_eq!(reader.format(), Some(format), "{name}");
        assert_eq!(reader.decode().unwrap().width(), 40, "{name}");
    }
    // A pattern must end with .{ext}: each output's extension is its own.
    let e = batchwise()
        .args(["run", "--format", "same", "--name", "{stem}.png", "-o"])
        .arg(dir.path().join("x"))
        .arg(&inputs)
        .output()
        .unwrap();
    assert_eq!(e.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&e.stderr).contains("each input's format"));
}

/// Lossy WebP (`--quality`) is smaller than lossless WebP of the same output and decodes to its
/// size; `--png-compression best` gives a smaller file than level 0 (stored), which holds the
/// raw rows; a TIFF output carries the input's RGB profile, written by rows and whole
/// (resampled); a grey profile is not copied onto the RGB output.
#[test]
fn webp_quality_png_levels_and_icc_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let input = vec![common::fixture("photo-60x44.png")];
    let size = |p: PathBuf| std::fs::metadata(p).unwrap().len();

    let (lossless, lossy) = (dir.path().join("lossless"), dir.path().join("lossy"));
    run(&lossless, &["--format", "webp"], &input);
    run(&lossy, &["--format", "webp", "--quality", "80"], &input);
    let (a, b) = (
        size(lossless.join("photo-60x44.webp")),
        size(lossy.join("photo-60x44.webp")),
    );
    assert!(b < a, "lossy {b} >= lossless {a}");
    let decoded = image::open(lossy.join("photo-60x44.webp")).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (120, 88));

    let (stored, best) = (dir.path().join("stored"), dir.path().join("best"));
    run(&stored, &["--png-compression", "0"], &input);
    run(&best, &["--png-compression", "best"], &input);
    let (s, b) = (
        size(stored.join("photo-60x44.png")),
        size(best.join("photo-60x44.png")),
    );
    assert!(s >= 120 * 88 * 3, "stored {s}");
    assert!(b < s * 3 / 4, "best {b}, stored {s}");
    assert_eq!(
        image::open(best.join("photo-60x44.png")).unwrap().to_rgb8(),
        image::open(stored.join("photo-60x44.png"))
            .unwrap()
            .to_rgb8()
    );

    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    png_with_icc(&inputs.join("rgb.png"), false, profile(b"RGB "));
    png_with_icc(&inputs.join("grey.png"), true, profile(b"GRAY"));
    let icc = |p: PathBuf| -> Option<Vec<u8>> {
        let file = std::io::BufReader::new(std::fs::File::open(&p).unwrap());
        match p.extension().unwrap().to_str().unwrap() {
            "tiff" => image::codecs::tiff::TiffDecoder::new(file)
                .unwrap()
                .icc_profile()
                .unwrap(),
            _ => image::codecs::png::PngDecoder::new(file)
                .unwrap()
                .icc_profile()
                .unwrap(),
        }
    };
    for extra in [
        &["--format", "tiff"][..],
        &["--format", "tiff", "--scale", "3"],
    ] {
        let out = dir.path().join(extra.join("_"));
        run(&out, extra, std::slice::from_ref(&inputs));
        assert_eq!(
            icc(out.join("rgb.tiff")),
            Some(profile(b"RGB ")),
            "{extra:?}"
        );
        assert_eq!(icc(out.join("grey.tiff")), None, "{extra:?}");
    }
    let out = dir.path().join("png");
    run(&out, &[], std::slice::from_ref(&inputs));
    assert_eq!(icc(out.join("rgb.png")), Some(profile(b"RGB ")));
    assert_eq!(icc(out.join("grey.png")), None);
}

/// The photo's EXIF tags a TIFF file holds, as a reader finds them: Make and Model in the
/// image's directory; DateTimeOriginal, ExposureTime and PixelXDimension in its Exif directory;
/// and whether it has an Orientation.
fn tiff_exif(path: &Path) -> serde_json::Value {
    use tiff::decoder::ifd::Value;
    use tiff::tags::{IfdPointer, Tag};
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut d = tiff::decoder::Decoder::new(file).unwrap();
    let text = |v: Option<Value>| v.map(|v| v.into_string().unwrap());
    let make = text(d.find_tag(Tag::Make).unwrap());
    let model = text(d.find_tag(Tag::Model).unwrap());
    let orientation = d.find_tag(Tag::Orientation).unwrap().is_some();
    let at = d
        .find_tag_unsigned::<u64>(Tag::ExifDirectory)
        .unwrap()
        .unwrap();
    let dir = d.read_directory(IfdPointer(at)).unwrap();
    let mut tags = d.read_directory_tags(&dir);
    let original = text(tags.find_tag(Tag::Unknown(0x9003)).unwrap());
    let exposure = match tags.find_tag(Tag::Unknown(0x829A)).unwrap() {
        Some(Value::Rational(n, d)) => Some([n, d]),
        _ => None,
    };
    let pixel_x = tags.find_tag(Tag::Unknown(0xA002)).unwrap().is_some();
    serde_json::json!({
        "make": make, "model": model, "orientation": orientation,
        "date_time_original": original, "exposure_time": exposure, "pixel_x_dimension": pixel_x,
    })
}

/// A JPEG with a phone's EXIF (`tests/fixtures/images/make_exif_jpeg.py`: Orientation 6) gives
/// TIFF outputs, written by rows and written whole (`--scale`, resampled), upright and carrying
/// its Make, Model, DateTimeOriginal and ExposureTime (read back with the tiff crate's decoder),
/// without the Orientation (the pixels are upright) or the old pixel size.
#[test]
fn tiff_outputs_carry_the_inputs_exif() {
    let dir = tempfile::tempdir().unwrap();
    let input = vec![common::fixture("images/exif-portrait.jpg")];
    let want = serde_json::json!({
        "make": "batchwise-cam", "model": "BW-1", "orientation": false,
        "date_time_original": "2024:05:06 07:08:09", "exposure_time": [1, 250],
        "pixel_x_dimension": false,
    });
    // By rows at the model's scale (9 x 20 upright, doubled), whole at 1.5 (resampled).
    for (name, extra, size) in [
        ("rows", &["--format", "tiff"][..], (18, 40)),
        (
            "whole",
            &["--format", "tiff", "--scale", "1.5"][..],
            (14, 30),
        ),
    ] {
        let out = dir.path().join(name);
        run(&out, extra, &input);
        let path = out.join("exif-portrait.tiff");
        let img = image::open(&path).unwrap();
        assert_eq!((img.width(), img.height()), size, "{name}");
        assert_eq!(tiff_exif(&path), want, "{name}");
    }
}
