//! The command line, run as a user runs it.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use common::batchwise;
use predicates::prelude::*;

#[test]
fn run_writes_outputs_and_reports_bad_files_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(inputs.join("nested")).unwrap();
    std::fs::copy(common::fixture("photo-60x44.png"), inputs.join("a.png")).unwrap();
    let small = image::open(common::fixture("photo-60x44.png"))
        .unwrap()
        .crop_imm(0, 0, 20, 9);
    small.save(inputs.join("nested/b.jpg")).unwrap();
    std::fs::write(inputs.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out = dir.path().join("out");

    let assert = batchwise()
        .args([
            "run",
            "-m",
            "upscale-photo-2x",
            "-b",
            "8",
            "--tile-size",
            "32",
            "--json",
            "-o",
        ])
        .arg(&out)
        .arg(&inputs)
        .assert()
        .code(3);
    let json: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(json["total"], 3);
    assert_eq!(json["done"], 2);
    assert_eq!(json["failed"], 1);
    assert_eq!(json["batch_size"], 8);
    assert!(json["items_per_sec"].as_f64().unwrap() > 0.0);
    assert!(json["peak_gpu_bytes"].as_u64().unwrap() > 1 << 20);
    let items = json["items"].as_array().unwrap();
    let broken = items
        .iter()
        .find(|i| i["input"].as_str().unwrap().ends_with("broken.png"))
        .unwrap();
    assert_eq!(broken["status"], "failed");
    assert!(broken["output"].is_null());
    let error = broken["error"].as_str().unwrap();
    assert!(
        error.contains("broken.png") && error.contains("decode"),
        "{error}"
    );
    for item in items.iter().filter(|i| i["status"] == "done") {
        let path = item["output"].as_str().unwrap();
        let img = image::open(path).unwrap();
        assert!(img.width() == 120 || img.width() == 40, "{path}");
    }
    // The input's sub-folder is kept under the output folder.
    assert_eq!(image::open(out.join("nested/b.png")).unwrap().height(), 18);
    // No temporary or partial files are left behind.
    let mut names: Vec<_> = walkdir::WalkDir::new(&out)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(&out)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "",
            "a.png",
            batchwise::manifest::FILE_NAME,
            "nested",
            "nested/b.png"
        ],
        "{names:?}"
    );
}

/// A tiled model with a channel attention (a mean over each tile's whole map: the NAFNet-like
/// restorer) gets a note that tiles change its output, naming `--tile-size`; a model without one
/// (the built-in upscaler) does not.
#[test]
fn a_mean_over_the_map_is_noted_for_tiled_jobs() {
    let dir = tempfile::tempdir().unwrap();
    batchwise()
        .args(["run", "--tile-size", "32", "-m"])
        .arg(common::fixture("user/wild_restorer_1x.onnx"))
        .arg("-o")
        .arg(dir.path().join("restored"))
        .arg(common::fixture("photo-60x44.png"))
        .assert()
        .success()
        .stderr(predicates::str::contains(
            "means over each tile's whole map",
        ))
        .stderr(predicates::str::contains("--tile-size"));
    batchwise()
        .args(["run", "--tile-size", "32", "-o"])
        .arg(dir.path().join("upscaled"))
        .arg(common::fixture("photo-60x44.png"))
        .assert()
        .success()
        .stderr(predicates::str::contains("means over").not());
}

#[test]
fn all_done_exits_zero_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    batchwise()
        .args(["run", "-b", "2", "--tile-size", "32", "-o"])
        .arg(dir.path())
        .arg(common::fixture("photo-60x44.png"))
        .assert()
        .success()
        .stderr(predicates::str::contains("1 done, 0 failed"));
    assert!(dir.path().join("photo-60x44.png").exists());
}

