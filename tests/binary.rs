//! What users download: the binary embeds each built-in model once (a `const` slice of
//! `include_bytes!` was copied at every use, five copies of 35 MB of models).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

/// Each built-in ONNX file's bytes occur exactly once in the `batchwise` binary, searched for
/// by a 256-byte run of the file that no other model file holds (some share weights), and the
/// binary stays under the models' size plus 64 MiB.
#[test]
fn the_binary_embeds_each_model_once() {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_batchwise")).unwrap();
    let count = |hay: &[u8], needle: &[u8]| memchr::memmem::find_iter(hay, needle).count();
    let dir = common::repo().join("assets/models");
    let mut files: Vec<Vec<u8>> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "onnx") {
            files.push(std::fs::read(&path).unwrap());
        }
    }
    assert!(files.len() >= 10, "{} models found", files.len());
    // The stated size: the models once plus at most 64 MiB of code (the release binary's code is
    // ~40 MB, this test's build's ~51 MB); a second copy of the models (36 MB) would not fit.
    let models: usize = files.iter().map(Vec::len).sum();
    let limit = models + (64 << 20);
    assert!(
        binary.len() <= limit,
        "the binary is {} bytes, over the models' {models} + 64 MiB",
        binary.len()
    );
    let all = files.join(&[0u8; 16][..]);
    for (k, bytes) in files.iter().enumerate() {
        let needle = (0..bytes.len().saturating_sub(256))
            .step_by(4099)
            .map(|at| &bytes[at..at + 256])
            .find(|n| count(&all, n) == 1)
            .unwrap_or_else(|| panic!("model {k} has no run of its own"));
        assert_eq!(
            count(&binary, needle),
            1,
            "model {k} is embedded more than once"
        );
    }
}
