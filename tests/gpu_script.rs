//! `benches/gpu/run.sh --reduced` with this build's binary: the GPU run's script works here (on
//! lavapipe in CI) before a machine with a real GPU runs its full mode. Every JSON file it writes
//! parses, every step ran, and the correctness check passed.

#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The reduced run takes about a minute on lavapipe with 2 cores; a busy machine may take many
/// times that, a hung driver forever.
const HANG_GUARD: Duration = Duration::from_secs(25 * 60);

fn json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

#[test]
fn reduced_gpu_run_writes_its_json_and_passes_the_check() {
    use std::os::unix::process::CommandExt as _;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let mut command = Command::new("bash");
    // run.sh moves XDG_CACHE_HOME into its results; Mesa's shader cache stays shared.
    if let Some(dir) = common::mesa_cache_home() {
        command.env("MESA_SHADER_CACHE_DIR", dir);
    }
    let mut child = command
        .arg(common::repo().join("benches/gpu/run.sh"))
        .args([
            "--reduced",
            "--budget",
            "1500",
            "--step-limit",
            "1500",
            "--out",
        ])
        .arg(&out)
        .env("BATCHWISE_BIN", env!("CARGO_BIN_EXE_batchwise"))
        .env("BATCHWISE_CONV_ROWS", "16")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > HANG_GUARD {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            panic!("run.sh --reduced still ran after {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let log = std::fs::read_to_string(out.join("run.log")).unwrap_or_default();
    eprintln!(
        "run.sh --reduced: {status} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(status.success(), "run.sh --reduced: {status}\n{log}");

    let record = json(&out.join("run.json"));
    assert_eq!(record["mode"], "reduced");
    assert_eq!(record["failed_steps"], 0, "{record}");
    assert_eq!(record["skipped_for_time"].as_array().unwrap().len(), 0);
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for name in [
        "devices",
        "bench defaults",
        "tune",
        "check f32",
        "bench enhance-low-light tile 64 f32",
        "bench enhance-low-light tile 64 f16",
        "check f16",
    ] {
        assert!(steps.contains(&name), "{name} is not among {steps:?}");
    }
    let mut files = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            json(&path);
            files += 1;
        }
    }
    assert!(files >= 6, "{files} JSON files");

    for precision in ["f32", "f16"] {
        let check = json(&out.join(format!("check-{precision}.json")));
        assert_eq!(check["passed"], true, "{check}");
        assert_eq!(check["rows"][0]["status"], "passed", "{check}");
        let bench = json(&out.join(format!("bench-enhance-low-light-t64-{precision}.json")));
        let rows = bench["rows"].as_array().unwrap();
        let batches: Vec<u64> = rows
            .iter()
            .map(|r| r["batch_size"].as_u64().unwrap())
            .collect();
        assert_eq!(batches, [1, 2]);
        // Each bench ran the kernels `tune` measured (or those the environment set).
        let kernels = bench["kernels"].as_str().unwrap();
        assert!(kernels.contains("rows an invocation"), "{kernels}");
        assert!(
            rows.iter()
                .all(|r| r["items_per_sec"].as_f64().unwrap() > 0.0)
        );
    }
    // Before `tune` filled the cache: the adapter's default kernels (here with the rows the
    // environment sets), not tuned ones.
    let defaults = json(&out.join("bench-defaults.json"));
    let kernels = defaults["kernels"].as_str().unwrap();
    assert!(!kernels.starts_with("kernels tuned"), "{kernels}");
    assert!(defaults["rows"][0]["items_per_sec"].as_f64().unwrap() > 0.0);
    let devices = json(&out.join("devices.json"));
    assert!(!devices.as_array().unwrap().is_empty());
    assert_eq!(
        record["profile"], true,
        "bench --profile is not found in bench --help"
    );
    assert!(steps.contains(&"profile enhance-low-light"), "{steps:?}");
    // The chain both ways: composed, and step by step (16 px tiles of 32 px images).
    for (how, step_by_step) in [("composed", false), ("steps", true)] {
        let chain = json(&out.join(format!("chain-{how}.json")));
        let row = &chain["rows"][0];
        assert_eq!(row["step_by_step"], step_by_step, "{how}: {chain}");
        assert!(row["items_per_sec"].as_f64().unwrap() > 0.0, "{chain}");
    }
    // The 1x1 blocking step ran with the block it names (reduced: one block, the small model).
    assert!(steps.contains(&"gemm 8x4 enhance-low-light"), "{steps:?}");
    let blocked = json(&out.join("profile-enhance-low-light-gemm-8x4.json"));
    let kernels = blocked["kernels"].as_str().unwrap();
    assert!(kernels.contains("blocks of 8x4"), "{kernels}");
    let profile = json(&out.join("profile-enhance-low-light.json"));
    let layers = profile["profile"]["rows"].as_array().unwrap();
    assert!(
        layers
            .iter()
            .any(|l| l["op"].as_str().unwrap().starts_with("Conv"))
    );
    assert!(layers.iter().all(|l| l["ms"].as_f64().unwrap() >= 0.0));
}