#[test]
fn an_output_never_overwrites_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("photo.png");
    std::fs::copy(common::fixture("photo-60x44.png"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    // Even told to overwrite, the output goes beside the input, never over it.
    for policy in ["rename", "overwrite"] {
        batchwise()
            .args(["run", "--tile-size", "32", "--overwrite", policy, "-o"])
            .arg(dir.path())
            .arg(&input)
            .assert()
            .success();
        assert_eq!(std::fs::read(&input).unwrap(), before);
    }
    assert!(dir.path().join("photo_2.png").exists());
    assert!(!dir.path().join("photo_3.png").exists());
}

#[test]
fn models_and_devices_list() {
    batchwise()
        .arg("models")
        .assert()
        .success()
        .stdout(predicates::str::contains("upscale-photo-2x"));
    let out = batchwise().args(["devices", "--json"]).assert().success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let first = &json.as_array().unwrap()[0];
    assert!(first["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
}

#[test]
fn unknown_model_is_a_clear_error() {
    batchwise()
        .args(["run", "-m", "nope", "-o", "/tmp/x", "a.png"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("no built-in model \"nope\""));
}

/// A user's ONNX file runs like a built-in; its scale is measured, not named.
#[test]
fn a_user_onnx_file_runs_with_its_scale_measured() {
    let dir = tempfile::tempdir().unwrap();
    // A copy under a name that says nothing about the scale.
    let model = dir.path().join("my-model.onnx");
    std::fs::copy(
        common::repo().join("assets/models/realesr_animevideov3_x4.onnx"),
        &model,
    )
    .unwrap();
    let input = dir.path().join("small.png");
    image::open(common::fixture("photo-60x44.png"))
        .unwrap()
        .crop_imm(0, 0, 20, 9)
        .save(&input)
        .unwrap();
    let out = dir.path().join("out");
    batchwise()
        .args(["run", "--tile-size", "16", "-m"])
        .arg(&model)
        .arg("-o")
        .arg(&out)
        .arg(&input)
        .assert()
        .success();
    let img = image::open(out.join("small.png")).unwrap();
    assert_eq!((img.width(), img.height()), (80, 36));
}

#[test]
fn a_file_that_is_not_a_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("notes.onnx");
    std::fs::write(&model, "hello").unwrap();
    batchwise()
        .args(["run", "-m"])
        .arg(&model)
        .args(["-o", "/tmp/x", "a.png"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("notes.onnx").and(predicates::str::contains("ONNX")));
}

/// `--precision f16` runs an upscaler in float16, and the pixel shuffle user model (its
/// Reshape, Transpose, Reshape run as DepthToSpace); a model with ops that have no float16
/// kernel (the same model with its reshapes kept as general copies) is refused naming the
/// layer, and nothing is written.
#[test]
fn float16_runs_or_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    batchwise()
        .args(["run", "--precision", "f16", "--tile-size", "32", "-o"])
        .arg(&out)
        .arg(common::fixture("photo-60x44.png"))
        .assert()
        .success();
    let img = image::open(out.join("photo-60x44.png")).unwrap();
    assert_eq!((img.width(), img.height()), (120, 88));
    let shuffled = dir.path().join("shuffled");
    batchwise()
        .args(["run", "--precision", "f16", "-m"])
        .arg(common::fixture("user/pixel_shuffle_2x.onnx"))
        .arg("-o")
        .arg(&shuffled)
        .arg(common::fixture("photo-60x44.png"))
        .assert()
        .success();
    assert!(shuffled.join("photo-60x44.png").exists());
    let refused = dir.path().join("refused");
    batchwise()
        .env("BATCHWISE_RESHAPE_COPIES", "off")
        .args(["run", "--precision", "f16", "-m"])
        .arg(common::fixture("user/pixel_shuffle_2x.onnx"))
        .arg("-o")
        .arg(&refused)
        .arg(common::fixture("photo-60x44.png"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("no float16 kernel yet"));
    assert!(!refused.join("photo-60x44.png").exists());
}

/// The fixed-input models through `run`: `classify` writes labels.csv / labels.json with
/// onnxruntime's top-5 for the 224x224 photo (already square and sized: the crop and resize are
/// the identity), `embed` an N x 1280 `.npy` with a JSON index, `detect-faces` faces.json with
/// boxes inside the image (and annotated copies with `--annotate`), `remove-background` the photo
/// with the mask as alpha (with `--mask-only`, the mask as a grey image). A bad file fails alone
/// in each.
#[test]
fn fixed_input_models_write_their_results() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for f in ["photo-224.png", "photo-128-faces.png", "photo-256.png"] {
        std::fs::copy(common::fixture(f), inputs.join(f)).unwrap();
    }
    std::fs::write(inputs.join("broken.png"), b"\x89PNG\r\n\x1a\nnope").unwrap();
    let run = |model: &str, extra: &[&str], out: &std::path::Path| {
        batchwise()
            .args(["run", "-b", "2", "-m", model])
            .args(extra)
            .arg("-o")
            .arg(out)
            .arg(&inputs)
            .assert()
            .code(3) // the broken file
            .get_output()
            .clone()
    };

    let out = dir.path().join("classify");
    run("classify", &[], &out);
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("labels.json")).unwrap()).unwrap();
    assert_eq!(labels.as_array().unwrap().len(), 3);
    let want: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::fixture("photo-224.efficientnet.json")).unwrap(),
    )
    .unwrap();
    let photo = labels
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["input"].as_str().unwrap().ends_with("photo-224.png"))
        .unwrap();
    let got: Vec<&str> = photo["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = want["top5_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(got, want);
    let csv = std::fs::read_to_string(out.join("labels.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3 * 5, "{csv}");

    let out = dir.path().join("embed");
    run("embed", &[], &out);
    let npy = std::fs::read(out.join("embeddings.npy")).unwrap();
    let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    assert!(
        std::str::from_utf8(&npy[10..10 + header_len])
            .unwrap()
            .contains("(3, 1280)")
    );
    assert_eq!(npy.len(), 10 + header_len + 3 * 1280 * 4);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("embeddings.json")).unwrap()).unwrap();
    assert_eq!(index["rows"].as_array().unwrap().len(), 3);

    let out = dir.path().join("faces");
    run("detect-faces", &["--annotate"], &out);
    let faces: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("faces.json")).unwrap()).unwrap();
    let with_faces = faces
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["input"]
                .as_str()
                .unwrap()
                .ends_with("photo-128-faces.png")
        })
        .unwrap();
    let boxes = with_faces["faces"].as_array().unwrap();
    assert!(!boxes.is_empty());
    for b in boxes {
        let r: Vec<f64> = b["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            r[0] < r[2] && r[1] < r[3] && r[2] <= 128.0 && r[3] <= 128.0,
            "{r:?}"
        );
    }
    assert!(out.join("photo-128-faces.png").exists());

    let out = dir.path().join("masks");
    run("remove-background", &[], &out);
    let cut = image::open(out.join("photo-256.png")).unwrap().to_rgba8();
    assert_eq!(cut.dimensions(), (256, 256));
    let alphas: std::collections::BTreeSet<u8> = cut.pixels().map(|p| p[3]).collect();
    assert!(alphas.len() > 2, "the mask is not a matte: {alphas:?}");
    assert!(!out.join("broken.png").exists());
    // --mask-only: the mask alone, a grey image, the cut-out's alpha.
    let out = dir.path().join("mask-only");
    run("remove-background", &["--mask-only"], &out);
    let mask = image::open(out.join("photo-256.png")).unwrap();
    assert_eq!(mask.color(), image::ColorType::L8);
    let grey: Vec<u8> = mask.to_luma8().into_raw();
    let alpha: Vec<u8> = cut.pixels().map(|p| p[3]).collect();
    assert_eq!(grey, alpha);
}

/// A PNG whose header claims `w` x `h` pixels and holds none.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xedb8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 6, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    png
}

