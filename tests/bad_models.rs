//! Model files from strangers: random bytes, files cut at every length, sizes far beyond the
//! file, graphs without outputs or with cycles, missing weights, NCNN files whose counts lie.
//! Each is an error (never a panic), in bounded time and memory; the CLI names the file.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use assert_cmd::Command;
use batchwise::onnx::{self, proto};
use prost::Message as _;
use rand::{Rng as _, SeedableRng as _};

/// Loads `bytes` as ONNX with a free size and at a fixed 16 x 16, and says whether either
/// panicked.
fn onnx_panics(bytes: &[u8]) -> bool {
    std::panic::catch_unwind(|| {
        let _ = onnx::load(bytes, "bad");
        let _ = onnx::load_at_size(bytes, "bad", Some((16, 16)));
    })
    .is_err()
}

fn ncnn_panics(param: &str, bin: &[u8]) -> bool {
    std::panic::catch_unwind(|| {
        let _ = batchwise::ncnn::load_bytes(param, bin, "bad");
    })
    .is_err()
}

/// A real model (the 2 KB pixel shuffle of the user-model tests) cut at every length, and 2,000
/// random byte strings: errors, no panic.
#[test]
fn cut_and_random_onnx_files_are_errors() {
    let whole = std::fs::read(common::fixture("user/pixel_shuffle_2x.onnx")).unwrap();
    // Its Shape arithmetic needs a fixed input size.
    assert!(onnx::load_at_size(&whole, "whole", Some((16, 16))).is_ok());
    let mut loaded = 0;
    for len in 0..whole.len() {
        assert!(!onnx_panics(&whole[..len]), "cut at {len} bytes");
        loaded += usize::from(onnx::load_at_size(&whole[..len], "cut", Some((16, 16))).is_ok());
    }
    // A cut at a field boundary can still be a well-formed smaller graph; almost none are.
    assert!(loaded < 10, "{loaded} cut files loaded");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for _ in 0..2000 {
        let len = rng.random_range(0..512);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        assert!(!onnx_panics(&bytes), "random bytes {bytes:?}");
    }
    // And the real file with bytes flipped.
    for k in 0..2000 {
        let mut bytes = whole.clone();
        let at = rng.random_range(0..bytes.len());
        bytes[at] ^= 1 << (k % 8);
        assert!(!onnx_panics(&bytes), "flipped byte {at}");
    }
}

