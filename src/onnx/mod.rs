//! ONNX import: decodes a `.onnx` file (prost) and lowers its graph to a [`Model`].
//!
//! One translator ([`lowering`]), run first with the input's batch, height and width free
//! (image-IR layers the engine sizes per batch), and, for graphs that need more and whose input
//! shape is fixed, again with every dim bound (general tensor ops). Each op is lowered by one
//! function in `ops/<family>.rs`. What each mode takes is listed once, in [`registry`] (rendered
//! as `docs/ONNX_OPS.md`); anything else is refused with an error that names the node, its op,
//! the opset and what is supported.

mod channels_last;
pub mod lowering;
pub mod ops;
pub mod proto;
pub mod registry;

use std::collections::HashMap;

use anyhow::{Context as _, Result, anyhow, bail};
use prost::Message as _;

use crate::model::Activation;
use crate::model::Conv2dSpec;
use crate::model::ConvTranspose2dSpec;
use crate::model::{LayerOp, Model, limits};
use proto::{AttributeProto, NodeProto, TensorProto, data_type};

/// Opsets read. Versions after 21 changed the types (bfloat16, float8, int4) of the ops batchwise
/// supports, not their float32 meaning.
const OPSETS: std::ops::RangeInclusive<i64> = 7..=28;

/// A float tensor read from an initializer.
struct Weights {
    dims: Vec<i64>,
    data: Vec<f32>,
}

/// An error where `t` keeps its data in an external file, which batchwise does not read.
fn refuse_external(t: &TensorProto) -> Result<()> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        bail!(
            "tensor {} keeps its data in an external file, which batchwise does not read; \
             save the model with all tensors inside the .onnx file",
            t.name
        );
    }
    Ok(())
}

fn tensor_to_f32(t: &TensorProto) -> Result<Weights> {
    refuse_external(t)?;
    let data = match t.data_type {
        data_type::FLOAT if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        data_type::FLOAT => t.float_data.clone(),
        data_type::FLOAT16 if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        data_type::FLOAT16 => t
            .int32_data
            .iter()
            .map(|&v| half::f16::from_bits(v as u16).to_f32())
            .collect(),
        data_type::DOUBLE if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        data_type::DOUBLE => t.double_data.iter().map(|&v| v as f32).collect(),
        other => bail!(
            "tensor {} has element type {other}; weights must be float32, float16 or float64",
            t.name
        ),
    };
    let expected = t
        .dims
        .iter()
        .try_fold(1i64, |n, &d| (d >= 0).then(|| n.checked_mul(d)).flatten());
    if expected != i64::try_from(data.len()).ok() {
        bail!(
            "tensor {} holds {} values but its shape {:?} needs {}",
            t.name,
            data.len(),
            t.dims,
            expected.map_or("an impossible count".into(), |n| n.to_string())
        );
    }
    Ok(Weights {
        dims: t.dims.clone(),
        data,
    })
}

/// The ONNX type of each attribute batchwise reads (names whose type differs by op, like
/// `value`, are left out): a file that declares another type gets an error naming the attribute,
/// where reading the wrong field would take a default or an empty list silently.
const ATTRIBUTE_TYPES: &[(&str, i32)] = &[
    ("pads", 7),
    ("strides", 7),
    ("dilations", 7),
    ("kernel_shape", 7),
    ("perm", 7),
    ("output_padding", 7),
    ("output_shape", 7),
    ("split", 7),
    ("starts", 7),
    ("ends", 7),
    ("shape", 7),
    ("group", 2),
    ("axis", 2),
    ("blocksize", 2),
    ("transA", 2),
    ("transB", 2),
    ("keepdims", 2),
    ("ceil_mode", 2),
    ("count_include_pad", 2),
    ("allowzero", 2),
    ("num_outputs", 2),
    ("to", 2),
    ("antialias", 2),
    ("exclude_outside", 2),
    ("training_mode", 2),
    ("alpha", 1),
    ("beta", 1),
    ("gamma", 1),
    ("epsilon", 1),
    ("lambd", 1),
    ("cubic_coeff_a", 1),
    ("mode", 3),
    ("auto_pad", 3),
    ("approximate", 3),
    ("coordinate_transformation_mode", 3),
    ("nearest_mode", 3),
    ("keep_aspect_ratio_policy", 3),
];

