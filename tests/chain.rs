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

/// Composed for whole images (each item one image, every step padding its own input beyond
/// the image's border), a chain equals the same onnxruntime sequence: both orders, the second
/// padding a 2x step's output (its input carries the first step's context alone).
#[test]
fn chains_composed_for_whole_images_match_the_models_run_one_after_another() {
    let engine = common::engine();
    for chain_id in [
        "enhance-low-light,upscale-photo-2x",
        "upscale-photo-2x,enhance-low-light",
    ] {
        let tiled = chain::resolve(chain_id, &Default::default()).unwrap();
        let choice = chain::for_whole_images(&tiled).unwrap().unwrap();
        assert_eq!(choice.spec.context, tiled.steps[0].spec.context);
        let model = engine.load(choice.model.clone()).unwrap();
        let expected =
            common::reference(&format!("photo-60x44.{}.f32", chain_id.replace(',', "+")));
        let up = TiledUpscaler::new(&engine, &model, choice.spec, 2, Some(64)).unwrap();
        assert_eq!(up.tiles(60, 44).len(), 1);
        let got = up.upscale_f32(&common::photo()).unwrap();
        let psnr = common::psnr(&got, &expected);
        eprintln!("{chain_id} on whole images: PSNR {psnr:.1} dB");
        assert!(psnr >= 90.0, "{chain_id}: PSNR {psnr:.1} dB < 90 dB");
    }
}

/// On whole images a chain does the work of its steps run as separate jobs and no more: its
/// multiply-adds on a tile of side `t` (the first step's context padded) are the steps' on
/// theirs (each step's input padded by its own context), where in tiles the first step also
/// computes the second step's context.
#[test]
fn on_whole_images_a_chain_does_its_steps_work_and_no_more() {
    let macs =
        |c: &batchwise::builtin::ModelChoice, side: u32| c.model.macs_per_item(side, side).unwrap();
    let t = 64;
    for chain_id in [
        "enhance-low-light,upscale-photo-2x",
        "upscale-photo-2x,enhance-low-light",
    ] {
        let tiled = chain::resolve(chain_id, &Default::default()).unwrap();
        let whole = chain::for_whole_images(&tiled).unwrap().unwrap();
        let [a, b] = [&tiled.steps[0], &tiled.steps[1]];
        let steps =
            macs(a, t + 2 * a.spec.context) + macs(b, a.spec.scale * t + 2 * b.spec.context);
        let chain = macs(&whole, t + 2 * whole.spec.context);
        let in_tiles = macs(&tiled, t + 2 * tiled.spec.context);
        eprintln!("{chain_id}: steps {steps}, whole-image chain {chain}, tiled chain {in_tiles}");
        assert_eq!(chain, steps, "{chain_id}");
        assert!(in_tiles > steps, "{chain_id}");
    }
}

