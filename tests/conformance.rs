//! The ONNX backend node tests (pip `onnx`, materialised by tests/conformance/generate.py) for every
//! op the importer supports, run on the GPU.
//!
//! Each test's first graph input is the data; its other inputs (weights, scales, pads) become
//! constants, as they are in real models. Rank-4 data runs as N images where the image lowering
//! takes the graph; otherwise the graph is lowered with every shape fixed and the whole data
//! tensor is one item. Data of other numeric types is fed as float32, as the engine computes.
//! Tolerance: |got - want| <= 1e-5 + 1e-3 |want| — onnxruntime's test default relative
//! tolerance, with an absolute floor for float32 sums in another order (1/128 relative for
//! bfloat16 references, which carry 8 significant bits).
//!
//! `known_failures.txt` lists the tests that do not pass yet, each with its reason; this test
//! fails when a listed test starts passing (update the list) or an unlisted one fails.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use batchwise::engine::BatchRunner;
use batchwise::onnx::proto;
use prost::Message as _;

fn tensor(path: &Path) -> proto::TensorProto {
    proto::TensorProto::decode(&std::fs::read(path).unwrap()[..]).unwrap()
}

/// The tensor's values as float32, whatever its numeric type (the engine computes in float32;
/// the tests' integers are small enough to be exact).
fn floats(t: &proto::TensorProto) -> Option<Vec<f32>> {
    let raw = &t.raw_data;
    if t.dims.contains(&0) {
        return Some(Vec::new());
    }
    if raw.is_empty() {
        return match t.data_type {
            1 => Some(t.float_data.clone()),
            _ => None,
        };
    }
    let f = |size: usize, conv: &dyn Fn(&[u8]) -> f32| raw.chunks_exact(size).map(conv).collect();
    Some(match t.data_type {
        1 => f(4, &|b| f32::from_le_bytes(b.try_into().unwrap())),
        2 | 9 => f(1, &|b| b[0] as f32),
        3 => f(1, &|b| b[0] as i8 as f32),
        4 => f(2, &|b| u16::from_le_bytes(b.try_into().unwrap()) as f32),
        5 => f(2, &|b| i16::from_le_bytes(b.try_into().unwrap()) as f32),
        6 => f(4, &|b| i32::from_le_bytes(b.try_into().unwrap()) as f32),
        7 => f(8, &|b| i64::from_le_bytes(b.try_into().unwrap()) as f32),
        10 => f(2, &|b| {
            half::f16::from_le_bytes(b.try_into().unwrap()).to_f32()
        }),
        11 => f(8, &|b| f64::from_le_bytes(b.try_into().unwrap()) as f32),
        12 => f(4, &|b| u32::from_le_bytes(b.try_into().unwrap()) as f32),
        13 => f(8, &|b| u64::from_le_bytes(b.try_into().unwrap()) as f32),
        16 => f(2, &|b| {
            f32::from_bits((u16::from_le_bytes(b.try_into().unwrap()) as u32) << 16)
        }),
        _ => return None,
    })
}

