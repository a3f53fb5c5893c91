//! ONNX import: decodes a `.onnx` file (prost) and lowers its graph to a [`Model`].
//!
//! Two lowerings: the image one here (free batch, height and width; image-IR layers) and the
//! static one ([`static_graph`], every shape fixed; general tensor ops), for graphs the image one
//! refuses whose input shape is fixed. What each takes is listed once, in [`registry`] (rendered
//! as `docs/ONNX_OPS.md`); anything else is refused with an error that names the node, its op,
//! the opset and what is supported.

pub mod ops;
pub mod proto;
pub mod registry;
pub mod static_graph;

use std::collections::HashMap;

use anyhow::{Context as _, Result, anyhow, bail};
use prost::Message as _;

use crate::model::Activation;
use crate::model::Conv2dSpec;
use crate::model::ConvTranspose2dSpec;
use crate::model::UnaryOp;
use crate::model::{Layer, LayerOp, Model, ValueId};
use proto::{AttributeProto, NodeProto, TensorProto, data_type};

/// Opsets read. Versions after 21 changed the types (bfloat16, float8, int4) of the ops batchwise
/// supports, not their float32 meaning.
const OPSETS: std::ops::RangeInclusive<i64> = 7..=28;

/// A float tensor read from an initializer.
struct Weights {
    dims: Vec<i64>,
    data: Vec<f32>,
}

fn tensor_to_f32(t: &TensorProto) -> Result<Weights> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        bail!(
            "tensor {} keeps its data in an external file, which batchwise does not read; \
             save the model with all tensors inside the .onnx file",
            t.name
        );
    }
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
    let expected: i64 = t.dims.iter().product();
    if expected < 0 || data.len() as i64 != expected {
        bail!(
            "tensor {} holds {} values but its shape {:?} needs {expected}",
            t.name,
            data.len(),
            t.dims
        );
    }
    Ok(Weights {
        dims: t.dims.clone(),
        data,
    })
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
    if groups < 1 {
        bail!("group {groups} must be at least 1");
    }
    Ok(Spatial {
        k,
        stride,
        pads,
        dilation,
        groups: groups as u32,
    })
}