/// A job whose every image fits one tile runs the chain composed for whole images: its dry run
/// plans that model's tiles (the first step's context alone), not the tiled chain's.
#[test]
fn a_job_of_images_within_one_tile_runs_the_chain_for_whole_images() {
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let id = "enhance-low-light,upscale-photo-2x";
    let tiled = chain::resolve(id, &Default::default()).unwrap();
    let whole = chain::for_whole_images(&tiled).unwrap().unwrap();
    let per_item = |choice: &batchwise::builtin::ModelChoice, side: u32| {
        let model = engine.load(choice.model.clone()).unwrap();
        batchwise::engine::plan(&model, side, side, 1)
            .unwrap()
            .bytes_per_item
    };
    for (tile, expected) in [
        (64, per_item(&whole, 64 + 2 * whole.spec.context)),
        (32, per_item(&tiled, 32 + 2 * tiled.spec.context)),
    ] {
        // In 32 px tiles composed (it would run step by step: `tests/chain_steps.rs`).
        let out = common::batchwise()
            .env("BATCHWISE_CHAIN", "composed")
            .args(["run", "--dry-run", "--json", "-m", id, "--tile-size"])
            .arg(tile.to_string())
            .arg("-o")
            .arg(dir.path().join("out"))
            .arg(common::fixture("photo-60x44.png"))
            .output()
            .unwrap();
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["bytes_per_item"], expected, "tile {tile}: {plan}");
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
    // Its images are handed on whole, not kept: --keep-steps is refused, saying why.
    let e = format!("{:#}", chain::keep_steps(&chain).unwrap_err());
    assert!(
        e.contains("--keep-steps") && e.contains("fixed size"),
        "{e}"
    );
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
    // `{scale}` in names is the written image's: a cut-out of a 2x chain's image is 2x, of the
    // photo itself 1x.
    for (model, name) in [
        ("upscale-photo-2x,remove-background", "photo-60x44_x2.png"),
        ("remove-background", "photo-60x44_x1.png"),
    ] {
        let out = common::batchwise()
            .args(["run", "--dry-run", "--json", "-m", model])
            .args(["--name", "{stem}_x{scale}.{ext}", "-o"])
            .arg(dir.path().join("out"))
            .arg(common::fixture("photo-60x44.png"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(name), "{model}: {text}");
    }
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
    // In 24 px tiles the chain runs step by step; composed on request.
    let composed = dir.path().join("composed");
    common::batchwise()
        .env("BATCHWISE_CHAIN", "composed")
        .args([
            "run",
            "--tile-size",
            "24",
            "-m",
            "enhance-low-light,upscale-photo-2x",
        ])
        .arg("-o")
        .arg(&composed)
        .arg(&input)
        .assert()
        .success();
    let read = |p: std::path::PathBuf| image::open(p).unwrap().to_rgba16();
    let two_jobs = read(out.join("photo.png"));
    assert_eq!(two_jobs.dimensions(), (120, 88));
    // In 24 px tiles, and in one tile for the whole image (the chain composed for whole images).
    let whole = dir.path().join("whole");
    common::batchwise()
        .args([
            "run",
            "--tile-size",
            "64",
            "-m",
            "enhance-low-light,upscale-photo-2x",
        ])
        .arg("-o")
        .arg(&whole)
        .arg(&input)
        .assert()
        .success();
    for chain in [chained, composed, whole] {
        let chain = read(chain.join("photo.png"));
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
/// In 16 px tiles the chain runs step by step (`tests/chain_steps.rs`); composed too.
#[test]
fn auto_batch_and_out_of_memory_halving_cover_a_chain() {
    let runs = common::PhotoRuns::new(&["-m", "enhance-low-light,upscale-photo-2x"]);
    runs.assert_auto_fits_the_budget();
    runs.assert_out_of_memory_halves_the_batch();
    let composed = common::PhotoRuns::new(&["-m", "enhance-low-light,upscale-photo-2x"])
        .with_env("BATCHWISE_CHAIN", "composed");
    composed.assert_auto_fits_the_budget();
    composed.assert_out_of_memory_halves_the_batch();
}

/// Runs `batchwise run` with `args` on `input` into `out`; the output folder's files by name.
fn run_into(args: &[&str], input: &std::path::Path, out: &std::path::Path) {
    common::batchwise()
        .arg("run")
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(input)
        .assert()
        .success();
}

/// The largest difference of two 8-bit images of the same size, in levels.
fn largest_difference(a: &std::path::Path, b: &std::path::Path) -> u8 {
    let (a, b) = (image::open(a).unwrap(), image::open(b).unwrap());
    assert_eq!(a.dimensions(), b.dimensions());
    let (a, b) = (a.to_rgba8(), b.to_rgba8());
    let diff = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y));
    diff.max().unwrap()
}

use image::GenericImageView as _;

/// `--keep-steps` writes step 1's result beside the output. It equals step 1 run alone as a job,
/// tiled otherwise (24 px tiles, and one tile for the whole image), within one 8-bit level: the
/// chain computes the same step on the same pixels, and only the sums' order inside the kernels
/// (other tile sizes) may move a value across a rounding edge. Its 16 px tiles cut the image
/// into 12, so a seam would show as many levels. The final output is bit-equal to the composed
/// run without `--keep-steps` (in such small tiles the chain would run step by step, within one
/// level of it: `tests/chain_steps.rs`); a rerun finds everything done.
#[test]
fn kept_steps_equal_each_step_alone_and_leave_the_output_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    common::photo().save(input.join("photo.png")).unwrap();
    let out = |d: &str| dir.path().join(d);
    let chain = [
        "-m",
        "enhance-low-light,upscale-photo-2x",
        "--tile-size",
        "16",
    ];
    run_into(
        &[&chain[..], &["--keep-steps"]].concat(),
        &input,
        &out("keep"),
    );
    common::batchwise()
        .env("BATCHWISE_CHAIN", "composed")
        .arg("run")
        .args(chain)
        .arg("-o")
        .arg(out("plain"))
        .arg(&input)
        .assert()
        .success();
    run_into(
        &["-m", "enhance-low-light", "--tile-size", "24"],
        &input,
        &out("step"),
    );
    run_into(
        &["-m", "enhance-low-light", "--tile-size", "64"],
        &input,
        &out("whole"),
    );
    let kept = out("keep").join("photo.enhance-low-light.png");
    assert_eq!(image::open(&kept).unwrap().dimensions(), (60, 44));
    for alone in ["step", "whole"] {
        let worst = largest_difference(&kept, &out(alone).join("photo.png"));
        eprintln!("kept step 1 against step 1 alone ({alone}): {worst} levels");
        assert!(
            worst <= 1,
            "kept step 1 differs from {alone} by {worst} levels"
        );
    }
    let (a, b) = (
        out("keep").join("photo.png"),
        out("plain").join("photo.png"),
    );
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // A rerun of the same job finds both files done and rewrites neither; without the kept
    // file, the item runs again.
    let modified = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before = (modified(&kept), modified(&a));
    let rerun = [&chain[..], &["--keep-steps"]].concat();
    run_into(&rerun, &input, &out("keep"));
    assert_eq!((modified(&kept), modified(&a)), before);
    std::fs::remove_file(&kept).unwrap();
    run_into(&rerun, &input, &out("keep"));
    assert!(kept.is_file());
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

/// Kept steps follow the output's name (pattern, sub-folder, format), and `--dry-run` lists them
/// and writes nothing; `--keep-steps` on one model is refused.
#[test]
fn kept_steps_are_named_after_the_output_and_listed_by_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    common::photo().save(input.join("photo.png")).unwrap();
    let out = dir.path().join("out");
    let args = [
        "-m",
        "upscale-photo-2x,enhance-low-light",
        "--keep-steps",
        "--format",
        "jpeg",
        "--name",
        "{model}/{stem}_x{scale}.{ext}",
    ];
    let dry = common::batchwise()
        .args(["run", "--dry-run", "--json"])
        .args(args)
        .arg("-o")
        .arg(&out)
        .arg(&input)
        .assert()
        .success();
    let plan: serde_json::Value = serde_json::from_slice(&dry.get_output().stdout).unwrap();
    let folder = out.join("upscale-photo-2x,enhance-low-light");
    let kept = folder.join("photo_x2.upscale-photo-2x.jpg");
    assert_eq!(
        plan["items"][0]["kept_steps"][0].as_str().unwrap(),
        kept.to_str().unwrap(),
        "{plan}"
    );
    assert!(!out.exists(), "a dry run wrote {}", out.display());
    run_into(&args, &input, &out);
    assert_eq!(image::open(&kept).unwrap().dimensions(), (120, 88));
    assert!(folder.join("photo_x2.jpg").is_file());
    common::batchwise()
        .args(["run", "-m", "upscale-photo-2x", "--keep-steps", "-o"])
        .arg(dir.path().join("one"))
        .arg(&input)
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "--keep-steps keeps the steps of a chain",
        ));
}

