//! Chains (`-m a,b`): several models composed into one, run on each batch in one submit with
//! every intermediate image in GPU buffers. References: `tests/reference/make_chain_reference.py`
//! (onnxruntime, the models one after another on float intermediates).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use batchwise::builtin;
use batchwise::chain;
use batchwise::engine::BatchRunner;
use batchwise::upscale::TiledUpscaler;

/// A chain's float output against the models run one after another by onnxruntime: >= 90 dB,
/// what independent float32 engines agree by (each model alone is held to 60 dB; a chain whose
/// steps saw the previous step's view of the input's replicated edge instead of its output's
/// edge scored 63 dB, 1e-2 off at the borders, and must fail here). Tiles of 16 px cut
/// the image into 12, so seams and every border (where a step must see the previous step's edge,
/// not its view of the input's) are in the comparison. Both orders: a 2x step before a step that
/// needs context, and after one.
#[test]
fn chains_match_the_models_run_one_after_another() {
    let engine = common::engine();
    for chain_id in [
        "enhance-low-light,upscale-photo-2x",
        "upscale-photo-2x,enhance-low-light",
    ] {
        let choice = chain::resolve(chain_id, &Default::default()).unwrap();
        assert_eq!(choice.spec.scale, 2);
        let model = engine.load(choice.model.clone()).unwrap();
        let expected =
            common::reference(&format!("photo-60x44.{}.f32", chain_id.replace(',', "+")));
        let up = TiledUpscaler::new(&engine, &model, choice.spec, 4, Some(16)).unwrap();
        assert_eq!(up.tiles(60, 44).len(), 12);
        let got = up.upscale_f32(&common::photo()).unwrap();
        let psnr = common::psnr(&got, &expected);
        let worst = common::max_abs_diff(&got, &expected);
        eprintln!("{chain_id}: PSNR {psnr:.1} dB, max |diff| {worst:e}");
        assert!(psnr >= 90.0, "{chain_id}: PSNR {psnr:.1} dB < 90 dB");
    }
}

/// The context a step needs is carried back through the steps before it, and scales multiply.
#[test]
fn scales_multiply_and_context_is_carried_back() {
    let none = Default::default();
    let photo = builtin::find("upscale-photo-2x").unwrap().spec;
    let light = builtin::find("enhance-low-light").unwrap().spec;
    let anime = builtin::find("upscale-anime-4x").unwrap().spec;
    let chain = chain::resolve("upscale-photo-2x,enhance-low-light", &none).unwrap();
    assert_eq!(chain.spec.scale, 2);
    assert_eq!(
        chain.spec.context,
        photo.context + light.context.div_ceil(2)
    );
    let chain = chain::resolve("upscale-photo-2x,upscale-anime-4x", &none).unwrap();
    assert_eq!(chain.spec.scale, 8);
    assert_eq!(
        chain.spec.context,
        photo.context + anime.context.div_ceil(2)
    );
    let chain = chain::resolve("enhance-low-light, upscale-photo-2x", &none).unwrap();
    assert_eq!(chain.spec.context, light.context + photo.context);
    assert_eq!(chain.id, "enhance-low-light,upscale-photo-2x");
}

/// Fixed-input and unknown steps are refused with the step's name.
#[test]
fn steps_that_cannot_chain_are_named() {
    let none = Default::default();
    let e = chain::resolve("upscale-photo-2x,classify", &none).unwrap_err();
    assert!(format!("{e:#}").contains("classify"), "{e:#}");
    let e = chain::resolve("upscale-photo-2x,no-such-model", &none).unwrap_err();
    assert!(format!("{e:#}").contains("no-such-model"), "{e:#}");
}

