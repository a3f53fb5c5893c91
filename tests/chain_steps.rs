//! Chains run step by step (`job/stepwise.rs`): in tiles much smaller than its images, a chain
//! of image-to-image steps runs each step on its own tiles, handing each finished image to the
//! next step in memory at 16 bits, instead of one composed model whose every tile would redo
//! the later steps' context. The same result as the composed chain and as the models run one
//! after another.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::path::Path;

const CHAIN: &str = "enhance-low-light,upscale-photo-2x";

/// `batchwise run` of `model` in `tile` px tiles on `input` into `out` (`env` set), its
/// `--json` summary.
fn run(
    model: &str,
    tile: u32,
    input: &Path,
    out: &Path,
    env: &[(&str, &str)],
) -> serde_json::Value {
    let mut cmd = common::batchwise();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let tile = tile.to_string();
    let output = cmd
        .args(["run", "--json", "--tile-size", &tile, "-m", model, "-o"])
        .arg(out)
        .arg(input)
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)))
}

/// Whether `batchwise run --dry-run` plans `model` in `tile` px tiles step by step.
fn step_by_step(model: &str, tile: u32, input: &Path, env: &[(&str, &str)]) -> bool {
    let mut cmd = common::batchwise();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let dir = tempfile::tempdir().unwrap();
    let output = cmd
        .args([
            "run",
            "--dry-run",
            "--json",
            "--tile-size",
            &tile.to_string(),
        ])
        .args(["-m", model, "-o"])
        .arg(dir.path())
        .arg(input)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
    json["step_by_step"].as_bool().unwrap()
}

/// The 60 x 44 photo, 16-bit (widened exactly) at `path`.
fn sixteen_bit_photo(path: &Path) {
    image::DynamicImage::ImageRgba8(common::photo())
        .to_rgba16()
        .save(path)
        .unwrap();
}

/// In 16 px tiles both orders of the chain run step by step and give what onnxruntime gives
/// running the models one after another on float intermediates (the references of
/// `tests/chain.rs`): >= 85 dB. The 16-bit input, intermediate and output each round to
/// 1/65535 (about 101 dB alone), far above the 60 dB a chain is held to; a seam, a step seeing
/// the wrong edge or an 8-bit hand-off (about 59 dB) fails. In 64 px tiles (one for the whole
/// image) the chain is composed: no context is redone.
#[test]
fn in_small_tiles_a_chain_runs_step_by_step_as_the_models_one_after_another() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("photo.png");
    sixteen_bit_photo(&input);
    for chain_id in [CHAIN, "upscale-photo-2x,enhance-low-light"] {
        assert!(step_by_step(chain_id, 16, &input, &[]), "{chain_id}");
        assert!(!step_by_step(chain_id, 64, &input, &[]), "{chain_id}");
        assert!(!step_by_step(
            chain_id,
            16,
            &input,
            &[("BATCHWISE_CHAIN", "composed")]
        ));
        let out = dir.path().join(chain_id.replace(',', "+"));
        let summary = run(chain_id, 16, &input, &out, &[]);
        assert_eq!(summary["done"], 1, "{summary}");
        assert_eq!(summary["step_by_step"], true, "{summary}");
        let got = image::open(out.join("photo.png")).unwrap().to_rgb16();
        assert_eq!(got.dimensions(), (120, 88));
        // Planar [3, H, W] in 0..=1, as the reference.
        let plane = (120 * 88) as usize;
        let mut planar = vec![0.0f32; 3 * plane];
        for (i, px) in got.pixels().enumerate() {
            for c in 0..3 {
                planar[c * plane + i] = f32::from(px[c]) / 65535.0;
            }
        }
        let name = format!("photo-60x44.{}.f32", chain_id.replace(',', "+"));
        let psnr = common::psnr(&planar, &common::reference(&name));
        eprintln!("{chain_id} step by step: PSNR {psnr:.1} dB");
        assert!(psnr >= 85.0, "{chain_id}: PSNR {psnr:.1} dB < 85 dB");
    }
}