/// The item shape of a constant that broadcasts against `[N, C, H, W]` values (numpy rules: its
/// dims align to the right), shared by every item of a batch.
fn constant_item_shape(dims: &[i64]) -> Result<crate::model::ItemShape> {
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

/// Appends a weightless layer writing the node's first output.
fn push_plain(
    layers: &mut Vec<Layer>,
    channels: &mut Vec<u32>,
    values: &mut HashMap<String, ValueId>,
    node: &NodeProto,
    op: LayerOp,
    inputs: Vec<ValueId>,
    out_c: u32,
) {
    let output = channels.len();
    channels.push(out_c);
    values.insert(node.output[0].clone(), output);
    layers.push(Layer {
        name: node_name(node),
        op,
        inputs,
        output,
        weights: Vec::new(),
        bias: Vec::new(),
    });
}

/// Clip's bounds: attributes before opset 11, constant inputs 1 and 2 after (empty = unbounded).
fn clip_bounds(node: &NodeProto, initializers: &HashMap<&str, &TensorProto>) -> Result<(f32, f32)> {
    let bound = |i: usize, attr_name: &str, default: f32| -> Result<f32> {
        match node.input.get(i).filter(|n| !n.is_empty()) {
            Some(name) => {
                let t = initializers
                    .get(name.as_str())
                    .with_context(|| format!("Clip bound {name} is not a constant"))?;
                tensor_to_f32(t)?
                    .data
                    .first()
                    .copied()
                    .with_context(|| format!("Clip bound {name} is empty"))
            }
            None => Ok(attr_float(node, attr_name, default)),
        }
    };
    Ok((bound(1, "min", f32::MIN)?, bound(2, "max", f32::MAX)?))
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
        node.output[0].clone()
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
        crate::kernels::conv2d::supported(&spec).map_err(|e| anyhow!("{e}"))?;
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

/// A Constant node's value as a tensor named after its output, or None for forms it does not hold
/// (sparse tensors, strings).
fn constant_node_tensor(node: &NodeProto) -> Option<TensorProto> {
    let a = node.attribute.first()?;
    let name = node.output.first()?.clone();
    let t = match a.name.as_str() {
        "value" => TensorProto {
            name,
            ..a.t.clone()?
        },
        "value_float" | "value_floats" => TensorProto {
            name,
            dims: if a.name == "value_float" {
                vec![]
            } else {
                vec![a.floats.len() as i64]
            },
            data_type: data_type::FLOAT,
            float_data: if a.name == "value_float" {
                vec![a.f]
            } else {
                a.floats.clone()
            },
            ..Default::default()
        },
        "value_int" | "value_ints" => TensorProto {
            name,
            dims: if a.name == "value_int" {
                vec![]
            } else {
                vec![a.ints.len() as i64]
            },
            data_type: data_type::INT64,
            int64_data: if a.name == "value_int" {
                vec![a.i]
            } else {
                a.ints.clone()
            },
            ..Default::default()
        },
        _ => return None,
    };
    Some(t)
}

/// A linear Resize: its coordinate mode and its scales (input 2) or output sizes (input 3).
fn resize_filter_spec(
    node: &NodeProto,
    initializers: &HashMap<&str, &TensorProto>,
) -> Result<crate::model::ResizeFilterSpec> {
    fn place<T: Copy>(values: &[T], axes: &[i64], fill: T) -> Result<[T; 4]> {
        if values.len() != axes.len() || axes.iter().any(|a| !(0..4).contains(a)) {
            bail!("Resize names {} values for axes {axes:?}", values.len());
        }
        let mut out = [fill; 4];
        for (v, &a) in values.iter().zip(axes) {
            out[a as usize] = *v;
        }
        Ok(out)
    }
    use crate::model::{Coords, Filter, ResizeFilterSpec, Target};
    let text = |name: &str, default: &str| {
        attr(node, name).map_or(default.to_owned(), |a| {
            String::from_utf8_lossy(&a.s).into_owned()
        })
    };
    let coords = match text("coordinate_transformation_mode", "half_pixel").as_str() {
        "half_pixel" => Coords::HalfPixel,
        "half_pixel_symmetric" => Coords::HalfPixelSymmetric,
        "pytorch_half_pixel" => Coords::PytorchHalfPixel,
        "align_corners" => Coords::AlignCorners,
        "asymmetric" => Coords::Asymmetric,
        other => bail!("Resize coordinate_transformation_mode={other} is not supported yet"),
    };
    let constant = |i: usize| {
        node.input
            .get(i)
            .filter(|n| !n.is_empty())
            .and_then(|n| initializers.get(n.as_str()))
    };
    // Scales and sizes name every axis, or (opset 18) the axes in `axes`: put them in
    // [N, C, H, W] order, unnamed axes unscaled (sizes: -1 for "as the input").
    let axes: Vec<i64> = attr_ints(node, "axes")
        .unwrap_or_else(|| vec![0, 1, 2, 3])
        .iter()
        .map(|&a| if a < 0 { a + 4 } else { a })
        .collect();
    let policy = text("keep_aspect_ratio_policy", "stretch");
    let target = if let Some(sizes) = constant(3) {
        let full = place(&tensor_to_i64(sizes)?, &axes, -1)?;
        match full {
            [_, _, h, w] if h > 0 && w > 0 => match policy.as_str() {
                "stretch" => Target::Size([h as u32, w as u32]),
                "not_larger" | "not_smaller" => Target::Fit {
                    size: [h as u32, w as u32],
                    not_smaller: policy == "not_smaller",
                },
                other => bail!("Resize keep_aspect_ratio_policy={other} is not supported"),
            },
            other => bail!("Resize sizes {other:?} must be [N, C, h, w]"),
        }
    } else {
        let scales = constant(2)
            .or_else(|| constant(1).filter(|_| node.op_type == "Upsample"))
            .context("Resize needs constant scales or sizes")?;
        match place(&tensor_to_f32(scales)?.data, &axes, 1.0)? {
            [n, c, h, w] if n == 1.0 && c == 1.0 && h > 0.0 && w > 0.0 => Target::Scale([h, w]),
            other => bail!("Resize scales {other:?} must be [1, 1, h, w]"),
        }
    };
    if attr_int(node, "antialias", 0) != 0 {
        bail!("Resize with antialias=1 is not supported yet");
    }
    let filter = if text("mode", "nearest") == "nearest" {
        use crate::model::NearestMode;
        Filter::Nearest(match text("nearest_mode", "round_prefer_floor").as_str() {
            "round_prefer_floor" => NearestMode::RoundPreferFloor,
            "round_prefer_ceil" => NearestMode::RoundPreferCeil,
            "floor" => NearestMode::Floor,
            "ceil" => NearestMode::Ceil,
            other => bail!("Resize nearest_mode={other} is not supported"),
        })
    } else if text("mode", "nearest") == "cubic" {
        Filter::Cubic {
            a: attr_float(node, "cubic_coeff_a", -0.75),
            exclude_outside: attr_int(node, "exclude_outside", 0) != 0,
        }
    } else {
        Filter::Linear
    };
    Ok(ResizeFilterSpec {
        target,
        coords,
        filter,
    })
}

/// Whole-number nearest-neighbour scale factors of a Resize (or Upsample) node.
fn resize_scale(node: &NodeProto, initializers: &HashMap<&str, &TensorProto>) -> Result<[u32; 2]> {
    let mode = attr(node, "mode").map_or("nearest".into(), |a| {
        String::from_utf8_lossy(&a.s).into_owned()
    });
    if mode != "nearest" {
        bail!("Resize mode {mode} is not supported yet (nearest, linear and cubic are)");
    }
    if attr(node, "axes").is_some() {
        bail!("Resize with axes goes through the filter kernel");
    }
    let coords = attr(node, "coordinate_transformation_mode").map_or("half_pixel".into(), |a| {
        String::from_utf8_lossy(&a.s).into_owned()
    });
    let nearest = attr(node, "nearest_mode").map_or("round_prefer_floor".into(), |a| {
        String::from_utf8_lossy(&a.s).into_owned()
    });
    // With whole scale factors, these modes all pick source pixel floor(out / scale).
    let exact = match coords.as_str() {
        "asymmetric" => nearest == "floor" || nearest == "round_prefer_floor",
        "half_pixel" | "pytorch_half_pixel" => nearest != "ceil",
        _ => false,
    };
    if !exact {
        bail!(
            "Resize with coordinate_transformation_mode={coords} and nearest_mode={nearest} is not \
             supported yet"
        );
    }
    // Scales are input 2 (opset 11+) or 1 (Upsample, opset 10 Resize); sizes (input 3) are not.
    let scales_name = node
        .input
        .iter()
        .enumerate()
        .rev()
        .find(|(i, n)| !n.is_empty() && (*i == 1 || *i == 2))
        .map(|(_, n)| n.clone())
        .filter(|_| node.input.get(3).is_none_or(std::string::String::is_empty))
        .context("Resize by output sizes is not supported yet; export with scales")?;
    let scales = initializers
        .get(scales_name.as_str())
        .with_context(|| format!("scales {scales_name} are not a constant"))
        .and_then(|t| tensor_to_f32(t))?
        .data;
    let whole = |v: f32| (v >= 1.0 && v.fract() == 0.0).then_some(v as u32);
    match scales.as_slice() {
        [n, c, h, w] if *n == 1.0 && *c == 1.0 => match (whole(*h), whole(*w)) {
            (Some(h), Some(w)) => Ok([h, w]),
            _ => bail!("Resize scales {h} x {w} are not whole numbers >= 1"),
        },
        other => bail!("Resize scales {other:?} must be [1, 1, h, w]"),
    }
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
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| anyhow!("not a valid ONNX file (protobuf decoding failed: {e})"))?;
    lower(&model, name, outputs)
}

/// As [`load`], with the file's `metadata_props`.
/// The model and its metadata properties.
fn decode(bytes: &[u8]) -> Result<(proto::ModelProto, HashMap<String, String>)> {
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| anyhow!("not a valid ONNX file (protobuf decoding failed: {e})"))?;
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

pub fn load_with_metadata(bytes: &[u8], name: &str) -> Result<(Model, HashMap<String, String>)> {
    let (model, metadata) = decode(bytes)?;
    lower(&model, name, &[]).map(|m| (m, metadata))
}

/// Lowers an image model with every shape fixed for an input of `size` (height, width; None: the
/// size the file fixes), batch 1 per item: for graphs the image lowering cannot take (shape
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
    let inputs: Vec<&proto::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !graph.initializer.iter().any(|t| t.name == i.name))
        .collect();
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
    let [n, a, b, c] = dims[..] else {
        bail!(
            "input {} has {} dimensions; an image input is [N, C, H, W]",
            input.name,
            dims.len()
        );
    };
    // NCHW, or NHWC when the last dim is a channel count and the second is not.
    let nhwc = matches!(c, Some(1 | 3 | 4)) && !matches!(a, Some(1 | 3 | 4));
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
    static_graph::lower(graph, opset, name, input, fixed, &[], nhwc).map(|m| (m, metadata))
}