/// Export: formats, the name pattern, sub-folders kept, system files and non-images skipped with
/// a reason, the overwrite policy, shards that split a folder between machines, and a file that
/// claims 60000 x 60000 pixels refused before it takes the memory.
#[test]
fn export_options_shards_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(inputs.join("sub")).unwrap();
    let small = image::open(common::fixture("photo-60x44.png"))
        .unwrap()
        .crop_imm(0, 0, 20, 9);
    for name in ["a.png", "c.png", "sub/b.png"] {
        small.save(inputs.join(name)).unwrap();
    }
    std::fs::write(inputs.join("Thumbs.db"), b"junk").unwrap();
    std::fs::write(inputs.join("notes.txt"), b"hello").unwrap();
    std::fs::write(inputs.join("huge.png"), png_header_only(60000, 60000)).unwrap();
    let run = |out: &std::path::Path, extra: &[&str]| -> serde_json::Value {
        let output = batchwise()
            .args(["run", "--json", "--tile-size", "32"])
            .args(extra)
            .arg("-o")
            .arg(out)
            .arg(&inputs)
            .output()
            .unwrap();
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)))
    };
    let item = |json: &serde_json::Value, name: &str| -> serde_json::Value {
        json["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["input"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no item {name}"))
            .clone()
    };

    let out = dir.path().join("webp");
    let json = run(
        &out,
        &[
            "--format",
            "webp",
            "--name",
            "{stem}_{model}_x{scale}.{ext}",
        ],
    );
    let b = out.join("sub/b_upscale-photo-2x_x2.webp");
    assert_eq!(image::open(&b).unwrap().width(), 40);
    assert_eq!(item(&json, "Thumbs.db")["status"], "skipped");
    assert!(
        item(&json, "Thumbs.db")["error"]
            .as_str()
            .unwrap()
            .contains("system file")
    );
    assert!(
        item(&json, "notes.txt")["error"]
            .as_str()
            .unwrap()
            .contains("not an image")
    );
    let huge = item(&json, "huge.png");
    assert_eq!(huge["status"], "failed");
    assert!(
        huge["error"]
            .as_str()
            .unwrap()
            .contains("larger than batchwise reads"),
        "{huge}"
    );
    assert_eq!(
        (json["done"].as_u64(), json["skipped"].as_u64()),
        (Some(3), Some(2))
    );

    // The same job again: what the manifest lists is reused, not rewritten.
    let before = std::fs::metadata(&b).unwrap().modified().unwrap();
    let json = run(
        &out,
        &[
            "--format",
            "webp",
            "--name",
            "{stem}_{model}_x{scale}.{ext}",
        ],
    );
    assert_eq!(item(&json, "sub/b.png")["status"], "done");
    assert_eq!(std::fs::metadata(&b).unwrap().modified().unwrap(), before);

    // A file batchwise did not write is left alone with --overwrite skip.
    let out = dir.path().join("skip");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("a.png"), b"someone else's").unwrap();
    let json = run(&out, &["--overwrite", "skip"]);
    assert_eq!(item(&json, "a.png")["status"], "skipped");
    assert!(
        item(&json, "a.png")["error"]
            .as_str()
            .unwrap()
            .contains("exists")
    );
    assert_eq!(std::fs::read(out.join("a.png")).unwrap(), b"someone else's");
    assert_eq!(item(&json, "c.png")["status"], "done");

    let out = dir.path().join("jpeg");
    run(&out, &["--format", "jpeg", "--quality", "50"]);
    assert_eq!(image::open(out.join("a.jpg")).unwrap().height(), 18);
    let out = dir.path().join("tiff");
    run(&out, &["--format", "tiff"]);
    assert_eq!(image::open(out.join("a.tiff")).unwrap().height(), 18);

    // Two shards cover the folder between them, each file once.
    let mut seen = Vec::new();
    for shard in ["0/2", "1/2"] {
        let json = run(
            &dir.path().join(shard.replace('/', "-")),
            &["--shard", shard],
        );
        for i in json["items"].as_array().unwrap() {
            seen.push(i["input"].as_str().unwrap().to_owned());
        }
    }
    seen.sort();
    assert_eq!(seen.len(), 6, "{seen:?}");
    seen.dedup();
    assert_eq!(seen.len(), 6, "a file in both shards: {seen:?}");
}

/// Resume: a run cut short (here: its manifest lost its last lines, one output never renamed into
/// place, a temporary file of a dead process left behind) finishes what is left when run again,
/// reuses what was done without rewriting it, and ends with the same files as an uninterrupted
/// run.
#[test]
fn a_rerun_resumes_and_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    for (k, name) in ["a.png", "b.png", "c.png"].iter().enumerate() {
        photo
            .crop_imm(k as u32 * 10, 0, 20, 12)
            .save(inputs.join(name))
            .unwrap();
    }
    let run = |out: &std::path::Path| {
        batchwise()
            .args(["run", "--tile-size", "32", "-o"])
            .arg(out)
            .arg(&inputs)
            .assert()
            .success();
    };
    let whole = dir.path().join("whole");
    run(&whole);
    let cut = dir.path().join("cut");
    run(&cut);
    // Make it look like `kill -9` hit while c.png was being written.
    let manifest = cut.join(batchwise::manifest::FILE_NAME);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains("c.png")).collect();
    assert_eq!(kept.len(), 2, "{text}");
    std::fs::write(
        &manifest,
        format!("{}\n{{\"input\": \"trunc", kept.join("\n")),
    )
    .unwrap();
    std::fs::remove_file(cut.join("c.png")).unwrap();
    // A temporary file of a batchwise process that is gone, named in its run record (whose lock
    // no process holds), and a file of the same format that no record names (a user's: kept).
    let temp = ".c.png.batchwise-0123456789abcdef-0.partial";
    std::fs::write(cut.join(temp), b"half an image").unwrap();
    std::fs::write(
        cut.join(".batchwise-run-0123456789abcdef.lock"),
        format!("{temp}\n"),
    )
    .unwrap();
    let users = ".c.png.batchwise-0123456789abcdef-1.partial";
    std::fs::write(cut.join(users), b"a user's file").unwrap();
    let a_before = std::fs::metadata(cut.join("a.png"))
        .unwrap()
        .modified()
        .unwrap();

    run(&cut);
    for name in ["a.png", "b.png", "c.png"] {
        assert_eq!(
            std::fs::read(cut.join(name)).unwrap(),
            std::fs::read(whole.join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::metadata(cut.join("a.png"))
            .unwrap()
            .modified()
            .unwrap(),
        a_before,
        "a.png was rewritten"
    );
    let mut names: Vec<String> = std::fs::read_dir(&cut)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            users,
            "a.png",
            "b.png",
            batchwise::manifest::FILE_NAME,
            "c.png"
        ],
        "no _2 copies, no partial files, the user's file kept"
    );
}

