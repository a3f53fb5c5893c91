//! The static lowering: a graph whose input shape is fully known, lowered with every shape fixed.
//!
//! The image lowering (`super::lower_image`) keeps the batch and the spatial size free and so only
//! takes ops that act per item on `[C, H, W]`. Here the whole input tensor, batch axis included,
//! is one batch item (a batch is several independent inputs), so tensors of any rank and ops on
//! any axis work: Reshape, Transpose, Concat / Split / Slice on any axis, MatMul, Softmax,
//! reductions, normalisations. Shape arithmetic (Shape, Gather, Unsqueeze, Concat, Cast, Range
//! on int64) is folded on the host, since every shape is known. The ops it takes, and their
//! limits, are the fixed-shape column of [`super::registry`].

use std::collections::HashMap;

use anyhow::{Context as _, Result, anyhow, bail};

use super::ops::activation::unary_op;
use super::proto::{GraphProto, NodeProto, TensorProto, ValueInfoProto, data_type};
use super::{node_label, node_name};
use crate::model::BinaryOp;
use crate::model::CopySpec;
use crate::model::NdBinarySpec;
use crate::model::ReduceOp;
use crate::model::UnaryOp;
use crate::model::{ItemShape, Layer, LayerOp, Model, TensorOp, ValueId};
use crate::model::{MAX_RANK, contiguous_strides};

/// Whether this lowering takes op type `op` (the registry says).
pub fn takes(op: &str) -> bool {
    super::registry::takes_fixed_shape(op)
}

/// A tensor known at import: initializers, Constant nodes, folded shape arithmetic.
#[derive(Clone, Debug)]
pub(super) struct HostTensor {
    pub(super) dims: Vec<usize>,
    pub(super) data: Vec<f64>,
    /// An integer or bool tensor (Div truncates, Cast keeps the type apart).
    pub(super) int: bool,
}

impl HostTensor {
    pub(super) fn ints(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }

    pub(super) fn scalar(v: f64, int: bool) -> Self {
        Self {
            dims: Vec::new(),
            data: vec![v],
            int,
        }
    }

    pub(super) fn vector(v: Vec<f64>, int: bool) -> Self {
        Self {
            dims: vec![v.len()],
            data: v,
            int,
        }
    }

    /// The same elements under other dims.
    pub(super) fn with_dims(&self, dims: Vec<usize>, data: Vec<f64>) -> Self {
        Self {
            dims,
            data,
            int: self.int,
        }
    }
}

pub(super) fn host_tensor(t: &TensorProto) -> Result<HostTensor> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        bail!(
            "tensor {} keeps its data in an external file, which batchwise does not read",
            t.name
        );
    }
    let raw = &t.raw_data;
    let from_raw = |size: usize, f: &dyn Fn(&[u8]) -> f64| -> Vec<f64> {
        raw.chunks_exact(size).map(f).collect()
    };
    let data: Vec<f64> = match t.data_type {
        data_type::FLOAT | data_type::FLOAT16 | data_type::DOUBLE => super::tensor_to_f32(t)?
            .data
            .iter()
            .map(|&v| v as f64)
            .collect(),
        data_type::INT64 | data_type::INT32 => {
            super::tensor_to_i64(t)?.iter().map(|&v| v as f64).collect()
        }
        // int8, uint8, int16, uint16, bool: raw bytes or int32_data.
        2 | 3 | 4 | 5 | 9 if raw.is_empty() => t.int32_data.iter().map(|&v| v as f64).collect(),
        2 | 9 => from_raw(1, &|b| b[0] as f64),
        16 => from_raw(2, &|b| {
            f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) as f64
        }),
        3 => from_raw(1, &|b| b[0] as i8 as f64),
        4 => from_raw(2, &|b| u16::from_le_bytes([b[0], b[1]]) as f64),
        5 => from_raw(2, &|b| i16::from_le_bytes([b[0], b[1]]) as f64),
        12 if !raw.is_empty() => {
            from_raw(4, &|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
        }
        13 if !raw.is_empty() => from_raw(8, &|b| {
            u64::from_le_bytes(b.try_into().expect("8 bytes")) as f64
        }),
        other => bail!(
            "tensor {} has element type {other}, which batchwise does not read",
            t.name
        ),
    };
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    if dims.iter().product::<usize>() != data.len() {
        bail!(
            "tensor {} holds {} values but its shape {:?} needs {}",
            t.name,
            data.len(),
            t.dims,
            dims.iter().product::<usize>()
        );
    }
    let int = !matches!(
        t.data_type,
        data_type::FLOAT | data_type::FLOAT16 | data_type::DOUBLE | 16
    );
    Ok(HostTensor { dims, data, int })
}

