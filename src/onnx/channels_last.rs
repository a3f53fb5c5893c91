//! Channels-last stretches of a graph run on the NCHW tensor: PyTorch exports a ConvNeXt block
//! (and the other blocks that apply `Linear` layers over the channels) as a `Transpose` to
//! `[N, H, W, C]`, a LayerNormalization over the last axis, `MatMul`s by `[C, K]` weights,
//! elementwise ops with constants that broadcast over the last axis, and a `Transpose` back to
//! `[N, C, H, W]`. Each value of such a stretch is computed per pixel from that pixel's
//! channels, so it is rewritten to act on the NCHW tensor itself: the transposes become
//! Identity, a MatMul a 1x1 Conv, a LayerNormalization the ops of a norm over axis 1 (which
//! `passes::normalize_channels` runs as one layer), and a constant of `K` values
//! `[K, 1, 1]`. The free-size lowering then takes the graph, and the passes fuse the block like
//! any convolutional one (the norm into the 1x1 after it, the GELU into the 1x1 before it).
//!
//! A stretch is rewritten only where it is closed: every reader of each of its values is one of
//! those ops, whose other operands are constants (a scalar or `K` values along the last axis),
//! or a Transpose back; no value of it is a graph output; a LayerNormalization's only output
//! read is its first. Else the graph is left as it is (the general tensor ops run it).

use std::collections::{HashMap, HashSet};

use super::proto::{AttributeProto, GraphProto, NodeProto, TensorProto, data_type};

/// Ops that act on each value alone: a stretch takes them as they are.
const UNARY: &[&str] = &[
    "Abs",
    "Ceil",
    "Clip",
    "Cos",
    "Elu",
    "Erf",
    "Exp",
    "Floor",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "Log",
    "Mish",
    "Neg",
    "Reciprocal",
    "Relu",
    "Round",
    "Selu",
    "Sigmoid",
    "Sin",
    "Softplus",
    "Sqrt",
    "Tanh",
];
/// Elementwise ops of two values that broadcast.
const BINARY: &[&str] = &["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"];

/// Rewrites every closed channels-last stretch of `graph` (opset `opset`) to act on the NCHW
/// tensor; returns how many it rewrote.
pub(super) fn rewrite(graph: &mut GraphProto, opset: i64) -> usize {
    let mut count = 0;
    // Each rewrite turns its entry Transpose into an Identity, so none is found twice.
    while let Some(stretch) = (0..graph.node.len()).find_map(|i| Stretch::find(graph, i)) {
        stretch.apply(graph, opset);
        count += 1;
    }
    if count > 0 {
        drop_unread(graph);
    }
    count
}

/// Removes the initializers that no node reads and no graph input or output names: those the
/// rewritten stretches read before their copies replaced them (a MatMul's `[C, K]` weights, now
/// a 1x1 convolution's `[K, C, 1, 1]`), so that a file's weights are not held twice, nor read
/// twice by the lowering.
fn drop_unread(graph: &mut GraphProto) {
    let named: std::collections::HashSet<&str> = (graph.node.iter())
        .flat_map(|n| n.input.iter())
        .chain(graph.input.iter().map(|i| &i.name))
        .chain(graph.output.iter().map(|o| &o.name))
        .map(String::as_str)
        .collect();
    graph
        .initializer
        .retain(|t| named.contains(t.name.as_str()));
}

/// A closed stretch: its entry and exit Transposes and the nodes between them (node indices).
struct Stretch {
    entry: usize,
    exits: Vec<usize>,
    nodes: Vec<usize>,
}

/// The graph's constants by name: initializers and Constant nodes' values.
fn constants(graph: &GraphProto) -> HashMap<&str, &TensorProto> {
    let mut map: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    for n in graph.node.iter().filter(|n| n.op_type == "Constant") {
        let value = n.attribute.iter().find(|a| a.name == "value");
        if let (Some(out), Some(t)) = (n.output.first(), value.and_then(|a| a.t.as_ref())) {
            map.insert(out.as_str(), t);
        }
    }
    map
}