/// One batch of the chain is one submit of the steps' dispatches plus the few between them (a
/// clamp, an edge clamp); two jobs run the same dispatches in two submits per batch.
#[test]
fn a_chain_is_one_submit_of_both_steps_dispatches() {
    let engine = common::engine();
    let side = 48;
    let dispatches = |id: &str, side: u32| {
        let choice = chain::resolve(id, &Default::default()).unwrap();
        let model = engine.load(choice.model.clone()).unwrap();
        let map = choice.spec.input_map;
        let runner = BatchRunner::new(&engine, &model, 4, side, side, &map).unwrap();
        runner.dispatches()
    };
    let chain = dispatches("enhance-low-light,upscale-photo-2x", side);
    let light = dispatches("enhance-low-light", side);
    // The second step runs on the first's output, smaller by the first's shrink (none here).
    let photo = dispatches("upscale-photo-2x", side);
    eprintln!("dispatches per batch: chain {chain}, two jobs {light} + {photo}");
    // Each runner has its own pack and unpack (2 dispatches each); the chain one of each, plus
    // at most 2 between the steps.
    assert!(
        chain <= light + photo - 2 + 2,
        "{chain} vs {light} + {photo}"
    );
    assert!(chain >= light + photo - 2, "{chain} vs {light} + {photo}");
}

/// A chain written as a 16-bit PNG equals two jobs through a 16-bit PNG within one 8-bit level
/// (257 in 16 bits): the intermediate file rounds to 1/65535, far below one level.
#[test]
fn a_chain_equals_two_jobs_through_16_bit_files() {
    let dir = tempfile::tempdir().unwrap();
    let [input, mid, out, chained] = ["in", "mid", "out", "chained"].map(|d| dir.path().join(d));
    std::fs::create_dir(&input).unwrap();
    let wide = image::DynamicImage::ImageRgba8(common::photo()).to_rgba16();
    wide.save(input.join("photo.png")).unwrap();
    let run = |model: &str, from: &std::path::Path, to: &std::path::Path| {
        common::batchwise()
            .args(["run", "--tile-size", "24", "-m", model, "-o"])
            .arg(to)
            .arg(from)
            .assert()
            .success();
    };
    run("enhance-low-light", &input, &mid);
    run("upscale-photo-2x", &mid, &out);
    run("enhance-low-light,upscale-photo-2x", &input, &chained);
    let read = |p: std::path::PathBuf| image::open(p).unwrap().to_rgba16();
    let (two_jobs, chain) = (read(out.join("photo.png")), read(chained.join("photo.png")));
    assert_eq!(two_jobs.dimensions(), (120, 88));
    assert_eq!(two_jobs.dimensions(), chain.dimensions());
    let worst = two_jobs
        .as_raw()
        .iter()
        .zip(chain.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    eprintln!("largest difference: {worst} (of 65535)");
    assert!(worst <= 257, "the chain differs by {worst}/65535");
}

/// The planner sees one model: a chain's GPU bytes per item are its largest step's and a little
/// more (the buffers live at the junction), well under the sum of its steps, as liveness reuses
/// every intermediate's buffer. The second step runs on its share of the context only: the
/// first step's is cut off before it.
#[test]
fn a_chains_memory_is_its_peak_step_not_the_sum() {
    use batchwise::kernels::Precision;
    let side = 64;
    let resolve = |id: &str| chain::resolve(id, &Default::default()).unwrap();
    let bytes = |id: &str, side: u32| {
        batchwise::engine::item_bytes(&resolve(id).model, side, side, Precision::F32)
            .unwrap()
            .0
    };
    let cut = resolve("enhance-low-light").spec.context;
    let light = bytes("enhance-low-light", side);
    let photo = bytes("upscale-photo-2x", side - 2 * cut);
    let chain = bytes("enhance-low-light,upscale-photo-2x", side);
    eprintln!("activation bytes per item: chain {chain}, steps {light} and {photo}");
    assert!(chain >= light.max(photo), "{chain} vs {light}, {photo}");
    assert!(chain < light + photo, "{chain} vs {light} + {photo}");
}

/// Auto batch and out-of-memory halving work on a chain as on one model: a small budget gives a
/// smaller Auto batch; an out-of-memory error (injected: lavapipe has memory to spare) allocating
/// the batch or running it halves it and retries the same tiles.
#[test]
fn auto_batch_and_out_of_memory_halving_cover_a_chain() {
    let runs = common::PhotoRuns::new(&["-m", "enhance-low-light,upscale-photo-2x"]);
    runs.assert_auto_fits_the_budget();
    runs.assert_out_of_memory_halves_the_batch();
}