/// Batch size: Auto fits the memory budget (a small budget gives a smaller batch), and an
/// out-of-memory error — allocating the batch or running it (injected: lavapipe has memory to
/// spare) — halves the batch and retries the same tiles: every item is done, the retries are
/// reported.
#[test]
fn auto_batch_fits_the_budget_and_out_of_memory_halves_it() {
    let runs = common::PhotoRuns::new(&[]);
    let (roomy, tight) = runs.assert_auto_fits_the_budget();
    assert_eq!(tight["memory_budget_bytes"], 4 << 20);
    // Never more than the job's tiles: 60x44 at 16 px is 4 x 3 tiles; a fixed batch size too.
    let roomy_b = roomy["batch_size"].as_u64().unwrap();
    assert!(roomy_b <= 12, "auto: {roomy_b} for 12 tiles");
    let fixed = runs.run(&["-b", "64"], None);
    assert_eq!(fixed["batch_size"], 12, "-b 64 for 12 tiles");
    runs.assert_out_of_memory_halves_the_batch();
}

/// `bench --inputs DIR` measures a real job end to end beside compute only; `--json` rows carry
/// both rates. On a chain it also runs the chain's steps as separate jobs through files, in the
/// same run, and reports that rate too.
#[test]
fn bench_measures_end_to_end_over_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let small = image::open(common::fixture("photo-60x44.png"))
        .unwrap()
        .crop_imm(0, 0, 24, 16);
    for name in ["a.png", "b.png"] {
        small.save(dir.path().join(name)).unwrap();
    }
    for model in ["upscale-photo-2x", "enhance-low-light,upscale-photo-2x"] {
        let out = batchwise()
            .args([
                "bench",
                "-m",
                model,
                "--batch-sizes",
                "1,2",
                "--tile-size",
                "16",
            ])
            .args(["--json", "--inputs"])
            .arg(dir.path())
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(json["count"], 2);
        for row in json["rows"].as_array().unwrap() {
            assert!(row["items_per_sec"].as_f64().unwrap() > 0.0, "{row}");
            assert!(
                row["compute_items_per_sec"].as_f64().unwrap() > 0.0,
                "{row}"
            );
            let steps = row.get("separate_steps_items_per_sec");
            assert_eq!(steps.is_some(), model.contains(','), "{model}: {row}");
            assert!(steps.is_none_or(|s| s.as_f64().unwrap() > 0.0), "{row}");
        }
    }
}

