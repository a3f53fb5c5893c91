//! The built-in upscaler end to end on the GPU: batching does not change the output, tiles stitch
//! without seams, and the result matches onnxruntime.
//!
//! References come from `tests/reference/make_reference.py` (onnxruntime, CPU, float32).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use batchwise::builtin;
use batchwise::upscale::TiledUpscaler;

/// The float output before 8-bit conversion against onnxruntime: >= 60 dB, for a batch of 1 and
/// of 8, with tiles small enough that the image is cut into 6 of them (seams included).
/// Independent float32 engines agree at 90 dB and more; a JPEG re-encode still scores 40 dB.
#[test]
fn matches_onnxruntime_at_batch_1_and_8() {
    let engine = common::engine();
    let builtin = builtin::find("upscale-photo-2x").unwrap();
    let model = engine.load(builtin.load().unwrap()).unwrap();
    let expected = common::reference("photo-60x44.upscale-photo-2x.f32");
    for batch in [1, 8] {
        let up = TiledUpscaler::new(&engine, &model, builtin.spec, batch, Some(24)).unwrap();
        assert_eq!(up.tiles(60, 44).len(), 6);
        let got = up.upscale_f32(&common::photo()).unwrap();
        let psnr = common::psnr(&got, &expected);
        let worst = common::max_abs_diff(&got, &expected);
        eprintln!("batch {batch}: PSNR {psnr:.1} dB, max |diff| {worst:e}");
        assert!(psnr >= 60.0, "batch {batch}: PSNR {psnr:.1} dB < 60 dB");
    }
}

/// The other built-in image models against onnxruntime on the same photo: >= 60 dB on the float output.
#[test]
fn denoise_and_anime_models_match_onnxruntime() {
    let engine = common::engine();
    for (id, tile) in [
        ("upscale-photo-2x-denoise3", 24),
        ("upscale-anime-4x", 32),
        ("upscale-anime-2x", 32),
        ("enhance-low-light", 32),
    ] {
        let builtin = builtin::find(id).unwrap();
        let model = engine.load(builtin.load().unwrap()).unwrap();
        let expected = common::reference(&format!("photo-60x44.{id}.f32"));
        let up = TiledUpscaler::new(&engine, &model, builtin.spec, 4, Some(tile)).unwrap();
        let got = up.upscale_f32(&common::photo()).unwrap();
        let psnr = common::psnr(&got, &expected);
        eprintln!(
            "{id}: PSNR {psnr:.1} dB, max |diff| {:e}",
            common::max_abs_diff(&got, &expected)
        );
        assert!(psnr >= 60.0, "{id}: PSNR {psnr:.1} dB < 60 dB");
    }
}

/// 8-bit outputs of the same images at batch 1 and batch 8 (tiles of several images sharing a
/// batch) differ by at most 1/255.
#[test]
fn batch_size_does_not_change_the_output() {
    let engine = common::engine();
    let builtin = builtin::find("upscale-photo-2x").unwrap();
    let model = engine.load(builtin.load().unwrap()).unwrap();
    let base = common::photo();
    let images = vec![
        base.clone(),
        image::imageops::crop_imm(&base, 5, 3, 31, 40).to_image(),
        image::imageops::flip_horizontal(&base),
    ];
    let one = TiledUpscaler::new(&engine, &model, builtin.spec, 1, Some(24))
        .unwrap()
        .upscale_all(&images)
        .unwrap();
    let eight = TiledUpscaler::new(&engine, &model, builtin.spec, 8, Some(24))
        .unwrap()
        .upscale_all(&images)
        .unwrap();
    // The same batch of 8 split into lanes of 3 items, as on an adapter that binds less.
    // The largest buffer an item needs: conv6's output (256 x 26 x 26 floats) on the direct
    // kernel, the Winograd scratch on the split one (BATCHWISE_WINOGRAD).
    let side = 24 + 2 * builtin.spec.context;
    let depth = batchwise::kernels::pack::PixelDepth::Eight;
    let per_item = batchwise::engine::memory::ItemBytes::of_loaded(&model, side, side, depth)
        .unwrap()
        .largest_buffer;
    let lanes = TiledUpscaler::with_binding_limit(
        &engine,
        &model,
        builtin.spec,
        8,
        Some(24),
        3 * per_item,
        Default::default(),
    )
    .unwrap();
    assert_eq!(lanes.runner().items_per_lane, 3);
    let laned = lanes.upscale_all(&images).unwrap();
    for (a, b) in eight.iter().zip(&laned) {
        assert_eq!(a.as_raw(), b.as_raw(), "lanes change the output");
    }
    for (a, b) in one.iter().zip(&eight) {
        assert_eq!(a.dimensions(), b.dimensions());
        let worst = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap();
        assert!(worst <= 1, "batch 1 vs 8 differ by {worst}/255");
    }
    // The 8-bit output also matches onnxruntime's output rounded to 8 bits.
    let expected = common::reference("photo-60x44.upscale-photo-2x.f32");
    let (w, h) = one[0].dimensions();
    let plane = (w * h) as usize;
    let mut worst = 0u8;
    for (i, px) in one[0].pixels().enumerate() {
        for c in 0..3 {
            let e = (expected[c * plane + i] * 255.0).round().clamp(0.0, 255.0) as u8;
            worst = worst.max(px[c].abs_diff(e));
        }
    }
    assert!(
        worst <= 1,
        "8-bit output differs from onnxruntime by {worst}/255"
    );
}

