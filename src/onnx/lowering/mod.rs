//! The ONNX translator: one walk over the graph, one function per op (`onnx/ops/<family>.rs`),
//! over values whose dims are known or free.
//!
//! [`lower_free`] keeps the batch, height and width free: the values computed from the input are
//! [`FreeVal`]s, the ops that take free dims emit image-IR layers that act per item on
//! `[C, H, W]` (the engine sizes them per batch), and the rest refuse. [`lower`] binds every
//! input dim: the whole input tensor, batch axis included, is one batch item (a batch is several
//! independent inputs), so tensors of any rank and ops on any axis work: Reshape, Transpose,
//! Concat / Split / Slice on any axis, MatMul, Softmax, reductions, normalisations. In both,
//! constants and shape arithmetic (Shape, Gather, Unsqueeze, Concat, Cast, Range on int64) fold
//! on the host. The ops each mode takes, and their limits, are the two columns of
//! [`super::registry`].
//!
//! `values.rs` holds the value types (host tensors, free dims) and small shape helpers;
//! `entry.rs` the two entry points and what they build at the end.

mod entry;
mod values;

use std::cell::OnceCell;
use std::collections::HashMap;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::model::BinaryOp;
use crate::model::CopySpec;
use crate::model::NdBinarySpec;
use crate::model::UnaryOp;
use crate::model::{Layer, LayerOp, TensorOp, ValueId};
use crate::onnx::ops::activation::unary_op;
use crate::onnx::proto::{GraphProto, NodeProto, TensorProto, data_type};
use crate::onnx::{node_label, node_name};

pub(super) use entry::{fixed_dims, lower, lower_free};
pub(crate) use values::*;

/// Whether this lowering takes op type `op` (the registry says).
pub fn takes(op: &str) -> bool {
    super::registry::takes_fixed_shape(op)
}

#[derive(Clone, Debug)]
pub(super) enum Val {
    /// Computed on the GPU with every dim known: its value id and dims (the whole tensor is one
    /// batch item).
    Gpu(ValueId, Vec<u32>),
    /// Computed on the GPU per batch item, with free dims.
    Free(FreeVal),
    /// Known at import.
    Const(HostTensor),
}

/// The one ONNX translator: the values computed so far, by name, and the layers computing them.
///
/// With a free input size (`free`), the input is `[N, C, H, W]` with N, H and W free and values
/// are [`Val::Free`]: the ops that take free dims emit image-IR layers, which the engine sizes per
/// batch; the rest refuse. With every input dim bound, values are [`Val::Gpu`] with known dims
/// (the whole tensor one batch item), and ops of any rank and axis emit tensor layers. Both walk
/// the same op functions (`onnx/ops/<family>.rs`); constants ([`Val::Const`]) fold on the host in
/// both.
pub(super) struct Lowering<'g> {
    pub(super) vals: HashMap<String, Val>,
    /// GPU values that hold integers (computed in float32, exact below 2^24): Div truncates them.
    pub(super) ints: std::collections::HashSet<ValueId>,
    pub(super) layers: Vec<Layer>,
    /// The dims of each value with known dims (empty for free values: theirs are in the
    /// [`FreeVal`]).
    pub(super) dims: Vec<Vec<u32>>,
    pub(super) opset: i64,
    /// The input size is free: the registry's free-size column applies.
    pub(super) free: bool,
    /// The file's input is channels-last; the engine feeds value 0 as NCHW.
    pub(super) nhwc_input: bool,
    pub(super) graph: &'g GraphProto,
    /// The file's initializers by name, each read into a value the first time a node asks for
    /// it ([`Self::get`]): a weight read only as weights ([`Self::constant_f32`]) is never held
    /// as f64, and an initializer no node reads is never read.
    pub(super) initializers: HashMap<&'g str, Initializer<'g>>,
}

/// An initializer of the file and its value once read (or why it cannot be read).
pub(super) struct Initializer<'g> {
    tensor: &'g TensorProto,
    value: OnceCell<Result<Val, String>>,
}

