//! The image lowering: free batch, height and width, image-IR layers.
//!
//! [`lower_image`] reads the graph's one image input and its output, then walks the nodes in
//! order; [`ImageLowering`] holds what the walk has built so far, and each op's translation is a
//! method of it in the file of its family (`onnx/ops/<family>.rs`, the families of
//! [`super::registry`]).

use std::collections::HashMap;

use anyhow::{Context as _, Result, anyhow, bail};

use super::proto::{self, GraphProto, NodeProto, TensorProto, ValueInfoProto};
use super::{attr_ints, constant_node_tensor, node_label, node_name, ops, opset, registry};
use crate::model::UnaryOp;
use crate::model::{Layer, LayerOp, Model, ValueId};

/// The state of one image lowering: the layers so far and what they compute.
pub(crate) struct ImageLowering<'g> {
    pub(crate) opset: i64,
    pub(crate) graph: &'g GraphProto,
    /// Initializers and Constant nodes, by name.
    pub(crate) initializers: HashMap<&'g str, &'g TensorProto>,
    /// An NHWC input that the graph transposes to NCHW first is fed as NCHW directly.
    pub(crate) nhwc_input: bool,
    /// The value each ONNX tensor name is computed as.
    pub(crate) values: HashMap<String, ValueId>,
    /// Values stored flat per item (channels last), with the dims after axis 1 of their reshape.
    pub(crate) flat: HashMap<ValueId, Vec<i64>>,
    /// The channel count of each value; value 0 is the input.
    pub(crate) channels: Vec<u32>,
    pub(crate) layers: Vec<Layer>,
}

