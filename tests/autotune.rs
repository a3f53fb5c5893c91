//! Autotune measures each conv variant (row counts; direct or Winograd per 3x3 shape) once per
//! adapter, then reads the choices from its cache.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use batchwise::autotune;
use batchwise::kernels::conv2d::UNROLLED_ROW_CHOICES;
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
        let best = first
            .timings_ms
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap()
            .0;
        assert_eq!(first.conv_rows, best);
        // Each 3x3 shape on the direct kernel, F(2,3) and F(4,3); the fastest chosen.
        assert_eq!(first.winograd_ms.len(), winograd::TUNED_SHAPES.len());
        for ((shape, ms), choice) in first.winograd_ms.iter().zip(&first.winograd.0) {
            assert!(ms.iter().all(|t| *t > 0.0));
            assert_eq!(*shape, (choice.in_c, choice.out_c));
            assert_eq!(choice.tile, autotune::fastest(*ms));
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