/// `bench --profile` times every layer of one batch of the largest batch size: each layer once,
/// with its op and shapes, convolutions with a rate, and shares that add up to the whole.
#[test]
fn bench_profile_times_every_layer() {
    let out = batchwise()
        .args([
            "bench",
            "-m",
            "enhance-low-light",
            "--batch-sizes",
            "1,2",
            "--size",
            "16",
            "--count",
            "2",
            "--tile-size",
            "16",
            "--profile",
            "--json",
        ])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let profile = &json["profile"];
    assert_eq!(profile["batch_size"], 2, "{profile}");
    let rows = profile["rows"].as_array().unwrap();
    let layers: Vec<u64> = rows.iter().filter_map(|r| r["layer"].as_u64()).collect();
    let expected: Vec<u64> = (0..layers.len() as u64).collect();
    assert_eq!(layers, expected, "every layer once, in order");
    let labels: Vec<&str> = rows
        .iter()
        .filter(|r| r["layer"].is_null())
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["pack", "unpack"]);
    let share: f64 = rows.iter().map(|r| r["share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-6, "shares add up to {share}");
    let first = &rows[1];
    assert_eq!(first["op"], "Conv 3x3 3->32 LeakyRelu", "{first}");
    assert_eq!(first["input"], "3x30x30", "{first}");
    assert_eq!(first["output"], "32x30x30", "{first}");
    for r in rows {
        let conv = r["op"].as_str().unwrap().starts_with("Conv");
        assert_eq!(r["gflops"].as_f64().is_some_and(|g| g > 0.0), conv, "{r}");
        assert!(r["ms"].as_f64().unwrap() >= 0.0, "{r}");
        // Each dispatch runs at least one workgroup; a layer done in place runs none.
        let dispatches = r["dispatches"].as_u64().unwrap();
        let groups = r["workgroups"].as_u64().unwrap();
        assert!(
            groups >= dispatches && (groups == 0) == (dispatches == 0),
            "{r}"
        );
    }
}

/// `bench --profile` times each kernel of a layer that chains several (the split Winograd's input
/// transform, products and output transform) on its own: the phases add up to the layer's row.
#[test]
fn bench_profile_times_each_phase_of_a_split_winograd_layer() {
    let out = batchwise()
        .env("BATCHWISE_WINOGRAD", "f4s")
        .args([
            "bench",
            "-m",
            "enhance-low-light",
            "--batch-sizes",
            "2",
            "--size",
            "16",
            "--count",
            "2",
            "--tile-size",
            "16",
            "--profile",
            "--json",
        ])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let rows = json["profile"]["rows"].as_array().unwrap();
    let mut split = 0;
    for r in rows {
        let phases = r["phases"].as_array().unwrap();
        let op = r["op"].as_str().unwrap();
        // 3x3 convolutions of more than 8 output channels run split F(4,3) here, but for the
        // first (3 input channels: direct, `winograd::Choices::choose`).
        let channels = |n: usize| {
            op.strip_prefix("Conv 3x3 ").and_then(|c| {
                c.split(['-', ' '])
                    .nth(n)?
                    .trim_start_matches('>')
                    .parse::<u32>()
                    .ok()
            })
        };
        let (in_c, out_c) = (channels(0), channels(1));
        if out_c.is_none_or(|c| c <= 8) || in_c.is_none_or(|c| c <= 4) {
            assert!(phases.is_empty(), "{r}");
            continue;
        }
        split += 1;
        let kernels: Vec<&str> = phases
            .iter()
            .map(|p| p["kernel"].as_str().unwrap())
            .collect();
        assert_eq!(
            kernels,
            [
                "winograd F4Split input",
                "winograd F4Split products",
                "winograd F4Split output"
            ],
            "{r}"
        );
        let ms: f64 = phases.iter().map(|p| p["ms"].as_f64().unwrap()).sum();
        assert!((ms - r["ms"].as_f64().unwrap()).abs() < 1e-9, "{r}");
        let dispatches: u64 = phases
            .iter()
            .map(|p| p["dispatches"].as_u64().unwrap())
            .sum();
        assert_eq!(dispatches, r["dispatches"].as_u64().unwrap(), "{r}");
        // The products: one dispatch per matrix of F(4,3) (36), one weight window each.
        assert_eq!(phases[1]["dispatches"], 36, "{r}");
    }
    assert!(split > 0, "no split Winograd layer: {rows:?}");
}

/// EXIF orientation is applied on reading (a camera's portrait JPEG comes out upright), and the
/// ICC profile and the EXIF chunk travel to the output, its orientation reset so no viewer turns
/// the image a second time.
#[test]
fn orientation_is_applied_and_icc_and_exif_are_carried() {
    use image::{ImageDecoder as _, ImageEncoder as _};
    let dir = tempfile::tempdir().unwrap();
    let small = image::open(common::fixture("photo-60x44.png"))
        .unwrap()
        .crop_imm(0, 0, 20, 9)
        .to_rgb8();
    let mut icc: Vec<u8> = (0..200u32).map(|i| (i * 7 % 251) as u8).collect();
    // An RGB profile's header (its colour space): it travels to the RGB output.
    icc[16..20].copy_from_slice(b"RGB ");
    // A little-endian TIFF chunk with one entry: Orientation (0x0112) = 6, turn 90 degrees.
    let exif = vec![
        0x49, 0x49, 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x12, 0x01, 0x03, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let input = dir.path().join("portrait.jpg");
    let mut jpeg = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
    encoder.set_icc_profile(icc.clone()).unwrap();
    encoder.set_exif_metadata(exif).unwrap();
    encoder
        .write_image(&small, 20, 9, image::ExtendedColorType::Rgb8)
        .unwrap();
    std::fs::write(&input, jpeg).unwrap();
    let out = dir.path().join("out");
    batchwise()
        .args(["run", "--tile-size", "16", "-o"])
        .arg(&out)
        .arg(&input)
        .assert()
        .success();
    let file = std::io::BufReader::new(std::fs::File::open(out.join("portrait.png")).unwrap());
    let mut decoder = image::codecs::png::PngDecoder::new(file).unwrap();
    // Upright: 9 x 20 turned, then doubled.
    assert_eq!(decoder.dimensions(), (18, 40));
    assert_eq!(decoder.icc_profile().unwrap(), Some(icc));
    assert!(decoder.exif_metadata().unwrap().is_some());
    assert_eq!(
        decoder.orientation().unwrap(),
        image::metadata::Orientation::NoTransforms
    );
}

/// A real `kill -9` in the middle of a job, then the same command again: it finishes what was
/// left and the output folder equals an uninterrupted run's, byte for byte — for per-image
/// outputs (upscaling) and for the collected files written at the end (labels, embeddings).
#[test]
fn kill_9_then_rerun_equals_an_uninterrupted_run() {
    use std::os::unix::process::ExitStatusExt as _;
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    for k in 0..12u32 {
        photo
            .crop_imm(k * 3, k % 4 * 5, 24, 20)
            .save(inputs.join(format!("p{k:02}.png")))
            .unwrap();
    }
    let cases: [(&str, &[&str]); 3] = [
        ("upscale-photo-2x", &["--tile-size", "16"]),
        ("classify", &[]),
        ("embed", &[]),
    ];
    for (model, extra) in cases {
        let args = |out: &std::path::Path| -> Vec<std::ffi::OsString> {
            let mut a: Vec<std::ffi::OsString> = ["run", "-b", "1", "-m", model]
                .iter()
                .chain(extra)
                .map(Into::into)
                .collect();
            a.extend(["-o".into(), out.into(), inputs.clone().into()]);
            a
        };
        let whole = dir.path().join(format!("{model}-whole"));
        batchwise().args(args(&whole)).assert().success();

        let cut = dir.path().join(format!("{model}-cut"));
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("batchwise"))
            .args(args(&cut))
            .env("RUST_LOG", "error")
            .env("BATCHWISE_CONV_ROWS", "16")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let manifest = cut.join(batchwise::manifest::FILE_NAME);
        let lines = || {
            std::fs::read_to_string(&manifest)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        let waited = std::time::Instant::now();
        while lines() < 3 && waited.elapsed().as_secs() < 300 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "{model}: the run ended before it was killed"
        );
        let recorded = lines();
        assert!((3..12).contains(&recorded), "{model}: {recorded} lines");

        batchwise().args(args(&cut)).assert().success();
        let listing = |d: &std::path::Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n != batchwise::manifest::FILE_NAME)
                .collect();
            names.sort();
            names
        };
        assert_eq!(listing(&cut), listing(&whole), "{model}");
        for name in listing(&whole) {
            assert!(
                std::fs::read(cut.join(&name)).unwrap()
                    == std::fs::read(whole.join(&name)).unwrap(),
                "{model}: {name} differs"
            );
        }
    }
}

