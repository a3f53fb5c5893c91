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

/// onnxruntime's output `output` of `model` for `photo-32x32.png`.
fn reference(model: &str, output: &str) -> Vec<f32> {
    let path = format!("user/photo-32x32.{model}.{output}.f32");
    bytemuck::pod_collect_to_vec(&std::fs::read(common::fixture(&path)).unwrap())
}

/// Runs `batchwise run -m user/MODEL` on `photo-32x32.png` copied as each of `names`; the
/// folder (kept while it lives) and the output folder in it.
fn run_on_photos(model: &str, names: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for name in names {
        std::fs::copy(common::fixture("user/photo-32x32.png"), inputs.join(name)).unwrap();
    }
    let out = dir.path().join("out");
    run(&common::fixture(&format!("user/{model}")), &inputs, &out);
    (dir, out)
}

/// Every row of `got` within `tolerance` of `want`.
fn assert_rows_near(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    for row in got.chunks(want.len()) {
        let worst = row
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= tolerance, "{what}: {worst}: {row:?} vs {want:?}");
    }
}

/// Two images (the same photo twice): `logits.npy` is [2, 10] and `heat.npy` [2, 2, 8, 8], each
/// row within 1e-4 of onnxruntime's (float32 on both sides; a sum over 1024 pixels and a 48-term
/// convolution differ in their last bits), and `tensors.json` names the files, shapes and rows.
#[test]
fn outputs_that_are_not_images_are_written_as_npy_with_an_index() {
    let (_dir, out) = run_on_photos("tensor_outputs.onnx", &["a.png", "b.png"]);
    for (name, shape) in [("logits", vec![2, 10]), ("heat", vec![2, 2, 8, 8])] {
        let (got_shape, got) = read_npy(&out.join(format!("{name}.npy")));
        assert_eq!(got_shape, shape, "{name}");
        assert_rows_near(&got, &reference("tensor_outputs", name), 1e-4, name);
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

/// A ConvNeXt-style classifier exported as PyTorch writes it (channels-last stretches, a
/// LayerNorm2d on the pooled 1x1 map, Flatten and Gemm; `make_tensor_model.py`): its graph
/// lowers with a free size, but its output is no image, so it runs at the size its file fixes,
/// as lowered with a free size (every pass applies: no general tensor op is left), and its
/// logits are written as `logits.npy`, within 1e-4 of onnxruntime's (float32 on both sides,
/// sums of at most 64 products).
#[test]
fn a_classifier_that_also_lowers_with_a_free_size_keeps_its_fixed_input() {
    use batchwise::model::LayerOp;
    let model = common::fixture("user/convnext_classifier.onnx");
    let choice = batchwise::builtin::resolve(model.to_str().unwrap(), &Default::default()).unwrap();
    assert_eq!(choice.task, batchwise::builtin::Task::Tensors);
    assert_eq!(choice.input_size, 32);
    assert!(
        choice.model.static_shapes.is_none(),
        "the free-size lowering"
    );
    let tensor = |l: &&batchwise::model::Layer| matches!(l.op, LayerOp::Tensor(_));
    assert!(!choice.model.layers.iter().any(|l| tensor(&l)));
    let names: Vec<&str> = choice.tensor_outputs.iter().map(|o| &o.name[..]).collect();
    assert_eq!(names, ["logits"]);
    assert_eq!(choice.tensor_outputs[0].shape, [10]);
    let (_dir, out) = run_on_photos("convnext_classifier.onnx", &["a.png"]);
    let (shape, got) = read_npy(&out.join("logits.npy"));
    assert_eq!(shape, [1, 10]);
    let want = reference("convnext_classifier", "logits");
    assert_rows_near(&got, &want, 1e-4, "logits");
}

/// A ViT-style embedder exported with a free batch (`make_tensor_model.py`: 16x16 patches, a
/// class token, two transformer blocks with attention, Reshapes built from its Shape, two of
/// its five norms written out op by op) runs on the fixed-shape lowering, its batch taken as
/// one per item, every norm one layer with its scale and shift and every Linear layer's bias in
/// its product (no general Reduce or broadcast Add left): `embedding.npy` is [2, 32], each row
/// within 1e-4 of onnxruntime's (float32 on both sides; sums of at most 768 products, softmaxes
/// and norms; measured 1.5e-6).
#[test]
fn a_vision_transformer_with_a_free_batch_embeds_each_image() {
    use batchwise::model::{BinaryOp, LayerOp, TensorOp};
    let model = common::fixture("user/vit_embedder.onnx");
    let choice = batchwise::builtin::resolve(model.to_str().unwrap(), &Default::default()).unwrap();
    assert_eq!(choice.task, batchwise::builtin::Task::Tensors);
    assert_eq!(choice.input_size, 32);
    let ops: Vec<&TensorOp> = (choice.model.layers.iter())
        .filter_map(|l| match &l.op {
            LayerOp::Tensor(op) => Some(op),
            _ => None,
        })
        .collect();
    let norms = ops.iter().filter(|op| matches!(op, TensorOp::Normalize(_)));
    assert_eq!(norms.count(), 5);
    assert!(!ops.iter().any(|op| matches!(op, TensorOp::Reduce(_))));
    let biased = (choice.model.layers.iter())
        .filter(|l| matches!(l.op, LayerOp::Tensor(TensorOp::MatMul { .. })) && !l.bias.is_empty());
    assert_eq!(biased.count(), 8, "2 blocks of 4 Linear layers");
    let broadcast_adds = ops.iter().filter(
        |op| matches!(op, TensorOp::Binary { spec, constant: Some(_) } if spec.op == BinaryOp::Add),
    );
    assert_eq!(broadcast_adds.count(), 1, "the position embedding's");
    let (_dir, out) = run_on_photos("vit_embedder.onnx", &["a.png", "b.png"]);
    let (shape, got) = read_npy(&out.join("embedding.npy"));
    assert_eq!(shape, [2, 32]);
    let want = reference("vit_embedder", "embedding");
    assert_rows_near(&got, &want, 1e-4, "embedding");
}

/// `batchwise run -m model -o out inputs`, which must succeed.
fn run(model: &std::path::Path, inputs: &std::path::Path, out: &std::path::Path) {
    batchwise()
        .arg("run")
        .arg("-m")
        .arg(model)
        .arg("-o")
        .arg(out)
        .arg(inputs)
        .assert()
        .success();
}
