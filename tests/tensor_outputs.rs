//! A user ONNX model whose outputs are not images runs: each output is stacked over the images
//! into `OUT/<output>.npy` with `OUT/tensors.json`, and matches onnxruntime's output
//! (`tests/fixtures/user/make_tensor_model.py`).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use common::batchwise;

/// The float32 values and shape of a `.npy` file batchwise wrote (version 1.0, `<f4`).
fn read_npy(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().unwrap())
        .collect();
    let data = bytes[10 + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, data)
}

fn reference(name: &str) -> Vec<f32> {
    std::fs::read(common::fixture(&format!(
        "user/photo-32x32.tensor_outputs.{name}.f32"
    )))
    .unwrap()
    .chunks_exact(4)
    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    .collect()
}

/// Two images (the same photo twice): `logits.npy` is [2, 10] and `heat.npy` [2, 2, 8, 8], each
/// row within 1e-4 of onnxruntime's (float32 on both sides; a sum over 1024 pixels and a 48-term
/// convolution differ in their last bits), and `tensors.json` names the files, shapes and rows.
#[test]
fn outputs_that_are_not_images_are_written_as_npy_with_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for name in ["a.png", "b.png"] {
        std::fs::copy(common::fixture("user/photo-32x32.png"), inputs.join(name)).unwrap();
    }
    let out = dir.path().join("out");
    let model = common::fixture("user/tensor_outputs.onnx");
    batchwise()
        .arg("run")
        .arg("-m")
        .arg(&model)
        .arg("-o")
        .arg(&out)
        .arg(&inputs)
        .assert()
        .success();
    for (name, shape) in [("logits", vec![2, 10]), ("heat", vec![2, 2, 8, 8])] {
        let (got_shape, got) = read_npy(&out.join(format!("{name}.npy")));
        assert_eq!(got_shape, shape, "{name}");
        let want = reference(name);
        for row in got.chunks(want.len()) {
            let worst = row
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= 1e-4, "{name}: {worst}");
        }
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("tensors.json")).unwrap()).unwrap();
    assert_eq!(index["outputs"][0]["name"], "logits");
    assert_eq!(index["outputs"][0]["file"], "logits.npy");
    assert_eq!(
        index["outputs"][1]["shape"],
        serde_json::json!([2, 2, 8, 8])
    );
    assert!(
        index["items"][1]["input"]
            .as_str()
            .unwrap()
            .ends_with("b.png")
    );
    assert_eq!(index["items"][1]["row"], 1);
}
