//! The ONNX backend node tests (pip `onnx`, materialised by tests/conformance/generate.py) for every
//! op the importer supports, run on the GPU.
//!
//! Each test's first graph input is the data; its other inputs (weights, scales, pads) become
//! constants, as they are in real models. Data of rank < 4 is stored as the engine stores vectors
//! and matrices: first dim the batch, second the channels, trailing 1s (`[N, K]` as
//! `[N, K, 1, 1]`). Tolerance: |got - want| <= 1e-5 + 1e-3 |want| — onnxruntime's test default
//! relative tolerance, with an absolute floor for float32 sums in another order.
//!
//! `known_failures.txt` lists the tests that do not pass yet, each with its reason; this test
//! fails when a listed test starts passing (update the list) or an unlisted one fails.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use batchwise::engine::BatchRunner;
use batchwise::onnx::proto;
use prost::Message as _;

fn tensor(path: &Path) -> proto::TensorProto {
    proto::TensorProto::decode(&std::fs::read(path).unwrap()[..]).unwrap()
}

fn floats(t: &proto::TensorProto) -> Option<Vec<f32>> {
    match t.data_type {
        1 if !t.raw_data.is_empty() => Some(
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        1 => Some(t.float_data.clone()),
        _ => None,
    }
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
    // Data of rank r < 4 becomes [d0, .., d(r-1), 1, ..]: the first dim is the batch, the second the
    // channels, as the engine stores vectors and matrices ([N, K] as [N, K, 1, 1]). Constants are
    // aligned to the data's rank first (numpy broadcasting), then padded the same way, and
    // negative axes are made positive against the original rank.
    let first = &inputs[0];
    let rank = first.dims.len();
    if rank > 4 || rank == 0 {
        return Err(format!("rank-{rank} data (images are rank 4)"));
    }
    let to4 = |dims: &[i64]| -> Vec<i64> {
        let mut d = vec![1i64; rank.saturating_sub(dims.len())];
        d.extend(dims);
        d.resize(4, 1);
        d
    };
    for (k, &i) in data_inputs.iter().enumerate().skip(1) {
        let mut t = inputs[k].clone();
        t.name = graph.input[i].name.clone();
        // Only tensors that broadcast against the data are re-shaped; weights keep their shape.
        let is_operand = graph.node.iter().any(|n| {
            matches!(n.op_type.as_str(), "Add" | "Sub" | "Mul" | "Div" | "PRelu")
                && n.input.contains(&t.name)
        });
        if is_operand && t.dims.len() <= rank {
            t.dims = to4(&t.dims);
        }
        graph.initializer.push(t);
    }
    let data = floats(first).ok_or("the data input is not float32")?;
    let dims = to4(&first.dims);
    let input_name = graph.input[data_inputs[0]].name.clone();
    graph
        .input
        .retain(|v| v.name == input_name || initialized.contains(&v.name));
    if let Some(shape) = graph.input[0]
        .r#type
        .as_mut()
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
    for node in &mut graph.node {
        for a in &mut node.attribute {
            if a.name == "axis" && a.i < 0 {
                a.i += rank as i64;
            }
        }
    }
    let output_names: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let names: Vec<&str> = output_names.iter().map(String::as_str).collect();
    let bytes = model.encode_to_vec();
    let lowered = batchwise::onnx::load_outputs(&bytes, "conformance", &names)
        .map_err(|e| format!("import: {e:#}"))?;
    let gpu_model = engine
        .load(std::sync::Arc::new(lowered))
        .map_err(|e| format!("load: {e:#}"))?;
    let (n, h, w) = (dims[0] as u32, dims[2] as u32, dims[3] as u32);
    let runner = BatchRunner::float_input(engine, &gpu_model, n, h, w)
        .map_err(|e| format!("plan: {e:#}"))?;
    let got = runner
        .run_floats(&data, n)
        .map_err(|e| format!("run: {e:#}"))?;
    for (k, (g, want)) in got.iter().zip(&wanted).enumerate() {
        let want = floats(want).ok_or("the output is not float32")?;
        if g.len() != want.len() {
            return Err(format!(
                "output {k} has {} values, want {}",
                g.len(),
                want.len()
            ));
        }
        for (i, (a, b)) in g.iter().zip(&want).enumerate() {
            if !((a - b).abs() <= 1e-5 + 1e-3 * b.abs() || (a.is_nan() && b.is_nan())) {
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
    let mut dirs: Vec<_> = std::fs::read_dir(root.join("node"))
        .unwrap()
        .map(|e| e.unwrap().path())
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