/// An error naming the first attribute of `node` whose declared type is not the one ONNX gives
/// it (an undeclared type, 0, is taken as written).
fn check_attribute_types(node: &NodeProto) -> Result<()> {
    const NAMES: [&str; 8] = [
        "UNDEFINED",
        "FLOAT",
        "INT",
        "STRING",
        "TENSOR",
        "GRAPH",
        "FLOATS",
        "INTS",
    ];
    let name = |t: i32| {
        usize::try_from(t)
            .ok()
            .and_then(|t| NAMES.get(t).copied())
            .unwrap_or("?")
    };
    for a in &node.attribute {
        let expected = ATTRIBUTE_TYPES.iter().find(|(n, _)| *n == a.name);
        if let Some(&(_, want)) = expected
            && a.r#type != 0
            && a.r#type != want
        {
            bail!(
                "attribute {} is declared {} but ONNX defines it as {}",
                a.name,
                name(a.r#type),
                name(want)
            );
        }
    }
    Ok(())
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

fn attr_int(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn attr_float(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

fn node_label(node: &NodeProto) -> String {
    if node.name.is_empty() {
        format!(
            "the {} node writing {}",
            node.op_type,
            node.output.first().map_or("?", |s| s.as_str())
        )
    } else {
        format!("node {} ({})", node.name, node.op_type)
    }
}

/// Spatial parameters shared by Conv and ConvTranspose.
struct Spatial {
    k: [u32; 2],
    stride: [u32; 2],
    pads: [u32; 4],
    dilation: [u32; 2],
    groups: u32,
}

fn to_u32_pair(v: Option<Vec<i64>>, default: u32, what: &str) -> Result<[u32; 2]> {
    match v {
        None => Ok([default; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 0 && x <= u32::MAX as i64) => {
            Ok([v[0] as u32, v[1] as u32])
        }
        Some(v) => bail!("{what} {v:?} is not two non-negative values (only 2-D is supported)"),
    }
}

fn spatial(node: &NodeProto, w: &Weights) -> Result<Spatial> {
    if w.dims.len() != 4 {
        bail!(
            "weights of shape {:?} are not 4-D (only 2-D convolutions are supported)",
            w.dims
        );
    }
    if let Some(a) = attr(node, "auto_pad") {
        let mode = String::from_utf8_lossy(&a.s);
        if mode != "NOTSET" && mode != "VALID" {
            bail!("auto_pad={mode} is not supported yet; export with explicit pads");
        }
    }
    if let Some(d) = w
        .dims
        .iter()
        .find(|&&d| !(1..=i64::from(limits::MAX_CHANNELS)).contains(&d))
    {
        bail!("weights of shape {:?} have a dimension of {d}", w.dims);
    }
    let k = [w.dims[2] as u32, w.dims[3] as u32];
    if let Some(ks) = attr_ints(node, "kernel_shape")
        && ks != [k[0] as i64, k[1] as i64]
    {
        bail!(
            "kernel_shape {ks:?} disagrees with the weights' shape {:?}",
            w.dims
        );
    }
    let pads = match attr_ints(node, "pads") {
        None => [0; 4],
        Some(p) if p.len() == 4 && p.iter().all(|&x| (0..=u32::MAX as i64).contains(&x)) => {
            // ONNX order: top, left, bottom, right.
            [p[0] as u32, p[1] as u32, p[2] as u32, p[3] as u32]
        }
        Some(p) => bail!("pads {p:?} are not four non-negative values"),
    };
    let stride = to_u32_pair(attr_ints(node, "strides"), 1, "strides")?;
    let dilation = to_u32_pair(attr_ints(node, "dilations"), 1, "dilations")?;
    if stride.contains(&0) || dilation.contains(&0) {
        bail!("strides and dilations must be at least 1");
    }
    let groups = attr_int(node, "group", 1);
    if groups < 1 || groups > i64::from(limits::MAX_CHANNELS) {
        bail!(
            "group {groups} must be at least 1 (and at most {})",
            limits::MAX_CHANNELS
        );
    }
    check_window(&k, &stride, &dilation, &pads)?;
    Ok(Spatial {
        k,
        stride,
        pads,
        dilation,
        groups: groups as u32,
    })
}

/// Kernel sides, strides and dilations up to [`limits::MAX_WINDOW`], pads up to
/// [`limits::MAX_PAD`]: checked here, where a file's numbers first become a spec, so that no size
/// arithmetic after it can overflow.
fn check_window(
    k: &[u32; 2],
    stride: &[u32; 2],
    dilation: &[u32; 2],
    pads: &[u32; 4],
) -> Result<()> {
    let (w, p) = (limits::MAX_WINDOW, limits::MAX_PAD);
    if [k, stride, dilation]
        .iter()
        .any(|v| v.iter().any(|&x| x > w))
    {
        bail!(
            "kernel {k:?}, strides {stride:?} or dilations {dilation:?} exceed {w}, the most \
             batchwise takes"
        );
    }
    if pads.iter().any(|&x| x > p) {
        bail!("pads {pads:?} exceed {p}, the most batchwise takes");
    }
    Ok(())
}

fn tensor_to_i64(t: &TensorProto) -> Result<Vec<i64>> {
    match t.data_type {
        data_type::INT64 if !t.raw_data.is_empty() => Ok(t
            .raw_data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect()),
        data_type::INT64 => Ok(t.int64_data.clone()),
        data_type::INT32 if !t.raw_data.is_empty() => Ok(t
            .raw_data
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64)
            .collect()),
        data_type::INT32 => Ok(t.int32_data.iter().map(|&v| v as i64).collect()),
        other => bail!("tensor {} has element type {other}, not an integer", t.name),
    }
}

fn node_name(node: &NodeProto) -> String {
    if node.name.is_empty() {
        node.output
            .first()
            .cloned()
            .unwrap_or_else(|| format!("a {} node", node.op_type))
    } else {
        node.name.clone()
    }
}

/// One layer of a lowered image op.
struct ImageLayer {
    name: String,
    op: LayerOp,
    weights: Vec<f32>,
    bias: Vec<f32>,
    out_c: u32,
}

/// The layers of a Conv or ConvTranspose node (2-D, explicit pads) reading `in_c` channels: one
/// convolution, or for a strided ConvTranspose a dense convolution producing every output phase
/// followed by DepthToSpace.
fn conv_layers(node: &NodeProto, w: Weights, bias: Vec<f32>, in_c: u32) -> Result<Vec<ImageLayer>> {
    let sp = spatial(node, &w)?;
    let op = if node.op_type == "Conv" {
        let out_c = w.dims[0] as u32;
        if !in_c.is_multiple_of(sp.groups)
            || !out_c.is_multiple_of(sp.groups)
            || w.dims[1] as u32 * sp.groups != in_c
        {
            bail!(
                "weights {:?} with group {} do not fit {in_c} input channels",
                w.dims,
                sp.groups
            );
        }
        let spec = Conv2dSpec {
            in_c,
            out_c,
            k_h: sp.k[0],
            k_w: sp.k[1],
            stride: sp.stride,
            pads: sp.pads,
            dilation: sp.dilation,
            groups: sp.groups,
            activation: Activation::None,
        };
        if !crate::passes::patch_conv::rewrites(&spec) {
            crate::kernels::conv2d::supported(&spec).map_err(|e| anyhow!("{e}"))?;
        }
        LayerOp::Conv2d(spec)
    } else {
        if attr(node, "output_shape").is_some() {
            bail!("the output_shape attribute is not supported; export with pads");
        }
        let out_c = w.dims[1] as u32 * sp.groups;
        if w.dims[0] as u32 != in_c || !in_c.is_multiple_of(sp.groups) {
            bail!(
                "weights {:?} with group {} do not fit {in_c} input channels",
                w.dims,
                sp.groups
            );
        }
        let output_padding = to_u32_pair(attr_ints(node, "output_padding"), 0, "output_padding")?;
        if output_padding.iter().any(|&p| p > limits::MAX_PAD) {
            bail!(
                "output_padding {output_padding:?} exceeds {}",
                limits::MAX_PAD
            );
        }
        LayerOp::ConvTranspose2d(ConvTranspose2dSpec {
            in_c,
            out_c,
            k_h: sp.k[0],
            k_w: sp.k[1],
            stride: sp.stride,
            pads: sp.pads,
            dilation: sp.dilation,
            output_padding,
            groups: sp.groups,
            activation: Activation::None,
        })
    };
    let out_c = match &op {
        LayerOp::Conv2d(s) => s.out_c,
        LayerOp::ConvTranspose2d(s) => s.out_c,
        _ => unreachable!("a convolution"),
    };
    if !bias.is_empty() && bias.len() != out_c as usize {
        bail!("bias has {} values for {out_c} output channels", bias.len());
    }
    Ok(vec![ImageLayer {
        name: node_name(node),
        op,
        weights: w.data,
        bias,
        out_c,
    }])
}

/// A MaxPool or AveragePool node (2-D, explicit pads) as a [`Pool2dSpec`].
fn pool_spec(node: &NodeProto) -> Result<crate::model::Pool2dSpec> {
    if node.output.len() > 1 {
        bail!("MaxPool's Indices output is not supported");
    }
    if let Some(a) = attr(node, "auto_pad") {
        let mode = String::from_utf8_lossy(&a.s);
        if mode != "NOTSET" && mode != "VALID" {
            bail!("auto_pad={mode} is not supported yet; export with explicit pads");
        }
    }
    let k = to_u32_pair(attr_ints(node, "kernel_shape"), 0, "kernel_shape")?;
    let stride = to_u32_pair(attr_ints(node, "strides"), 1, "strides")?;
    let dilation = to_u32_pair(attr_ints(node, "dilations"), 1, "dilations")?;
    let pads = match attr_ints(node, "pads") {
        None => [0; 4],
        Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => {
            [p[0] as u32, p[1] as u32, p[2] as u32, p[3] as u32]
        }
        Some(p) => bail!("pads {p:?} are not four non-negative values"),
    };
    if k.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
        bail!("kernel, strides and dilations must be at least 1");
    }
    check_window(&k, &stride, &dilation, &pads)?;
    Ok(crate::model::Pool2dSpec {
        average: node.op_type == "AveragePool",
        k,
        stride,
        pads,
        dilation,
        ceil_mode: attr_int(node, "ceil_mode", 0) != 0,
        count_include_pad: attr_int(node, "count_include_pad", 0) != 0,
    })
}

/// Decodes and lowers an ONNX model with one output.
pub fn load(bytes: &[u8], name: &str) -> Result<Model> {
    load_with_metadata(bytes, name).map(|(m, _)| m)
}

/// Decodes and lowers the part of an ONNX model that computes the graph output `output` (for
/// models with several heads, such as logits and an embedding).
pub fn load_output(bytes: &[u8], name: &str, output: &str) -> Result<Model> {
    load_outputs(bytes, name, &[output])
}

/// As [`load_output`] for several outputs: the first is the model's main output, the others its
/// extra outputs, read after each batch too.
pub fn load_outputs(bytes: &[u8], name: &str, outputs: &[&str]) -> Result<Model> {
    let (model, _) = decode(bytes)?;
    lower(&model, name, outputs)
}

/// As [`load`], with the file's `metadata_props`.
/// The model and its metadata properties; its channels-last stretches rewritten to act on the
/// NCHW tensor (`channels_last`).
fn decode(bytes: &[u8]) -> Result<(proto::ModelProto, HashMap<String, String>)> {
    let mut model = proto::ModelProto::decode(bytes)
        .map_err(|e| anyhow!("not a valid ONNX file (protobuf decoding failed: {e})"))?;
    if let (Ok(opset), Some(graph)) = (opset(&model), model.graph.as_mut()) {
        channels_last::rewrite(graph, opset);
    }
    let metadata = model
        .metadata_props
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    Ok((model, metadata))
}

/// The default domain's opset, checked against the ones batchwise reads.
fn opset(model: &proto::ModelProto) -> Result<i64> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(0, |o| o.version);
    if !OPSETS.contains(&opset) {
        bail!(
            "the model uses ONNX opset {opset}; batchwise reads opsets {} to {}",
            OPSETS.start(),
            OPSETS.end()
        );
    }
    Ok(opset)
}

/// What a file declares of its graph: the input size it fixes (height, width) for its one image
/// input, if it fixes both, and its outputs' names and dims (-1 where a dim is not a number).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Declared {
    pub input_size: Option<(u32, u32)>,
    pub outputs: Vec<(String, Vec<i64>)>,
}

/// What `bytes` declare, read by one decode that skips the weights.
pub fn declared(bytes: &[u8]) -> Result<Declared> {
    let graph = signature(bytes)?;
    let weight = |name: &str| graph.initializer.iter().any(|t| t.name == name);
    let input_size = image_input(&graph.input, weight)
        .ok()
        .and_then(|(_, dims, nhwc)| {
            let [_, a, b, c] = dims;
            let (h, w) = if nhwc { (a?, b?) } else { (b?, c?) };
            Some((u32::try_from(h).ok()?, u32::try_from(w).ok()?))
        });
    let outputs = graph
        .output
        .iter()
        .map(|o| {
            let dims = o
                .r#type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
                .and_then(|t| t.shape.as_ref())
                .map(|s| s.dim.iter().map(|d| d.dim_value.unwrap_or(-1)).collect())
                .unwrap_or_default();
            (o.name.clone(), dims)
        })
        .collect();
    Ok(Declared {
        input_size,
        outputs,
    })
}

/// The file's graph inputs and outputs, decoded without its weights.
fn signature(bytes: &[u8]) -> Result<proto::GraphSignature> {
    proto::ModelSignature::decode(bytes)
        .map_err(|e| anyhow!("not a valid ONNX file (protobuf decoding failed: {e})"))?
        .graph
        .context("the ONNX file has no graph")
}

pub fn load_with_metadata(bytes: &[u8], name: &str) -> Result<(Model, HashMap<String, String>)> {
    let (model, metadata) = decode(bytes)?;
    lower(&model, name, &[]).map(|m| (m, metadata))
}

/// The graph's one data input (of `inputs`, those that are no `weight`), its four dims (None
/// where not a positive number) and whether it is channels-last: NHWC when the last dim is a
/// channel count (1, 3 or 4) and the second is not.
fn image_input(
    inputs: &[proto::ValueInfoProto],
    weight: impl Fn(&str) -> bool,
) -> Result<(&proto::ValueInfoProto, [Option<i64>; 4], bool)> {
    let inputs: Vec<&proto::ValueInfoProto> = inputs.iter().filter(|i| !weight(&i.name)).collect();
    let [input] = inputs.as_slice() else {
        bail!(
            "the model has {} inputs; batchwise runs models with one image input",
            inputs.len()
        );
    };
    let dims: Vec<Option<i64>> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| d.dim_value.filter(|&v| v > 0))
                .collect()
        })
        .unwrap_or_default();
    let Ok(dims) = <[Option<i64>; 4]>::try_from(dims.as_slice()) else {
        bail!(
            "input {} has {} dimensions; an image input is [N, C, H, W]",
            input.name,
            dims.len()
        );
    };
    let nhwc = matches!(dims[3], Some(1 | 3 | 4)) && !matches!(dims[1], Some(1 | 3 | 4));
    Ok((input, dims, nhwc))
}