fn perm(node: &NodeProto) -> Option<Vec<i64>> {
    super::attr_ints(node, "perm")
}

/// The values a constant of `dims` has along the last axis where it broadcasts over the others
/// alone (`[K]`, `[1, K]`, `[1, 1, 1, K]`): Some(K), K being 1 for a scalar; None otherwise.
fn along_last(dims: &[i64]) -> Option<i64> {
    let (last, rest) = dims.split_last().unwrap_or((&1, &[]));
    (dims.len() <= 4 && rest.iter().all(|&d| d == 1) && *last >= 1).then_some(*last)
}

impl Stretch {
    /// The stretch that node `entry` begins, if it is a Transpose to channels last whose
    /// stretch is closed.
    fn find(graph: &GraphProto, entry: usize) -> Option<Self> {
        let node = &graph.node[entry];
        if node.op_type != "Transpose" || perm(node)? != [0, 2, 3, 1] {
            return None;
        }
        let consts = constants(graph);
        let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        let mut values: HashSet<&str> = HashSet::from([node.output.first()?.as_str()]);
        let mut todo: Vec<&str> = values.iter().copied().collect();
        let (mut nodes, mut exits) = (Vec::new(), Vec::new());
        while let Some(v) = todo.pop() {
            if outputs.contains(v) {
                return None;
            }
            for (j, reader) in graph.node.iter().enumerate() {
                if !reader.input.iter().any(|i| i == v) || nodes.contains(&j) || exits.contains(&j)
                {
                    continue;
                }
                if reader.op_type == "Transpose" && perm(reader)? == [0, 3, 1, 2] {
                    exits.push(j);
                    continue;
                }
                let op = reader.op_type.as_str();
                let takes = UNARY.contains(&op)
                    || BINARY.contains(&op)
                    || op == "MatMul"
                    || op == "LayerNormalization";
                if !takes {
                    return None;
                }
                nodes.push(j);
                let out = reader.output.first()?.as_str();
                if values.insert(out) {
                    todo.push(out);
                }
            }
        }
        let stretch = Self {
            entry,
            exits,
            nodes,
        };
        let operands = stretch
            .nodes
            .iter()
            .all(|&j| operands_fit(graph, &graph.node[j], &values, &consts));
        (operands && !stretch.exits.is_empty()).then_some(stretch)
    }

    /// Rewrites the stretch in place: the Transposes become Identity, the nodes act on NCHW.
    fn apply(self, graph: &mut GraphProto, opset: i64) {
        for &t in std::iter::once(&self.entry).chain(&self.exits) {
            let node = &mut graph.node[t];
            node.op_type = "Identity".into();
            node.attribute.clear();
        }
        // The constants the stretch reads (copied: the rewrite adds initializers as it goes).
        let read: HashSet<&str> = (self.nodes.iter())
            .flat_map(|&j| graph.node[j].input.iter().map(String::as_str))
            .collect();
        let consts: HashMap<String, TensorProto> = constants(graph)
            .into_iter()
            .filter(|(k, _)| read.contains(k))
            .map(|(k, t)| (k.to_owned(), t.clone()))
            .collect();
        // Each node's replacement (several for a LayerNormalization), in the graph's order.
        let mut replaced: HashMap<usize, Vec<NodeProto>> = HashMap::new();
        for &j in &self.nodes {
            let node = graph.node[j].clone();
            let new = match node.op_type.as_str() {
                "MatMul" => vec![pointwise_conv(graph, &node, &consts)],
                "LayerNormalization" => channel_norm(graph, &node, &consts, opset),
                op if BINARY.contains(&op) => vec![channel_operands(graph, node, &consts)],
                _ => vec![node],
            };
            replaced.insert(j, new);
        }
        let old = std::mem::take(&mut graph.node);
        for (j, node) in old.into_iter().enumerate() {
            match replaced.remove(&j) {
                Some(new) => graph.node.extend(new),
                None => graph.node.push(node),
            }
        }
    }
}

