//! NCNN import: the same networks from their NCNN originals and from the ONNX files give the same
//! output on the GPU, and broken files get errors naming the layer.
//!
//! The NCNN files are the originals the built-in ONNX models were converted from, copied into
//! `tests/fixtures/ncnn/` (provenance and licences in its README).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::path::PathBuf;

use batchwise::builtin::{self, InputOverrides};
use batchwise::upscale::TiledUpscaler;

fn shared_ncnn(rel: &str) -> PathBuf {
    common::fixture(&format!("ncnn/{rel}"))
}

/// The ONNX files were converted from these NCNN files (float16 weights, exact in float32), so the
/// two imports must agree to float rounding: max |diff| <= 1e-5.
#[test]
fn ncnn_and_onnx_give_the_same_output() {
    let engine = common::engine();
    let photo = image::open(common::fixture("photo-60x44.png"))
        .unwrap()
        .to_rgba8();
    for (param, onnx_id, tile) in [
        (
            "waifu2x-upconv_7-photo/scale2.0x_model.param",
            "upscale-photo-2x",
            24,
        ),
        (
            "waifu2x-upconv_7-photo/noise3_scale2.0x_model.param",
            "upscale-photo-2x-denoise3",
            24,
        ),
        (
            "realesr-animevideov3/realesr-animevideov3-x4.param",
            "upscale-anime-4x",
            32,
        ),
    ] {
        let onnx = builtin::find(onnx_id).unwrap().choice().unwrap();
        let path = shared_ncnn(param);
        let ncnn = builtin::resolve(
            path.to_str().unwrap(),
            &InputOverrides {
                context: Some(onnx.spec.context),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ncnn.spec.scale, onnx.spec.scale, "{param}: measured scale");
        let run = |choice: &builtin::ModelChoice| {
            let model = engine.load(choice.model.clone()).unwrap();
            TiledUpscaler::new(&engine, &model, choice.spec, 4, Some(tile))
                .unwrap()
                .upscale_f32(&photo)
                .unwrap()
        };
        let (a, b) = (run(&onnx), run(&ncnn));
        let worst = common::max_abs_diff(&a, &b);
        eprintln!("{param}: max |ncnn - onnx| = {worst:e}");
        assert!(worst <= 1e-5, "{param}: max |diff| {worst}");
    }
}

#[test]
fn broken_ncnn_files_get_errors_naming_the_problem() {
    let param =
        std::fs::read_to_string(shared_ncnn("waifu2x-upconv_7-photo/scale2.0x_model.param"))
            .unwrap();
    let bin = std::fs::read(shared_ncnn("waifu2x-upconv_7-photo/scale2.0x_model.bin")).unwrap();
    let err =
        |p: &str, b: &[u8]| format!("{:#}", batchwise::ncnn::load_bytes(p, b, "t").unwrap_err());

    let e = err("12345\n1 1\n", &bin);
    assert!(e.contains("magic"), "{e}");
    let e = err(&param, &bin[..bin.len() / 2]);
    assert!(
        e.contains("do not belong together") && e.contains("conv"),
        "{e}"
    );
    let e = err(&param.replace("Deconvolution", "Softmax"), &bin);
    assert!(
        e.contains("conv7_layer") && e.contains("Softmax") && e.contains("supported"),
        "{e}"
    );
    let e = err(&param.replace("0=16 1=3", "0=16 1=x"), &bin);
    assert!(e.contains("conv1_layer"), "{e}");
    // Every truncation of the text is an error or a model, never a panic.
    for cut in (0..param.len()).step_by(37) {
        let _ = batchwise::ncnn::load_bytes(&param[..cut], &bin, "t");
    }
}

/// Small NCNN models with the other layer types (Concat, Pooling, Sigmoid, Padding, standalone
/// ReLU and PReLU) against ncnn's own CPU output (`tests/reference/make_ncnn_layers.py`).
/// Tolerance 1e-5 absolute plus 1e-5 relative: float32 sums in another order, and exp.
#[test]
fn ncnn_layers_match_ncnn() {
    let engine = common::engine();
    let floats = |p: PathBuf| -> Vec<f32> {
        bytemuck::pod_collect_to_vec(&std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
    };
    for name in ["pool_concat_pad", "pad_global_pool", "edge_prelu_concat"] {
        let dir = common::repo().join("tests/fixtures/ncnn");
        let model = batchwise::ncnn::load(&dir.join(format!("{name}.param"))).unwrap();
        let input = floats(dir.join(format!("{name}.in.f32")));
        let want = floats(dir.join(format!("{name}.out.f32")));
        let gpu_model = engine.load(std::sync::Arc::new(model)).unwrap();
        let runner =
            batchwise::engine::BatchRunner::float_input(&engine, &gpu_model, 1, 9, 11).unwrap();
        let got = runner.run_floats(&input, 1).unwrap().remove(0);
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
                "{name}[{i}]: {g} vs ncnn {w}"
            );
        }
    }
}