/// The planner counts the kept steps' buffers: their activations stay alive to the end of the
/// batch and their pixels are unpacked and read back (two copies) as the output's are.
#[test]
fn kept_steps_are_counted_by_the_planner() {
    use batchwise::kernels::Precision;
    let side = 64;
    let chain = chain::resolve("enhance-low-light,upscale-photo-2x", &Default::default()).unwrap();
    let kept = chain::keep_steps(&chain).unwrap();
    let bytes = |m: &batchwise::model::Model| {
        batchwise::engine::item_bytes(m, side, side, Precision::F32).unwrap()
    };
    let ((plain_act, plain_px), (kept_act, kept_px)) = (bytes(&chain.model), bytes(&kept.model));
    eprintln!("per item: plain {plain_act} + {plain_px}, keeping {kept_act} + {kept_px}");
    // Step 1 keeps the tile's size: 4 bytes a pixel, in a buffer and two read-back copies.
    assert_eq!(kept_px, plain_px + 3 * 4 * (side * side) as u64);
    // Its values stay alive through the second step (in a buffer the pool may hold anyway).
    assert!(kept_act >= plain_act, "{kept_act} vs {plain_act}");
}

/// Kept steps are labelled by the step (a user model by its file's stem); a name two kept steps
/// share gets each one's place in the chain.
#[test]
fn kept_steps_are_labelled_by_their_step() {
    let none = Default::default();
    let chain = chain::resolve("enhance-low-light,upscale-photo-2x", &none).unwrap();
    assert_eq!(chain::step_labels(&chain), ["enhance-low-light"]);
    let chain = chain::resolve("upscale-photo-2x,upscale-photo-2x,enhance-low-light", &none);
    let labels = chain::step_labels(&chain.unwrap());
    assert_eq!(labels, ["upscale-photo-2x-1", "upscale-photo-2x-2"]);
    let kept = chain::keep_steps(
        &chain::resolve("upscale-photo-2x,upscale-photo-2x,enhance-low-light", &none).unwrap(),
    )
    .unwrap();
    assert_eq!(kept.model.image_outputs, [2, 4]);
    assert_eq!(kept.model.extra_outputs.len(), 2);
}