/// Step by step and composed, a chain writes the same image within one 8-bit level (the
/// composed chain keeps its intermediate in float, this one rounds it to 1/65535; the sums
/// run in other orders in other tiles), 8-bit as its input, with the input's alpha as it is.
#[test]
fn step_by_step_equals_the_composed_chain_with_the_inputs_alpha_and_depth() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut photo = common::photo();
    for (x, y, px) in photo.enumerate_pixels_mut() {
        px[3] = (x * 4 + y) as u8;
    }
    photo.save(input.join("photo.png")).unwrap();
    let (steps, composed) = (dir.path().join("steps"), dir.path().join("composed"));
    let summary = run(CHAIN, 16, &input, &steps, &[]);
    assert_eq!(summary["step_by_step"], true, "{summary}");
    let env = [("BATCHWISE_CHAIN", "composed")];
    let summary = run(CHAIN, 16, &input, &composed, &env);
    assert_eq!(summary["step_by_step"], false, "{summary}");
    let read = |d: &Path| image::open(d.join("photo.png")).unwrap();
    let (a, b) = (read(&steps), read(&composed));
    assert_eq!(a.color(), image::ColorType::Rgba8);
    assert_eq!(b.color(), image::ColorType::Rgba8);
    let (a, b) = (a.to_rgba8(), b.to_rgba8());
    assert_eq!(a.dimensions(), (120, 88));
    let mut worst = [0u8; 4];
    for (p, q) in a.pixels().zip(b.pixels()) {
        for c in 0..4 {
            worst[c] = worst[c].max(p[c].abs_diff(q[c]));
        }
    }
    eprintln!("largest difference per channel: {worst:?}");
    assert!(worst[..3].iter().all(|&d| d <= 1), "{worst:?}");
    assert_eq!(worst[3], 0, "the alpha differs");
}

/// A file that cannot be read fails alone: the images before and after it go through every
/// step, and it leaves no output.
#[test]
fn a_bad_file_fails_alone_in_a_chain_run_step_by_step() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let photo = common::fixture("photo-60x44.png");
    std::fs::copy(&photo, input.join("a.png")).unwrap();
    std::fs::copy(&photo, input.join("c.png")).unwrap();
    // A PNG cut short: its header reads, its pixels do not.
    let bytes = std::fs::read(&photo).unwrap();
    std::fs::write(input.join("b.png"), &bytes[..bytes.len() / 2]).unwrap();
    assert!(step_by_step(CHAIN, 16, &input, &[]));
    let out = dir.path().join("out");
    let summary = run(CHAIN, 16, &input, &out, &[]);
    assert_eq!(summary["done"], 2, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    assert!(out.join("a.png").is_file() && out.join("c.png").is_file());
    assert!(!out.join("b.png").exists());
    let text = summary.to_string();
    assert!(text.contains("b.png"), "the failure names the file: {text}");
}

/// The planner covers a chain run step by step: every step's weights and batch, side by side.
/// What the job's GPU buffers peak at (the engine's ledger) is what `--dry-run` planned, within
/// 2% (the few uniform records the plan leaves out), at an asked batch and at Auto's.
#[test]
fn a_chain_run_step_by_step_peaks_at_what_was_planned() {
    let dir = tempfile::tempdir().unwrap();
    let input = common::fixture("photo-60x44.png");
    let dry_run = |model: &str, batch: &str| {
        let args = ["--tile-size", "16", "-m", model, "-b", batch];
        let plan = common::batchwise()
            .args(["run", "--dry-run", "--json"])
            .args(args)
            .arg("-o")
            .arg(dir.path().join("dry"))
            .arg(&input)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&plan.stdout).unwrap()
    };
    // The steps' activations are one set of buffers: a tile of the chain needs as much as the
    // larger step's and more (its pixel buffers are 16-bit and every step has its own), but
    // less than both steps' tiles side by side (which were 3.50 MB against 3.47 MB here).
    let per_item = |plan: &serde_json::Value| plan["bytes_per_item"].as_f64().unwrap();
    let steps: Vec<f64> = CHAIN
        .split(',')
        .map(|m| per_item(&dry_run(m, "4")))
        .collect();
    let chain = per_item(&dry_run(CHAIN, "4"));
    eprintln!("a tile: {chain} bytes in the chain, {steps:?} in its steps");
    assert!(chain >= steps[0].max(steps[1]), "{chain} vs {steps:?}");
    assert!(chain < steps[0] + steps[1], "{chain} vs {steps:?}");
    for batch in ["4", "auto"] {
        let args = ["--tile-size", "16", "-m", CHAIN, "-b", batch];
        let plan = dry_run(CHAIN, batch);
        assert_eq!(plan["step_by_step"], true);
        let out = dir.path().join(batch);
        let run = common::batchwise()
            .args(["run", "--json"])
            .args(args)
            .arg("-o")
            .arg(&out)
            .arg(&input)
            .output()
            .unwrap();
        let run: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(run["done"], 1, "{run}");
        assert_eq!(run["batch_size"], plan["batch_size"], "{batch}");
        let planned = plan["planned_gpu_bytes"].as_f64().unwrap();
        let peak = run["peak_gpu_bytes"].as_f64().unwrap();
        eprintln!("batch {batch}: peak {peak} bytes, planned {planned}");
        assert!(
            peak <= planned * 1.02 && peak >= planned * 0.9,
            "batch {batch}: peak {peak} vs planned {planned}"
        );
    }
}