/// 16-bit in gives 16-bit out where the format holds it (PNG, TIFF), 8 bits in JPEG; an 8-bit
/// file beside them stays 8-bit. The 16-bit output carries the model's precision: against
/// onnxruntime's float output its error is a 16-bit step, far below an 8-bit one.
#[test]
fn sixteen_bit_in_gives_sixteen_bit_out() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    // The same pixels at 16 bits (v * 257): the model sees the same input values.
    let deep = image::DynamicImage::ImageRgb16(photo.to_rgb16());
    deep.save(inputs.join("deep.png")).unwrap();
    deep.save(inputs.join("deep_tiff.tif")).unwrap();
    photo.save(inputs.join("flat.png")).unwrap();
    let mut with_alpha = photo.to_rgba16();
    for (x, _, p) in with_alpha.enumerate_pixels_mut() {
        p[3] = (x * 1000) as u16;
    }
    with_alpha.save(inputs.join("deep_alpha.png")).unwrap();
    let run = |format: &str| -> std::path::PathBuf {
        let out = dir.path().join(format);
        batchwise()
            .args([
                "run",
                "-m",
                "upscale-photo-2x",
                "--tile-size",
                "24",
                "--format",
                format,
            ])
            .arg("-o")
            .arg(&out)
            .arg(&inputs)
            .assert()
            .success();
        out
    };
    let png = run("png");
    let tiff = run("tiff");
    let jpeg = run("jpeg");
    let color = |p: std::path::PathBuf| image::open(&p).unwrap().color();
    assert_eq!(color(png.join("deep.png")), image::ColorType::Rgb16);
    assert_eq!(color(png.join("deep_tiff.png")), image::ColorType::Rgb16);
    assert_eq!(color(tiff.join("deep.tiff")), image::ColorType::Rgb16);
    assert_eq!(color(png.join("flat.png")), image::ColorType::Rgb8);
    // 16-bit alpha, upscaled beside the colour: still a smooth 16-bit ramp.
    let alpha = image::open(png.join("deep_alpha.png")).unwrap();
    assert_eq!(alpha.color(), image::ColorType::Rgba16);
    let row: Vec<u16> = (0..120)
        .map(|x| alpha.to_rgba16().get_pixel(x, 40)[3])
        .collect();
    assert!(row.windows(2).all(|w| w[1] >= w[0]) && row[119] > 58_000 && row[0] < 1_000);
    assert!(
        row.iter().any(|a| a % 257 != 0),
        "alpha went through 8 bits"
    );
    assert_eq!(color(jpeg.join("deep.jpg")), image::ColorType::Rgb8);

    let reference: Vec<f32> = std::fs::read(common::fixture("photo-60x44.upscale-photo-2x.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()).clamp(0.0, 1.0))
        .collect();
    let (w, h) = (120usize, 88usize);
    let worst = |img: image::DynamicImage, top: f32| -> f32 {
        let rgb = img.to_rgb32f();
        let mut worst = 0.0f32;
        for (i, p) in rgb.pixels().enumerate() {
            for c in 0..3 {
                // to_rgb32f divides by the format's maximum; undo it to the stored integer.
                let stored = (p[c] * top).round() / top;
                worst = worst.max((stored - reference[c * w * h + i]).abs());
            }
        }
        worst
    };
    let deep_err = worst(image::open(png.join("deep.png")).unwrap(), 65535.0);
    let flat_err = worst(image::open(png.join("flat.png")).unwrap(), 255.0);
    eprintln!("16-bit max error {deep_err:e}, 8-bit {flat_err:e}");
    assert!(deep_err <= 5e-5, "16-bit output off by {deep_err}");
    assert!(
        flat_err >= 1e-3,
        "8-bit output unexpectedly exact: {flat_err}"
    );
    assert_eq!(
        image::open(tiff.join("deep.tiff")).unwrap().to_rgb16(),
        image::open(png.join("deep.png")).unwrap().to_rgb16()
    );
}

/// Out-of-memory halving holds for fixed-input models as for tiled ones: a classifier whose
/// runner (or batch) fails above 1 image retries with smaller batches and finishes every image.
#[test]
fn out_of_memory_halves_the_batch_of_fixed_input_models_too() {
    let dir = tempfile::tempdir().unwrap();
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    let inputs: Vec<_> = (0..3)
        .map(|k| {
            let p = dir.path().join(format!("in{k}.png"));
            photo.crop_imm(k * 9, 0, 32, 32).save(&p).unwrap();
            p
        })
        .collect();
    for var in ["BATCHWISE_FAIL_BATCHES_ABOVE", "BATCHWISE_FAIL_RUNS_ABOVE"] {
        let out = batchwise()
            .env(var, "1")
            .args(["run", "--json", "-m", "classify", "-b", "4", "-o"])
            .arg(dir.path().join(var))
            .args(&inputs)
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(json["done"], 3, "{var}: {json}");
        // -b 4 allocates the job's 3 images; halved once to 1.
        assert_eq!(json["batch_size"], 1, "{var}: {json}");
        assert_eq!(json["retries"], 1, "{var}: {json}");
        let csv = std::fs::read_to_string(dir.path().join(var).join("labels.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 3 * 5, "{var}");
    }
}

/// Exit statuses scripts can trust (`run --help` lists them): 0 for a folder with a text file and
/// a `Thumbs.db` beside the image (skipped by rule) and for a rerun with `--overwrite skip`; 3
/// when an item fails; 2 for a usage error; 1 when the job cannot start. The tiny test model
/// keeps it quick.
#[test]
fn exit_codes_say_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(common::fixture("photo-60x44.png"), inputs.join("a.png")).unwrap();
    std::fs::write(inputs.join("notes.txt"), "not an image").unwrap();
    std::fs::write(inputs.join("Thumbs.db"), [0u8; 64]).unwrap();
    let tiny = common::fixture("user/pixel_shuffle_2x.onnx");
    let run = |extra: &[&str], input: &std::path::Path| {
        batchwise()
            .args(["run", "-m"])
            .arg(&tiny)
            .args(extra)
            .arg("-o")
            .arg(dir.path().join("out"))
            .arg(input)
            .assert()
    };
    run(&[], &inputs).code(0);
    run(&["--overwrite", "skip"], &inputs).code(0);
    std::fs::write(inputs.join("broken.png"), b"\x89PNG not really").unwrap();
    run(&["--overwrite", "skip"], &inputs).code(3);
    batchwise().args(["run", "--no-such-flag"]).assert().code(2);
    batchwise()
        .args(["run", "-m", "no-such-model", "-o"])
        .arg(dir.path().join("out"))
        .arg(&inputs)
        .assert()
        .code(1);
    batchwise()
        .args(["run", "--help"])
        .assert()
        .success()
        .stdout(predicates::str::contains("3  some items failed"));
}

/// Outside a terminal (stderr is a pipe here) the CLI writes plain lines: the start (model,
/// adapter, items and batch), each failed item, the summary; `--quiet` keeps the failures only;
/// `-v` adds a line per finished item.
#[test]
fn logs_are_lines_outside_a_terminal_and_quiet_and_verbose_work() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(common::fixture("photo-60x44.png"), inputs.join("a.png")).unwrap();
    std::fs::write(inputs.join("broken.png"), b"\x89PNG not really").unwrap();
    let tiny = common::fixture("user/pixel_shuffle_2x.onnx");
    let run = |flag: Option<&str>| {
        let out = batchwise()
            .args(["run", "-m"])
            .arg(&tiny)
            .args(flag)
            .args(["--overwrite", "overwrite", "-o"])
            .arg(dir.path().join("out"))
            .arg(&inputs)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        String::from_utf8(out.stderr).unwrap()
    };
    let normal = run(None);
    assert!(normal.contains("2 items, batches of"), "{normal}");
    assert!(
        normal.contains("failed: ") && normal.contains("broken.png"),
        "{normal}"
    );
    assert!(normal.contains("1 done, 1 failed"), "{normal}");
    assert!(!normal.contains("done: "), "{normal}");
    let quiet = run(Some("--quiet"));
    assert!(
        quiet.contains("failed: ") && quiet.contains("broken.png"),
        "{quiet}"
    );
    assert!(
        !quiet.contains("items, batches of") && !quiet.contains("1 done"),
        "{quiet}"
    );
    let verbose = run(Some("-v"));
    assert!(
        verbose.contains("done: ") && verbose.contains("a.png"),
        "{verbose}"
    );
}

/// Ctrl+C (SIGINT) while a long job runs: it stops after the batch in flight with exit 130, the
/// summary printed and no partial file; the outputs written are whole.
#[test]
fn ctrl_c_cancels_cleanly_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    for k in 0..60 {
        photo.save(inputs.join(format!("{k:02}.png"))).unwrap();
    }
    let out = dir.path().join("out");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_batchwise"))
        .args(["run", "-b", "1", "--tile-size", "32", "-o"])
        .arg(&out)
        .arg(&inputs)
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let written = |out: &std::path::Path| {
        std::fs::read_dir(out).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".png"))
            })
            .count()
        })
    };
    // Hang guard only: many minutes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20 * 60);
    while written(&out) == 0 && child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "no output appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    if result.status.code() == Some(0) {
        // The job was done before the signal landed (a fast GPU): nothing to cancel.
        assert_eq!(written(&out), 60);
        return;
    }
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("cancelling after the batch in flight"),
        "{stderr}"
    );
    assert!(stderr.contains(" done, "), "the summary: {stderr}");
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");
    let done = written(&out);
    assert!((1..60).contains(&done), "{done} of 60 written");
    for n in names.iter().filter(|n| n.ends_with(".png")) {
        let img = image::open(out.join(n)).unwrap();
        assert_eq!((img.width(), img.height()), (120, 88), "{n} is whole");
    }
}