/// Lowers with free batch and spatial size (the image lowering); when the graph needs more than
/// that lowering takes and its input shape is fixed, with every shape fixed instead
/// ([`static_graph`]).
fn lower(model: &proto::ModelProto, name: &str, output_names: &[&str]) -> Result<Model> {
    let image = lower_image(model, name, output_names);
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
        [one] => static_graph::fixed_dims(one).map(|d| (*one, d)),
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
    static_graph::lower(graph, opset, name, input, dims, output_names, false)
}

#[allow(
    clippy::too_many_lines,
    reason = "one of the two ONNX translators, one match arm per op; to become one function per op \
              family in onnx/ops/ (ARCHITECTURE.md: the ONNX importer)"
)]
fn lower_image(model: &proto::ModelProto, name: &str, output_names: &[&str]) -> Result<Model> {
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

    let mut values: HashMap<String, ValueId> = HashMap::new();
    // Values stored flat per item (channels last), with the dims after axis 1 of their reshape.
    let mut flat: HashMap<ValueId, Vec<i64>> = HashMap::new();
    values.insert(input.name.clone(), 0);
    let mut channels: Vec<u32> = vec![input_channels];
    let mut layers: Vec<Layer> = Vec::new();
    // How many nodes read each value, to fuse an activation only into a conv it alone reads.
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for node in &graph.node {
        for i in &node.input {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }

    for node in &graph.node {
        let label = node_label(node);
        let fail = |e: anyhow::Error| e.context(format!("{label} (opset {opset})"));
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
        let value_of = |name: &str| -> Result<ValueId> {
            values
                .get(name)
                .copied()
                .ok_or_else(|| anyhow!("reads {name}, which is not computed by a supported node"))
        };
        // Activations and elementwise functions of one input: one layer each, translated as the
        // static lowering does; `passes::fuse_activation` runs ReLU / LeakyReLU inside the
        // convolution before them where it can.
        if let Some(op) = ops::activation::unary_op(node).map_err(fail)? {
            let first = node.input.first().context("has no input").map_err(fail)?;
            let input = value_of(first).map_err(fail)?;
            let c = channels[input];
            push_plain(
                &mut layers,
                &mut channels,
                &mut values,
                node,
                LayerOp::Unary(op),
                vec![input],
                c,
            );
            continue;
        }
        match node.op_type.as_str() {
            "Conv" | "ConvTranspose" => {
                let input = value_of(&node.input[0]).map_err(fail)?;
                let w_name = node.input.get(1).context("has no weights").map_err(fail)?;
                let w = initializers
                    .get(w_name.as_str())
                    .with_context(|| format!("weights {w_name} are not a constant initializer"))
                    .and_then(|t| tensor_to_f32(t))
                    .map_err(fail)?;
                let bias = match node.input.get(2).filter(|s| !s.is_empty()) {
                    Some(b) => {
                        initializers
                            .get(b.as_str())
                            .with_context(|| format!("bias {b} is not a constant initializer"))
                            .and_then(|t| tensor_to_f32(t))
                            .map_err(fail)?
                            .data
                    }
                    None => Vec::new(),
                };
                let mut from = input;
                for l in conv_layers(node, w, bias, channels[input]).map_err(fail)? {
                    let output = channels.len();
                    channels.push(l.out_c);
                    layers.push(Layer {
                        name: l.name,
                        op: l.op,
                        inputs: vec![from],
                        output,
                        weights: l.weights,
                        bias: l.bias,
                    });
                    from = output;
                }
                values.insert(node.output[0].clone(), from);
            }
            "Clip" => {
                // A layer of its own; `passes::fuse_activation` runs it inside the convolution
                // before it where it can.
                let (min, max) = clip_bounds(node, &initializers).map_err(fail)?;
                let input = value_of(&node.input[0]).map_err(fail)?;
                let c = channels[input];
                push_plain(
                    &mut layers,
                    &mut channels,
                    &mut values,
                    node,
                    LayerOp::Unary(UnaryOp::Clip { min, max }),
                    vec![input],
                    c,
                );
            }
            "PRelu" => {
                // Its slopes as a constant operand, broadcast; fused like an activation where
                // there is one slope per channel.
                let input = value_of(&node.input[0]).map_err(fail)?;
                let slope_name = node.input.get(1).context("has no slope").map_err(fail)?;
                let w = initializers
                    .get(slope_name.as_str())
                    .with_context(|| format!("slope {slope_name} is not a constant"))
                    .and_then(|t| tensor_to_f32(t))
                    .map_err(fail)?;
                let constant = constant_item_shape(&w.dims).map_err(fail)?;
                let output = channels.len();
                channels.push(channels[input]);
                values.insert(node.output[0].clone(), output);
                layers.push(Layer {
                    name: node_name(node),
                    op: LayerOp::BinaryConst {
                        op: crate::model::BinaryOp::PRelu,
                        constant,
                        constant_first: false,
                    },
                    inputs: vec![input],
                    output,
                    weights: w.data,
                    bias: Vec::new(),
                });
            }
            "Concat" => {
                let flat_inputs: Option<Vec<&Vec<i64>>> = node
                    .input
                    .iter()
                    .map(|n| values.get(n).and_then(|v| flat.get(v)))
                    .collect();
                // A negative axis counts from the end: of [N, C, H, W], or of a reshaped value.
                let rank = flat_inputs
                    .as_ref()
                    .and_then(|t| t.first())
                    .map_or(4, |tail| tail.len() as i64 + 2);
                let axis = attr_int(node, "axis", 1);
                let axis = if axis < 0 { axis + rank } else { axis };
                // Reshaped [1, A_i, ...tail] values with equal tails concatenate on axis 1 as flat
                // blocks: the same copy as channels of [A_i * tail, 1, 1].
                let flat_concat = axis == 1
                    && flat_inputs
                        .as_ref()
                        .is_some_and(|t| t.windows(2).all(|p| p[0] == p[1]));
                let spatial = if axis < 0 { axis + 4 } else { axis };
                if !flat_concat && (spatial == 2 || spatial == 3) {
                    let inputs = node
                        .input
                        .iter()
                        .map(|n| value_of(n))
                        .collect::<Result<Vec<_>>>()
                        .map_err(fail)?;
                    let c = channels[inputs[0]];
                    push_plain(
                        &mut layers,
                        &mut channels,
                        &mut values,
                        node,
                        LayerOp::ConcatAxis(spatial as usize),
                        inputs,
                        c,
                    );
                    continue;
                }
                if !flat_concat && axis != 1 && axis != -3 {
                    return Err(fail(anyhow!(
                        "Concat on axis {axis} is not supported yet (channels, axis 1, are)"
                    )));
                }
                let inputs = node
                    .input
                    .iter()
                    .map(|n| value_of(n))
                    .collect::<Result<Vec<_>>>()
                    .map_err(fail)?;
                let c = inputs.iter().map(|&v| channels[v]).sum();
                push_plain(
                    &mut layers,
                    &mut channels,
                    &mut values,
                    node,
                    LayerOp::Concat,
                    inputs,
                    c,
                );
            }
            "Split" => {
                let axis = attr_int(node, "axis", 0);
                let axis = if axis < 0 { axis + 4 } else { axis };
                if axis == 2 || axis == 3 {
                    // Height or width: explicit sizes become crops along that axis.
                    let input = value_of(&node.input[0]).map_err(fail)?;
                    let sizes: Vec<i64> = match node.input.get(1).filter(|n| !n.is_empty()) {
                        Some(name) => initializers
                            .get(name.as_str())
                            .with_context(|| format!("split sizes {name} are not a constant"))
                            .and_then(|t| tensor_to_i64(t))
                            .map_err(fail)?,
                        None => attr_ints(node, "split").ok_or_else(|| {
                            fail(anyhow!(
                                "an equal Split of height or width needs explicit sizes"
                            ))
                        })?,
                    };
                    if sizes.len() != node.output.len() {
                        return Err(fail(anyhow!(
                            "{} sizes for {} outputs",
                            sizes.len(),
                            node.output.len()
                        )));
                    }
                    let mut start = 0i64;
                    for (out_name, &len) in node.output.iter().zip(&sizes) {
                        let (mut s3, mut e3) = ([0i64; 3], [i64::MAX; 3]);
                        s3[axis as usize - 1] = start;
                        e3[axis as usize - 1] = start + len;
                        start += len;
                        let output = channels.len();
                        channels.push(channels[input]);
                        values.insert(out_name.clone(), output);
                        layers.push(Layer {
                            name: format!("{} -> {out_name}", node_name(node)),
                            op: LayerOp::Crop {
                                starts: s3,
                                ends: e3,
                            },
                            inputs: vec![input],
                            output,
                            weights: Vec::new(),
                            bias: Vec::new(),
                        });
                    }
                    continue;
                }
                if axis != 1 {
                    return Err(fail(anyhow!(
                        "Split on axis {axis} (the batch) is not supported"
                    )));
                }
                let input = value_of(&node.input[0]).map_err(fail)?;
                let total = channels[input];
                let sizes: Vec<u32> = match node.input.get(1).filter(|n| !n.is_empty()) {
                    Some(name) => initializers
                        .get(name.as_str())
                        .with_context(|| format!("split sizes {name} are not a constant"))
                        .and_then(|t| tensor_to_i64(t))
                        .map_err(fail)?
                        .into_iter()
                        .map(|v| v as u32)
                        .collect(),
                    None => match attr_ints(node, "split") {
                        Some(v) => v.into_iter().map(|v| v as u32).collect(),
                        None => {
                            let parts = node.output.len() as u32;
                            if parts == 0 || parts > total {
                                return Err(fail(anyhow!(
                                    "{total} channels do not split into {parts} parts"
                                )));
                            }
                            // Opset 18: parts of ceil(total / parts), the last one smaller.
                            let chunk = total.div_ceil(parts);
                            if !total.is_multiple_of(parts) && attr(node, "num_outputs").is_none() {
                                return Err(fail(anyhow!(
                                    "{total} channels do not split into {parts} equal parts"
                                )));
                            }
                            (0..parts)
                                .map(|i| chunk.min(total - (i * chunk).min(total)))
                                .collect()
                        }
                    },
                };
                if sizes.len() != node.output.len() || sizes.iter().sum::<u32>() != total {
                    return Err(fail(anyhow!(
                        "split sizes {sizes:?} do not cover {total} channels in {} outputs",
                        node.output.len()
                    )));
                }
                let mut start = 0;
                for (out_name, &count) in node.output.iter().zip(&sizes) {
                    let output = channels.len();
                    channels.push(count);
                    values.insert(out_name.clone(), output);
                    layers.push(Layer {
                        name: format!("{} -> {out_name}", node_name(node)),
                        op: LayerOp::SliceChannels { start, count },
                        inputs: vec![input],
                        output,
                        weights: Vec::new(),
                        bias: Vec::new(),
                    });
                    start += count;
                }
            }
            "BatchNormalization" => {
                let input = value_of(&node.input[0]).map_err(fail)?;
                let param = |i: usize| -> Result<Vec<f32>> {
                    let name = node.input.get(i).context("a parameter is missing")?;
                    let t = initializers
                        .get(name.as_str())
                        .with_context(|| format!("{name} is not a constant"))?;
                    Ok(tensor_to_f32(t)?.data)
                };
                let [gamma, beta, mean, var] =
                    [param(1), param(2), param(3), param(4)].map(|r| r.map_err(fail));
                let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
                let eps = attr_float(node, "epsilon", 1e-5);
                {
                    // x * k + (beta - mean * k) per channel, as two constant ops;
                    // `passes::fold_affine` folds them into a convolution before them.
                    use crate::model::BinaryOp;
                    let c = channels[input];
                    if [&gamma, &beta, &mean, &var]
                        .iter()
                        .any(|v| v.len() != c as usize)
                    {
                        return Err(fail(anyhow!("parameters do not have {c} channels")));
                    }
                    let k: Vec<f32> = (0..c as usize)
                        .map(|o| gamma[o] / (var[o] + eps).sqrt())
                        .collect();
                    let shift: Vec<f32> =
                        (0..c as usize).map(|o| beta[o] - mean[o] * k[o]).collect();
                    let per_channel = crate::model::ItemShape { c, h: 1, w: 1 };
                    let mut prev = input;
                    for (i, (op, data)) in [(BinaryOp::Mul, k), (BinaryOp::Add, shift)]
                        .into_iter()
                        .enumerate()
                    {
                        let output = channels.len();
                        channels.push(c);
                        layers.push(Layer {
                            name: format!(
                                "{} ({})",
                                node_name(node),
                                if i == 0 { "scale" } else { "shift" }
                            ),
                            op: LayerOp::BinaryConst {
                                op,
                                constant: per_channel,
                                constant_first: false,
                            },
                            inputs: vec![prev],
                            output,
                            weights: data,
                            bias: Vec::new(),
                        });
                        prev = output;
                    }
                    values.insert(node.output[0].clone(), prev);
                }
            }
            "Pad" => {
                use crate::model::{PadMode, PadSpec};
                let input = value_of(&node.input[0]).map_err(fail)?;
                let mode = match attr(node, "mode").map(|a| a.s.as_slice()) {
                    None | Some(b"constant") => PadMode::Constant,
                    Some(b"edge") => PadMode::Edge,
                    Some(b"reflect") => PadMode::Reflect,
                    Some(other) => {
                        return Err(fail(anyhow!(
                            "mode {} is not supported",
                            String::from_utf8_lossy(other)
                        )));
                    }
                };
                let constant = |i: usize| {
                    node.input
                        .get(i)
                        .filter(|n| !n.is_empty())
                        .map(|n| {
                            initializers
                                .get(n.as_str())
                                .copied()
                                .with_context(|| format!("{n} is not a constant"))
                        })
                        .transpose()
                };
                let pads: Vec<i64> = match constant(1).map_err(fail)? {
                    Some(t) => tensor_to_i64(t).map_err(fail)?,
                    None => attr_ints(node, "pads").unwrap_or_default(),
                };
                let value = match constant(2).map_err(fail)? {
                    Some(t) => tensor_to_f32(t)
                        .map_err(fail)?
                        .data
                        .first()
                        .copied()
                        .unwrap_or(0.0),
                    None => attr_float(node, "value", 0.0),
                };
                if node.input.get(3).is_some_and(|a| !a.is_empty()) {
                    return Err(fail(anyhow!("Pad with an axes input is not supported yet")));
                }
                // [n, c, h, w] begins, then ends.
                let [n0, c0, h0, w0, n1, c1, h1, w1] = pads[..] else {
                    return Err(fail(anyhow!(
                        "pads {pads:?} are not 8 values for a 4-D tensor"
                    )));
                };
                if n0 != 0 || n1 != 0 || [c0, h0, w0, c1, h1, w1].iter().any(|&v| v < 0) {
                    return Err(fail(anyhow!(
                        "pads {pads:?}: batch or negative pads are not supported"
                    )));
                }
                if (c0 != 0 || c1 != 0) && mode != PadMode::Constant {
                    return Err(fail(anyhow!(
                        "channel padding is supported in constant mode only"
                    )));
                }
                let spec = PadSpec {
                    channels: [c0 as u32, c1 as u32],
                    height: [h0 as u32, h1 as u32],
                    width: [w0 as u32, w1 as u32],
                    mode,
                    value,
                };
                let c = channels[input] + spec.channels[0] + spec.channels[1];
                push_plain(
                    &mut layers,
                    &mut channels,
                    &mut values,
                    node,
                    LayerOp::Pad(spec),
                    vec![input],
                    c,
                );
            }
            "MaxPool" | "AveragePool" => {
                let input = value_of(&node.input[0]).map_err(fail)?;
                let spec = pool_spec(node).map_err(fail)?;
                let c = channels[input];
                push_plain(
                    &mut layers,
                    &mut channels,
                    &mut values,
                    node,
                    LayerOp::Pool2d(spec),
                    vec![input],
                    c,
                );
            }
            "GlobalAveragePool" => {
                let input = value_of(&node.input[0]).map_err(fail)?;
                let c = channels[input];
                push_plain(
                    &mut layers,
                    &mut channels,
                    &mut values,
                    node,
                    LayerOp::GlobalAvgPool,
                    vec![input],
                    c,
                );
            }
            "Flatten" => {
                // [N, C, 1, 1] -> [N, C] is the same memory: an alias. Flattening spatial planes
                // needs a reshape, which is not supported yet.
                let input = value_of(&node.input[0]).map_err(fail)?;
                let pooled = layers
                    .iter()
                    .any(|l| l.output == input && matches!(l.op, LayerOp::GlobalAvgPool));
                let axis = attr_int(node, "axis", 1);
                if axis != 1 && axis != -3 {
                    return Err(fail(anyhow!(
                        "Flatten on axis {axis} is not supported (axis 1 keeps the batch apart)"
                    )));
                }
                if pooled {
                    values.insert(node.output[0].clone(), input);
                } else {
                    let c = channels[input];
                    push_plain(
                        &mut layers,
                        &mut channels,
                        &mut values,
                        node,
                        LayerOp::Flatten,
                        vec![input],
                        c,
                    );
                }
            }
            "Slice" => {
                let input = value_of(&node.input[0]).map_err(fail)?;
                let ints = |i: usize| -> Result<Option<Vec<i64>>> {
                    match node.input.get(i).filter(|n| !n.is_empty()) {
                        None => Ok(None),
                        Some(n) => initializers
                            .get(n.as_str())
                            .with_context(|| format!("{n} is not a constant"))
                            .and_then(|t| tensor_to_i64(t))
                            .map(Some),
                    }
                };
                let (starts, ends) = match (ints(1).map_err(fail)?, ints(2).map_err(fail)?) {
                    (Some(s), Some(e)) => (s, e),
                    _ => (
                        attr_ints(node, "starts").unwrap_or_default(),
                        attr_ints(node, "ends").unwrap_or_default(),
                    ),
                };
                let axes = ints(3)
                    .map_err(fail)?
                    .or_else(|| attr_ints(node, "axes"))
                    .unwrap_or_else(|| (0..starts.len() as i64).collect());
                if ints(4)
                    .map_err(fail)?
                    .is_some_and(|st| st.iter().any(|&v| v != 1))
                {
                    return Err(fail(anyhow!(
                        "Slice with steps other than 1 is not supported yet"
                    )));
                }
                let (mut s3, mut e3) = ([0i64; 3], [i64::MAX; 3]);
                for ((&a, &b), &e) in axes.iter().zip(&starts).zip(&ends) {
                    let a = if a < 0 { a + 4 } else { a };
                    if !(1..=3).contains(&a) {
                        return Err(fail(anyhow!(
                            "Slice on axis {a} (the batch) is not supported"
                        )));
                    }
                    s3[a as usize - 1] = b;
                    e3[a as usize - 1] = e;
                }
                let c = channels[input];
                push_plain(
                    &mut layers,
                    &mut channels,
                    &mut values,
                    node,
                    LayerOp::Crop {
                        starts: s3,
                        ends: e3,
                    },
                    vec![input],
                    c,
                );
            }
            "Gemm" => {
                // A fully connected layer on [N, K] (stored as [N, K, 1, 1]) is a 1x1 convolution.
                let input = value_of(&node.input[0]).map_err(fail)?;
                if attr_int(node, "transA", 0) != 0 {
                    return Err(fail(anyhow!("Gemm with transA=1 is not supported")));
                }
                let w_name = node.input.get(1).context("has no B").map_err(fail)?;
                let b = initializers
                    .get(w_name.as_str())
                    .with_context(|| format!("B {w_name} is not a constant"))
                    .and_then(|t| tensor_to_f32(t))
                    .map_err(fail)?;
                let k = channels[input] as usize;
                let [d0, d1] = b.dims[..] else {
                    return Err(fail(anyhow!("B has shape {:?}, not 2-D", b.dims)));
                };
                let trans_b = attr_int(node, "transB", 0) != 0;
                let (m, bk) = if trans_b {
                    (d0 as usize, d1 as usize)
                } else {
                    (d1 as usize, d0 as usize)
                };
                if bk != k {
                    return Err(fail(anyhow!(
                        "B of shape {:?} does not take {k} inputs",
                        b.dims
                    )));
                }
                let alpha = attr_float(node, "alpha", 1.0);
                let beta = attr_float(node, "beta", 1.0);
                let mut weights = vec![0.0f32; m * k];
                for o in 0..m {
                    for i in 0..k {
                        let v = if trans_b {
                            b.data[o * k + i]
                        } else {
                            b.data[i * m + o]
                        };
                        weights[o * k + i] = alpha * v;
                    }
                }
                let bias: Vec<f32> = match node.input.get(2).filter(|s| !s.is_empty()) {
                    Some(c) => {
                        let c = initializers
                            .get(c.as_str())
                            .with_context(|| format!("C {c} is not a constant"))
                            .and_then(|t| tensor_to_f32(t))
                            .map_err(fail)?
                            .data;
                        match c.len() {
                            1 => vec![beta * c[0]; m],
                            n if n == m => c.iter().map(|v| beta * v).collect(),
                            n => return Err(fail(anyhow!("C has {n} values for {m} outputs"))),
                        }
                    }
                    None => Vec::new(),
                };
                let spec = Conv2dSpec {
                    in_c: k as u32,
                    out_c: m as u32,
                    k_h: 1,
                    k_w: 1,
                    stride: [1, 1],
                    pads: [0; 4],
                    dilation: [1, 1],
                    groups: 1,
                    activation: Activation::None,
                };
                let output = channels.len();
                channels.push(m as u32);
                values.insert(node.output[0].clone(), output);
                layers.push(Layer {
                    name: node_name(node),
                    op: LayerOp::Conv2d(spec),
                    inputs: vec![input],
                    output,
                    weights,
                    bias,
                });
            }
            "DepthToSpace" => {
                let input = value_of(&node.input[0]).map_err(fail)?;
                let block = attr_int(node, "blocksize", 0);
                let mode = attr(node, "mode")
                    .map_or("DCR".into(), |a| String::from_utf8_lossy(&a.s).into_owned());
                let b = block as u32;
                if block < 1
                    || !channels[input].is_multiple_of(b * b)
                    || (mode != "DCR" && mode != "CRD")
                {
                    return Err(fail(anyhow!(
                        "blocksize {block} and mode {mode} do not fit {} channels",
                        channels[input]
                    )));
                }
                let output = channels.len();
                channels.push(channels[input] / (b * b));
                values.insert(node.output[0].clone(), output);
                layers.push(Layer {
                    name: node_name(node),
                    op: LayerOp::DepthToSpace(crate::model::DepthToSpaceSpec {
                        block: [b, b],
                        crd: mode == "CRD",
                        crop: [0, 0],
                    }),
                    inputs: vec![input],
                    output,
                    weights: Vec::new(),
                    bias: Vec::new(),
                });
            }
            "Resize" | "Upsample" => {
                let input = value_of(&node.input[0]).map_err(fail)?;
                let mode = attr(node, "mode").map_or("nearest".into(), |a| {
                    String::from_utf8_lossy(&a.s).into_owned()
                });
                let op = if mode == "linear" || mode == "bilinear" || mode == "cubic" {
                    LayerOp::ResizeFilter(resize_filter_spec(node, &initializers).map_err(fail)?)
                } else {
                    // Whole factors with floor-like modes: the plain nearest kernel; any other
                    // nearest resize: the filter kernel with the exact ONNX rounding.
                    match resize_scale(node, &initializers) {
                        Ok(scale) => LayerOp::ResizeNearest(scale),
                        Err(_) => LayerOp::ResizeFilter(
                            resize_filter_spec(node, &initializers).map_err(fail)?,
                        ),
                    }
                };
                let c = channels[input];
                push_plain(
                    &mut layers,
                    &mut channels,
                    &mut values,
                    node,
                    op,
                    vec![input],
                    c,
                );
            }
            "Transpose" => {
                let input = value_of(&node.input[0]).map_err(fail)?;
                let perm = attr_ints(node, "perm").unwrap_or_default();
                let is_output = graph.output.iter().any(|o| o.name == node.output[0]);
                if input == 0 && nhwc_input && perm == [0, 3, 1, 2] {
                    // The NHWC input: the engine already packs pixels as NCHW.
                    values.insert(node.output[0].clone(), 0);
                } else if perm == [0, 2, 3, 1] && channels[input] == 1 && is_output {
                    // A one-channel map is the same memory in NCHW and NHWC.
                    values.insert(node.output[0].clone(), input);
                } else if perm == [0, 2, 3, 1] {
                    // Channels last, kept flat per item for a Reshape and Concat that follow.
                    let c = channels[input];
                    push_plain(
                        &mut layers,
                        &mut channels,
                        &mut values,
                        node,
                        LayerOp::ToNhwc,
                        vec![input],
                        c,
                    );
                    flat.insert(
                        *values.get(&node.output[0]).expect("just inserted"),
                        Vec::new(),
                    );
                } else {
                    return Err(fail(anyhow!(
                        "Transpose {perm:?} is supported only from an NHWC input to NCHW, or from \
                         NCHW to NHWC"
                    )));
                }
            }
            "Reshape" => {
                // Of a flat (channels-last) value: the same memory with [N, ...dims] on top; the
                // dims after the first are kept so that a Concat on axis 1 can check them.
                let input = value_of(&node.input[0]).map_err(fail)?;
                let shape_name = node.input.get(1).context("has no shape").map_err(fail)?;
                let dims = initializers
                    .get(shape_name.as_str())
                    .with_context(|| format!("shape {shape_name} is not a constant"))
                    .and_then(|t| tensor_to_i64(t))
                    .map_err(fail)?;
                let flat_input = flat.contains_key(&input)
                    || layers
                        .iter()
                        .any(|l| l.output == input && matches!(l.op, LayerOp::GlobalAvgPool));
                let to_matrix = dims.len() == 2
                    && (dims[1] == -1 || (dims[1] > 0 && [0, 1, -1].contains(&dims[0])))
                    && [0, 1, -1].contains(&dims[0]);
                if !flat_input && to_matrix {
                    // [N, C, H, W] -> [N, C*H*W], whatever the batch dim the file hard-codes.
                    let c = channels[input];
                    push_plain(
                        &mut layers,
                        &mut channels,
                        &mut values,
                        node,
                        LayerOp::Flatten,
                        vec![input],
                        c,
                    );
                    continue;
                }
                if !flat_input || dims.len() < 2 || dims[0] != 1 {
                    return Err(fail(anyhow!(
                        "Reshape to {dims:?} is supported only for [1, ...] of a channels-last or \
                         pooled value"
                    )));
                }
                values.insert(node.output[0].clone(), input);
                flat.insert(input, dims[2..].to_vec());
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                use crate::model::BinaryOp;
                if node.input.len() != 2 {
                    return Err(fail(anyhow!("has {} inputs, not 2", node.input.len())));
                }
                let scalar = |name: &str| -> Option<f32> {
                    let t = initializers.get(name)?;
                    let w = tensor_to_f32(t).ok()?;
                    (w.data.len() == 1).then(|| w.data[0])
                };
                let (ka, kb) = (scalar(&node.input[0]), scalar(&node.input[1]));
                if ka.is_some() || kb.is_some() {
                    // A value and a scalar constant: x * scale + offset.
                    let (value, k, constant_first) = match (ka, kb) {
                        (None, Some(k)) => (&node.input[0], k, false),
                        (Some(k), None) => (&node.input[1], k, true),
                        _ => {
                            return Err(fail(anyhow!(
                                "both operands are constants; fold them before export"
                            )));
                        }
                    };
                    let input = value_of(value).map_err(fail)?;
                    let (scale, offset) = match (node.op_type.as_str(), constant_first) {
                        ("Add", _) => (1.0, k),
                        ("Sub", false) => (1.0, -k),
                        ("Sub", true) => (-1.0, k),
                        ("Mul", _) => (k, 0.0),
                        ("Div", false) => (1.0 / k, 0.0),
                        _ => {
                            return Err(fail(anyhow!(
                                "dividing a constant by a tensor is not supported yet"
                            )));
                        }
                    };
                    let c = channels[input];
                    push_plain(
                        &mut layers,
                        &mut channels,
                        &mut values,
                        node,
                        LayerOp::Unary(UnaryOp::Affine { scale, offset }),
                        vec![input],
                        c,
                    );
                    continue;
                }
                let op = match node.op_type.as_str() {
                    "Add" => BinaryOp::Add,
                    "Sub" => BinaryOp::Sub,
                    "Mul" => BinaryOp::Mul,
                    _ => BinaryOp::Div,
                };
                // A value and a constant tensor (per-channel scales, a bias map): the constant is
                // uploaded once and shared by every batch item.
                let constant_of = |name: &str| initializers.get(name).copied();
                let (ca, cb) = (constant_of(&node.input[0]), constant_of(&node.input[1]));
                if let Some((t, constant_first, other)) = match (ca, cb) {
                    (None, Some(t)) => Some((t, false, &node.input[0])),
                    (Some(t), None) => Some((t, true, &node.input[1])),
                    _ => None,
                } {
                    let input = value_of(other).map_err(fail)?;
                    let w = tensor_to_f32(t).map_err(fail)?;
                    let shape = constant_item_shape(&w.dims).map_err(fail)?;
                    let output = channels.len();
                    channels.push(channels[input].max(shape.c));
                    values.insert(node.output[0].clone(), output);
                    layers.push(Layer {
                        name: node_name(node),
                        op: LayerOp::BinaryConst {
                            op,
                            constant: shape,
                            constant_first,
                        },
                        inputs: vec![input],
                        output,
                        weights: w.data,
                        bias: Vec::new(),
                    });
                    continue;
                }
                let a = value_of(&node.input[0]).map_err(fail)?;
                let b = value_of(&node.input[1]).map_err(fail)?;
                let output = channels.len();
                channels.push(channels[a].max(channels[b]));
                values.insert(node.output[0].clone(), output);
                layers.push(Layer {
                    name: node_name(node),
                    op: LayerOp::Binary(op),
                    inputs: vec![a, b],
                    output,
                    weights: Vec::new(),
                    bias: Vec::new(),
                });
            }

            "Constant" if initializers.contains_key(node.output[0].as_str()) => {}
            "Constant" => {
                return Err(fail(anyhow!(
                    "a Constant's {} is not supported (tensor, float and int values are)",
                    node.attribute
                        .first()
                        .map_or("missing value", |a| a.name.as_str())
                )));
            }
            "Identity" => {
                let input = value_of(&node.input[0]).map_err(fail)?;
                values.insert(node.output[0].clone(), input);
            }
            other => bail!(
                "{label} uses op {other} (opset {opset}), which the registry (onnx/registry.rs) \
                 lists for a free input size but the image lowering does not translate"
            ),
        }
    }

    let out = *values
        .get(&output.name)
        .with_context(|| format!("the graph output {} is never computed", output.name))?;
    // A graph that returns its input (Identity only) still gets one layer: a copy.
    let out = if out == 0 {
        layers.push(Layer {
            name: "identity".into(),
            op: LayerOp::Unary(UnaryOp::Affine {
                scale: 1.0,
                offset: 0.0,
            }),
            inputs: vec![0],
            output: channels.len(),
            weights: Vec::new(),
            bias: Vec::new(),
        });
        channels.push(channels[0]);
        channels.len() - 1
    } else {
        out
    };
    let extra_outputs = output_names
        .iter()
        .skip(1)
        .map(|n| {
            values
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
        input_channels,
        output_channels: channels[out],
        output: out,
        value_count: channels.len(),
        layers,
        opset,
        static_shapes: None,
        nhwc_input,
    };
    let (model, _) = crate::passes::run(model);
    Ok(model)
}