/// Whether each operand of `node` that is not a value of the stretch is a constant the rewrite
/// takes: `[C, K]` weights for a MatMul, `C` values for a LayerNormalization over the last axis
/// (its other outputs unread), values along the last axis for a binary op, scalars for the rest.
fn operands_fit(
    graph: &GraphProto,
    node: &NodeProto,
    values: &HashSet<&str>,
    consts: &HashMap<&str, &TensorProto>,
) -> bool {
    // The dims of a constant whose values read as floats (the rewrite copies them: one that
    // does not read, external data say, leaves the stretch to the lowering's own error).
    let dims = |name: &str| {
        let t = consts.get(name).filter(|t| super::tensor_to_f32(t).is_ok());
        t.map(|t| t.dims.clone())
    };
    let inner = |k: usize| {
        node.input
            .get(k)
            .is_some_and(|i| values.contains(i.as_str()))
    };
    match node.op_type.as_str() {
        "MatMul" => {
            inner(0)
                && node
                    .input
                    .get(1)
                    .and_then(|w| dims(w))
                    .is_some_and(|d| d.len() == 2)
        }
        "LayerNormalization" => {
            let axis = super::attr_int(node, "axis", -1);
            let read = |o: &String| graph.node.iter().any(|n| n.input.contains(o));
            let unread = node.output.iter().skip(1).all(|o| o.is_empty() || !read(o));
            let vector = |k: usize| match node.input.get(k).filter(|n| !n.is_empty()) {
                Some(name) => dims(name).is_some_and(|d| d.len() == 1),
                None => k == 2,
            };
            inner(0) && (axis == -1 || axis == 3) && unread && vector(1) && vector(2)
        }
        op if BINARY.contains(&op) => {
            node.input.len() == 2
                && (0..2).all(|k| {
                    inner(k) || dims(&node.input[k]).is_some_and(|d| along_last(&d).is_some())
                })
        }
        _ => {
            inner(0)
                && node.input[1..].iter().all(|i| {
                    i.is_empty() || dims(i).is_some_and(|d| d.iter().product::<i64>() == 1)
                })
        }
    }
}

/// A float tensor's values.
fn floats(t: &TensorProto) -> Vec<f32> {
    super::tensor_to_f32(t).map(|w| w.data).unwrap_or_default()
}

/// A float32 initializer named `name` of `dims`.
fn initializer(graph: &mut GraphProto, name: String, dims: Vec<i64>, data: &[f32]) -> String {
    graph.initializer.push(TensorProto {
        dims,
        data_type: data_type::FLOAT,
        float_data: data.to_vec(),
        name: name.clone(),
        ..Default::default()
    });
    name
}

/// A name no value of the graph has, from `base`.
fn fresh(graph: &GraphProto, base: &str) -> String {
    let taken = |n: &str| {
        graph.initializer.iter().any(|t| t.name == n)
            || graph.node.iter().any(|x| x.output.iter().any(|o| o == n))
    };
    (0..)
        .map(|k| format!("{base}.nchw{k}"))
        .find(|n| !taken(n))
        .expect("an unused name")
}

/// `x @ W` (W `[C, K]`) as a 1x1 Conv of the NCHW `x` by `W` transposed to `[K, C, 1, 1]`.
fn pointwise_conv(
    graph: &mut GraphProto,
    node: &NodeProto,
    consts: &HashMap<String, TensorProto>,
) -> NodeProto {
    let w = &consts[&node.input[1]];
    let (c, k) = (w.dims[0] as usize, w.dims[1] as usize);
    let data = floats(w);
    let transposed: Vec<f32> = (0..k)
        .flat_map(|o| (0..c).map(move |i| (o, i)))
        .map(|(o, i)| data[i * k + o])
        .collect();
    let name = fresh(graph, &node.input[1]);
    let dims = vec![k as i64, c as i64, 1, 1];
    let weights = initializer(graph, name, dims, &transposed);
    NodeProto {
        input: vec![node.input[0].clone(), weights],
        op_type: "Conv".into(),
        ..node.clone()
    }
}