/// The planner predicts what the engine's ledger measures: within 10% (uniform parameter records,
/// a few KiB, are not planned).
#[test]
fn memory_plan_matches_the_ledger() {
    let engine = common::engine();
    for (id, tile, batch) in [("upscale-photo-2x", 32, 4), ("upscale-anime-4x", 24, 3)] {
        let builtin = builtin::find(id).unwrap();
        let ledger = &engine.gpu.ledger;
        let base = ledger.in_use_bytes();
        let model = engine.load(builtin.load().unwrap()).unwrap();
        let side = tile + 2 * builtin.spec.context;
        let plan = batchwise::engine::plan(&model, side, side, batch).unwrap();
        ledger.reset_peak();
        let up = TiledUpscaler::new(&engine, &model, builtin.spec, batch, Some(tile)).unwrap();
        up.upscale_all(&[common::photo()]).unwrap();
        let measured = ledger.peak_bytes() - base;
        let planned = plan.total_bytes();
        let ratio = measured as f64 / planned as f64;
        eprintln!("{id}: planned {planned} B, measured {measured} B ({ratio:.3})");
        assert!(
            (0.9..=1.1).contains(&ratio),
            "{id}: measured / planned = {ratio:.3}"
        );
    }
}

/// A user model only the static lowering takes (pixel shuffle written as Shape arithmetic and
/// 6-D Reshape / Transpose, free input size: `tests/reference/make_user_models.py`) runs through
/// `resolve` at fixed 160 px tiles, with its scale measured, and matches onnxruntime: >= 60 dB.
#[test]
fn user_model_with_shape_arithmetic_matches_onnxruntime() {
    let engine = common::engine();
    let path = common::fixture("user/pixel_shuffle_2x.onnx");
    let choice = builtin::resolve(path.to_str().unwrap(), &Default::default()).unwrap();
    assert_eq!(choice.spec.scale, 2);
    let shapes = choice
        .model
        .static_shapes
        .as_ref()
        .expect("lowered with fixed shapes");
    assert_eq!((shapes[0].h, shapes[0].w), (160, 160));
    let model = engine.load(choice.model.clone()).unwrap();
    let up = TiledUpscaler::new(&engine, &model, choice.spec, 2, None).unwrap();
    let got = up.upscale_f32(&common::photo()).unwrap();
    let expected = common::reference("user/photo-60x44.pixel_shuffle_2x.f32");
    let psnr = common::psnr(&got, &expected);
    eprintln!("pixel shuffle user model: PSNR {psnr:.1} dB");
    assert!(psnr >= 60.0, "PSNR {psnr:.1} dB < 60 dB");
    assert!(TiledUpscaler::new(&engine, &model, choice.spec, 2, Some(64)).is_err());
}