/// `--input-range -1-1` works as the README writes it (clap read `-1-1` as a flag), as does
/// `--input-range=-1-1`.
#[test]
fn a_flag_value_that_begins_with_a_dash_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = common::fixture("user/pixel_shuffle_2x.onnx");
    for args in [&["--input-range", "-1-1"][..], &["--input-range=-1-1"][..]] {
        batchwise()
            .args(["run", "-m"])
            .arg(&tiny)
            .args(args)
            .arg("-o")
            .arg(dir.path())
            .arg(common::fixture("photo-60x44.png"))
            .assert()
            .code(0);
    }
}

/// `--help` groups the run flags under headings and ends with examples; `--version` names the
/// wgpu it runs on, the same major version as Cargo.toml asks for; shell completions and a man
/// page come from the same definition.
#[test]
fn help_version_completions_and_man_page() {
    let run_help = batchwise().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8(run_help.stdout).unwrap();
    for heading in [
        "Model:",
        "Batching and memory:",
        "Output:",
        "Reporting:",
        "Exit status:",
    ] {
        assert!(text.contains(heading), "{heading} missing in {text}");
    }
    assert!(text.contains("--memory-budget <MIB>"), "{text}");
    let help = batchwise().arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("Examples:") && help.contains("opens its window"),
        "{help}"
    );
    let version = batchwise().arg("--version").output().unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    let manifest = std::fs::read_to_string(common::repo().join("Cargo.toml")).unwrap();
    let wgpu = manifest
        .lines()
        .find_map(|l| l.strip_prefix("wgpu = \""))
        .and_then(|v| v.split('.').next())
        .unwrap();
    assert!(version.contains(&format!("wgpu {wgpu}")), "{version}");
    for shell in ["bash", "zsh", "fish"] {
        let out = batchwise().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("memory-budget"),
            "{shell}"
        );
    }
    let man = batchwise().arg("man").output().unwrap();
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH batchwise 1"));
}

/// Every file and folder under `dir` with its bytes (None for a folder): what a dry run must
/// leave exactly as it was.
fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Option<Vec<u8>>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let bytes = e
                .file_type()
                .is_file()
                .then(|| std::fs::read(e.path()).unwrap());
            (e.path().to_path_buf(), bytes)
        })
        .collect()
}

