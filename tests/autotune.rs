//! Autotune measures each conv variant (row counts; direct or Winograd per 3x3 shape) once per
//! adapter, then reads the choices from its cache.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use batchwise::autotune;
use batchwise::kernels::conv2d::{self, UNROLLED_ROW_CHOICES};
use batchwise::kernels::winograd;

#[test]
fn autotune_measures_once_then_reads_the_cache() {
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let first = autotune::tune(&engine, Some(dir.path())).unwrap();
    if std::env::var_os("BATCHWISE_CONV_ROWS").is_none() {
        assert!(!first.cached);
        assert_eq!(first.timings_ms.len(), UNROLLED_ROW_CHOICES.len());
        assert!(first.timings_ms.iter().all(|(_, ms)| *ms > 0.0));
        assert!(dir.path().join("autotune.json").exists());
        // The fastest kept, or the default where it is within the margin of the fastest.
        let device_type = &engine.gpu.adapter.device_type;
        let rows = conv2d::default_unrolled_rows(device_type);
        assert_eq!(
            first.conv_rows,
            autotune::chosen_rows(&first.timings_ms, rows)
        );
        let ms_of = |rows| first.timings_ms.iter().find(|t| t.0 == rows).unwrap().1;
        let fastest = first
            .timings_ms
            .iter()
            .map(|t| t.1)
            .fold(f64::MAX, f64::min);
        assert!(ms_of(first.conv_rows) <= fastest * (1.0 + autotune::MARGIN));
        // Each 3x3 shape on the direct kernel and each Winograd tile, as measured.
        assert_eq!(first.winograd_ms.len(), winograd::TUNED_SHAPES.len());
        for ((shape, ms), choice) in first.winograd_ms.iter().zip(&first.winograd.0) {
            assert!(ms.iter().all(|t| *t > 0.0));
            assert_eq!(*shape, (choice.in_c, choice.out_c));
            let defaults = winograd::Choices::defaults_for(device_type);
            assert_eq!(choice.tile, autotune::chosen_tile(*shape, *ms, &defaults));
            let kept = autotune::KERNELS.iter().position(|&k| k == choice.tile);
            let fastest = ms.iter().copied().fold(f64::MAX, f64::min);
            assert!(ms[kept.unwrap()] <= fastest * (1.0 + autotune::MARGIN));
        }
    }
    assert_eq!(engine.kernels().conv_rows(), first.conv_rows);
    assert_eq!(engine.kernels().winograd_choices(), first.winograd);
    eprintln!("{first:?}");

    let again = autotune::tune(&engine, Some(dir.path())).unwrap();
    assert!(again.cached);
    assert_eq!(again.conv_rows, first.conv_rows);
    assert_eq!(again.winograd, first.winograd);
}

/// `batchwise tune` measures and stores the kernels; `run` and `bench` then use what the cache
/// holds for the adapter (here a row count that no measurement picks, written into the cache, so
/// that the log can only show it if the command read the cache).
#[test]
fn the_command_line_uses_what_tune_stored() {
    let cache = tempfile::tempdir().unwrap();
    let cli = || {
        let mut cmd = common::batchwise();
        cmd.env_remove("BATCHWISE_CONV_ROWS")
            .env("XDG_CACHE_HOME", cache.path());
        cmd
    };
    let out = cli().args(["tune", "--json"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cached"], false);
    let file = cache.path().join("batchwise/autotune.json");
    let mut stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let key = report["key"].as_str().unwrap();
    assert_eq!(stored[key]["conv_rows"], report["conv_rows"]);
    assert!(!UNROLLED_ROW_CHOICES.contains(&3));
    stored[key]["conv_rows"] = 3.into();
    std::fs::write(&file, serde_json::to_vec(&stored).unwrap()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.png");
    common::photo().save(&input).unwrap();
    let out = cli()
        .args(["run", "-v", "-m", "enhance-low-light", "-o"])
        .arg(dir.path().join("out"))
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("kernels tuned for this adapter: 3 rows an invocation"),
        "{log}"
    );
    assert!(dir.path().join("out/in.png").exists());

    let out = cli()
        .args([
            "bench",
            "--json",
            "-m",
            "enhance-low-light",
            "--size",
            "32",
            "--count",
            "1",
        ])
        .args(["--batch-sizes", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let bench: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kernels = bench["kernels"].as_str().unwrap();
    assert!(
        kernels.starts_with("kernels tuned for this adapter: 3 rows"),
        "{kernels}"
    );

    // Without a cache entry the defaults run, and the log says how to measure.
    let out = cli()
        .env("XDG_CACHE_HOME", dir.path().join("empty"))
        .args(["run", "-v", "-m", "enhance-low-light", "-o"])
        .arg(dir.path().join("out2"))
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("batchwise tune"));
}