/// A user 4x upscaler built like the ones shipped for the web and phones (a 5x5 first
/// convolution, dense concat blocks closed by 1x1 convolutions, a nearest 4x Resize, convolutions
/// at 4x with 3 output channels, an elementwise tail: `tests/reference/make_user_models.py`), with
/// a free input size, runs at any tile size with its scale measured and matches onnxruntime:
/// >= 60 dB (float32 sums of up to 720 products; the tiles are seamless).
#[test]
fn user_upscaler_built_like_the_wild_ones_matches_onnxruntime() {
    let engine = common::engine();
    let path = common::fixture("user/wild_upscaler_4x.onnx");
    let choice = builtin::resolve(path.to_str().unwrap(), &Default::default()).unwrap();
    assert_eq!(choice.spec.scale, 4);
    assert!(choice.model.static_shapes.is_none(), "free input size");
    let model = engine.load(choice.model.clone()).unwrap();
    let expected = common::reference("user/photo-60x44.wild_upscaler_4x.f32");
    for tile in [24, 64] {
        let up = TiledUpscaler::new(&engine, &model, choice.spec, 2, Some(tile)).unwrap();
        let got = up.upscale_f32(&common::photo()).unwrap();
        let psnr = common::psnr(&got, &expected);
        eprintln!("wild 4x user model, tile {tile}: PSNR {psnr:.1} dB");
        assert!(psnr >= 60.0, "tile {tile}: PSNR {psnr:.1} dB < 60 dB");
    }
}

/// A user restorer built like NAFNet (layer norms over the channels written out op by op, a
/// SimpleGate of two channel halves, a channel attention, depthwise convolutions:
/// `tests/reference/make_user_models.py`) lowers with a free input size, its norms found
/// (`passes::normalize_channels`; no reduction left), their scale and shift folded into the
/// 1x1 convolutions after them (no constant operand left) and the norms computed by those
/// (`passes::fuse_norm_conv`), the SimpleGates after its depthwise 3x3s computed by those
/// (`passes::fuse_gate`), and matches onnxruntime on a batch of two: >= 100 dB, in float32 as onnxruntime
/// computes it (sums of at most 144 products; the norms' means over 16 channels). Run on floats
/// without tiles: the attention's mean over the whole map makes tiles differ from the image.
#[test]
fn user_restorer_built_like_nafnet_matches_onnxruntime() {
    use batchwise::model::{AcrossChannels, LayerOp};
    let engine = common::engine();
    let path = common::fixture("user/wild_restorer_1x.onnx");
    let choice = builtin::resolve(path.to_str().unwrap(), &Default::default()).unwrap();
    assert_eq!(choice.spec.scale, 1);
    assert!(choice.model.static_shapes.is_none(), "free input size");
    let ops: Vec<&LayerOp> = choice.model.layers.iter().map(|l| &l.op).collect();
    // Each norm fused into the 1x1 after it (`passes::fuse_norm_conv`).
    let norm = |op: &&&LayerOp| {
        matches!(
            op,
            LayerOp::Conv2dProgram {
                normalize: Some(_),
                ..
            }
        )
    };
    assert_eq!(ops.iter().filter(norm).count(), 4, "{ops:?}");
    // Each SimpleGate after a depthwise 3x3 computed by it (`passes::fuse_gate`).
    let gated = |op: &&&LayerOp| matches!(op, LayerOp::Conv2dGated(_));
    assert_eq!(ops.iter().filter(gated).count(), 2, "{ops:?}");
    let reduce = |op: &&&LayerOp| matches!(op, LayerOp::AcrossChannels(AcrossChannels::Reduce(_)));
    let constant = |op: &&&LayerOp| matches!(op, LayerOp::BinaryConst { .. });
    assert!(
        !ops.iter().any(|op| reduce(&op) || constant(&op)),
        "{ops:?}"
    );
    // Its channel attention's mean over the map makes tiles change its output (the app and
    // `run` say so); not the upscaler's, nor a fixed-input classifier's, which pools too.
    assert!(choice.info().unwrap().tiles_change_output);
    for id in ["upscale-photo-2x", "classify"] {
        let other = builtin::resolve(id, &Default::default()).unwrap();
        assert!(!other.info().unwrap().tiles_change_output, "{id}");
    }
    let psnr = batch_of_two_psnr(&engine, &choice, "wild_restorer_1x");
    eprintln!("NAFNet-like user restorer: PSNR {psnr:.1} dB");
    assert!(psnr >= 100.0, "PSNR {psnr:.1} dB < 100 dB");
}

