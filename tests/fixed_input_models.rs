//! Fixed-input models against onnxruntime: `classify` and `embed` (EfficientNet-Lite0) and
//! `remove-background` (MediaPipe selfie segmentation).
//!
//! Tolerance: max |diff| <= 1e-3 on logits and on the 1280-d features. Both engines compute in
//! float32 but sum in different orders through 49 convolutions; 1e-3 is far below the gap between
//! neighbouring top-5 logits and far above the ~1e-5 the two engines actually differ by.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use batchwise::builtin;
use batchwise::engine::BatchRunner;
use batchwise::kernels::pack::PixelDepth;

fn pixels(img: &image::RgbaImage) -> Vec<u32> {
    img.pixels()
        .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 255]))
        .collect()
}

fn top5(v: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(5);
    idx
}

#[test]
fn classify_and_embed_match_onnxruntime_in_a_batch() {
    let engine = common::engine();
    let photo = image::open(common::fixture("photo-224.png"))
        .unwrap()
        .to_rgba8();
    let flipped = image::imageops::flip_horizontal(&photo);
    // A batch of two different images: the second must not disturb the first.
    let mut input = pixels(&photo);
    input.extend(pixels(&flipped));
    let labels = builtin::imagenet_labels();
    for (id, file, len) in [
        ("classify", "photo-224.efficientnet.logits.f32", 1000),
        ("embed", "photo-224.efficientnet.feat.f32", 1280),
    ] {
        let b = builtin::find(id).unwrap();
        let model = engine.load(b.load().unwrap()).unwrap();
        let runner = BatchRunner::new(&engine, &model, 2, 224, 224, &b.spec.input_map).unwrap();
        let out = runner.run_f32(&input, 2).unwrap();
        assert_eq!(out.len(), 2 * len);
        let expected = common::reference(file);
        let got = &out[..len];
        let worst = common::max_abs_diff(got, &expected);
        eprintln!("{id}: max |diff| {worst:e}");
        assert!(worst <= 1e-3, "{id}: max |diff| {worst}");
        assert_ne!(
            &out[len..],
            got,
            "{id}: the flipped image gave the same output"
        );
        if id == "classify" {
            let (g, e) = (top5(got), top5(&expected));
            let names: Vec<&str> = g.iter().map(|&i| labels[i].as_str()).collect();
            eprintln!("top-5: {names:?}");
            assert_eq!(g, e, "top-5 differs: {names:?}");
        }
    }
}

/// `remove-background` (NHWC input and output, bilinear resizes, squeeze-excite multiplies) against
/// onnxruntime: the mask in [0, 1] at PSNR >= 60 dB.
#[test]
fn remove_background_matches_onnxruntime() {
    let engine = common::engine();
    let photo = image::open(common::fixture("photo-256.png"))
        .unwrap()
        .to_rgba8();
    let b = builtin::find("remove-background").unwrap();
    let model = engine.load(b.load().unwrap()).unwrap();
    let runner = BatchRunner::new(&engine, &model, 1, 256, 256, &b.spec.input_map).unwrap();
    let got = runner.run_f32(&pixels(&photo), 1).unwrap();
    let expected = common::reference("photo-256.remove-background.f32");
    let psnr = common::psnr(&got, &expected);
    eprintln!(
        "remove-background: PSNR {psnr:.1} dB, max |diff| {:e}",
        common::max_abs_diff(&got, &expected)
    );
    assert!(psnr >= 60.0, "PSNR {psnr:.1} dB");
}