#[derive(Clone, Debug)]
pub(super) enum Val {
    /// Computed on the GPU: its value id and dims.
    Gpu(ValueId, Vec<u32>),
    Const(HostTensor),
}

/// How the engine stores a static value: rank 4 as `[d0 * d1, d2, d3]` (so ops that treat
/// channels independently take any leading dim), lower ranks padded with trailing 1s, higher
/// ranks folded into the first.
pub fn item_shape(dims: &[u32]) -> ItemShape {
    let r = dims.len();
    match r {
        0 => ItemShape { c: 1, h: 1, w: 1 },
        // [N, C, L]: a row of length L per channel, as 1-D convolutions and pools see it.
        3 => ItemShape {
            c: dims[0] * dims[1],
            h: 1,
            w: dims[2],
        },
        1 => ItemShape {
            c: dims[0],
            h: 1,
            w: 1,
        },
        2 => ItemShape {
            c: dims[0],
            h: dims[1],
            w: 1,
        },
        _ => ItemShape {
            c: dims[..r - 2].iter().product(),
            h: dims[r - 2],
            w: dims[r - 1],
        },
    }
}

pub(super) struct Lowering<'g> {
    pub(super) vals: HashMap<String, Val>,
    /// GPU values that hold integers (computed in float32, exact below 2^24): Div truncates them.
    pub(super) ints: std::collections::HashSet<ValueId>,
    pub(super) layers: Vec<Layer>,
    pub(super) dims: Vec<Vec<u32>>,
    pub(super) opset: i64,
    graph: &'g GraphProto,
}

pub(super) fn numel(dims: &[u32]) -> u32 {
    dims.iter().product()
}

/// A negative axis counted from the end, checked against the rank.
pub(super) fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let fixed = if a < 0 { a + r } else { a };
    if !(0..r.max(1)).contains(&fixed) {
        bail!("axis {a} is out of range for rank {rank}");
    }
    Ok(fixed as usize)
}

pub(super) fn binary_op(op: &str) -> Option<BinaryOp> {
    Some(match op {
        "Add" | "Sum" | "Mean" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "Pow" => BinaryOp::Pow,
        "Max" => BinaryOp::Max,
        "Min" => BinaryOp::Min,
        "PRelu" => BinaryOp::PRelu,
        _ => return None,
    })
}

pub(super) fn reduce_op(op: &str) -> Option<ReduceOp> {
    Some(match op {
        "ReduceSum" => ReduceOp::Sum,
        "ReduceMean" => ReduceOp::Mean,
        "ReduceMax" => ReduceOp::Max,
        "ReduceMin" => ReduceOp::Min,
        "ReduceProd" => ReduceOp::Prod,
        "ReduceSumSquare" => ReduceOp::SumSquare,
        "ReduceL1" => ReduceOp::L1,
        "ReduceL2" => ReduceOp::L2,
        "ReduceLogSum" => ReduceOp::LogSum,
        "ReduceLogSumExp" => ReduceOp::LogSumExp,
        _ => return None,
    })
}

/// numpy broadcasting of host tensors.
pub(super) fn host_binary(
    a: &HostTensor,
    b: &HostTensor,
    f: impl Fn(f64, f64) -> f64,
) -> Result<HostTensor> {
    let to32 = |d: &[usize]| d.iter().map(|&x| x as u32).collect::<Vec<_>>();
    let spec = NdBinarySpec::new(BinaryOp::Add, &to32(&a.dims), &to32(&b.dims))
        .context("constant operands do not broadcast")?;
    let data = (0..spec.count() as usize)
        .map(|i| {
            let (mut rest, mut ia, mut ib) = (i, 0usize, 0usize);
            for k in (0..spec.dims.len()).rev() {
                let n = spec.dims[k] as usize;
                ia += (rest % n) * spec.a_strides[k] as usize;
                ib += (rest % n) * spec.b_strides[k] as usize;
                rest /= n;
            }
            f(a.data[ia], b.data[ib])
        })
        .collect();
    Ok(HostTensor {
        dims: spec.dims.iter().map(|&d| d as usize).collect(),
        data,
        int: a.int && b.int,
    })
}