/// `node` with each constant operand of `K > 1` values along the last axis as `[K, 1, 1]`.
fn channel_operands(
    graph: &mut GraphProto,
    mut node: NodeProto,
    consts: &HashMap<String, TensorProto>,
) -> NodeProto {
    for k in 0..node.input.len() {
        let Some(t) = consts.get(&node.input[k]) else {
            continue;
        };
        match along_last(&t.dims) {
            Some(n) if n > 1 && t.dims.len() == 4 => {
                let name = fresh(graph, &node.input[k]);
                node.input[k] = initializer(graph, name, vec![1, n, 1, 1], &floats(t));
            }
            Some(n) if n > 1 => {
                let name = fresh(graph, &node.input[k]);
                node.input[k] = initializer(graph, name, vec![n, 1, 1], &floats(t));
            }
            _ => {}
        }
    }
    node
}

/// A LayerNormalization over the last axis as the ops of a norm over axis 1 of the NCHW value:
/// `d = x - mean(x)`, `d / sqrt(mean(d * d) + epsilon)`, times the scale, plus the bias.
fn channel_norm(
    graph: &mut GraphProto,
    node: &NodeProto,
    consts: &HashMap<String, TensorProto>,
    opset: i64,
) -> Vec<NodeProto> {
    let out = node.output[0].clone();
    let epsilon = super::attr_float(node, "epsilon", 1e-5);
    // Distinct bases: distinct names.
    let [mean, d, dd, var, ve, sd, norm, scaled] =
        ["mean", "d", "dd", "var", "ve", "sd", "norm", "scaled"]
            .map(|part| fresh(graph, &format!("{out}.{part}")));
    let eps_name = fresh(graph, &format!("{out}.epsilon"));
    let eps = initializer(graph, eps_name, Vec::new(), &[epsilon]);
    let reduce = |graph: &mut GraphProto, x: &str, y: &str| {
        let mut n = op("ReduceMean", &[x], y);
        if opset >= 18 {
            let axes_name = fresh(graph, &format!("{y}.axes"));
            graph.initializer.push(TensorProto {
                dims: vec![1],
                data_type: data_type::INT64,
                int64_data: vec![1],
                name: axes_name.clone(),
                ..Default::default()
            });
            n.input.push(axes_name);
        } else {
            n.attribute.push(AttributeProto {
                name: "axes".into(),
                ints: vec![1],
                r#type: 7,
                ..Default::default()
            });
        }
        n
    };
    let x = node.input[0].as_str();
    let mut nodes = vec![
        reduce(graph, x, &mean),
        op("Sub", &[x, &mean], &d),
        op("Mul", &[&d, &d], &dd),
        reduce(graph, &dd, &var),
        op("Add", &[&var, &eps], &ve),
        op("Sqrt", &[&ve], &sd),
    ];
    let scale = |graph: &mut GraphProto, k: usize| -> Option<String> {
        let t = consts.get(node.input.get(k)?)?;
        let name = fresh(graph, &t.name);
        Some(initializer(graph, name, vec![t.dims[0], 1, 1], &floats(t)))
    };
    match (scale(graph, 1), scale(graph, 2)) {
        (Some(s), Some(b)) => {
            nodes.push(op("Div", &[&d, &sd], &norm));
            nodes.push(op("Mul", &[&norm, &s], &scaled));
            nodes.push(op("Add", &[&scaled, &b], &out));
        }
        (Some(s), None) => {
            nodes.push(op("Div", &[&d, &sd], &norm));
            nodes.push(op("Mul", &[&norm, &s], &out));
        }
        _ => nodes.push(op("Div", &[&d, &sd], &out)),
    }
    for n in &mut nodes {
        n.name = format!("{}/{}", node.name, n.output[0]);
    }
    nodes
}