/// `detect-faces` (BlazeFace: channel Pad, MaxPool, NHWC heads reshaped and concatenated, two
/// outputs) against onnxruntime: raw outputs within 1e-3 (the regressors are in pixels, up to
/// ~100), and the decoded faces (same decoder on both) pair up with IoU >= 0.9. At batch 9 too,
/// split into lanes of 4 items (as on an adapter that binds less; its two outputs are read back
/// from each lane): every item gives the same outputs.
#[test]
fn detect_faces_matches_onnxruntime() {
    use batchwise::faces;
    let engine = common::engine();
    let photo = image::open(common::fixture("photo-128-faces.png"))
        .unwrap()
        .to_rgba8();
    let b = builtin::find("detect-faces").unwrap();
    let model = engine.load(b.load().unwrap()).unwrap();
    let runner = BatchRunner::new(&engine, &model, 1, 128, 128, &b.spec.input_map).unwrap();
    let out = runner.run_f32_all(&pixels(&photo), 1).unwrap();
    let (regs, logits) = (&out[0], &out[1]);
    assert_eq!((regs.len(), logits.len()), (896 * 16, 896));
    let (eregs, elogits) = (
        common::reference("photo-128-faces.detect-faces.regressors.f32"),
        common::reference("photo-128-faces.detect-faces.logits.f32"),
    );
    let (dr, dl) = (
        common::max_abs_diff(regs, &eregs),
        common::max_abs_diff(logits, &elogits),
    );
    let batch = 9;
    let item = batchwise::engine::memory::ItemBytes::of(
        &model.model,
        128,
        128,
        model.precision,
        PixelDepth::Eight,
    )
    .unwrap();
    let runner = BatchRunner::with_binding_limit(
        &engine,
        &model,
        batch,
        [128, 128],
        &b.spec.input_map,
        4 * item.largest_buffer,
        PixelDepth::Eight,
    )
    .unwrap();
    assert_eq!(runner.items_per_lane, 4);
    let out = runner
        .run_f32_all(&pixels(&photo).repeat(batch as usize), batch)
        .unwrap();
    for (item, (r, l)) in out[0].chunks(896 * 16).zip(out[1].chunks(896)).enumerate() {
        assert_eq!((r, l), (&regs[..], &logits[..]), "item {item} of {batch}");
    }
    eprintln!("detect-faces: max |diff| regressors {dr:e}, logits {dl:e}");
    assert!(dr <= 1e-3 && dl <= 1e-3, "regressors {dr}, logits {dl}");
    let ours = faces::decode(regs, logits, 0.5, 0.3);
    let theirs = faces::decode(&eregs, &elogits, 0.5, 0.3);
    eprintln!("faces: {} (onnxruntime: {})", ours.len(), theirs.len());
    assert!(!theirs.is_empty(), "the fixture should show faces");
    assert_eq!(ours.len(), theirs.len());
    for t in &theirs {
        let best = ours.iter().map(|o| o.iou(t)).fold(0.0, f32::max);
        assert!(best >= 0.9, "a face matches at IoU {best}");
    }
}

/// Float16 activations for the fixed-input models: the `remove-background` mask stays >= 45 dB
/// from onnxruntime's float32, and `classify` keeps onnxruntime's top-5 labels (its logits move by
/// float16's rounding, about 1e-2; figures printed for BENCHMARKS.md).
#[test]
fn float16_mask_and_labels_stay_close_to_onnxruntime() {
    use batchwise::kernels::Precision;
    let engine = common::engine();
    if !common::has_float16(&engine) {
        return;
    }
    let photo = image::open(common::fixture("photo-256.png"))
        .unwrap()
        .to_rgba8();
    let b = builtin::find("remove-background").unwrap();
    let model = engine.load_with(b.load().unwrap(), Precision::F16).unwrap();
    let runner = BatchRunner::new(&engine, &model, 1, 256, 256, &b.spec.input_map).unwrap();
    let got = runner.run_f32(&pixels(&photo), 1).unwrap();
    let expected = common::reference("photo-256.remove-background.f32");
    let psnr = common::psnr(&got, &expected);
    eprintln!(
        "remove-background float16: PSNR {psnr:.1} dB, max |diff| {:e}",
        common::max_abs_diff(&got, &expected)
    );
    assert!(psnr >= 45.0, "PSNR {psnr:.1} dB");

    let photo = image::open(common::fixture("photo-224.png"))
        .unwrap()
        .to_rgba8();
    let b = builtin::find("classify").unwrap();
    let model = engine.load_with(b.load().unwrap(), Precision::F16).unwrap();
    let runner = BatchRunner::new(&engine, &model, 1, 224, 224, &b.spec.input_map).unwrap();
    let got = runner.run_f32(&pixels(&photo), 1).unwrap();
    let expected = common::reference("photo-224.efficientnet.logits.f32");
    eprintln!(
        "classify float16: max |diff| of the logits {:e}",
        common::max_abs_diff(&got, &expected)
    );
    assert_eq!(top5(&got), top5(&expected));
}