/// Input `i` of `node`, which must be there.
pub(super) fn input(node: &NodeProto, i: usize) -> Result<&str> {
    node.input
        .get(i)
        .filter(|n| !n.is_empty())
        .map(String::as_str)
        .with_context(|| format!("has no input {i}"))
}

/// Row-major strides as i64.
pub(super) fn strides_i64(dims: &[u32]) -> Vec<i64> {
    contiguous_strides(dims).iter().map(|&s| s as i64).collect()
}

impl Lowering<'_> {
    pub(super) fn get(&self, name: &str) -> Result<&Val> {
        self.vals
            .get(name)
            .ok_or_else(|| anyhow!("reads {name}, which is not computed by a supported node"))
    }

    /// A constant input, or an error naming what it is for.
    pub(super) fn constant(
        &self,
        node: &NodeProto,
        i: usize,
        what: &str,
    ) -> Result<Option<HostTensor>> {
        match node.input.get(i).filter(|n| !n.is_empty()) {
            None => Ok(None),
            Some(name) => match self.get(name)? {
                Val::Const(t) => Ok(Some(t.clone())),
                Val::Gpu(..) => bail!("{what} ({name}) must be a constant"),
            },
        }
    }

    pub(super) fn new_value(&mut self, dims: Vec<u32>) -> ValueId {
        self.dims.push(dims);
        self.dims.len() - 1
    }

    /// Appends a layer writing a new value of `dims`.
    pub(super) fn push(
        &mut self,
        name: String,
        op: LayerOp,
        inputs: Vec<ValueId>,
        dims: Vec<u32>,
        weights: Vec<f32>,
    ) -> ValueId {
        let output = self.new_value(dims);
        self.layers.push(Layer {
            name,
            op,
            inputs,
            output,
            weights,
            bias: Vec::new(),
        });
        output
    }

    /// The input as a GPU value: constants are materialised by a copy from the uploaded data.
    pub(super) fn gpu(&mut self, name: &str) -> Result<(ValueId, Vec<u32>)> {
        match self.get(name)?.clone() {
            Val::Gpu(v, d) => Ok((v, d)),
            Val::Const(t) => {
                let dims: Vec<u32> = t.dims.iter().map(|&d| d as u32).collect();
                let v = self.push(
                    format!("{name} (constant)"),
                    LayerOp::Tensor(TensorOp::Copy(vec![(
                        None,
                        CopySpec::contiguous(numel(&dims)),
                    )])),
                    Vec::new(),
                    dims.clone(),
                    // An empty tensor still uploads one value: buffers are never empty.
                    if t.data.is_empty() {
                        vec![0.0]
                    } else {
                        t.data.iter().map(|&x| x as f32).collect()
                    },
                );
                self.vals.insert(name.to_owned(), Val::Gpu(v, dims.clone()));
                Ok((v, dims))
            }
        }
    }

    pub(super) fn set(&mut self, node: &NodeProto, k: usize, v: Val) {
        if let Some(name) = node.output.get(k).filter(|n| !n.is_empty()) {
            self.vals.insert(name.clone(), v);
        }
    }

    pub(super) fn copy(
        &mut self,
        node: &NodeProto,
        input: ValueId,
        spec: CopySpec,
        dims: Vec<u32>,
    ) -> ValueId {
        let id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::Copy(vec![(Some(0), spec)])),
            vec![input],
            dims,
            Vec::new(),
        );
        if self.ints.contains(&input) {
            self.ints.insert(id);
        }
        id
    }

    /// The same elements under new dims (Reshape, Flatten, Squeeze, Unsqueeze): a copy on the
    /// GPU, a relabel for constants.
    pub(super) fn reshape(&mut self, node: &NodeProto, name: &str, dims: Vec<u32>) -> Result<Val> {
        Ok(match self.get(name)?.clone() {
            Val::Const(t) => {
                Val::Const(t.with_dims(dims.iter().map(|&d| d as usize).collect(), t.data.clone()))
            }
            Val::Gpu(v, old) => {
                if numel(&old) != numel(&dims) {
                    bail!("cannot reshape {old:?} to {dims:?}");
                }
                let n = numel(&dims);
                Val::Gpu(
                    self.copy(node, v, CopySpec::contiguous(n), dims.clone()),
                    dims,
                )
            }
        })
    }

    pub(super) fn dims_of(&self, name: &str) -> Result<Vec<u32>> {
        Ok(match self.get(name)? {
            Val::Gpu(_, d) => d.clone(),
            Val::Const(t) => t.dims.iter().map(|&d| d as u32).collect(),
        })
    }

    pub(super) fn unary(&mut self, node: &NodeProto, input: &str, op: UnaryOp) -> Result<Val> {
        if let Val::Const(t) = self.get(input)? {
            let data = t.data.iter().map(|&x| op.apply(x as f32) as f64).collect();
            return Ok(Val::Const(t.with_dims(t.dims.clone(), data)));
        }
        let (v, dims) = self.gpu(input)?;
        let id = self.push(
            node_name(node),
            LayerOp::Unary(op),
            vec![v],
            dims.clone(),
            Vec::new(),
        );
        // Ops that map integers to integers keep the value integral.
        let integral = match op {
            UnaryOp::LeakyRelu { alpha } => alpha == 0.0,
            UnaryOp::Clip { min, max } => min.fract() == 0.0 && max.fract() == 0.0,
            UnaryOp::Abs
            | UnaryOp::Neg
            | UnaryOp::Sign
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Round
            | UnaryOp::Trunc => true,
            _ => false,
        };
        if integral && self.ints.contains(&v) {
            self.ints.insert(id);
        }
        Ok(Val::Gpu(id, dims))
    }

    pub(super) fn binary(
        &mut self,
        node: &NodeProto,
        a: &str,
        b: &str,
        op: BinaryOp,
    ) -> Result<Val> {
        let (va, vb) = (self.get(a)?.clone(), self.get(b)?.clone());
        if let (Val::Const(x), Val::Const(y)) = (&va, &vb) {
            let int = x.int && y.int;
            return Ok(Val::Const(host_binary(x, y, |p, q| match op {
                BinaryOp::Add => p + q,
                BinaryOp::Sub => p - q,
                BinaryOp::Mul => p * q,
                BinaryOp::Div if int => (p / q).trunc(),
                BinaryOp::Div => p / q,
                _ => op.apply(p as f32, q as f32) as f64,
            })?));
        }
        let (da, db) = (self.dims_of(a)?, self.dims_of(b)?);
        let spec = NdBinarySpec::new(op, &da, &db)
            .with_context(|| format!("inputs of {da:?} and {db:?} do not broadcast"))?;
        let out = spec.dims.clone();
        let (inputs, constant, weights) = match (va, vb) {
            (Val::Const(x), Val::Gpu(v, _)) => (vec![v], Some(0), x.data),
            (Val::Gpu(v, _), Val::Const(y)) => (vec![v], Some(1), y.data),
            (Val::Gpu(v, _), Val::Gpu(w, _)) => (vec![v, w], None, Vec::new()),
            (Val::Const(_), Val::Const(_)) => unreachable!("folded above"),
        };
        let int = inputs.iter().all(|v| self.ints.contains(v))
            && weights.iter().all(|x: &f64| x.fract() == 0.0);
        let weights = weights.iter().map(|&x| x as f32).collect();
        let mut id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::Binary { spec, constant }),
            inputs,
            out.clone(),
            weights,
        );
        if int && op == BinaryOp::Div {
            id = self.push(
                format!("{} (truncate)", node_name(node)),
                LayerOp::Unary(UnaryOp::Trunc),
                vec![id],
                out.clone(),
                Vec::new(),
            );
        }
        if int {
            self.ints.insert(id);
        }
        Ok(Val::Gpu(id, out))
    }

    /// One node: the registry's check, then its op's translation. Each op's translation is a
    /// method in `onnx/ops/<family>.rs`, under the registry's family of the op.
    fn lower_node(&mut self, node: &NodeProto) -> Result<()> {
        let op = node.op_type.as_str();
        if !takes(op) {
            bail!("uses op {op}, {}", super::registry::unsupported(op, false));
        }
        if let Some(u) = unary_op(node)? {
            return self.lower_unary(node, u);
        }
        if let Some(r) = reduce_op(op) {
            return self.lower_reduce(node, r);
        }
        match op {
            // ops/conv.rs
            "Conv" | "ConvTranspose" => self.lower_conv(node),
            // ops/activation.rs
            "PRelu" => self.lower_prelu(node),
            "Clip" => self.lower_clip(node),
            // ops/elementwise.rs
            "Add" | "Sub" | "Mul" | "Div" | "Pow" => self.lower_binary(node),
            "Sum" | "Mean" | "Max" | "Min" => self.lower_variadic(node),
            // ops/shape.rs
            "Identity" => self.lower_identity(node),
            "Dropout" => self.lower_dropout(node),
            "Shape" => self.lower_shape(node),
            "Size" => self.lower_size(node),
            "Cast" | "CastLike" => self.lower_cast(node),
            "Reshape" => self.lower_reshape(node),
            "Flatten" => self.lower_flatten(node),
            "Squeeze" | "Unsqueeze" => self.lower_squeeze(node),
            "Transpose" => self.lower_transpose(node),
            "Expand" => self.lower_expand(node),
            "Tile" => self.lower_tile(node),
            "DepthToSpace" | "SpaceToDepth" => self.lower_depth_to_space(node),
            // ops/slice_concat.rs
            "Concat" => self.lower_concat(node),
            "Split" => self.lower_split(node),
            "Slice" => self.lower_slice(node),
            "Gather" => self.lower_gather(node),
            // ops/pad.rs
            "Pad" => self.lower_pad(node),
            // ops/pool.rs
            "MaxPool" | "AveragePool" => self.lower_pool(node),
            "GlobalAveragePool" | "GlobalMaxPool" => self.lower_global_pool(node),
            // ops/norm.rs
            "Softmax" | "LogSoftmax" | "Hardmax" => self.lower_softmax(node),
            "InstanceNormalization" => self.lower_instance_norm(node),
            "LayerNormalization" => self.lower_layer_norm(node),
            "BatchNormalization" => self.lower_batch_norm(node),
            // ops/matmul.rs
            "MatMul" => self.lower_matmul(node),
            "Gemm" => self.lower_gemm(node),
            // ops/constant.rs
            "Constant" => self.lower_constant(node),
            "ConstantOfShape" => self.lower_constant_of_shape(node),
            "Range" => self.lower_range(node),
            other => bail!(
                "uses op {other}, which the registry (onnx/registry.rs) lists for tensors of fixed \
                 shape but the static lowering does not translate"
            ),
        }
    }
}