/// A 16-bit input keeps 16-bit steps: the kept 2x step equals that step alone as a job within
/// one 8-bit level (257 of 65535; as for 8-bit, only the kernels' sums' order differs), and it
/// stays at its own scale while `--scale` resamples the final output.
#[test]
fn kept_steps_are_16_bit_for_16_bit_inputs_and_keep_their_scale() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let wide = image::DynamicImage::ImageRgba8(common::photo()).to_rgba16();
    wide.save(input.join("photo.png")).unwrap();
    let out = |d: &str| dir.path().join(d);
    let chain = [
        "-m",
        "upscale-photo-2x,enhance-low-light",
        "--tile-size",
        "24",
    ];
    run_into(
        &[&chain[..], &["--keep-steps", "--scale", "3"]].concat(),
        &input,
        &out("keep"),
    );
    run_into(
        &["-m", "upscale-photo-2x", "--tile-size", "32"],
        &input,
        &out("step"),
    );
    let kept = image::open(out("keep").join("photo.upscale-photo-2x.png")).unwrap();
    let alone = image::open(out("step").join("photo.png")).unwrap();
    assert!(matches!(
        kept,
        image::DynamicImage::ImageRgba16(_) | image::DynamicImage::ImageRgb16(_)
    ));
    assert_eq!(kept.dimensions(), (120, 88));
    let (kept, alone) = (kept.to_rgba16(), alone.to_rgba16());
    let worst = kept
        .as_raw()
        .iter()
        .zip(alone.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max();
    eprintln!("16-bit kept step against the step alone: {worst:?} of 65535");
    assert!(worst.unwrap() <= 257, "{worst:?}");
    let last = image::open(out("keep").join("photo.png")).unwrap();
    assert_eq!(last.dimensions(), (180, 132));
}
