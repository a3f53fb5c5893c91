//! The translator's two entry points: free input size ([`lower_free`]) and every input dim
//! bound ([`lower`]), and the models they build.

use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};

use crate::model::CopySpec;
use crate::model::MAX_RANK;
use crate::model::UnaryOp;
use crate::model::{ItemShape, LayerOp, Model, TensorOp};
use crate::onnx::proto::{GraphProto, ValueInfoProto};

use super::{Dim, FreeVal, HostTensor, Lowering, Val, item_shape, numel, plain_layer, strides_i64};

/// The graph lowered with a free batch and spatial size: `[N, C, H, W]` (or `[N, H, W, C]` that
/// the graph transposes to NCHW first) with only C fixed; an error naming the first node (or
/// input, or output) it cannot take.
pub(crate) fn lower_free(
    model: &crate::onnx::proto::ModelProto,
    name: &str,
    output_names: &[&str],
) -> Result<Model> {
    let opset = crate::onnx::opset(model)?;
    let graph = model.graph.as_ref().context("the ONNX file has no graph")?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let graph_inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .collect();
    let [input] = graph_inputs.as_slice() else {
        bail!(
            "the model has {} inputs; batchwise runs models with one image input",
            graph_inputs.len()
        );
    };
    let output = free_output(graph, output_names)?;
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
    let nhwc = graph.node.iter().any(|n| {
        n.op_type == "Transpose"
            && n.input.first() == Some(&input.name)
            && crate::onnx::attr_ints(n, "perm").as_deref() == Some(&[0, 3, 1, 2])
    });
    let c = dims[if nhwc { 3 } else { 1 }]
        .filter(|&c| c > 0)
        .and_then(|c| u32::try_from(c).ok())
        .with_context(|| format!("input {} does not fix its channel count", input.name))?;
    let mut l = Lowering {
        vals: HashMap::new(),
        ints: Default::default(),
        layers: Vec::new(),
        dims: vec![Vec::new()],
        opset,
        free: true,
        nhwc_input: nhwc,
        graph,
        initializers: super::initializers(graph, &input.name)?,
    };
    let mut x = FreeVal::image(c, None);
    if nhwc {
        // As the file sees it: [N, H, W, C] in memory, which the leading Transpose reads as
        // the NCHW value 0 ([`Lowering::lower_transpose`]).
        x.dims = vec![Dim::Free, Dim::Free, Dim::Free, Dim::Fixed(c)];
        x.flat = true;
    }
    l.vals.insert(input.name.clone(), Val::Free(x));
    l.walk()?;
    l.finish_free(name, input, output, output_names, c)
}

