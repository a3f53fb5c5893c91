//! Outputs stay in the output folder and the manifest cannot be misled: a rerun from another
//! working directory, a changed input, an output cut to zero bytes, an entry that points outside,
//! name patterns that try to leave, an output folder inside the inputs. Built at test time, run
//! through the CLI on a tiny model (a pixel shuffle, 2x) with tiny images.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn batchwise(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("batchwise").unwrap();
    cmd.env("RUST_LOG", "error")
        .env("BATCHWISE_CONV_ROWS", "16")
        .current_dir(cwd)
        .arg("run")
        .arg("-m")
        .arg(common::fixture("user/pixel_shuffle_2x.onnx"));
    cmd
}

fn small(seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(12, 10, |x, y| {
        image::Rgb([x as u8 * 20 + seed, y as u8 * 25, seed.wrapping_mul(7)])
    })
}

/// Every path under `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            e.path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn modified(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// `(cd A && run -o out in/x.png)`, then from B (which has its own `in/x.png` and `out/x.png`)
/// `run -o A/out in/x.png`: nothing outside A/out is written; B's files are untouched. The same
/// input named from B by another path resumes (not rewritten); a changed input is made again;
/// an output cut to zero bytes is made again; an entry leading outside the folder is ignored.
#[test]
fn a_rerun_from_another_directory_writes_only_inside_the_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("A"), dir.path().join("B"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d.join("in")).unwrap();
        std::fs::create_dir_all(d.join("out")).unwrap();
    }
    small(1).save(a.join("in/x.png")).unwrap();
    small(2).save(b.join("in/x.png")).unwrap();
    std::fs::write(b.join("out/x.png"), b"B's own file").unwrap();
    let b_before = tree(&b);

    batchwise(&a)
        .args(["-o", "out", "in/x.png"])
        .assert()
        .success();
    let out = a.join("out");
    let x = out.join("x.png");
    assert_eq!(image::image_dimensions(&x).unwrap(), (24, 20));
    let manifest = std::fs::read_to_string(out.join(batchwise::manifest::FILE_NAME)).unwrap();
    assert!(manifest.contains("\"output\":\"x.png\""), "{manifest}");

    // From B, B's in/x.png into A/out: another input; A's output stays, B's files too.
    batchwise(&b)
        .args(["-o", "../A/out", "in/x.png"])
        .assert()
        .success();
    assert_eq!(tree(&b), b_before);
    assert_eq!(std::fs::read(b.join("out/x.png")).unwrap(), b"B's own file");
    assert_eq!(
        tree(&out),
        [batchwise::manifest::FILE_NAME, "x.png", "x_2.png"]
    );

    // From B, A's input by its path from there: resumed, not rewritten.
    let when = modified(&x);
    batchwise(&b)
        .args(["-o", "../A/out", "../A/in/x.png"])
        .assert()
        .success();
    assert_eq!(modified(&x), when, "a finished output was rewritten");

    // An entry whose output leads outside the folder (B's file) is ignored.
    let text = std::fs::read_to_string(out.join(batchwise::manifest::FILE_NAME)).unwrap();
    let escaping = text.replace("\"output\":\"x.png\"", "\"output\":\"../../B/out/x.png\"");
    std::fs::write(out.join(batchwise::manifest::FILE_NAME), escaping).unwrap();
    batchwise(&a)
        .args(["--overwrite", "overwrite", "-o", "out", "in/x.png"])
        .assert()
        .success();
    assert_eq!(std::fs::read(b.join("out/x.png")).unwrap(), b"B's own file");

    // A changed input (same size, other pixels) is made again, into the same output.
    let x_bytes = std::fs::read(&x).unwrap();
    small(9).save(a.join("in/x.png")).unwrap();
    batchwise(&a)
        .args(["-o", "out", "in/x.png"])
        .assert()
        .success();
    assert_ne!(
        std::fs::read(&x).unwrap(),
        x_bytes,
        "a changed input was not made again"
    );
    // An output cut to zero bytes (a power cut) never counts as done.
    std::fs::write(&x, b"").unwrap();
    batchwise(&a)
        .args(["-o", "out", "in/x.png"])
        .assert()
        .success();
    assert_eq!(image::image_dimensions(&x).unwrap(), (24, 20));
    assert_eq!(
        tree(&out),
        [batchwise::manifest::FILE_NAME, "x.png", "x_2.png"]
    );
    assert_eq!(tree(&b), b_before);
}

/// `--name` patterns: a folder part makes sub-folders inside the output folder; what would leave
/// it, unknown placeholders, a missing `{ext}` and empty patterns are refused with what is allowed,
/// before anything is written.
#[test]
fn name_patterns_are_contained_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.png");
    small(1).save(&input).unwrap();
    let out = dir.path().join("out");
    batchwise(dir.path())
        .args(["--name", "{model}/{stem}.{ext}", "-o"])
        .arg(&out)
        .arg(&input)
        .assert()
        .success();
    assert_eq!(
        image::image_dimensions(out.join("pixel_shuffle_2x/x.png")).unwrap(),
        (24, 20)
    );
    let refused = dir.path().join("refused");
    for (pattern, says) in [
        ("", "is empty"),
        (".", "sub-folders inside the output folder"),
        ("/", "sub-folders inside the output folder"),
        (
            "../{stem}.{ext}",
            "cannot be absolute or hold empty, . or .. parts",
        ),
        ("/tmp/{stem}.{ext}", "cannot be absolute"),
        ("{stem}", "must end with .{ext}"),
        (
            "{unknown}.{ext}",
            "the placeholders are {stem}, {model}, {scale}, {ext}",
        ),
    ] {
        batchwise(dir.path())
            .args(["--name", pattern, "-o"])
            .arg(&refused)
            .arg(&input)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(says));
        assert!(!refused.exists(), "{pattern:?} wrote something");
    }
}

/// An output folder inside the input folder, or equal to it: a rerun does not read the previous
/// run's outputs as inputs (no `x_2_2.png`); a user's file that looks like an old temporary file
/// is left alone.
#[test]
fn an_output_folder_in_the_inputs_is_not_read_back() {
    let dir = tempfile::tempdir().unwrap();
    for (case, out_in) in [("inside", "out"), ("equal", "")] {
        let inputs = dir.path().join(case);
        std::fs::create_dir_all(&inputs).unwrap();
        small(1).save(inputs.join("x.png")).unwrap();
        let users = inputs.join(".x.png.4194305.partial");
        std::fs::write(&users, b"a user's file").unwrap();
        let out = inputs.join(out_in);
        for _ in 0..2 {
            let output = batchwise(dir.path())
                .args(["--json", "-o"])
                .arg(&out)
                .arg(&inputs)
                .output()
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            let done: Vec<&str> = json["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["status"] == "done")
                .map(|i| i["input"].as_str().unwrap())
                .collect();
            assert_eq!(done.len(), 1, "{case}: {json:#}");
            assert!(done[0].ends_with("/x.png"), "{case}: {json:#}");
        }
        let manifest = batchwise::manifest::FILE_NAME;
        let want: Vec<String> = match case {
            "inside" => vec![
                ".x.png.4194305.partial".into(),
                "out".into(),
                format!("out/{manifest}"),
                "out/x.png".into(),
                "x.png".into(),
            ],
            _ => vec![
                ".x.png.4194305.partial".into(),
                manifest.into(),
                "x.png".into(),
                "x_2.png".into(),
            ],
        };
        assert_eq!(tree(&inputs), want, "{case}");
        assert_eq!(std::fs::read(&users).unwrap(), b"a user's file");
    }
}
