//! Every input the fuzzers (`fuzz/`) ever crashed on, kept in `tests/fixtures/fuzz/<target>/`
//! and replayed through the same entry points as the fuzz targets: each must now return (an
//! error is fine) without a panic or an abort.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = common::fixture("fuzz").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn onnx_findings_are_errors_now() {
    let found = inputs("onnx");
    assert!(found.len() >= 6);
    for (name, data) in found {
        let run = std::panic::catch_unwind(|| {
            let _ = batchwise::onnx::load(&data, "fuzz.onnx");
            let _ = batchwise::onnx::load_at_size(&data, "fuzz.onnx", None);
            let _ = batchwise::onnx::load_at_size(&data, "fuzz.onnx", Some((8, 8)));
        });
        assert!(run.is_ok(), "{name} panics");
    }
}

#[test]
fn ncnn_findings_are_errors_now() {
    let found = inputs("ncnn");
    assert!(!found.is_empty());
    for (name, data) in found {
        // As the fuzz target: the `.param` text, a NUL byte, the `.bin` bytes.
        let (param, bin) = match data.iter().position(|&b| b == 0) {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (&data[..], &[][..]),
        };
        let param = String::from_utf8_lossy(param).into_owned();
        let run = std::panic::catch_unwind(|| batchwise::ncnn::load_bytes(&param, bin, "fuzz"));
        assert!(matches!(run, Ok(Err(_))), "{name} panics or loads");
    }
}