/// The output a free-size lowering computes: the one named first in `output_names`, or the
/// graph's only output.
fn free_output<'g>(graph: &'g GraphProto, output_names: &[&str]) -> Result<&'g ValueInfoProto> {
    match output_names.first().copied() {
        Some(wanted) => graph
            .output
            .iter()
            .find(|o| o.name == wanted)
            .with_context(|| format!("the model has no output named {wanted}")),
        None => match graph.output.as_slice() {
            [] => bail!("the graph has no outputs"),
            [only] => Ok(only),
            many => bail!(
                "the model has {} outputs ({}); batchwise runs one: choose it by name",
                many.len(),
                many.iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

impl Lowering<'_> {
    /// The free-size model: the layers computing `output` (and the extra outputs named after
    /// it), through the optimisation passes.
    fn finish_free(
        mut self,
        name: &str,
        input: &ValueInfoProto,
        output: &ValueInfoProto,
        output_names: &[&str],
        input_channels: u32,
    ) -> Result<Model> {
        let computed = |l: &Self, n: &str| match l.get(n).ok() {
            Some(Val::Free(f)) => Ok(f.clone()),
            Some(_) => bail!("the graph output {n} is a constant, not computed from the input"),
            None => bail!("the graph output {n} is never computed"),
        };
        let mut out = computed(&self, &output.name)?;
        // A graph that returns its input (Identity only) still gets one layer: a copy.
        if out.id == 0 {
            let op = LayerOp::Unary(UnaryOp::Affine {
                scale: 1.0,
                offset: 0.0,
            });
            let Val::Free(copy) = self.push_free(plain_layer("identity".into(), op, vec![0]), out)
            else {
                unreachable!("push_free makes free values")
            };
            out = copy;
        }
        let extra_outputs = output_names
            .iter()
            .skip(1)
            .map(|n| computed(&self, n).map(|f| f.id))
            .collect::<Result<Vec<_>>>()?;
        let model = Model {
            extra_outputs,
            image_outputs: Vec::new(),
            name: name.to_owned(),
            input_name: input.name.clone(),
            output_name: output.name.clone(),
            input_channels,
            output_channels: out.c,
            output: out.id,
            value_count: self.dims.len(),
            layers: self.layers,
            opset: self.opset,
            static_shapes: None,
            nhwc_input: self.nhwc_input,
            image_output: false,
        };
        crate::model::limits::check(&model)?;
        // The constants read (in f64) are not held through the passes.
        drop((self.vals, self.initializers));
        let (model, _) = crate::passes::run(model);
        Ok(model)
    }
}

/// The input's dims when every one is fixed but perhaps the first, the batch, which is then 1
/// (each item runs the graph alone; an export with a dynamic batch leaves it free).
pub(crate) fn fixed_dims(input: &ValueInfoProto) -> Option<Vec<u32>> {
    let shape = input
        .r#type
        .as_ref()?
        .tensor_type
        .as_ref()?
        .shape
        .as_ref()?;
    let dim = |d: &crate::onnx::proto::Dimension| d.dim_value.and_then(|v| u32::try_from(v).ok());
    let (batch, rest) = shape.dim.split_first()?;
    let batch = match batch.dim_value {
        None if !rest.is_empty() => Some(1),
        _ => dim(batch),
    };
    std::iter::once(batch).chain(rest.iter().map(dim)).collect()
}

/// Lowers `graph` for an input of exactly `input_dims` (the whole tensor is one batch item).
/// `nhwc`: the input is a channels-last image, fed as NCHW and transposed for the graph.
pub(crate) fn lower(
    graph: &GraphProto,
    opset: i64,
    name: &str,
    input: &ValueInfoProto,
    input_dims: Vec<u32>,
    output_names: &[&str],
    nhwc: bool,
) -> Result<Model> {
    if input_dims.len() > MAX_RANK {
        bail!("input {} has more than {MAX_RANK} dimensions", input.name);
    }
    let mut l = Lowering {
        vals: HashMap::new(),
        ints: Default::default(),
        layers: Vec::new(),
        dims: vec![input_dims.clone()],
        opset,
        free: false,
        nhwc_input: nhwc,
        graph,
        initializers: super::initializers(graph, &input.name)?,
    };
    l.check_new_values(0)
        .with_context(|| format!("input {}", input.name))?;
    let elem = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .map_or(1, |t| t.elem_type);
    match elem {
        1 | 10 | 11 | 16 => {}
        2..=7 | 9 | 12 | 13 => {
            l.ints.insert(0);
        }
        other => bail!(
            "input {} has element type {other}; batchwise takes numbers (computed in float32)",
            input.name
        ),
    }
    // A channels-last image input ([N, H, W, C]): the engine feeds value 0 as NCHW, and a
    // transpose gives the graph the layout it reads.
    if nhwc {
        if input_dims.len() != 4 {
            bail!("input {} is not [N, H, W, C]", input.name);
        }
        let [n, h, w, c] = input_dims[..] else {
            unreachable!("rank 4")
        };
        l.dims[0] = vec![n, c, h, w];
        let nchw = [n, c, h, w];
        let st = strides_i64(&nchw);
        let spec = CopySpec {
            dims: input_dims.clone(),
            src_strides: vec![st[0], st[2], st[3], st[1]],
            src_offset: 0,
            dst_strides: strides_i64(&input_dims),
            dst_offset: 0,
        };
        let id = l.push(
            format!("{} (NCHW to NHWC)", input.name),
            LayerOp::Tensor(TensorOp::Copy(vec![(Some(0), spec)])),
            vec![0],
            input_dims.clone(),
            Vec::new(),
        );
        l.vals
            .insert(input.name.clone(), Val::Gpu(id, input_dims.clone()));
    }
    // An empty input holds nothing to compute on: ops on it fold on the host.
    let input_val = if numel(&input_dims) == 0 {
        Val::Const(HostTensor {
            dims: input_dims.iter().map(|&d| d as usize).collect(),
            data: Vec::new(),
            int: l.ints.contains(&0),
        })
    } else {
        Val::Gpu(0, input_dims)
    };
    if !nhwc {
        l.vals.insert(input.name.clone(), input_val);
    }
    l.walk()?;
    let wanted: Vec<&str> = if output_names.is_empty() {
        graph.output.iter().map(|o| o.name.as_str()).collect()
    } else {
        output_names.to_vec()
    };
    let mut outputs = Vec::new();
    for w in &wanted {
        let v = match l.get(w).ok() {
            None => bail!("the graph output {w} is never computed"),
            Some(Val::Gpu(v, _)) if *v != 0 && !outputs.contains(v) => *v,
            Some(Val::Const(_)) => l.gpu(w)?.0,
            // The input itself, or a value already listed: a copy of its own.
            Some(_) => {
                let (v, dims) = l.gpu(w)?;
                l.push(
                    format!("{w} (output)"),
                    LayerOp::Tensor(TensorOp::Copy(vec![(
                        Some(0),
                        CopySpec::contiguous(numel(&dims)),
                    )])),
                    vec![v],
                    dims,
                    Vec::new(),
                )
            }
        };
        outputs.push(v);
    }
    let shapes: Vec<ItemShape> = l.dims.iter().map(|d| item_shape(d)).collect();
    let Some(&output) = outputs.first() else {
        bail!("the graph has no outputs");
    };
    let model = Model {
        name: name.to_owned(),
        input_name: input.name.clone(),
        output_name: wanted[0].to_owned(),
        input_channels: shapes[0].c,
        output_channels: shapes[output].c,
        layers: l.layers,
        output,
        extra_outputs: outputs[1..].to_vec(),
        image_outputs: Vec::new(),
        value_count: shapes.len(),
        opset,
        static_shapes: Some(shapes),
        nhwc_input: nhwc,
        image_output: false,
    };
    crate::model::limits::check(&model)?;
    // As in `finish_free`: the constants read are not held through the passes.
    drop((l.vals, l.initializers));
    let (model, _) = crate::passes::run(model);
    Ok(model)
}