/// Runs one node test; Err is the reason it fails.
fn run_case(engine: &batchwise::engine::Engine, dir: &Path) -> Result<(), String> {
    let mut model = proto::ModelProto::decode(&std::fs::read(dir.join("model.onnx")).unwrap()[..])
        .map_err(|e| e.to_string())?;
    let graph = model.graph.as_mut().ok_or("no graph")?;
    let inputs: Vec<proto::TensorProto> = (0..)
        .map(|i| dir.join(format!("input_{i}.pb")))
        .take_while(|p| p.exists())
        .map(|p| tensor(&p))
        .collect();
    let wanted: Vec<proto::TensorProto> = (0..)
        .map(|i| dir.join(format!("output_{i}.pb")))
        .take_while(|p| p.exists())
        .map(|p| tensor(&p))
        .collect();
    let initialized: Vec<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let data_inputs: Vec<usize> = (0..graph.input.len())
        .filter(|&i| !initialized.contains(&graph.input[i].name))
        .collect();
    if data_inputs.is_empty() || inputs.len() != data_inputs.len() {
        return Err("no data input".into());
    }
    for (k, &i) in data_inputs.iter().enumerate().skip(1) {
        let mut t = inputs[k].clone();
        t.name = graph.input[i].name.clone();
        graph.initializer.push(t);
    }
    let first = &inputs[0];
    let data = floats(first).ok_or("the data input is not a numeric tensor")?;
    let dims = first.dims.clone();
    let input_name = graph.input[data_inputs[0]].name.clone();
    graph
        .input
        .retain(|v| v.name == input_name || initialized.contains(&v.name));
    if let Some(shape) = graph
        .input
        .iter_mut()
        .find(|v| v.name == input_name)
        .and_then(|v| v.r#type.as_mut())
        .and_then(|t| t.tensor_type.as_mut())
        .and_then(|t| t.shape.as_mut())
    {
        shape.dim = dims
            .iter()
            .map(|&d| proto::Dimension {
                dim_value: Some(d),
                dim_param: None,
            })
            .collect();
    }
    let output_names: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let names: Vec<&str> = output_names.iter().map(String::as_str).collect();
    let bytes = model.encode_to_vec();
    let lowered = batchwise::onnx::load_outputs(&bytes, "conformance", &names)
        .map_err(|e| format!("import: {e:#}"))?;
    let gpu_model = engine
        .load(std::sync::Arc::new(lowered))
        .map_err(|e| format!("load: {e:#}"))?;
    // A model lowered with fixed shapes takes the whole data tensor as one item; an image model
    // takes [N, C, H, W] as N items.
    let (n, h, w) = match &gpu_model.model.static_shapes {
        Some(shapes) => (1, shapes[0].h, shapes[0].w),
        None => (dims[0] as u32, dims[2] as u32, dims[3] as u32),
    };
    let runner = BatchRunner::float_input(engine, &gpu_model, n, h, w)
        .map_err(|e| format!("plan: {e:#}"))?;
    let got = runner
        .run_floats(&data, n)
        .map_err(|e| format!("run: {e:#}"))?;
    for (k, (g, want)) in got.iter().zip(&wanted).enumerate() {
        // The engine computes in float32; a reference rounded to bfloat16 (8 significant bits) is
        // only that close to it.
        let relative = if want.data_type == 16 {
            1.0 / 128.0
        } else {
            1e-3
        };
        let want = floats(want).ok_or("the output is not a numeric tensor")?;
        if g.len() != want.len() {
            return Err(format!(
                "output {k} has {} values, want {}",
                g.len(),
                want.len()
            ));
        }
        for (i, (a, b)) in g.iter().zip(&want).enumerate() {
            if !(a == b || (a - b).abs() <= 1e-5 + relative * b.abs() || (a.is_nan() && b.is_nan()))
            {
                return Err(format!("output {k}[{i}] = {a}, want {b}"));
            }
        }
    }
    Ok(())
}

fn op_of(dir: &Path) -> String {
    let m = proto::ModelProto::decode(&std::fs::read(dir.join("model.onnx")).unwrap()[..]).unwrap();
    m.graph
        .and_then(|g| g.node.first().map(|n| n.op_type.clone()))
        .unwrap_or_default()
}

#[test]
fn onnx_node_tests() {
    let root = common::repo().join("tests/conformance");
    let known: HashMap<String, String> = std::fs::read_to_string(root.join("known_failures.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, reason) = l.split_once('\t').unwrap_or((l, ""));
            (name.trim().to_owned(), reason.trim().to_owned())
        })
        .collect();
    let engine = common::engine();
    // BATCHWISE_CONFORMANCE_NODES: another folder of node tests; BATCHWISE_CONFORMANCE_ONLY: run
    // the tests whose name contains it (both for debugging one op).
    let nodes = std::env::var("BATCHWISE_CONFORMANCE_NODES").map_or(root.join("node"), Into::into);
    let only = std::env::var("BATCHWISE_CONFORMANCE_ONLY").unwrap_or_default();
    let mut dirs: Vec<_> = std::fs::read_dir(nodes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(&only))
        .collect();
    dirs.sort();
    let mut per_op: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut surprises = Vec::new();
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&engine, dir)))
                .unwrap_or_else(|_| Err("panicked".into()));
        let entry = per_op.entry(op_of(dir)).or_default();
        entry.1 += 1;
        match (&result, known.contains_key(&name)) {
            (Ok(()), false) => entry.0 += 1,
            (Ok(()), true) => {
                entry.0 += 1;
                surprises.push(format!(
                    "{name} passes now: remove it from known_failures.txt"
                ));
            }
            (Err(e), true) => failures.push(format!("{name}\t{e}")),
            (Err(e), false) => {
                failures.push(format!("{name}\t{e}"));
                surprises.push(format!("{name} fails: {e}"));
            }
        }
    }
    let (pass, total): (usize, usize) = per_op.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
    eprintln!("ONNX node tests: {pass}/{total} pass");
    for (op, (p, t)) in &per_op {
        eprintln!("  {op:<20} {p:>3}/{t}");
    }
    eprintln!("failing:");
    for f in &failures {
        eprintln!("  {f}");
    }
    assert!(surprises.is_empty(), "{}", surprises.join("\n"));
}