/// The initializers of `graph` but the input `input` (some exporters list it among them too),
/// unread; an error where one keeps its data in an external file (the cause, before any op that
/// reads it is refused for another).
pub(super) fn initializers<'g>(
    graph: &'g GraphProto,
    input: &str,
) -> Result<HashMap<&'g str, Initializer<'g>>> {
    for t in &graph.initializer {
        crate::onnx::refuse_external(t)?;
    }
    Ok((graph.initializer.iter())
        .filter(|t| t.name != input)
        .map(|t| {
            let value = OnceCell::new();
            (t.name.as_str(), Initializer { tensor: t, value })
        })
        .collect())
}

impl Lowering<'_> {
    pub(super) fn get(&self, name: &str) -> Result<&Val> {
        if let Some(v) = self.vals.get(name) {
            return Ok(v);
        }
        let i = (self.initializers.get(name))
            .ok_or_else(|| anyhow!("reads {name}, which is not computed by a supported node"))?;
        let read = || {
            host_tensor(i.tensor)
                .map(Val::Const)
                .map_err(|e| format!("{e:#}"))
        };
        i.value
            .get_or_init(read)
            .as_ref()
            .map_err(|e| anyhow!("{e}"))
    }

    /// A constant input as float32 values and its dims, or an error naming what it is for. An
    /// initializer not read before is read from the file as float32 and not kept: a weight is
    /// never held as f64 (the file's largest tensors are its weights).
    pub(super) fn constant_f32(
        &self,
        node: &NodeProto,
        i: usize,
        what: &str,
    ) -> Result<Option<crate::onnx::Weights>> {
        let Some(name) = node.input.get(i).filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let unread = (self.initializers.get(name.as_str()))
            .filter(|i| !self.vals.contains_key(name) && i.value.get().is_none());
        if let Some(i) = unread
            && matches!(
                i.tensor.data_type,
                data_type::FLOAT | data_type::FLOAT16 | data_type::DOUBLE
            )
        {
            return crate::onnx::tensor_to_f32(i.tensor).map(Some);
        }
        Ok(self.constant(node, i, what)?.map(|t| crate::onnx::Weights {
            dims: t.dims.iter().map(|&d| d as i64).collect(),
            data: t.data.iter().map(|&x| x as f32).collect(),
        }))
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
                Val::Gpu(..) | Val::Free(_) => bail!("{what} ({name}) must be a constant"),
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
            Val::Free(_) => bail!("{}", self.needs_fixed(name)),
            Val::Const(_) if self.free => bail!(
                "computes with the constant {name} as a tensor, which needs every dim fixed; \
                 with a free input size constants broadcast over images only"
            ),
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
            Val::Free(_) => bail!("{}", self.needs_fixed(name)),
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
            Val::Free(_) => bail!("{}", self.needs_fixed(name)),
            Val::Const(t) => t.dims.iter().map(|&d| d as u32).collect(),
        })
    }

    /// The dims of any value, free ones included.
    pub(super) fn shape_of(&self, name: &str) -> Result<Vec<Dim>> {
        Ok(match self.get(name)? {
            Val::Free(f) => f.dims.clone(),
            Val::Gpu(_, d) => d.iter().map(|&x| Dim::Fixed(x)).collect(),
            Val::Const(t) => t.dims.iter().map(|&x| Dim::Fixed(x as u32)).collect(),
        })
    }

    /// The value `name` when its dims are free.
    pub(super) fn free_val(&self, name: &str) -> Option<FreeVal> {
        match self.get(name).ok() {
            Some(Val::Free(f)) => Some(f.clone()),
            _ => None,
        }
    }

    /// The value `name`, which must have free dims (an op's free-size form reads it).
    pub(super) fn free_input(&self, name: &str) -> Result<FreeVal> {
        match self.get(name)? {
            Val::Free(f) => Ok(f.clone()),
            _ => bail!(
                "reads {name} as an image, but {name} is a constant; with a free input size \
                 this op takes computed values"
            ),
        }
    }

    fn needs_fixed(&self, name: &str) -> String {
        format!(
            "needs every dim of {name} fixed, and they follow the input's free size ({:?}); \
             a model with fixed input dims runs this op",
            self.shape_of(name).unwrap_or_default()
        )
    }

    /// Appends `layer` writing a new value of free dims `out` (its id is assigned here).
    pub(super) fn push_free(&mut self, mut layer: Layer, mut out: FreeVal) -> Val {
        let id = self.new_value(Vec::new());
        layer.output = id;
        out.id = id;
        self.layers.push(layer);
        Val::Free(out)
    }

    pub(super) fn unary(&mut self, node: &NodeProto, input: &str, op: UnaryOp) -> Result<Val> {
        if let Val::Const(t) = self.get(input)? {
            let data = t.data.iter().map(|&x| op.apply(x as f32) as f64).collect();
            return Ok(Val::Const(t.with_dims(t.dims.clone(), data)));
        }
        if let Some(f) = self.free_val(input) {
            let layer = plain_layer(node_name(node), LayerOp::Unary(op), vec![f.id]);
            return Ok(self.push_free(layer, f));
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
        if matches!(va, Val::Free(_)) || matches!(vb, Val::Free(_)) {
            return self.binary_free(node, va, vb, op);
        }
        let (da, db) = (self.dims_of(a)?, self.dims_of(b)?);
        let spec = NdBinarySpec::new(op, &da, &db)
            .with_context(|| format!("inputs of {da:?} and {db:?} do not broadcast"))?;
        let out = spec.dims.clone();
        let (inputs, constant, weights) = match (va, vb) {
            (Val::Const(x), Val::Gpu(v, _)) => (vec![v], Some(0), x.data),
            (Val::Gpu(v, _), Val::Const(y)) => (vec![v], Some(1), y.data),
            (Val::Gpu(v, _), Val::Gpu(w, _)) => (vec![v, w], None, Vec::new()),
            (Val::Const(_), Val::Const(_)) | (Val::Free(_), _) | (_, Val::Free(_)) => {
                unreachable!("folded or free above")
            }
        };
        let int = inputs.iter().all(|v| self.ints.contains(v))
            && weights.iter().all(|x: &f64| x.fract() == 0.0);
        let value_dims = [da, db].map(|d| d == out);
        if !int && let Some(op) = elementwise_form(op, value_dims, constant, &weights) {
            // The elementwise kernel, flat: chains of them fuse (`passes::fuse_elementwise`).
            let id = self.push(node_name(node), op, inputs, out.clone(), Vec::new());
            return Ok(Val::Gpu(id, out));
        }
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

    /// A binary op on free dims: with a scalar constant, an affine map (Add, Sub, Mul, Div);
    /// with a constant tensor, the constant broadcast over each item (uploaded once, shared by
    /// the batch); else two values.
    fn binary_free(&mut self, node: &NodeProto, a: Val, b: Val, op: BinaryOp) -> Result<Val> {
        let (value, constant, constant_first) = match (a, b) {
            (Val::Free(x), Val::Free(y)) => {
                let out = FreeVal {
                    id: 0,
                    dims: broadcast_free(&x.dims, &y.dims)?,
                    c: x.c.max(y.c),
                    flat: x.flat || y.flat,
                };
                let layer = plain_layer(node_name(node), LayerOp::Binary(op), vec![x.id, y.id]);
                return Ok(self.push_free(layer, out));
            }
            (Val::Free(x), Val::Const(t)) => (x, t, false),
            (Val::Const(t), Val::Free(x)) => (x, t, true),
            _ => bail!("mixes a value of free dims with one of fixed dims"),
        };
        let k = (constant.data.len() == 1).then(|| constant.data[0] as f32);
        let affine = match (op, k, constant_first) {
            (BinaryOp::Add, Some(k), _) => Some((1.0, k)),
            (BinaryOp::Sub, Some(k), false) => Some((1.0, -k)),
            (BinaryOp::Sub, Some(k), true) => Some((-1.0, k)),
            (BinaryOp::Mul, Some(k), _) => Some((k, 0.0)),
            (BinaryOp::Div, Some(k), false) => Some((1.0 / k, 0.0)),
            _ => None,
        };
        if let Some((scale, offset)) = affine {
            let op = LayerOp::Unary(UnaryOp::Affine { scale, offset });
            let layer = plain_layer(node_name(node), op, vec![value.id]);
            return Ok(self.push_free(layer, value));
        }
        let cdims: Vec<i64> = constant.dims.iter().map(|&d| d as i64).collect();
        let shape = constant_item_shape(&cdims)?;
        let fixed: Vec<Dim> = constant
            .dims
            .iter()
            .map(|&d| Dim::Fixed(d as u32))
            .collect();
        let out = FreeVal {
            id: 0,
            dims: broadcast_free(&value.dims, &fixed)?,
            c: value.c.max(shape.c),
            flat: value.flat,
        };
        let op = LayerOp::BinaryConst {
            op,
            constant: shape,
            constant_first,
        };
        let mut layer = plain_layer(node_name(node), op, vec![value.id]);
        layer.weights = constant.data.iter().map(|&x| x as f32).collect();
        Ok(self.push_free(layer, out))
    }

    /// One node: the registry's check, then its op's translation. Each op's translation is a
    /// method in `onnx/ops/<family>.rs`, under the registry's family of the op.
    fn lower_node(&mut self, node: &NodeProto) -> Result<()> {
        let op = node.op_type.as_str();
        let takes = if self.free {
            super::registry::takes_free_size(op)
        } else {
            super::registry::takes_fixed_shape(op)
        };
        if !takes {
            bail!(
                "uses op {op}, {}",
                super::registry::unsupported(op, self.free)
            );
        }
        super::check_attribute_types(node)?;
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
            // ops/resize.rs
            "Resize" | "Upsample" => self.lower_resize(node),
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
                 shape or a free size but its lowering does not translate"
            ),
        }
    }
}