/// The graph lowered with a free batch and spatial size, or an error naming the first node (or
/// input, or output) it cannot take.
pub(super) fn lower_image(
    model: &proto::ModelProto,
    name: &str,
    output_names: &[&str],
) -> Result<Model> {
    let opset = opset(model)?;
    let graph = model.graph.as_ref().context("the ONNX file has no graph")?;

    // Constant nodes are initializers by another name.
    let constants: Vec<TensorProto> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Constant")
        .filter_map(constant_node_tensor)
        .collect();
    let mut initializers: HashMap<&str, &TensorProto> = HashMap::new();
    for t in graph.initializer.iter().chain(&constants) {
        initializers.insert(t.name.as_str(), t);
    }
    let graph_inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains_key(i.name.as_str()))
        .collect();
    let [input] = graph_inputs.as_slice() else {
        bail!(
            "the model has {} inputs; batchwise runs models with one image input",
            graph_inputs.len()
        );
    };
    let output = match output_names.first().copied() {
        Some(wanted) => graph
            .output
            .iter()
            .find(|o| o.name == wanted)
            .with_context(|| format!("the model has no output named {wanted}"))?,
        None => match graph.output.as_slice() {
            [only] => only,
            many => bail!(
                "the model has {} outputs ({}); batchwise runs one: choose it by name",
                many.len(),
                many.iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    let dims: Vec<Option<i64>> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.iter().map(|d| d.dim_value).collect())
        .unwrap_or_default();
    if dims.len() != 4 {
        bail!(
            "input {} has {} dimensions; an image input is [N, C, H, W]",
            input.name,
            dims.len()
        );
    }
    // An NHWC input that the graph transposes to NCHW first is fed as NCHW directly.
    let nhwc_input = graph.node.iter().any(|n| {
        n.op_type == "Transpose"
            && n.input.first() == Some(&input.name)
            && attr_ints(n, "perm").as_deref() == Some(&[0, 3, 1, 2])
    });
    let input_channels = dims[if nhwc_input { 3 } else { 1 }]
        .filter(|&c| c > 0)
        .with_context(|| format!("input {} does not fix its channel count", input.name))?
        as u32;

    let mut lowering = ImageLowering {
        opset,
        graph,
        initializers,
        nhwc_input,
        values: HashMap::from([(input.name.clone(), 0)]),
        flat: HashMap::new(),
        channels: vec![input_channels],
        layers: Vec::new(),
    };
    for node in &graph.node {
        lowering.lower_node(node)?;
    }
    lowering.finish(name, input, output, output_names)
}

impl ImageLowering<'_> {
    /// Appends the layers of one node, after checking its domain and that the registry lists its
    /// op for a free input size.
    fn lower_node(&mut self, node: &NodeProto) -> Result<()> {
        let opset = self.opset;
        let label = node_label(node);
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            bail!(
                "{label} is in operator domain {}; batchwise supports the default ONNX domain",
                node.domain
            );
        }
        if !registry::takes_free_size(&node.op_type) {
            bail!(
                "{label} uses op {} (opset {opset}), {}",
                node.op_type,
                registry::unsupported(&node.op_type, true)
            );
        }
        let lowered = match ops::activation::unary_op(node) {
            Err(e) => Err(e),
            // Activations and elementwise functions of one input: one layer each, translated as
            // the static lowering does.
            Ok(Some(op)) => self.lower_unary(node, op),
            Ok(None) => match node.op_type.as_str() {
                "Conv" | "ConvTranspose" => self.lower_conv(node),
                "Clip" => self.lower_clip(node),
                "PRelu" => self.lower_prelu(node),
                "Concat" => self.lower_concat(node),
                "Split" => self.lower_split(node),
                "BatchNormalization" => self.lower_batch_norm(node),
                "Pad" => self.lower_pad(node),
                "MaxPool" | "AveragePool" => self.lower_pool(node),
                "GlobalAveragePool" => self.lower_global_average_pool(node),
                "Flatten" => self.lower_flatten(node),
                "Slice" => self.lower_slice(node),
                "Gemm" => self.lower_gemm(node),
                "DepthToSpace" => self.lower_depth_to_space(node),
                "Resize" | "Upsample" => self.lower_resize(node),
                "Transpose" => self.lower_transpose(node),
                "Reshape" => self.lower_reshape(node),
                "Add" | "Sub" | "Mul" | "Div" => self.lower_binary(node),
                "Constant" => self.lower_constant(node),
                "Identity" => self.lower_identity(node),
                other => bail!(
                    "{label} uses op {other} (opset {opset}), which the registry \
                     (onnx/registry.rs) lists for a free input size but the image lowering does \
                     not translate"
                ),
            },
        };
        lowered.map_err(|e| self.in_node(node, e))
    }

    /// `e` as an error of `node`: its label and the opset.
    pub(crate) fn in_node(&self, node: &NodeProto, e: anyhow::Error) -> anyhow::Error {
        e.context(format!("{} (opset {})", node_label(node), self.opset))
    }

    /// The value computed for the tensor `name`.
    pub(crate) fn value_of(&self, name: &str) -> Result<ValueId> {
        self.values
            .get(name)
            .copied()
            .ok_or_else(|| anyhow!("reads {name}, which is not computed by a supported node"))
    }

    /// Appends a weightless layer writing the node's first output.
    pub(crate) fn push_plain(
        &mut self,
        node: &NodeProto,
        op: LayerOp,
        inputs: Vec<ValueId>,
        out_c: u32,
    ) {
        let output = self.channels.len();
        self.channels.push(out_c);
        self.values.insert(node.output[0].clone(), output);
        self.layers.push(Layer {
            name: node_name(node),
            op,
            inputs,
            output,
            weights: Vec::new(),
            bias: Vec::new(),
        });
    }

    /// The model: the layers computing `output` (and the extra outputs named after it), through
    /// the optimisation passes.
    fn finish(
        mut self,
        name: &str,
        input: &ValueInfoProto,
        output: &ValueInfoProto,
        output_names: &[&str],
    ) -> Result<Model> {
        let out = *self
            .values
            .get(&output.name)
            .with_context(|| format!("the graph output {} is never computed", output.name))?;
        // A graph that returns its input (Identity only) still gets one layer: a copy.
        let out = if out == 0 {
            self.layers.push(Layer {
                name: "identity".into(),
                op: LayerOp::Unary(UnaryOp::Affine {
                    scale: 1.0,
                    offset: 0.0,
                }),
                inputs: vec![0],
                output: self.channels.len(),
                weights: Vec::new(),
                bias: Vec::new(),
            });
            self.channels.push(self.channels[0]);
            self.channels.len() - 1
        } else {
            out
        };
        let extra_outputs = output_names
            .iter()
            .skip(1)
            .map(|n| {
                self.values
                    .get(*n)
                    .copied()
                    .with_context(|| format!("the graph output {n} is never computed"))
            })
            .collect::<Result<Vec<_>>>()?;
        let model = Model {
            extra_outputs,
            name: name.to_owned(),
            input_name: input.name.clone(),
            output_name: output.name.clone(),
            input_channels: self.channels[0],
            output_channels: self.channels[out],
            output: out,
            value_count: self.channels.len(),
            layers: self.layers,
            opset: self.opset,
            static_shapes: None,
            nhwc_input: self.nhwc_input,
        };
        let (model, _) = crate::passes::run(model);
        Ok(model)
    }
}

/// The item shape of a constant that broadcasts against `[N, C, H, W]` values (numpy rules: its
/// dims align to the right), shared by every item of a batch.
pub(crate) fn constant_item_shape(dims: &[i64]) -> Result<crate::model::ItemShape> {
    if dims.len() > 4 || (dims.len() == 4 && dims[0] != 1) {
        bail!("a constant of shape {dims:?} does not broadcast over [N, C, H, W] items");
    }
    let mut d = vec![1i64; 4 - dims.len()];
    d.extend(dims);
    Ok(crate::model::ItemShape {
        c: d[1] as u32,
        h: d[2] as u32,
        w: d[3] as u32,
    })
}
