//! `batchwise check`: built-ins against the committed onnxruntime outputs, as a user runs it.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use common::batchwise;
use predicates::prelude::*;

const MODEL: &str = "enhance-low-light";
const REFERENCE: &str = "photo-60x44.enhance-low-light.f32";

/// The committed references pass, with the figure the tests measure (about 141 dB).
#[test]
fn a_builtin_matches_its_reference() {
    let assert = batchwise()
        .args(["check", "-m", MODEL, "--json", "--fixtures"])
        .arg(common::repo().join("tests/fixtures"))
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["precision"], "f32");
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["model"], MODEL);
    assert_eq!(rows[0]["status"], "passed");
    assert_eq!(rows[0]["measure"], "psnr_db");
    assert!(rows[0]["value"].as_f64().unwrap() >= 100.0, "{}", rows[0]);
}

/// A reference the output does not match fails the check (exit 3, the row says so with its
/// figure); a cut reference is an error, not a pass.
#[test]
fn a_wrong_reference_fails_and_a_cut_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::fixture("photo-60x44.png"),
        dir.path().join("photo-60x44.png"),
    )
    .unwrap();
    let good = batchwise::check::read_f32(&common::fixture(REFERENCE)).unwrap();
    let shifted: Vec<u8> = good.iter().flat_map(|v| (v + 0.05).to_le_bytes()).collect();
    std::fs::write(dir.path().join(REFERENCE), &shifted).unwrap();
    let check = |expect: &str| {
        let assert = batchwise()
            .args(["check", "-m", MODEL, "--json", "--fixtures"])
            .arg(dir.path())
            .assert()
            .code(3);
        let json: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
        assert_eq!(json["passed"], false);
        assert_eq!(json["rows"][0]["status"], expect);
        json["rows"][0].clone()
    };
    let row = check("failed");
    // 0.05 everywhere: 26 dB.
    assert!((row["value"].as_f64().unwrap() - 26.0).abs() < 0.1, "{row}");
    std::fs::write(dir.path().join(REFERENCE), &shifted[..1000]).unwrap();
    let row = check("error");
    assert!(row["error"].as_str().unwrap().contains("values"), "{row}");
}

#[test]
fn a_missing_folder_or_an_unknown_model_is_refused() {
    batchwise()
        .args(["check", "--fixtures", "/nonexistent/fixtures"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--fixtures DIR"));
    batchwise()
        .args(["check", "-m", "no-such-model", "--fixtures"])
        .arg(common::repo().join("tests/fixtures"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("built-ins:"));
}

/// Every built-in has a reference, so `check` with no model checks them all.
#[test]
fn every_builtin_has_a_reference() {
    let checked: Vec<&str> = batchwise::check::models().collect();
    for b in batchwise::builtin::BUILTINS {
        assert!(checked.contains(&b.id), "{} has no reference", b.id);
        for file in batchwise::check::files(b.id) {
            assert!(common::fixture(file).is_file(), "{file} is not committed");
        }
    }
}