/// Lowers an image model with every shape fixed for an input of `size` (height, width; None: the
/// size the file fixes), batch 1 per item: for graphs the free-size lowering cannot take (shape
/// arithmetic, reshapes of any rank, fixed-size models). Fixed dims must agree with `size`. An
/// input `[N, H, W, C]` (C of 1, 3 or 4 last) is channels-last.
pub fn load_at_size(
    bytes: &[u8],
    name: &str,
    size: Option<(u32, u32)>,
) -> Result<(Model, HashMap<String, String>)> {
    let (model, metadata) = decode(bytes)?;
    let opset = opset(&model)?;
    let graph = model.graph.as_ref().context("the ONNX file has no graph")?;
    let weight = |name: &str| graph.initializer.iter().any(|t| t.name == name);
    let (input, [n, a, b, c], nhwc) = image_input(&graph.input, weight)?;
    let (hd, wd) = if nhwc { (a, b) } else { (b, c) };
    let bind = |d: Option<i64>, want: Option<u32>, what: &str| -> Result<u32> {
        match (d, want) {
            (None, Some(want)) => Ok(want),
            (Some(v), None) => Ok(v as u32),
            (Some(v), Some(want)) if v == want as i64 => Ok(want),
            (Some(v), Some(want)) => {
                bail!("input {} fixes its {what} at {v}, not {want}", input.name)
            }
            (None, None) => bail!("input {} does not fix its {what}; give a size", input.name),
        }
    };
    let (h, w) = (
        bind(hd, size.map(|s| s.0), "height")?,
        bind(wd, size.map(|s| s.1), "width")?,
    );
    let batch = bind(n, Some(1), "batch")?;
    let fixed = if nhwc {
        vec![batch, h, w, c.unwrap_or(3) as u32]
    } else {
        let ch =
            a.with_context(|| format!("input {} does not fix its channel count", input.name))?;
        vec![batch, ch as u32, h, w]
    };
    lowering::lower(graph, opset, name, input, fixed, &[], nhwc).map(|m| (m, metadata))
}

/// Lowers with free batch and spatial size; when the graph needs more than that and its input
/// shape is fixed, with every dim bound instead.
fn lower(model: &proto::ModelProto, name: &str, output_names: &[&str]) -> Result<Model> {
    let image = lowering::lower_free(model, name, output_names);
    let Err(image_err) = image else {
        return image;
    };
    let Some(graph) = model.graph.as_ref() else {
        return Err(image_err);
    };
    let data_inputs: Vec<&proto::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !graph.initializer.iter().any(|t| t.name == i.name))
        .collect();
    let fixed = match data_inputs.as_slice() {
        [one] => lowering::fixed_dims(one).map(|d| (*one, d)),
        _ => None,
    };
    let Some((input, dims)) = fixed else {
        return Err(image_err);
    };
    if graph
        .node
        .iter()
        .any(|n| !registry::takes_fixed_shape(&n.op_type))
    {
        return Err(image_err);
    }
    let Ok(opset) = opset(model) else {
        return Err(image_err);
    };
    lowering::lower(graph, opset, name, input, dims, output_names, false)
}