impl Lowering<'_> {
    /// Every node in order, each an error naming it (and the opset) when it cannot be lowered or
    /// computes a value beyond the limits.
    fn walk(&mut self) -> Result<()> {
        let graph = self.graph;
        for node in &graph.node {
            if !node.domain.is_empty() && node.domain != "ai.onnx" {
                bail!(
                    "{} is in operator domain {}; batchwise supports the default ONNX domain",
                    node_label(node),
                    node.domain
                );
            }
            let before = self.dims.len();
            self.lower_node(node)
                .and_then(|()| self.check_new_values(before))
                .map_err(|e| e.context(format!("{} (opset {})", node_label(node), self.opset)))?;
        }
        Ok(())
    }

    /// The values from `first` on (those a node just made) within the limits, so that no size
    /// arithmetic of a later node overflows: sizes beyond them saturate ([`numel`]) and stop here.
    fn check_new_values(&self, first: usize) -> Result<()> {
        let max = crate::model::limits::MAX_ELEMENTS;
        match self.dims[first..]
            .iter()
            .find(|d| u64::from(numel(d)) > max)
        {
            Some(d) => bail!("computes a tensor of {d:?}, beyond {max} elements"),
            None => Ok(()),
        }
    }
}

/// A fixed-shape binary op as an elementwise layer where it is one: of two values of the
/// output's dims (`LayerOp::Binary`), or of such a value and a scalar constant by Add, Sub, Mul
/// or Div (an affine map, `LayerOp::Unary`). None where an operand broadcasts (the general
/// tensor kernel). `whole`: whether each operand has the output's dims; `constant`: which
/// operand is the constant `weights`, if one is.
fn elementwise_form(
    op: BinaryOp,
    whole: [bool; 2],
    constant: Option<usize>,
    weights: &[f64],
) -> Option<LayerOp> {
    let (scale, offset) = match (constant, weights) {
        (None, _) => return (whole == [true, true]).then_some(LayerOp::Binary(op)),
        (Some(first), &[k]) if whole[1 - first] => {
            let k = k as f32;
            match (op, first == 0) {
                (BinaryOp::Add, _) => (1.0, k),
                (BinaryOp::Sub, false) => (1.0, -k),
                (BinaryOp::Sub, true) => (-1.0, k),
                (BinaryOp::Mul, _) => (k, 0.0),
                (BinaryOp::Div, false) => (1.0 / k, 0.0),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(LayerOp::Unary(UnaryOp::Affine { scale, offset }))
}
