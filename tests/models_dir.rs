//! The models folder: `batchwise models` lists its `.onnx` files and `.param` + `.bin` pairs
//! with their measured scale, or the error of a file that cannot run (never stopping the list),
//! and `run -m NAME` picks one by name.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::path::Path;

use common::batchwise;
use predicates::prelude::*;

/// A folder with a small ONNX upscaler, an NCNN pair, a file that is not a model, a `.param`
/// without its `.bin`, and a file named like a built-in.
fn models_folder(dir: &Path) -> std::path::PathBuf {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(
        common::fixture("user/pixel_shuffle_2x.onnx"),
        models.join("tiny.onnx"),
    )
    .unwrap();
    let ncnn = common::fixture("ncnn/waifu2x-upconv_7-photo");
    std::fs::copy(
        ncnn.join("scale2.0x_model.param"),
        models.join("waifu.param"),
    )
    .unwrap();
    std::fs::copy(ncnn.join("scale2.0x_model.bin"), models.join("waifu.bin")).unwrap();
    std::fs::write(models.join("bad.onnx"), "not a model").unwrap();
    std::fs::copy(
        ncnn.join("scale2.0x_model.param"),
        models.join("lonely.param"),
    )
    .unwrap();
    std::fs::copy(
        common::fixture("user/pixel_shuffle_2x.onnx"),
        models.join("classify.onnx"),
    )
    .unwrap();
    std::fs::copy(
        common::fixture("user/tensor_outputs.onnx"),
        models.join("scores.onnx"),
    )
    .unwrap();
    std::fs::write(models.join("README.txt"), "not listed").unwrap();
    models
}

fn cmd(dir: &Path) -> assert_cmd::Command {
    let mut cmd = batchwise();
    cmd.env_remove("BATCHWISE_MODELS_DIR")
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CACHE_HOME", dir.join("cache"));
    cmd
}

#[test]
fn the_models_folder_is_listed_with_scales_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let models = models_folder(dir.path());
    let out = cmd(dir.path())
        .args(["models", "--models-dir"])
        .arg(&models)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}: {text}"))
            .to_owned()
    };
    assert!(text.contains("upscale-photo-2x"), "the built-ins: {text}");
    assert!(
        line("tiny").contains("onnx") && line("tiny").contains(" 2x "),
        "{text}"
    );
    assert!(
        line("waifu").contains("ncnn") && line("waifu").contains(" 2x "),
        "{text}"
    );
    assert!(line("bad").contains(" - "), "{text}");
    // A model whose outputs are not images: its outputs are written as .npy, it has no scale.
    assert!(line("scores").contains(" npy "), "{text}");
    assert!(!text.contains("README"), "{text}");
    assert!(text.contains("bad.onnx cannot run"), "{text}");
    assert!(text.contains("no lonely.bin beside it"), "{text}");
    assert!(
        text.contains("the built-in model classify has this name"),
        "{text}"
    );

    // The same as JSON, from the environment variable.
    let out = cmd(dir.path())
        .env("BATCHWISE_MODELS_DIR", &models)
        .args(["models", "--json"])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let list = json.as_array().unwrap();
    let entry = |id: &str| {
        list.iter()
            .find(|m| m["id"] == id && m["source"] == "folder")
            .unwrap_or_else(|| panic!("no {id} in {json}"))
            .clone()
    };
    assert_eq!(entry("tiny")["scale"], 2);
    assert_eq!(entry("tiny")["kind"], "onnx");
    assert_eq!(entry("waifu")["kind"], "ncnn");
    assert!(entry("scores")["scale"].is_null());
    assert_eq!(entry("scores")["tensors"], true);
    assert_eq!(entry("tiny")["tensors"], false);
    assert!(entry("bad")["scale"].is_null());
    assert!(entry("bad")["error"].as_str().unwrap().contains("bad.onnx"));
    assert!(
        entry("lonely")["error"]
            .as_str()
            .unwrap()
            .contains("lonely.bin")
    );
    assert!(entry("classify")["clash"].is_string());
    assert!(
        list.iter()
            .any(|m| m["id"] == "classify" && m["source"] == "builtin")
    );

    // The default folder, in the user's data folder, not there yet.
    cmd(dir.path())
        .arg("models")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            dir.path()
                .join("data/batchwise/models")
                .to_string_lossy()
                .into_owned(),
        ))
        .stdout(predicate::str::contains("no models yet"));
    // A folder the user names must be there.
    cmd(dir.path())
        .args(["models", "--models-dir"])
        .arg(dir.path().join("nope"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nope"));
}

#[test]
fn a_folder_model_runs_by_name_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let models = models_folder(dir.path());
    let input = dir.path().join("small.png");
    std::fs::copy(common::fixture("photo-60x44.png"), &input).unwrap();
    for name in ["tiny", "waifu.param"] {
        let out = dir.path().join(format!("out-{name}"));
        cmd(dir.path())
            .args(["run", "-m", name, "--models-dir"])
            .arg(&models)
            .arg("-o")
            .arg(&out)
            .arg(&input)
            .assert()
            .success();
        let img = image::open(out.join("small.png")).unwrap();
        assert_eq!((img.width(), img.height()), (120, 88), "{name}");
    }
    // From the default folder in the user's data folder.
    let default = dir.path().join("data/batchwise/models");
    std::fs::create_dir_all(&default).unwrap();
    std::fs::copy(models.join("tiny.onnx"), default.join("mine.onnx")).unwrap();
    cmd(dir.path())
        .args(["run", "-m", "mine", "-o"])
        .arg(dir.path().join("out-default"))
        .arg(&input)
        .assert()
        .success();
    for (name, says) in [
        ("bad", "bad.onnx cannot run"),
        ("lonely", "no lonely.bin beside it"),
        ("nope", "tiny"),
    ] {
        cmd(dir.path())
            .args(["run", "-m", name, "--models-dir"])
            .arg(&models)
            .arg("-o")
            .arg(dir.path().join("out-bad"))
            .arg(&input)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(says));
    }
    // A built-in's name picks the built-in.
    cmd(dir.path())
        .args(["run", "-m", "classify", "--models-dir"])
        .arg(&models)
        .arg("-o")
        .arg(dir.path().join("out-classify"))
        .arg(&input)
        .assert()
        .success();
    assert!(dir.path().join("out-classify/labels.csv").exists());
    // bench takes the same names as run.
    let out = cmd(dir.path())
        .args(["bench", "--json", "-m", "tiny", "--models-dir"])
        .arg(&models)
        .args([
            "--size",
            "128",
            "--tile-size",
            "128",
            "--count",
            "1",
            "--batch-sizes",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let bench: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(bench["model"].as_str().unwrap().contains("tiny"), "{bench}");
}