/// Float16 activations (storage and arithmetic, `Precision::F16`) against onnxruntime's float32:
/// the upscalers stay >= 45 dB. The measured figures are in BENCHMARKS.md.
#[test]
fn float16_upscalers_stay_within_45_db_of_onnxruntime() {
    use batchwise::kernels::Precision;
    let engine = common::engine();
    if !common::has_float16(&engine) {
        return;
    }
    for (id, tile) in [
        ("upscale-photo-2x", 24),
        ("upscale-photo-2x-denoise3", 24),
        ("upscale-anime-4x", 32),
        ("upscale-anime-2x", 32),
        ("enhance-low-light", 32),
    ] {
        let builtin = builtin::find(id).unwrap();
        let model = engine
            .load_with(builtin.load().unwrap(), Precision::F16)
            .unwrap();
        let up = TiledUpscaler::new(&engine, &model, builtin.spec, 4, Some(tile)).unwrap();
        let got = up.upscale_f32(&common::photo()).unwrap();
        let expected = common::reference(&format!("photo-60x44.{id}.f32"));
        let psnr = common::psnr(&got, &expected);
        let worst = common::max_abs_diff(&got, &expected);
        eprintln!("{id} float16: PSNR {psnr:.1} dB, max |diff| {worst:e}");
        assert!(psnr >= 45.0, "{id} float16: PSNR {psnr:.1} dB < 45 dB");
    }
}

/// A user restorer of ConvNeXt blocks exported as PyTorch writes them: stretches in channels
/// last (a Transpose to `[N, H, W, C]`, LayerNormalization over the last axis, MatMuls with
/// their biases, GELU written out with Erf, a layer scale of 32 values, a Transpose back;
/// `tests/reference/make_user_models.py`). Each stretch runs on the NCHW map
/// (`onnx::channels_last`): the model lowers with a free input size, without a general tensor
/// op, each block's norm computed by the 1x1 after it (`passes::fuse_norm_conv`), the stem's
/// norm applying its scale and shift (`fold_affine`, no constant layer left), and matches
/// onnxruntime on a batch of two: >= 100 dB in float32 (sums of at most 288 products; the
/// norms' means over 32 channels; Erf within float32 rounding).
#[test]
fn user_convnext_blocks_match_onnxruntime() {
    use batchwise::model::LayerOp;
    let engine = common::engine();
    let path = common::fixture("user/wild_convnext_1x.onnx");
    let choice = builtin::resolve(path.to_str().unwrap(), &Default::default()).unwrap();
    assert!(choice.model.static_shapes.is_none(), "free input size");
    let ops: Vec<&LayerOp> = choice.model.layers.iter().map(|l| &l.op).collect();
    let tensor = |op: &&&LayerOp| matches!(op, LayerOp::Tensor(_) | LayerOp::ToNhwc);
    assert!(!ops.iter().any(|op| tensor(&op)), "{ops:?}");
    let norm = |op: &&&LayerOp| {
        matches!(
            op,
            LayerOp::Conv2dProgram {
                normalize: Some(_),
                ..
            }
        )
    };
    assert_eq!(ops.iter().filter(norm).count(), 2, "{ops:?}");
    // The stem's norm, before a padded depthwise 7x7, applies its own scale and shift.
    let affine = |l: &&batchwise::model::Layer| {
        matches!(l.op, LayerOp::AcrossChannels(_)) && l.weights.len() == 32 && l.bias.len() == 32
    };
    assert_eq!(choice.model.layers.iter().filter(affine).count(), 1);
    let constant = |op: &&&LayerOp| matches!(op, LayerOp::BinaryConst { .. });
    assert!(!ops.iter().any(|op| constant(&op)), "{ops:?}");
    let psnr = batch_of_two_psnr(&engine, &choice, "wild_convnext_1x");
    eprintln!("ConvNeXt-like user restorer: PSNR {psnr:.1} dB");
    assert!(psnr >= 100.0, "PSNR {psnr:.1} dB < 100 dB");
}

/// The PSNR of the user model `choice` (`tests/fixtures/user/<name>.onnx`) on a batch of two
/// (the photo and the photo at half brightness, as floats, no tiles) against onnxruntime's
/// output for the same batch (`photo-60x44.<name>.f32`).
fn batch_of_two_psnr(
    engine: &batchwise::engine::Engine,
    choice: &builtin::ModelChoice,
    name: &str,
) -> f64 {
    let model = engine.load(choice.model.clone()).unwrap();
    let photo = common::photo();
    let plane = |c: usize, k: f32| photo.pixels().map(move |p| p[c] as f32 / 255.0 * k);
    let input: Vec<f32> = [1.0, 0.5]
        .into_iter()
        .flat_map(|k| (0..3).flat_map(move |c| plane(c, k)))
        .collect();
    let runner = batchwise::engine::BatchRunner::float_input(engine, &model, 2, 44, 60).unwrap();
    let got = runner.run_floats(&input, 2).unwrap().remove(0);
    let expected = common::reference(&format!("user/photo-60x44.{name}.f32"));
    common::psnr(&got, &expected)
}
