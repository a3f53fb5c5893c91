//! Chains (`-m a,b`): several models composed into one, run on each batch in one submit with
//! every intermediate image in GPU buffers. References: `tests/reference/make_chain_reference.py`
//! (onnxruntime, the models one after another on float intermediates).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use batchwise::analyze::Label;
use batchwise::builtin;
use batchwise::chain;
use batchwise::engine::BatchRunner;
use batchwise::job::{ItemResult, JobEvent};
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

/// A chain may end in a fixed-input model: the chain is that model (its task, input, results)
/// with the steps before it composed. A fixed-input step anywhere else, and an unknown step, are
/// refused with the step's name.
#[test]
fn only_the_last_step_may_take_fixed_size_images() {
    let none = Default::default();
    for (id, bad) in [
        ("classify,upscale-photo-2x", "classify"),
        (
            "enhance-low-light,detect-faces,upscale-photo-2x",
            "detect-faces",
        ),
        (
            "enhance-low-light,remove-background,classify",
            "remove-background",
        ),
    ] {
        let e = format!("{:#}", chain::resolve(id, &none).unwrap_err());
        assert!(e.contains(bad) && e.contains("last step"), "{id}: {e}");
    }
    let e = chain::resolve("upscale-photo-2x,no-such-model", &none).unwrap_err();
    assert!(format!("{e:#}").contains("no-such-model"), "{e:#}");

    let classify = builtin::find("classify").unwrap().choice().unwrap();
    let chain = chain::resolve("enhance-low-light,upscale-photo-2x,classify", &none).unwrap();
    assert_eq!(chain.id, "enhance-low-light,upscale-photo-2x,classify");
    assert_eq!(chain.task, builtin::Task::Classify);
    assert_eq!(chain.input_size, classify.input_size);
    assert_eq!(chain.steps.len(), 3);
    let prefix = chain::prefix(&chain).unwrap().unwrap();
    assert_eq!(prefix.id, "enhance-low-light,upscale-photo-2x");
    assert_eq!((prefix.spec.scale, chain::prefix_scale(&chain)), (2, 2));
    assert!(chain::prefix(&classify).unwrap().is_none());
}

/// Runs `model` on `inputs` in batches of `batch` in this process (one engine for every job, so its pipelines are
/// compiled once) into `out`, in 24 px tiles; returns each image's result.
fn run_job(
    engine: &batchwise::engine::Engine,
    model: &str,
    inputs: &[&std::path::Path],
    out: &std::path::Path,
    batch: u32,
) -> Vec<Option<ItemResult>> {
    let choice = chain::resolve(model, &Default::default()).unwrap();
    let inputs: Vec<std::path::PathBuf> = inputs.iter().map(|p| p.to_path_buf()).collect();
    let mut spec = common::job_spec(inputs, choice, out.to_path_buf(), batch);
    spec.tile_size = Some(24);
    let mut results = vec![None; spec.inputs.len()];
    let mut emit = |e: JobEvent| {
        if let JobEvent::Result { index, result } = e {
            results[index] = Some(result);
        }
    };
    let summary = batchwise::job::run(engine, &spec, &Default::default(), &mut emit).unwrap();
    assert_eq!(
        summary.done,
        spec.inputs.len(),
        "{model}: {:?}",
        summary.items
    );
    results
}

/// `photo` written as a 16-bit PNG at `path` (its folder made).
fn sixteen_bit(path: &std::path::Path, photo: &image::RgbaImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::DynamicImage::ImageRgba8(photo.clone())
        .to_rgba16()
        .save(path)
        .unwrap();
}

/// `enhance-low-light,classify` gives the labels `classify` gives on an `enhance-low-light`
/// job's outputs written as 16-bit PNGs: the chain hands the classifier the same 16-bit pixels
/// (the same model in the same tiles), fitted the same way, so the scores agree to 1e-6 (float32
/// rounding; the same input gives the same kernels' output, whatever the batch). Three images in
/// batches of 2 tiles and 2 images: an image's tiles span batches, a full batch of images goes
/// while tiles wait, and the last image goes alone. Classifying the photos themselves gives other
/// scores, further apart than that: the chain's classifier saw the processed images.
#[test]
fn a_chain_ending_in_classify_labels_the_processed_images() {
    const SCORE_TOLERANCE: f32 = 1e-6;
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let photo = common::photo();
    let crop = image::imageops::crop_imm(&photo, 10, 6, 40, 30).to_image();
    let mut inputs = Vec::new();
    for (name, img) in [
        ("a.png", photo.clone()),
        ("b.png", image::imageops::flip_horizontal(&photo)),
        ("c.png", crop),
    ] {
        let path = dir.path().join("in").join(name);
        sixteen_bit(&path, &img);
        inputs.push(path);
    }
    let inputs: Vec<&std::path::Path> = inputs.iter().map(std::path::PathBuf::as_path).collect();
    let out = |name: &str| dir.path().join(name);
    let auto = batchwise::job::AUTO_BATCH;
    run_job(&engine, "enhance-low-light", &inputs, &out("mid"), auto);
    let mids: Vec<std::path::PathBuf> = ["a.png", "b.png", "c.png"]
        .iter()
        .map(|n| out("mid").join(n))
        .collect();
    let color = image::open(&mids[0]).unwrap().color();
    assert!(
        matches!(color, image::ColorType::Rgb16 | image::ColorType::Rgba16),
        "{color:?}"
    );
    let mids: Vec<&std::path::Path> = mids.iter().map(std::path::PathBuf::as_path).collect();
    let labels = |r: Vec<Option<ItemResult>>| -> Vec<Vec<Label>> {
        r.into_iter()
            .map(|r| match r {
                Some(ItemResult::Labels(l)) => l,
                other => panic!("labels, not {other:?}"),
            })
            .collect()
    };
    let two_jobs = labels(run_job(&engine, "classify", &mids, &out("two"), auto));
    let chain_id = "enhance-low-light,classify";
    let chain = labels(run_job(&engine, chain_id, &inputs, &out("chain"), 2));
    let unprocessed = labels(run_job(&engine, "classify", &inputs, &out("photo"), auto));
    eprintln!("chain: {chain:?}\ntwo jobs: {two_jobs:?}\nthe photos: {unprocessed:?}");
    for ((c, t), u) in chain.iter().zip(&two_jobs).zip(&unprocessed) {
        assert_eq!(c.len(), t.len());
        for (c, t) in c.iter().zip(t) {
            assert_eq!(c.label, t.label);
            let off = (c.score - t.score).abs();
            assert!(off <= SCORE_TOLERANCE, "{c:?} vs {t:?}");
        }
        let apart = c
            .iter()
            .zip(u)
            .any(|(c, u)| c.label != u.label || (c.score - u.score).abs() > SCORE_TOLERANCE);
        assert!(apart, "the chain's labels are the photo's own: {c:?}");
    }
    assert!(out("chain").join("labels.csv").exists());
}