/// The input's dims when every one is fixed.
pub fn fixed_dims(input: &ValueInfoProto) -> Option<Vec<u32>> {
    let shape = input
        .r#type
        .as_ref()?
        .tensor_type
        .as_ref()?
        .shape
        .as_ref()?;
    shape
        .dim
        .iter()
        .map(|d| d.dim_value.filter(|&v| v >= 0).map(|v| v as u32))
        .collect()
}

/// Lowers `graph` for an input of exactly `input_dims` (the whole tensor is one batch item).
/// `nhwc`: the input is a channels-last image, fed as NCHW and transposed for the graph.
pub fn lower(
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
        graph,
    };
    for t in &l.graph.initializer {
        if t.name != input.name {
            l.vals.insert(t.name.clone(), Val::Const(host_tensor(t)?));
        }
    }
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
    for node in &graph.node {
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            bail!(
                "{} is in operator domain {}; batchwise supports the default ONNX domain",
                node_label(node),
                node.domain
            );
        }
        l.lower_node(node)
            .map_err(|e| e.context(format!("{} (opset {opset})", node_label(node))))?;
    }
    let wanted: Vec<&str> = if output_names.is_empty() {
        graph.output.iter().map(|o| o.name.as_str()).collect()
    } else {
        output_names.to_vec()
    };
    let mut outputs = Vec::new();
    for w in &wanted {
        let v = match l.vals.get(*w) {
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
    let output = outputs[0];
    let model = Model {
        name: name.to_owned(),
        input_name: input.name.clone(),
        output_name: wanted[0].to_owned(),
        input_channels: shapes[0].c,
        output_channels: shapes[output].c,
        layers: l.layers,
        output,
        extra_outputs: outputs[1..].to_vec(),
        value_count: shapes.len(),
        opset,
        static_shapes: Some(shapes),
        nhwc_input: nhwc,
    };
    let (model, _) = crate::passes::run(model);
    Ok(model)
}