/// `--dry-run` prints each output path, each skip with its reason, the batch (Auto's choice
/// by default, or the fixed one) and the planned GPU memory, and writes nothing: no output
/// folder, no manifest, no temporary or run-record file; input and output folders are the same
/// bytes after as before.
#[test]
fn dry_run_prints_the_plan_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(inputs.join("nested")).unwrap();
    std::fs::copy(common::fixture("photo-60x44.png"), inputs.join("a.png")).unwrap();
    std::fs::copy(
        common::fixture("photo-60x44.png"),
        inputs.join("nested/b.png"),
    )
    .unwrap();
    std::fs::write(inputs.join("notes.txt"), b"not an image").unwrap();
    std::fs::write(inputs.join("Thumbs.db"), b"system").unwrap();
    let out = dir.path().join("out");
    let inputs_before = tree(&inputs);

    // No output folder yet: none is made. The batch is Auto's (the default).
    let text = batchwise()
        .args(["run", "--dry-run", "--tile-size", "32", "-o"])
        .arg(&out)
        .arg(&inputs)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(text).unwrap();
    assert!(!out.exists(), "a dry run made the output folder");
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle} in\n{text}"))
            .to_owned()
    };
    assert!(line("a.png").starts_with("run "), "{text}");
    assert!(line("a.png").ends_with(&out.join("a.png").display().to_string()));
    assert!(line("b.png").ends_with(&out.join("nested/b.png").display().to_string()));
    assert!(line("notes.txt").starts_with("skip ") && line("notes.txt").contains("not an image"));
    assert!(line("Thumbs.db").contains("a system file"), "{text}");
    assert!(
        text.contains("(auto)") && text.contains("planned GPU memory"),
        "{text}"
    );

    // An output folder with a file in it, JSON, a fixed batch and `--overwrite skip`.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("a.png"), b"an earlier output").unwrap();
    let out_before = tree(&out);
    let dry_json = |extra: &[&str]| -> serde_json::Value {
        let stdout = batchwise()
            .args(["run", "--dry-run", "--json", "--tile-size", "32", "-o"])
            .arg(&out)
            .args(extra)
            .arg(&inputs)
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&stdout).unwrap()
    };
    let json = dry_json(&["-b", "3", "--overwrite", "skip"]);
    assert_eq!(json["batch_size"], 3, "{json}");
    assert_eq!(json["batch_auto"], false);
    assert_eq!(json["tile_size"], 32);
    let (weights, per_item) = (
        json["weight_bytes"].as_u64().unwrap(),
        json["bytes_per_item"].as_u64().unwrap(),
    );
    assert!(weights > 0 && per_item > 0, "{json}");
    assert_eq!(
        json["planned_gpu_bytes"].as_u64().unwrap(),
        weights + 3 * per_item
    );
    assert!(json["memory_budget_bytes"].as_u64().unwrap() > 0);
    assert_eq!(json["model"], "upscale-photo-2x");
    assert!(!json["adapter"].as_str().unwrap().is_empty());
    assert_eq!(
        (
            &json["to_run"],
            &json["skipped"],
            &json["failed"],
            &json["done"]
        ),
        (&1.into(), &3.into(), &0.into(), &0.into()),
        "{json}"
    );
    let item = |name: &str| {
        json["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["input"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} in {json}"))
            .clone()
    };
    assert_eq!(item("a.png")["action"], "skip");
    assert!(item("a.png")["reason"].as_str().unwrap().contains("exists"));
    assert_eq!(item("b.png")["action"], "run");
    assert!(item("b.png")["reason"].is_null());
    let b_out = item("b.png")["output"].as_str().unwrap().to_owned();
    assert!(b_out.ends_with("nested/b.png"), "{b_out}");
    assert_eq!(item("notes.txt")["action"], "skip");

    // Auto: what fits the budget, no more than the job's tiles (b.png: 2 x 2 tiles of 32).
    let json = dry_json(&["--overwrite", "skip"]);
    assert_eq!(json["batch_auto"], true);
    assert_eq!(json["batch_size"], 4, "{json}");
    assert!(
        json["planned_gpu_bytes"].as_u64().unwrap()
            <= json["memory_budget_bytes"].as_u64().unwrap()
    );

    assert_eq!(
        tree(&out),
        out_before,
        "a dry run changed the output folder"
    );
    assert_eq!(
        tree(&inputs),
        inputs_before,
        "a dry run changed the input folder"
    );
}

/// Writes a preset file into `dir`.
fn preset(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("preset.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `--preset FILE` gives the run its flags (the output folder too); flags on the command line
/// override the file's. Checked through `--dry-run --json`, which plans with the same arguments a
/// run gets.
#[test]
fn a_preset_is_applied_and_the_command_line_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = common::fixture("photo-60x44.png");
    let out = dir.path().join("out");
    let file = preset(
        dir.path(),
        &format!(
            "model = [\"upscale-photo-2x\"]\nbatch-size = 3\ntile_size = 32\nformat = \"jpeg\"\n\
             name = \"{{stem}}_p.{{ext}}\"\noutput = {}\nquiet = true\n",
            toml::Value::String(out.to_string_lossy().into_owned())
        ),
    );
    let plan = |extra: &[&str]| -> serde_json::Value {
        let stdout = batchwise()
            .args(["run", "--dry-run", "--json", "--preset"])
            .arg(&file)
            .args(extra)
            .arg(&input)
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&stdout).unwrap()
    };
    let json = plan(&[]);
    assert_eq!(json["batch_size"], 3, "{json}");
    assert_eq!(json["tile_size"], 32);
    let output = json["items"][0]["output"].as_str().unwrap().to_owned();
    assert_eq!(output, out.join("photo-60x44_p.jpg").to_string_lossy());

    let json = plan(&["-b", "2", "--format", "png", "-v"]);
    assert_eq!(json["batch_size"], 2, "{json}");
    assert_eq!(json["tile_size"], 32);
    let output = json["items"][0]["output"].as_str().unwrap().to_owned();
    assert_eq!(output, out.join("photo-60x44_p.png").to_string_lossy());
    assert!(!out.exists());
}

/// A preset's unknown key, a value its flag refuses, a switch given a text and broken TOML are
/// usage errors (exit 2) that name the file, the line and the key.
#[test]
fn a_bad_preset_names_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let input = common::fixture("photo-60x44.png");
    for (text, expected) in [
        (
            "model = \"classify\"\nbatch = 4\n",
            ":2: batch: unknown key",
        ),
        ("\n\ntile-size = 2\n", ":3: tile-size: invalid value '2'"),
        ("format = \"gif\"\n", ":1: format: invalid value 'gif'"),
        (
            "mask-only = \"yes\"\n",
            ":1: mask-only: takes true or false",
        ),
        ("quality = true\n", ":1: quality: takes a value"),
        ("preset = \"other.toml\"\n", ":1: preset: unknown key"),
        ("model = \"classify\n", "line 1"),
    ] {
        let file = preset(dir.path(), text);
        let out = batchwise()
            .args(["run", "--dry-run", "-o"])
            .arg(dir.path().join("out"))
            .arg("--preset")
            .arg(&file)
            .arg(&input)
            .assert()
            .code(2)
            .get_output()
            .stderr
            .clone();
        let stderr = String::from_utf8(out).unwrap();
        assert!(
            stderr.contains(&file.display().to_string()) && stderr.contains(expected),
            "{text:?}: {stderr}"
        );
    }
    let help = batchwise().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("[default: auto]"), "{help}");
    assert!(
        help.contains("--preset <FILE>") && help.contains("--dry-run"),
        "{help}"
    );
}