/// `upscale-photo-2x,detect-faces` finds the faces `detect-faces` finds in an `upscale-photo-2x`
/// job's 16-bit PNG output, with boxes in that processed image's pixels (twice the input's), and
/// `size` its size: the same pixels reach the detector, so boxes agree to 1e-3 px (float32
/// rounding of the box decoding at 256 px).
#[test]
fn a_chain_ending_in_detect_faces_boxes_faces_in_the_processed_image() {
    const BOX_TOLERANCE: f32 = 1e-3;
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let photo = image::open(common::fixture("photo-128-faces.png")).unwrap();
    let input = dir.path().join("in").join("photo.png");
    sixteen_bit(&input, &photo.to_rgba8());
    let out = |name: &str| dir.path().join(name);
    let auto = batchwise::job::AUTO_BATCH;
    run_job(&engine, "upscale-photo-2x", &[&input], &out("mid"), auto);
    let mid = out("mid").join("photo.png");
    let faces = |r: &[Option<ItemResult>]| match &r[0] {
        Some(ItemResult::Faces { size, faces }) => (*size, faces.clone()),
        other => panic!("faces, not {other:?}"),
    };
    let two_jobs = faces(&run_job(
        &engine,
        "detect-faces",
        &[&mid],
        &out("two"),
        auto,
    ));
    let chain_id = "upscale-photo-2x,detect-faces";
    let chain = faces(&run_job(&engine, chain_id, &[&input], &out("chain"), auto));
    eprintln!("chain: {chain:?}\ntwo jobs: {two_jobs:?}");
    assert_eq!(chain.0, [256, 256], "the processed image's size");
    assert_eq!(chain.0, two_jobs.0);
    assert!(!chain.1.is_empty(), "the photo has a face");
    assert_eq!(chain.1.len(), two_jobs.1.len());
    for (c, t) in chain.1.iter().zip(&two_jobs.1) {
        let worst = c
            .rect
            .iter()
            .zip(&t.rect)
            .chain(
                c.keypoints
                    .iter()
                    .flatten()
                    .zip(t.keypoints.iter().flatten()),
            )
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= BOX_TOLERANCE, "{c:?} vs {t:?}");
    }
}

/// `--dry-run` describes a chain ending in a fixed-input model: its steps, the last one's input
/// and batch of images, and GPU memory for both models (their weights and both batches).
#[test]
fn dry_run_describes_a_chain_ending_in_a_fixed_input_model() {
    let dir = tempfile::tempdir().unwrap();
    let plan = |model: &str, json: bool| {
        let mut cmd = common::batchwise();
        cmd.args(["run", "--dry-run", "-m", model, "-o"])
            .arg(dir.path().join("out"))
            .arg(common::fixture("photo-60x44.png"));
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let chain: serde_json::Value =
        serde_json::from_str(&plan("enhance-low-light,classify", true)).unwrap();
    let classify: serde_json::Value = serde_json::from_str(&plan("classify", true)).unwrap();
    assert_eq!(
        chain["steps"],
        serde_json::json!(["enhance-low-light", "classify"])
    );
    assert_eq!(chain["last_step_input"], classify["last_step_input"]);
    assert_eq!(chain["image_batch_size"], 1, "one image: {chain}");
    let bytes = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    assert!(bytes(&chain, "weight_bytes") > bytes(&classify, "weight_bytes"));
    assert!(bytes(&chain, "planned_gpu_bytes") > bytes(&classify, "planned_gpu_bytes"));
    assert!(!dir.path().join("out").exists(), "a dry run writes nothing");
    let text = plan("enhance-low-light,classify", false);
    assert!(
        text.contains("chain: enhance-low-light -> classify")
            && text.contains("classify on each whole processed image"),
        "{text}"
    );
}

/// Auto batch and out-of-memory halving cover a chain ending in a fixed-input model: both
/// models' batches are planned against the budget, and an out-of-memory error halves them.
#[test]
fn auto_batch_and_out_of_memory_halving_cover_a_chain_ending_in_classify() {
    let runs = common::PhotoRuns::new(&["-m", "enhance-low-light,classify"]);
    runs.assert_auto_fits_the_budget();
    runs.assert_out_of_memory_halves_the_batch();
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