/// A node of `op_type` reading `inputs`, writing `output`.
fn op(op_type: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: vec![output.to_owned()],
        op_type: op_type.to_owned(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use crate::onnx::proto::{ModelProto, ValueInfoProto};
    use prost::Message as _;

    fn fixture() -> ModelProto {
        let bytes = std::fs::read("tests/fixtures/user/wild_convnext_1x.onnx").expect("fixture");
        ModelProto::decode(&bytes[..]).expect("an ONNX model")
    }

    /// The ConvNeXt fixture's three stretches (the stem's LayerNorm2d and each block) are
    /// rewritten: no Transpose, MatMul or LayerNormalization is left; the model lowers with a
    /// free size and, run on the CPU (`passes::cpu`), matches onnxruntime's output for the photo
    /// within 1e-4 (float32 sums of at most 288 products, outputs O(1)), at opset 17 (the norm's
    /// ReduceMean takes its axes as an attribute) and 18 (as an input). A stretch one of whose
    /// values is a graph output stays as it is.
    #[test]
    fn channels_last_stretches_run_on_the_nchw_map() {
        let photo = image::open("tests/fixtures/photo-60x44.png")
            .expect("the photo")
            .to_rgb8();
        let x: Vec<f32> = (0..3)
            .flat_map(|c| photo.pixels().map(move |p| f32::from(p[c]) / 255.0))
            .collect();
        let bytes = std::fs::read("tests/fixtures/user/photo-60x44.wild_convnext_1x.f32")
            .expect("the reference");
        let expected: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[..4 * x.len()]);
        for opset in [17, 18] {
            let mut m = fixture();
            m.opset_import[0].version = opset;
            let mut graph = m.graph.clone().expect("a graph");
            assert_eq!(super::rewrite(&mut graph, opset), 3, "opset {opset}");
            // The weights the stretches read before are gone: each initializer is read once.
            let read = |name: &str| graph.node.iter().any(|n| n.input.iter().any(|i| i == name));
            assert!(
                graph.initializer.iter().all(|t| read(&t.name)),
                "opset {opset}"
            );
            let left = ["Transpose", "MatMul", "LayerNormalization"];
            assert!(
                !graph
                    .node
                    .iter()
                    .any(|n| left.contains(&n.op_type.as_str()))
            );
            let model = crate::onnx::load(&m.encode_to_vec(), "convnext").expect("lowers");
            assert!(model.static_shapes.is_none(), "opset {opset}: a free size");
            let got = crate::passes::cpu::run(&model, &x, 44, 60);
            let diff = crate::passes::cpu::max_diff(&got, &expected);
            assert!(diff < 1e-4, "opset {opset}: {diff}");
        }
        let mut graph = fixture().graph.expect("a graph");
        let norm = graph
            .node
            .iter()
            .find(|n| n.op_type == "LayerNormalization");
        let name = norm.expect("a norm").output[0].clone();
        graph.output.push(ValueInfoProto {
            name,
            ..Default::default()
        });
        assert_eq!(
            super::rewrite(&mut graph, 17),
            2,
            "the stem's norm is an output"
        );
        // Weights kept in an external file: that stretch stays, and loading the model is an
        // error that says so, not a panic.
        let mut m = fixture();
        let graph = m.graph.as_mut().expect("a graph");
        let matmul = graph.node.iter().find(|n| n.op_type == "MatMul");
        let weights = matmul.expect("a MatMul").input[1].clone();
        let t = graph.initializer.iter_mut().find(|t| t.name == weights);
        t.expect("the weights").data_location = 1;
        assert_eq!(super::rewrite(&mut graph.clone(), 17), 2);
        let err = crate::onnx::load(&m.encode_to_vec(), "convnext").expect_err("external data");
        assert!(format!("{err:#}").contains("external file"), "{err:#}");
    }
}