fn value(name: &str, dims: &[i64]) -> proto::ValueInfoProto {
    proto::ValueInfoProto {
        name: name.into(),
        r#type: Some(proto::TypeProto {
            tensor_type: Some(proto::TypeProtoTensor {
                elem_type: 1,
                shape: Some(proto::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| proto::Dimension {
                            dim_value: (d > 0).then_some(d),
                            dim_param: None,
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

fn node(name: &str, op: &str, inputs: &[&str], output: &str) -> proto::NodeProto {
    proto::NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn model(
    nodes: Vec<proto::NodeProto>,
    initializer: Vec<proto::TensorProto>,
    outputs: &[&str],
) -> Vec<u8> {
    proto::ModelProto {
        ir_version: 8,
        opset_import: vec![proto::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(proto::GraphProto {
            node: nodes,
            name: "g".into(),
            initializer,
            input: vec![value("x", &[-1, 3, -1, -1])],
            output: outputs.iter().map(|o| value(o, &[])).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn weights(name: &str, dims: &[i64], count: usize) -> proto::TensorProto {
    proto::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        float_data: vec![0.5; count],
        ..Default::default()
    }
}

/// Graphs that are well-formed protobuf but wrong: each error says what is wrong.
#[test]
fn wrong_graphs_are_errors_that_say_why() {
    let conv = || node("conv", "Conv", &["x", "w"], "y");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "no outputs",
            model(vec![conv()], vec![weights("w", &[3, 3, 1, 1], 9)], &[]),
            "no outputs",
        ),
        (
            "a cycle",
            model(
                vec![
                    node("a", "Relu", &["b_out"], "a_out"),
                    node("b", "Relu", &["a_out"], "b_out"),
                ],
                vec![],
                &["b_out"],
            ),
            "not computed",
        ),
        (
            "a missing initializer",
            model(vec![conv()], vec![], &["y"]),
            "w",
        ),
        (
            "weights far beyond the file",
            model(
                vec![conv()],
                vec![weights("w", &[1 << 40, 1 << 40, 1 << 20, 1], 9)],
                &["y"],
            ),
            "values but its shape",
        ),
        (
            "weights with fewer values than their shape",
            model(vec![conv()], vec![weights("w", &[64, 3, 3, 3], 5)], &["y"]),
            "values but its shape",
        ),
        (
            "an absurd channel count",
            model(
                vec![conv()],
                vec![weights("w", &[1 << 30, 3, 1, 1], 0)],
                &["y"],
            ),
            "w",
        ),
    ];
    for (what, bytes, want) in cases {
        assert!(!onnx_panics(&bytes), "{what} panicked");
        let err = format!("{:#}", onnx::load(&bytes, "bad").unwrap_err());
        assert!(err.contains(want), "{what}: {err}");
    }
}

/// NCNN files whose counts lie, whose `.bin` is short or long, or whose layers ask for absurd
/// sizes; and a real NCNN model cut at every length of its `.param` and its `.bin`.
#[test]
fn lying_ncnn_files_are_errors() {
    let dir = common::fixture("ncnn");
    let param = std::fs::read_to_string(dir.join("pool_concat_pad.param")).unwrap();
    let bin = std::fs::read(dir.join("pool_concat_pad.bin")).unwrap();
    assert!(batchwise::ncnn::load_bytes(&param, &bin, "whole").is_ok());
    for len in 0..param.len() {
        if param.is_char_boundary(len) {
            assert!(!ncnn_panics(&param[..len], &bin), "param cut at {len}");
        }
    }
    for len in 0..bin.len() {
        assert!(!ncnn_panics(&param, &bin[..len]), "bin cut at {len}");
        assert!(
            batchwise::ncnn::load_bytes(&param, &bin[..len], "short").is_err(),
            "a .bin of {len} bytes loaded"
        );
    }
    let long = [bin.clone(), vec![0; 8]].concat();
    let err = format!(
        "{:#}",
        batchwise::ncnn::load_bytes(&param, &long, "long").unwrap_err()
    );
    assert!(err.contains("do not belong together"), "{err}");
    let cases: &[(&str, &str)] = &[
        // The counts line says 9 layers and 40 blobs; there are 2.
        (
            "7767517\n9 40\nInput data 0 1 data 0=8 1=8 2=3\nSigmoid s 1 1 data out\n",
            "layer",
        ),
        (
            "7767517\n2 2\nInput data 0 1 data 0=8 1=8 2=1000000000\nSigmoid s 1 1 data out\n",
            "channels",
        ),
        (
            "7767517\n2 2\nInput data 0 1 data 0=8 1=8 2=3\nInterp up 1 1 data out 0=1 1=1e30 2=2\n",
            "layer up",
        ),
        ("not a param file", "magic"),
    ];
    for (text, want) in cases {
        assert!(!ncnn_panics(text, &[]), "{text}");
        let err = format!(
            "{:#}",
            batchwise::ncnn::load_bytes(text, &[], "bad").unwrap_err()
        );
        assert!(err.to_lowercase().contains(want), "{text}: {err}");
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..2000 {
        let mut text = param.clone().into_bytes();
        let at = rng.random_range(0..text.len());
        text[at] = b"0123456789 =-.\nx"[rng.random_range(0..16)];
        if let Ok(text) = String::from_utf8(text) {
            assert!(!ncnn_panics(&text, &bin), "{text}");
        }
    }
}

/// The CLI refuses a bad model file with exit 1 and a message naming the file, before it opens
/// the GPU or touches the inputs.
#[test]
fn the_cli_names_a_bad_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.onnx");
    let whole = std::fs::read(common::fixture("user/pixel_shuffle_2x.onnx")).unwrap();
    std::fs::write(&bad, &whole[..whole.len() / 2]).unwrap();
    let input = dir.path().join("a.png");
    std::fs::copy(common::fixture("photo-60x44.png"), &input).unwrap();
    let out = Command::cargo_bin("batchwise")
        .unwrap()
        .args(["run", "-m"])
        .arg(&bad)
        .arg("-o")
        .arg(dir.path().join("out"))
        .arg(&input)
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.onnx"), "{stderr}");
    assert!(!dir.path().join("out").join("a.png").exists());
}
