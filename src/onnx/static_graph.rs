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
use super::{attr, attr_float, attr_int, attr_ints, node_label, node_name};
use crate::model::BinaryOp;
use crate::model::CopySpec;
use crate::model::MatMulSpec;
use crate::model::NormSpec;
use crate::model::UnaryOp;
use crate::model::{ItemShape, Layer, LayerOp, Model, TensorOp, ValueId};
use crate::model::{MAX_RANK, contiguous_strides};
use crate::model::{NdBinarySpec, broadcast_dims};
use crate::model::{PadMode, PadSpec};
use crate::model::{ReduceOp, ReduceSpec};
use crate::model::{SoftmaxKind, SoftmaxSpec};

/// Whether this lowering takes op type `op` (the registry says).
pub fn takes(op: &str) -> bool {
    super::registry::takes_fixed_shape(op)
}

/// A tensor known at import: initializers, Constant nodes, folded shape arithmetic.
#[derive(Clone, Debug)]
struct HostTensor {
    dims: Vec<usize>,
    data: Vec<f64>,
    /// An integer or bool tensor (Div truncates, Cast keeps the type apart).
    int: bool,
}

impl HostTensor {
    fn ints(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }

    fn scalar(v: f64, int: bool) -> Self {
        Self {
            dims: Vec::new(),
            data: vec![v],
            int,
        }
    }

    fn vector(v: Vec<f64>, int: bool) -> Self {
        Self {
            dims: vec![v.len()],
            data: v,
            int,
        }
    }

    /// The same elements under other dims.
    fn with_dims(&self, dims: Vec<usize>, data: Vec<f64>) -> Self {
        Self {
            dims,
            data,
            int: self.int,
        }
    }
}

fn host_tensor(t: &TensorProto) -> Result<HostTensor> {
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
enum Val {
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

struct Lowering<'g> {
    vals: HashMap<String, Val>,
    /// GPU values that hold integers (computed in float32, exact below 2^24): Div truncates them.
    ints: std::collections::HashSet<ValueId>,
    layers: Vec<Layer>,
    dims: Vec<Vec<u32>>,
    opset: i64,
    graph: &'g GraphProto,
}

fn numel(dims: &[u32]) -> u32 {
    dims.iter().product()
}

/// A negative axis counted from the end, checked against the rank.
fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let fixed = if a < 0 { a + r } else { a };
    if !(0..r.max(1)).contains(&fixed) {
        bail!("axis {a} is out of range for rank {rank}");
    }
    Ok(fixed as usize)
}

fn binary_op(op: &str) -> Option<BinaryOp> {
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

fn reduce_op(op: &str) -> Option<ReduceOp> {
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
fn host_binary(a: &HostTensor, b: &HostTensor, f: impl Fn(f64, f64) -> f64) -> Result<HostTensor> {
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

/// Row-major strides as i64.
fn strides_i64(dims: &[u32]) -> Vec<i64> {
    contiguous_strides(dims).iter().map(|&s| s as i64).collect()
}

impl Lowering<'_> {
    fn get(&self, name: &str) -> Result<&Val> {
        self.vals
            .get(name)
            .ok_or_else(|| anyhow!("reads {name}, which is not computed by a supported node"))
    }

    /// A constant input, or an error naming what it is for.
    fn constant(&self, node: &NodeProto, i: usize, what: &str) -> Result<Option<HostTensor>> {
        match node.input.get(i).filter(|n| !n.is_empty()) {
            None => Ok(None),
            Some(name) => match self.get(name)? {
                Val::Const(t) => Ok(Some(t.clone())),
                Val::Gpu(..) => bail!("{what} ({name}) must be a constant"),
            },
        }
    }

    fn new_value(&mut self, dims: Vec<u32>) -> ValueId {
        self.dims.push(dims);
        self.dims.len() - 1
    }

    /// Appends a layer writing a new value of `dims`.
    fn push(
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
    fn gpu(&mut self, name: &str) -> Result<(ValueId, Vec<u32>)> {
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

    fn set(&mut self, node: &NodeProto, k: usize, v: Val) {
        if let Some(name) = node.output.get(k).filter(|n| !n.is_empty()) {
            self.vals.insert(name.clone(), v);
        }
    }

    fn copy(
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
    fn reshape(&mut self, node: &NodeProto, name: &str, dims: Vec<u32>) -> Result<Val> {
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

    fn dims_of(&self, name: &str) -> Result<Vec<u32>> {
        Ok(match self.get(name)? {
            Val::Gpu(_, d) => d.clone(),
            Val::Const(t) => t.dims.iter().map(|&d| d as u32).collect(),
        })
    }

    fn unary(&mut self, node: &NodeProto, input: &str, op: UnaryOp) -> Result<Val> {
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

    fn binary(&mut self, node: &NodeProto, a: &str, b: &str, op: BinaryOp) -> Result<Val> {
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

    /// Concat of GPU values and constants on `axis`.
    fn concat(&mut self, node: &NodeProto, names: &[String], axis_attr: i64) -> Result<Val> {
        let names: Vec<&String> = names.iter().filter(|n| !n.is_empty()).collect();
        let all_dims: Vec<Vec<u32>> = names
            .iter()
            .map(|n| self.dims_of(n))
            .collect::<Result<_>>()?;
        let first = all_dims.first().context("has no inputs")?.clone();
        let a = axis(axis_attr, first.len())?;
        for d in &all_dims {
            if d.len() != first.len() || (0..d.len()).any(|k| k != a && d[k] != first[k]) {
                bail!("inputs of {all_dims:?} do not concatenate on axis {a}");
            }
        }
        let mut out = first.clone();
        out[a] = all_dims.iter().map(|d| d[a]).sum();
        if names
            .iter()
            .all(|n| matches!(self.vals.get(*n), Some(Val::Const(_))))
        {
            // Host concat.
            let outer: usize = first[..a].iter().map(|&d| d as usize).product();
            let mut data = Vec::new();
            for o in 0..outer {
                for (n, d) in names.iter().zip(&all_dims) {
                    let Some(Val::Const(t)) = self.vals.get(*n) else {
                        unreachable!("checked")
                    };
                    let block: usize = d[a..].iter().map(|&x| x as usize).product();
                    data.extend_from_slice(&t.data[o * block..(o + 1) * block]);
                }
            }
            let int = names
                .iter()
                .all(|n| matches!(self.vals.get(*n), Some(Val::Const(t)) if t.int));
            return Ok(Val::Const(HostTensor {
                dims: out.iter().map(|&d| d as usize).collect(),
                data,
                int,
            }));
        }
        let out_strides = strides_i64(&out);
        let mut inputs = Vec::new();
        let mut copies = Vec::new();
        let mut offset = 0u32;
        for (n, d) in names.iter().zip(&all_dims) {
            if numel(d) == 0 {
                continue;
            }
            let (v, _) = self.gpu(n)?;
            copies.push((
                Some(inputs.len()),
                CopySpec {
                    dims: d.clone(),
                    src_strides: strides_i64(d),
                    src_offset: 0,
                    dst_strides: out_strides.clone(),
                    dst_offset: offset as i64 * out_strides[a],
                },
            ));
            inputs.push(v);
            offset += d[a];
        }
        let id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::Copy(copies)),
            inputs,
            out.clone(),
            Vec::new(),
        );
        Ok(Val::Gpu(id, out))
    }

    /// A block of `input`: per axis a start and step (negative steps walk backwards) and a count.
    fn slice(
        &mut self,
        node: &NodeProto,
        name: &str,
        starts: &[i64],
        steps: &[i64],
        counts: &[u32],
    ) -> Result<Val> {
        let dims = self.dims_of(name)?;
        let st = strides_i64(&dims);
        let spec = CopySpec {
            dims: counts.to_vec(),
            src_strides: st.iter().zip(steps).map(|(s, k)| s * k).collect(),
            src_offset: starts.iter().zip(&st).map(|(a, s)| a * s).sum(),
            dst_strides: strides_i64(counts),
            dst_offset: 0,
        };
        if let Val::Const(t) = self.get(name)? {
            let mut data = vec![0.0f32; spec.count() as usize];
            let src: Vec<f32> = t.data.iter().map(|&x| x as f32).collect();
            spec.reference(&src, &mut data);
            // Integers beyond f32's exact range are rare in shape arithmetic; keep f64 where the
            // slice is a plain gather of indices.
            let exact: Vec<f64> = (0..data.len())
                .map(|i| {
                    let (mut rest, mut s) = (i, spec.src_offset);
                    for k in (0..spec.dims.len()).rev() {
                        let n = spec.dims[k] as usize;
                        s += (rest % n) as i64 * spec.src_strides[k];
                        rest /= n;
                    }
                    t.data[s as usize]
                })
                .collect();
            return Ok(Val::Const(
                t.with_dims(counts.iter().map(|&d| d as usize).collect(), exact),
            ));
        }
        if numel(counts) == 0 {
            return Ok(Val::Const(HostTensor {
                dims: counts.iter().map(|&d| d as usize).collect(),
                data: Vec::new(),
                int: false,
            }));
        }
        let (v, _) = self.gpu(name)?;
        Ok(Val::Gpu(
            self.copy(node, v, spec, counts.to_vec()),
            counts.to_vec(),
        ))
    }

    /// A general transpose: output axis k is input axis `perm[k]`.
    fn transpose(&mut self, node: &NodeProto, name: &str, perm: &[usize]) -> Result<Val> {
        let dims = self.dims_of(name)?;
        let st = strides_i64(&dims);
        let out: Vec<u32> = perm.iter().map(|&p| dims[p]).collect();
        let spec = CopySpec {
            dims: out.clone(),
            src_strides: perm.iter().map(|&p| st[p]).collect(),
            src_offset: 0,
            dst_strides: strides_i64(&out),
            dst_offset: 0,
        };
        if spec.simplified().dims.len() > MAX_RANK {
            bail!("a transpose of {dims:?} by {perm:?} needs more than {MAX_RANK} dimensions");
        }
        if let Val::Const(t) = self.get(name)? {
            let src: Vec<f32> = t.data.iter().map(|&x| x as f32).collect();
            let mut data = vec![0.0f32; src.len()];
            spec.reference(&src, &mut data);
            return Ok(Val::Const(t.with_dims(
                out.iter().map(|&d| d as usize).collect(),
                data.iter().map(|&x| x as f64).collect(),
            )));
        }
        let (v, _) = self.gpu(name)?;
        Ok(Val::Gpu(self.copy(node, v, spec, out.clone()), out))
    }

    /// Pad: constant on any axis as a fill and a copy (negative pads crop); edge and reflect
    /// through the image pad kernel ([`Self::image_pad`]).
    fn pad(&mut self, node: &NodeProto) -> Result<Val> {
        let name = node.input.first().context("has no input")?.clone();
        let dims = self.dims_of(&name)?;
        let mode = match attr(node, "mode").map(|m| m.s.as_slice()) {
            None | Some(b"constant") => None,
            Some(b"edge") => Some(PadMode::Edge),
            Some(b"reflect") => Some(PadMode::Reflect),
            Some(other) => bail!(
                "Pad mode {} is not supported (constant, edge and reflect are)",
                String::from_utf8_lossy(other)
            ),
        };
        let rank = dims.len();
        let pads = match self.constant(node, 1, "the pads")? {
            Some(t) => t.ints(),
            None => attr_ints(node, "pads").context("has no pads")?,
        };
        let value = match self.constant(node, 2, "the pad value")? {
            Some(t) => t.data.first().copied().unwrap_or(0.0),
            None => attr_float(node, "value", 0.0) as f64,
        };
        let axes: Vec<usize> = match self.constant(node, 3, "the axes")? {
            Some(t) => t
                .ints()
                .iter()
                .map(|&a| axis(a, rank))
                .collect::<Result<_>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            bail!("pads {pads:?} do not fit {} axes", axes.len());
        }
        let (mut before, mut after) = (vec![0i64; rank], vec![0i64; rank]);
        for (k, &a) in axes.iter().enumerate() {
            before[a] = pads[k];
            after[a] = pads[k + axes.len()];
        }
        if let Some(mode) = mode
            && before.iter().chain(&after).any(|&p| p != 0)
        {
            return self.image_pad(node, &name, &before, &after, mode);
        }
        let out: Vec<u32> = (0..rank)
            .map(|k| (dims[k] as i64 + before[k] + after[k]).max(0) as u32)
            .collect();
        // Fill, then copy the part of the input that survives (negative pads crop).
        let os = strides_i64(&out);
        let is = strides_i64(&dims);
        let counts: Vec<u32> = (0..rank)
            .map(|k| (dims[k] as i64 + before[k].min(0) + after[k].min(0)).max(0) as u32)
            .collect();
        let fill = CopySpec {
            dims: out.clone(),
            src_strides: vec![0; rank],
            src_offset: 0,
            dst_strides: os.clone(),
            dst_offset: 0,
        };
        let body = CopySpec {
            dims: counts.clone(),
            src_strides: is.clone(),
            src_offset: (0..rank).map(|k| (-before[k]).max(0) * is[k]).sum(),
            dst_strides: os.clone(),
            dst_offset: (0..rank).map(|k| before[k].max(0) * os[k]).sum(),
        };
        let (v, _) = self.gpu(&name)?;
        let mut copies = vec![(None, fill)];
        if numel(&counts) > 0 {
            copies.push((Some(0), body));
        }
        let id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::Copy(copies)),
            vec![v],
            out.clone(),
            vec![value as f32],
        );
        Ok(Val::Gpu(id, out))
    }

    /// An edge or reflect Pad of `name` by the image pad kernel, which pads the height and width
    /// of `[C, H, W]` items: the axes that [`item_shape`] makes those (of rank 4 and more the
    /// last two, of rank 3 the last, of rank 2 the last as the height), every other axis folded
    /// into the channels, which these modes do not pad.
    fn image_pad(
        &mut self,
        node: &NodeProto,
        name: &str,
        before: &[i64],
        after: &[i64],
        mode: PadMode,
    ) -> Result<Val> {
        let dims = self.dims_of(name)?;
        let rank = dims.len();
        let (h_axis, w_axis) = match rank {
            0 | 1 => (None, None),
            2 => (Some(1), None),
            3 => (None, Some(2)),
            _ => (Some(rank - 2), Some(rank - 1)),
        };
        let mode_name = if mode == PadMode::Edge {
            "edge"
        } else {
            "reflect"
        };
        for k in 0..rank {
            if Some(k) != h_axis && Some(k) != w_axis && (before[k] != 0 || after[k] != 0) {
                bail!(
                    "Pad mode {mode_name} pads axis {k} of {dims:?}; batchwise pads only the last \
                     two axes in this mode (of rank 3, the last)"
                );
            }
        }
        if before.iter().chain(after).any(|&p| p < 0) {
            bail!("negative pads (crops) are not supported in Pad mode {mode_name}");
        }
        if numel(&dims) == 0 {
            bail!("cannot pad an empty tensor in mode {mode_name}");
        }
        let side = |a: Option<usize>| a.map_or([0, 0], |k| [before[k] as u32, after[k] as u32]);
        let spec = PadSpec {
            channels: [0, 0],
            height: side(h_axis),
            width: side(w_axis),
            mode,
            value: 0.0,
        };
        let out: Vec<u32> = (0..rank)
            .map(|k| dims[k] + before[k] as u32 + after[k] as u32)
            .collect();
        if spec.output(item_shape(&dims)) != item_shape(&out) {
            bail!("a Pad of {dims:?} to {out:?} is not a pad of images");
        }
        let (v, _) = self.gpu(name)?;
        let id = self.push(
            node_name(node),
            LayerOp::Pad(spec),
            vec![v],
            out.clone(),
            Vec::new(),
        );
        if self.ints.contains(&v) {
            self.ints.insert(id);
        }
        Ok(Val::Gpu(id, out))
    }

    #[allow(
        clippy::too_many_lines,
        reason = "the fixed-shape ONNX translator, one match arm per op; to become one function per op \
                  family in onnx/ops/ (ARCHITECTURE.md: the ONNX importer)"
    )]
    fn lower_node(&mut self, node: &NodeProto) -> Result<()> {
        let op = node.op_type.as_str();
        let input = |i: usize| -> Result<&str> {
            node.input
                .get(i)
                .filter(|n| !n.is_empty())
                .map(String::as_str)
                .with_context(|| format!("has no input {i}"))
        };
        let opset = self.opset;
        if !takes(op) {
            bail!("uses op {op}, {}", super::registry::unsupported(op, false));
        }
        if let Some(u) = unary_op(node)? {
            let v = self.unary(node, input(0)?, u)?;
            self.set(node, 0, v);
            return Ok(());
        }
        if let Some(r) = reduce_op(op) {
            let v = self.reduce(node, r)?;
            self.set(node, 0, v);
            return Ok(());
        }
        match op {
            "Constant" => {
                let a = node.attribute.first().context("has no value")?;
                let t = match a.name.as_str() {
                    "value" => host_tensor(a.t.as_ref().context("has no tensor")?)?,
                    "value_float" => HostTensor::scalar(a.f as f64, false),
                    "value_int" => HostTensor::scalar(a.i as f64, true),
                    "value_floats" => {
                        HostTensor::vector(a.floats.iter().map(|&x| x as f64).collect(), false)
                    }
                    "value_ints" => {
                        HostTensor::vector(a.ints.iter().map(|&x| x as f64).collect(), true)
                    }
                    other => bail!("Constant's {other} attribute is not supported"),
                };
                self.set(node, 0, Val::Const(t));
            }
            "Identity" => {
                let v = self.get(input(0)?)?.clone();
                self.set(node, 0, v);
            }
            "Dropout" => {
                // Inference: the identity, and a mask of ones. Training mode drops at random.
                let ratio = match self.constant(node, 1, "the ratio")? {
                    Some(t) => t.data.first().copied().unwrap_or(0.5),
                    None => attr_float(node, "ratio", 0.5) as f64,
                };
                let training = match self.constant(node, 2, "training_mode")? {
                    Some(t) => t.data.first().is_some_and(|&x| x != 0.0),
                    None => false,
                };
                if training && ratio > 0.0 {
                    bail!("Dropout in training mode is random; batchwise runs inference");
                }
                let v = self.get(input(0)?)?.clone();
                let dims: Vec<usize> = self
                    .dims_of(input(0)?)?
                    .iter()
                    .map(|&d| d as usize)
                    .collect();
                self.set(node, 0, v);
                let n = dims.iter().product();
                self.set(
                    node,
                    1,
                    Val::Const(HostTensor {
                        dims,
                        data: vec![1.0; n],
                        int: true,
                    }),
                );
            }
            "Shape" => {
                let dims = self.dims_of(input(0)?)?;
                let r = dims.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let start = clamp(attr_int(node, "start", 0));
                let end = clamp(attr_int(node, "end", r));
                let d: Vec<f64> = dims[start..end.max(start)]
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                self.set(node, 0, Val::Const(HostTensor::vector(d, true)));
            }
            "Size" => {
                let dims = self.dims_of(input(0)?)?;
                self.set(
                    node,
                    0,
                    Val::Const(HostTensor::scalar(numel(&dims) as f64, true)),
                );
            }
            "Cast" | "CastLike" => {
                let to = attr_int(node, "to", 1);
                let v = match self.get(input(0)?)?.clone() {
                    Val::Const(mut t) => {
                        t.int = !matches!(to, 1 | 10 | 11 | 16);
                        if matches!(to, 2..=7 | 12 | 13) {
                            t.data.iter_mut().for_each(|x| *x = x.trunc());
                        }
                        if to == 9 {
                            t.data
                                .iter_mut()
                                .for_each(|x| *x = (*x != 0.0) as u8 as f64);
                        }
                        Val::Const(t)
                    }
                    g @ Val::Gpu(..) if matches!(to, 1 | 10 | 11) || op == "CastLike" => g,
                    Val::Gpu(..) if matches!(to, 2..=7 | 12 | 13) => {
                        let v = self.unary(node, input(0)?, UnaryOp::Trunc)?;
                        if let Val::Gpu(id, _) = v {
                            self.ints.insert(id);
                        }
                        v
                    }
                    Val::Gpu(..) => {
                        bail!("casting a computed tensor to type {to} is not supported")
                    }
                };
                self.set(node, 0, v);
            }
            "ConstantOfShape" => {
                let shape = self
                    .constant(node, 0, "the shape")?
                    .context("has no shape")?;
                let value = attr(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .map(host_tensor)
                    .transpose()?;
                let int = value.as_ref().is_some_and(|t| t.int);
                let value = value.and_then(|t| t.data.first().copied()).unwrap_or(0.0);
                let dims: Vec<usize> = shape.ints().iter().map(|&d| d.max(0) as usize).collect();
                let n = dims.iter().product();
                self.set(
                    node,
                    0,
                    Val::Const(HostTensor {
                        dims,
                        data: vec![value; n],
                        int,
                    }),
                );
            }
            "Range" => {
                let s = |i| -> Result<f64> {
                    Ok(self
                        .constant(node, i, "Range's bounds")?
                        .context("has no bound")?
                        .data[0])
                };
                let (start, limit, delta) = (s(0)?, s(1)?, s(2)?);
                let int = self
                    .constant(node, 0, "Range's start")?
                    .is_some_and(|t| t.int);
                let n = ((limit - start) / delta).ceil().max(0.0) as usize;
                let data = (0..n).map(|i| start + i as f64 * delta).collect();
                self.set(node, 0, Val::Const(HostTensor::vector(data, int)));
            }
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "PRelu" => {
                let bop = binary_op(op).expect("a binary op");
                let v = self.binary(node, input(0)?, input(1)?, bop)?;
                self.set(node, 0, v);
            }
            "Sum" | "Mean" | "Max" | "Min" => {
                let bop = binary_op(op).expect("a variadic op");
                let names: Vec<String> = node
                    .input
                    .iter()
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .collect();
                let mut acc_name = names.first().context("has no inputs")?.clone();
                for (k, n) in names.iter().enumerate().skip(1) {
                    let v = self.binary(node, &acc_name, n, bop)?;
                    acc_name = format!("{} (partial {k})", node_name(node));
                    self.vals.insert(acc_name.clone(), v);
                }
                let mut v = self.get(&acc_name)?.clone();
                if op == "Mean" && names.len() > 1 {
                    v = self.unary(
                        node,
                        &acc_name,
                        UnaryOp::Affine {
                            scale: 1.0 / names.len() as f32,
                            offset: 0.0,
                        },
                    )?;
                }
                self.set(node, 0, v);
            }
            "Clip" => {
                let bound = |s: &Self, i: usize, name: &str, default: f32| -> Result<f32> {
                    Ok(match s.constant(node, i, "a Clip bound")? {
                        Some(t) => *t.data.first().context("an empty bound")? as f32,
                        None => attr_float(node, name, default),
                    })
                };
                let (min, max) = (
                    bound(self, 1, "min", f32::MIN)?,
                    bound(self, 2, "max", f32::MAX)?,
                );
                let v = self.unary(node, input(0)?, UnaryOp::Clip { min, max })?;
                self.set(node, 0, v);
            }
            "Reshape" => {
                let dims = self.dims_of(input(0)?)?;
                let shape = if opset >= 5 {
                    self.constant(node, 1, "the target shape")?
                        .context("has no shape")?
                        .ints()
                } else {
                    attr_ints(node, "shape").context("has no shape")?
                };
                let allow_zero = attr_int(node, "allowzero", 0) == 1;
                let mut out: Vec<i64> = shape
                    .iter()
                    .enumerate()
                    .map(|(k, &d)| {
                        if d == 0 && !allow_zero {
                            dims.get(k).map_or(0, |&x| x as i64)
                        } else {
                            d
                        }
                    })
                    .collect();
                let known: i64 = out.iter().filter(|&&d| d != -1).product();
                if let Some(k) = out.iter().position(|&d| d == -1) {
                    out[k] = if known == 0 {
                        0
                    } else {
                        numel(&dims) as i64 / known
                    };
                }
                let out: Vec<u32> = out.iter().map(|&d| d.max(0) as u32).collect();
                if numel(&out) != numel(&dims) {
                    bail!("cannot reshape {dims:?} to {shape:?}");
                }
                let v = self.reshape(node, input(0)?, out)?;
                self.set(node, 0, v);
            }
            "Flatten" => {
                let dims = self.dims_of(input(0)?)?;
                let a = if attr_int(node, "axis", 1) == dims.len() as i64 {
                    dims.len()
                } else {
                    axis(attr_int(node, "axis", 1), dims.len())?
                };
                let out = vec![numel(&dims[..a]), numel(&dims[a..])];
                let v = self.reshape(node, input(0)?, out)?;
                self.set(node, 0, v);
            }
            "Squeeze" | "Unsqueeze" => {
                let dims = self.dims_of(input(0)?)?;
                let axes = match self.constant(node, 1, "the axes")? {
                    Some(t) => Some(t.ints()),
                    None => attr_ints(node, "axes"),
                };
                let out: Vec<u32> = if op == "Squeeze" {
                    match axes {
                        None => dims.iter().copied().filter(|&d| d != 1).collect(),
                        Some(axes) => {
                            let axes: Vec<usize> = axes
                                .iter()
                                .map(|&a| axis(a, dims.len()))
                                .collect::<Result<_>>()?;
                            if axes.iter().any(|&a| dims[a] != 1) {
                                bail!("cannot squeeze axes {axes:?} of {dims:?}");
                            }
                            dims.iter()
                                .enumerate()
                                .filter(|(k, _)| !axes.contains(k))
                                .map(|(_, &d)| d)
                                .collect()
                        }
                    }
                } else {
                    let axes = axes.context("has no axes")?;
                    let rank = dims.len() + axes.len();
                    let axes: Vec<usize> =
                        axes.iter().map(|&a| axis(a, rank)).collect::<Result<_>>()?;
                    let mut rest = dims.iter();
                    (0..rank)
                        .map(|k| {
                            if axes.contains(&k) {
                                1
                            } else {
                                *rest.next().unwrap_or(&1)
                            }
                        })
                        .collect()
                };
                let v = self.reshape(node, input(0)?, out)?;
                self.set(node, 0, v);
            }
            "Transpose" => {
                let rank = self.dims_of(input(0)?)?.len();
                let perm: Vec<usize> = match attr_ints(node, "perm") {
                    Some(p) => p.iter().map(|&a| axis(a, rank)).collect::<Result<_>>()?,
                    None => (0..rank).rev().collect(),
                };
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..rank).collect::<Vec<_>>() {
                    bail!("perm {perm:?} is not a permutation of {rank} axes");
                }
                let v = self.transpose(node, input(0)?, &perm)?;
                self.set(node, 0, v);
            }
            "Concat" => {
                let v = self.concat(
                    node,
                    &node.input,
                    attr(node, "axis").context("has no axis")?.i,
                )?;
                self.set(node, 0, v);
            }
            "Split" => {
                let dims = self.dims_of(input(0)?)?;
                let a = axis(attr_int(node, "axis", 0), dims.len())?;
                let parts = node.output.len();
                let sizes: Vec<u32> = match self.constant(node, 1, "the split sizes")? {
                    Some(t) => t.ints().iter().map(|&x| x as u32).collect(),
                    None => match attr_ints(node, "split") {
                        Some(s) => s.iter().map(|&x| x as u32).collect(),
                        None => {
                            let n = attr_int(node, "num_outputs", parts as i64) as u32;
                            let each = dims[a].div_ceil(n);
                            (0..n)
                                .map(|k| each.min(dims[a].saturating_sub(k * each)))
                                .collect()
                        }
                    },
                };
                if sizes.len() != parts || sizes.iter().sum::<u32>() != dims[a] {
                    bail!("split sizes {sizes:?} do not cut {} into {parts}", dims[a]);
                }
                let mut start = 0;
                for (k, &n) in sizes.iter().enumerate() {
                    let mut counts = dims.clone();
                    counts[a] = n;
                    let mut starts = vec![0i64; dims.len()];
                    starts[a] = start as i64;
                    let v = self.slice(node, input(0)?, &starts, &vec![1; dims.len()], &counts)?;
                    self.set(node, k, v);
                    start += n;
                }
            }
            "Slice" => {
                let dims = self.dims_of(input(0)?)?;
                let rank = dims.len();
                let (starts, ends, axes, steps) = if opset >= 10 {
                    let c = |s: &Self, i: usize, w: &str| -> Result<Option<Vec<i64>>> {
                        Ok(s.constant(node, i, w)?.map(|t| t.ints()))
                    };
                    (
                        c(self, 1, "starts")?.context("has no starts")?,
                        c(self, 2, "ends")?.context("has no ends")?,
                        c(self, 3, "axes")?,
                        c(self, 4, "steps")?,
                    )
                } else {
                    (
                        attr_ints(node, "starts").context("has no starts")?,
                        attr_ints(node, "ends").context("has no ends")?,
                        attr_ints(node, "axes"),
                        None,
                    )
                };
                let axes: Vec<usize> = match axes {
                    Some(a) => a.iter().map(|&x| axis(x, rank)).collect::<Result<_>>()?,
                    None => (0..starts.len()).collect(),
                };
                let steps = steps.unwrap_or_else(|| vec![1; axes.len()]);
                let mut first = vec![0i64; rank];
                let mut step = vec![1i64; rank];
                let mut counts = dims.clone();
                for (k, &a) in axes.iter().enumerate() {
                    let n = dims[a] as i64;
                    let s = steps[k];
                    if s == 0 {
                        bail!("a Slice step of 0");
                    }
                    let fix = |v: i64| if v < 0 { v + n } else { v };
                    let (b, e) = if s > 0 {
                        (fix(starts[k]).clamp(0, n), fix(ends[k]).clamp(0, n))
                    } else {
                        (
                            fix(starts[k]).clamp(-1, n - 1),
                            fix(ends[k]).clamp(-1, n - 1),
                        )
                    };
                    let count = if s > 0 {
                        ((e - b).max(0) + s - 1) / s
                    } else {
                        ((b - e).max(0) + (-s) - 1) / (-s)
                    };
                    first[a] = b;
                    step[a] = s;
                    counts[a] = count as u32;
                }
                let v = self.slice(node, input(0)?, &first, &step, &counts)?;
                self.set(node, 0, v);
            }
            "Expand" => {
                let dims = self.dims_of(input(0)?)?;
                let shape: Vec<u32> = self
                    .constant(node, 1, "the shape")?
                    .context("has no shape")?
                    .ints()
                    .iter()
                    .map(|&d| d as u32)
                    .collect();
                let out = broadcast_dims(&dims, &shape)
                    .with_context(|| format!("{dims:?} does not expand to {shape:?}"))?;
                let src = crate::model::broadcast_strides(&dims, &out);
                let spec = CopySpec {
                    dims: out.clone(),
                    src_strides: src.iter().map(|&s| s as i64).collect(),
                    src_offset: 0,
                    dst_strides: strides_i64(&out),
                    dst_offset: 0,
                };
                let (v, _) = self.gpu(input(0)?)?;
                let id = self.copy(node, v, spec, out.clone());
                self.set(node, 0, Val::Gpu(id, out));
            }
            "Tile" => {
                let dims = self.dims_of(input(0)?)?;
                let reps = self
                    .constant(node, 1, "the repeats")?
                    .context("has no repeats")?
                    .ints();
                if reps.len() != dims.len() || 2 * dims.len() > MAX_RANK + 4 {
                    bail!("repeats {reps:?} do not fit {dims:?}");
                }
                let out: Vec<u32> = dims
                    .iter()
                    .zip(&reps)
                    .map(|(&d, &r)| d * r as u32)
                    .collect();
                let (os, is) = (strides_i64(&out), strides_i64(&dims));
                let mut spec = CopySpec {
                    dims: Vec::new(),
                    src_strides: Vec::new(),
                    src_offset: 0,
                    dst_strides: Vec::new(),
                    dst_offset: 0,
                };
                for k in 0..dims.len() {
                    spec.dims.extend([reps[k] as u32, dims[k]]);
                    spec.src_strides.extend([0, is[k]]);
                    spec.dst_strides.extend([os[k] * dims[k] as i64, os[k]]);
                }
                if spec.simplified().dims.len() > MAX_RANK {
                    bail!("a Tile of {dims:?} by {reps:?} needs more than {MAX_RANK} dimensions");
                }
                let (v, _) = self.gpu(input(0)?)?;
                let id = self.copy(node, v, spec, out.clone());
                self.set(node, 0, Val::Gpu(id, out));
            }
            "Gather" => {
                let dims = self.dims_of(input(0)?)?;
                let a = axis(attr_int(node, "axis", 0), dims.len())?;
                let idx = self
                    .constant(node, 1, "the indices")?
                    .context("has no indices")?;
                let n = dims[a] as i64;
                let picks: Vec<i64> = idx
                    .ints()
                    .iter()
                    .map(|&i| if i < 0 { i + n } else { i })
                    .collect();
                if picks.iter().any(|&i| !(0..n).contains(&i)) {
                    bail!("indices {:?} are out of range for {n}", idx.ints());
                }
                let mut out: Vec<u32> = dims[..a].to_vec();
                out.extend(idx.dims.iter().map(|&d| d as u32));
                out.extend(&dims[a + 1..]);
                if let Val::Const(t) = self.get(input(0)?)? {
                    let outer = numel(&dims[..a]) as usize;
                    let inner = numel(&dims[a + 1..]) as usize;
                    let mut data = Vec::new();
                    for o in 0..outer {
                        for &p in &picks {
                            let at = (o * n as usize + p as usize) * inner;
                            data.extend_from_slice(&t.data[at..at + inner]);
                        }
                    }
                    let dims = out.iter().map(|&d| d as usize).collect();
                    self.set(node, 0, Val::Const(t.with_dims(dims, data)));
                    return Ok(());
                }
                // One copy per index: row `p` of axis a to position k.
                let st = strides_i64(&dims);
                let mut block = dims.clone();
                block[a] = 1;
                let out_blocked: Vec<u32> = {
                    let mut b = dims.clone();
                    b[a] = picks.len() as u32;
                    b
                };
                let os = strides_i64(&out_blocked);
                let copies = picks
                    .iter()
                    .enumerate()
                    .map(|(k, &p)| {
                        (
                            Some(0),
                            CopySpec {
                                dims: block.clone(),
                                src_strides: st.clone(),
                                src_offset: p * st[a],
                                dst_strides: os.clone(),
                                dst_offset: k as i64 * os[a],
                            },
                        )
                    })
                    .collect();
                let (v, _) = self.gpu(input(0)?)?;
                let id = self.push(
                    node_name(node),
                    LayerOp::Tensor(TensorOp::Copy(copies)),
                    vec![v],
                    out.clone(),
                    Vec::new(),
                );
                self.set(node, 0, Val::Gpu(id, out));
            }
            "DepthToSpace" | "SpaceToDepth" => {
                let dims = self.dims_of(input(0)?)?;
                let b = attr_int(node, "blocksize", 0) as u32;
                let [n, c, h, w] = dims[..] else {
                    bail!("{op} takes rank-4 input, not {dims:?}");
                };
                if b == 0 {
                    bail!("blocksize must be at least 1");
                }
                let (view, perm, out): (Vec<u32>, Vec<usize>, Vec<u32>) = if op == "DepthToSpace" {
                    if c % (b * b) != 0 {
                        bail!("{c} channels do not divide by blocksize {b} squared");
                    }
                    let cc = c / (b * b);
                    let crd = attr(node, "mode").is_some_and(|m| m.s == b"CRD");
                    if crd {
                        (
                            vec![n, cc, b, b, h, w],
                            vec![0, 1, 4, 2, 5, 3],
                            vec![n, cc, h * b, w * b],
                        )
                    } else {
                        (
                            vec![n, b, b, cc, h, w],
                            vec![0, 3, 4, 1, 5, 2],
                            vec![n, cc, h * b, w * b],
                        )
                    }
                } else {
                    if h % b != 0 || w % b != 0 {
                        bail!("{h}x{w} does not divide by blocksize {b}");
                    }
                    // DCR (the default): block offsets first, then channels; CRD: channels first.
                    let crd = attr(node, "mode").is_some_and(|m| m.s == b"CRD");
                    let perm = if crd {
                        vec![0, 1, 3, 5, 2, 4]
                    } else {
                        vec![0, 3, 5, 1, 2, 4]
                    };
                    (
                        vec![n, c, h / b, b, w / b, b],
                        perm,
                        vec![n, c * b * b, h / b, w / b],
                    )
                };
                let st = strides_i64(&view);
                let tdims: Vec<u32> = perm.iter().map(|&p| view[p]).collect();
                let spec = CopySpec {
                    dims: tdims.clone(),
                    src_strides: perm.iter().map(|&p| st[p]).collect(),
                    src_offset: 0,
                    dst_strides: strides_i64(&tdims),
                    dst_offset: 0,
                };
                let (v, _) = self.gpu(input(0)?)?;
                let id = self.copy(node, v, spec, out.clone());
                self.set(node, 0, Val::Gpu(id, out));
            }
            "Pad" => {
                let v = self.pad(node)?;
                self.set(node, 0, v);
            }
            "Softmax" | "LogSoftmax" | "Hardmax" => {
                let dims = self.dims_of(input(0)?)?;
                let kind = match op {
                    "Softmax" => SoftmaxKind::Softmax,
                    "LogSoftmax" => SoftmaxKind::LogSoftmax,
                    _ => SoftmaxKind::Hardmax,
                };
                let spec = if opset >= 13 {
                    SoftmaxSpec::along(kind, &dims, axis(attr_int(node, "axis", -1), dims.len())?)
                } else {
                    // Before opset 13 the input is coerced to 2-D at `axis`.
                    let a = axis(attr_int(node, "axis", 1), dims.len())?;
                    SoftmaxSpec::along(kind, &[numel(&dims[..a]), numel(&dims[a..])], 1)
                };
                let (v, _) = self.gpu(input(0)?)?;
                let id = self.push(
                    node_name(node),
                    LayerOp::Tensor(TensorOp::Softmax(spec)),
                    vec![v],
                    dims.clone(),
                    Vec::new(),
                );
                self.set(node, 0, Val::Gpu(id, dims));
            }
            "Conv" | "ConvTranspose" | "MaxPool" | "AveragePool" => {
                let v = self.image_op(node)?;
                self.set(node, 0, v);
            }
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let dims = self.dims_of(input(0)?)?;
                if dims.len() < 3 {
                    bail!("{op} takes [N, C, ...], not {dims:?}");
                }
                let r = if op == "GlobalMaxPool" {
                    ReduceOp::Max
                } else {
                    ReduceOp::Mean
                };
                let spec = ReduceSpec {
                    op: r,
                    dims: dims.clone(),
                    axes: (2..dims.len()).collect(),
                };
                let mut out = dims.clone();
                out[2..].iter_mut().for_each(|d| *d = 1);
                let (v, _) = self.gpu(input(0)?)?;
                let id = self.push(
                    node_name(node),
                    LayerOp::Tensor(TensorOp::Reduce(spec)),
                    vec![v],
                    out.clone(),
                    Vec::new(),
                );
                self.set(node, 0, Val::Gpu(id, out));
            }
            "MatMul" => {
                let v = self.matmul(node)?;
                self.set(node, 0, v);
            }
            "Gemm" => {
                let v = self.gemm(node)?;
                self.set(node, 0, v);
            }
            "InstanceNormalization" => {
                let dims = self.dims_of(input(0)?)?;
                if dims.len() < 3 {
                    bail!("InstanceNormalization takes [N, C, ...], not {dims:?}");
                }
                let scale = self
                    .constant(node, 1, "the scale")?
                    .context("has no scale")?;
                let bias = self.constant(node, 2, "the bias")?.context("has no bias")?;
                let c = dims[1];
                if scale.data.len() != c as usize || bias.data.len() != c as usize {
                    bail!("scale and bias must have {c} values");
                }
                let spec = NormSpec {
                    rows: dims[0] * c,
                    len: numel(&dims[2..]),
                    channels: c,
                    per_element: false,
                    eps: attr_float(node, "epsilon", 1e-5),
                };
                let v = self.normalize(node, spec, &scale, &bias, &dims)?;
                self.set(node, 0, v);
            }
            "LayerNormalization" => {
                let v = self.layer_norm(node)?;
                self.set(node, 0, v);
            }
            "BatchNormalization" => {
                if node.output.iter().skip(1).any(|o| !o.is_empty())
                    || attr_int(node, "training_mode", 0) == 1
                {
                    bail!("BatchNormalization in training mode is not supported");
                }
                let dims = self.dims_of(input(0)?)?;
                let c = *dims
                    .get(1)
                    .context("BatchNormalization takes [N, C, ...]")?
                    as usize;
                let t = |s: &Self, i: usize| -> Result<Vec<f64>> {
                    let t = s
                        .constant(node, i, "a statistic")?
                        .context("has too few inputs")?;
                    if t.data.len() != c {
                        bail!("a statistic has {} values for {c} channels", t.data.len());
                    }
                    Ok(t.data)
                };
                let (scale, b, mean, var) = (t(self, 1)?, t(self, 2)?, t(self, 3)?, t(self, 4)?);
                let eps = attr_float(node, "epsilon", 1e-5) as f64;
                let a: Vec<f64> = (0..c).map(|k| scale[k] / (var[k] + eps).sqrt()).collect();
                let shift: Vec<f64> = (0..c).map(|k| b[k] - mean[k] * a[k]).collect();
                let mut cdims = vec![c];
                cdims.extend(std::iter::repeat_n(1, dims.len() - 2));
                let scale_name = format!("{} (scale)", node_name(node));
                let shift_name = format!("{} (shift)", node_name(node));
                self.vals.insert(
                    scale_name.clone(),
                    Val::Const(HostTensor {
                        dims: cdims.clone(),
                        data: a,
                        int: false,
                    }),
                );
                self.vals.insert(
                    shift_name.clone(),
                    Val::Const(HostTensor {
                        dims: cdims,
                        data: shift,
                        int: false,
                    }),
                );
                let scaled = self.binary(node, input(0)?, &scale_name, BinaryOp::Mul)?;
                let mid = format!("{} (scaled)", node_name(node));
                self.vals.insert(mid.clone(), scaled);
                let v = self.binary(node, &mid, &shift_name, BinaryOp::Add)?;
                self.set(node, 0, v);
            }
            other => bail!(
                "uses op {other}, which the registry (onnx/registry.rs) lists for tensors of fixed \
                 shape but the static lowering does not translate"
            ),
        }
        Ok(())
    }

    /// Conv, ConvTranspose, MaxPool and AveragePool of a 1-D (`[N, C, L]`, run as `[N, C, 1, L]`)
    /// or 2-D input, through the image kernels. With every size known, auto_pad and
    /// ConvTranspose's output_shape become explicit pads.
    fn image_op(&mut self, node: &NodeProto) -> Result<Val> {
        let name = node.input[0].clone();
        let dims = self.dims_of(&name)?;
        if dims.len() == 5 && node.op_type.ends_with("Pool") {
            return self.pool_3d(node, &name, &dims);
        }
        let one_d = dims.len() == 3;
        if dims.len() != 3 && dims.len() != 4 {
            bail!(
                "{} takes 1-D or 2-D input ([N, C, L] or [N, C, H, W]), not {dims:?}",
                node.op_type
            );
        }
        let spatial: Vec<u32> = if one_d {
            vec![1, dims[2]]
        } else {
            dims[2..].to_vec()
        };
        let conv = node.op_type.starts_with("Conv");
        let weights = if conv {
            let t = self
                .constant(node, 1, "the weights")?
                .context("has no weights")?;
            let mut wd: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
            if one_d && wd.len() == 3 {
                wd.insert(2, 1);
            }
            Some(super::Weights {
                dims: wd,
                data: t.data.iter().map(|&x| x as f32).collect(),
            })
        } else {
            None
        };
        let kernel: Vec<i64> = match &weights {
            Some(w) if w.dims.len() == 4 => w.dims[2..].to_vec(),
            _ => {
                let mut k = attr_ints(node, "kernel_shape").context("has no kernel_shape")?;
                if one_d {
                    k.insert(0, 1);
                }
                k
            }
        };
        let patched = two_d_node(node, one_d, &spatial, &kernel)?;
        let (n, c) = (dims[0], dims[1]);
        let mut out_c;
        let mut layers = Vec::new();
        if weights.is_some() && n > 1 {
            return self.per_image(node, &name, &dims);
        }
        if let Some(w) = weights {
            let bias = self
                .constant(node, 2, "the bias")?
                .map(|t| t.data.iter().map(|&x| x as f32).collect())
                .unwrap_or_default();
            for l in super::conv_layers(&patched, w, bias, c)? {
                layers.push((l.name, l.op, l.weights, l.bias));
            }
        } else {
            layers.push((
                node_name(node),
                LayerOp::Pool2d(super::pool_spec(&patched)?),
                Vec::new(),
                Vec::new(),
            ));
        }
        let (mut v, _) = self.gpu(&name)?;
        let (mut h, mut w) = (spatial[0], spatial[1]);
        out_c = c;
        for (lname, op, weights, bias) in layers {
            let next = match &op {
                LayerOp::Conv2d(s) => s.output_hw(h, w).map(|(a, b)| (s.out_c, a, b)),
                LayerOp::ConvTranspose2d(s) => s.output_hw(h, w).map(|(a, b)| (s.out_c, a, b)),
                LayerOp::DepthToSpace(s) => s.output_chw(out_c, h, w),
                LayerOp::Pool2d(s) => s.output_hw(h, w).map(|(a, b)| (out_c, a, b)),
                _ => unreachable!("image layers"),
            };
            let (oc, oh, ow) =
                next.with_context(|| format!("does not fit an input of {dims:?}"))?;
            (out_c, h, w) = (oc, oh, ow);
            let out = if one_d {
                vec![n, out_c, w]
            } else {
                vec![n, out_c, h, w]
            };
            let id = self.new_value(out);
            self.layers.push(Layer {
                name: lname,
                op,
                inputs: vec![v],
                output: id,
                weights,
                bias,
            });
            v = id;
        }
        let out = self.dims[v].clone();
        if numel(&out) == 0 {
            bail!("computes an empty tensor");
        }
        Ok(Val::Gpu(v, out))
    }

    /// A 3-D MaxPool or AveragePool as two 2-D pools: over (H, W) for every depth slice, then
    /// over D. Both are separable: the window is a box, so its maximum is the maximum of the
    /// slices' maxima, and its element count (with or without padding) is the product of the
    /// per-axis counts, so the mean is the mean of the slices' means.
    fn pool_3d(&mut self, node: &NodeProto, name: &str, dims: &[u32]) -> Result<Val> {
        let three = |n: &str, default: i64| -> Result<Vec<i64>> {
            let v = attr_ints(node, n).unwrap_or_else(|| vec![default; 3]);
            if v.len() != 3 {
                bail!("{n} {v:?} is not three values");
            }
            Ok(v)
        };
        let (k, st, dl) = (
            three("kernel_shape", 0)?,
            three("strides", 1)?,
            three("dilations", 1)?,
        );
        let pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 6]);
        if pads.len() != 6 {
            bail!("pads {pads:?} are not six values");
        }
        let sub =
            |kernel: [i64; 2], stride: [i64; 2], dil: [i64; 2], p: [i64; 4], spatial: [u32; 2]| {
                let mut n = node.clone();
                n.attribute.retain(|a| {
                    !matches!(
                        a.name.as_str(),
                        "kernel_shape" | "strides" | "dilations" | "pads"
                    )
                });
                for (name, ints) in [
                    ("kernel_shape", kernel.to_vec()),
                    ("strides", stride.to_vec()),
                    ("dilations", dil.to_vec()),
                    ("pads", p.to_vec()),
                ] {
                    n.attribute.push(super::proto::AttributeProto {
                        name: name.into(),
                        ints,
                        r#type: 7,
                        ..Default::default()
                    });
                }
                two_d_node(&n, false, &spatial, &kernel).and_then(|n| super::pool_spec(&n))
            };
        let (nc, d, h, w) = (dims[0] * dims[1], dims[2], dims[3], dims[4]);
        let plane = sub(
            [k[1], k[2]],
            [st[1], st[2]],
            [dl[1], dl[2]],
            [pads[1], pads[2], pads[4], pads[5]],
            [h, w],
        )?;
        let depth = sub(
            [k[0], 1],
            [st[0], 1],
            [dl[0], 1],
            [pads[0], 0, pads[3], 0],
            [d, 1],
        )?;
        let (oh, ow) = plane.output_hw(h, w).context("the window does not fit")?;
        let (od, _) = depth.output_hw(d, 1).context("the window does not fit")?;
        let base = node_name(node);
        let (v, _) = self.gpu(name)?;
        let step = |l: &mut Self, what: &str, op: LayerOp, from: ValueId, out: Vec<u32>| {
            let id = l.new_value(out);
            l.layers.push(Layer {
                name: format!("{base} ({what})"),
                op,
                inputs: vec![from],
                output: id,
                weights: Vec::new(),
                bias: Vec::new(),
            });
            id
        };
        let flat =
            |n: u32| LayerOp::Tensor(TensorOp::Copy(vec![(Some(0), CopySpec::contiguous(n))]));
        let a = step(
            self,
            "height, width",
            LayerOp::Pool2d(plane),
            v,
            vec![dims[0], dims[1], d, oh, ow],
        );
        let b = step(
            self,
            "view",
            flat(nc * d * oh * ow),
            a,
            vec![1, nc, d, oh * ow],
        );
        let c = step(
            self,
            "depth",
            LayerOp::Pool2d(depth),
            b,
            vec![1, nc, od, oh * ow],
        );
        let out = vec![dims[0], dims[1], od, oh, ow];
        let y = step(self, "view", flat(nc * od * oh * ow), c, out.clone());
        Ok(Val::Gpu(y, out))
    }

    /// A convolution of `[N, C, ...]` with N > 1 inside one tensor: each image alone, then
    /// concatenated on axis 0.
    fn per_image(&mut self, node: &NodeProto, name: &str, dims: &[u32]) -> Result<Val> {
        let mut parts = Vec::new();
        for i in 0..dims[0] {
            let mut counts = dims.to_vec();
            counts[0] = 1;
            let mut starts = vec![0i64; dims.len()];
            starts[0] = i as i64;
            let one = self.slice(node, name, &starts, &vec![1; dims.len()], &counts)?;
            let part = format!("{} (image {i})", node_name(node));
            self.vals.insert(format!("{part} in"), one);
            let mut single = node.clone();
            single.input[0] = format!("{part} in");
            let out = self.image_op(&single)?;
            self.vals.insert(part.clone(), out);
            parts.push(part);
        }
        self.concat(node, &parts, 0)
    }

    fn reduce(&mut self, node: &NodeProto, r: ReduceOp) -> Result<Val> {
        let name = node.input.first().context("has no input")?.clone();
        let dims = self.dims_of(&name)?;
        let rank = dims.len();
        // Axes: an attribute before opset 18 (13 for ReduceSum), an input after.
        let axes = match self.constant(node, 1, "the axes")? {
            Some(t) => Some(t.ints()),
            None => attr_ints(node, "axes"),
        };
        let keep = attr_int(node, "keepdims", 1) == 1;
        let axes: Vec<usize> = match axes.filter(|a| !a.is_empty()) {
            Some(a) => a.iter().map(|&x| axis(x, rank)).collect::<Result<_>>()?,
            None if attr_int(node, "noop_with_empty_axes", 0) == 1 => {
                return Ok(self.get(&name)?.clone());
            }
            None => (0..rank).collect(),
        };
        let out: Vec<u32> = (0..rank)
            .filter_map(|k| match (axes.contains(&k), keep) {
                (false, _) => Some(dims[k]),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect();
        let spec = ReduceSpec {
            op: r,
            dims: dims.clone(),
            axes,
        };
        if let Val::Const(t) = self.get(&name)? {
            if t.int && t.data.is_empty() && matches!(r, ReduceOp::Max | ReduceOp::Min) {
                bail!("{r:?} of an empty integer or bool tensor is not supported");
            }
            let src: Vec<f32> = t.data.iter().map(|&x| x as f32).collect();
            let data = spec.reference(&src).iter().map(|&x| x as f64).collect();
            return Ok(Val::Const(
                t.with_dims(out.iter().map(|&d| d as usize).collect(), data),
            ));
        }
        if dims.len() > MAX_RANK {
            bail!("reductions take at most {MAX_RANK} dimensions");
        }
        let (v, _) = self.gpu(&name)?;
        let id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::Reduce(spec)),
            vec![v],
            out.clone(),
            Vec::new(),
        );
        Ok(Val::Gpu(id, out))
    }

    fn matmul(&mut self, node: &NodeProto) -> Result<Val> {
        let (a, b) = (
            node.input[0].clone(),
            node.input.get(1).context("has no B")?.clone(),
        );
        let (mut da, mut db) = (self.dims_of(&a)?, self.dims_of(&b)?);
        // numpy: a vector operand gains a unit axis, dropped from the result.
        let (va, vb) = (da.len() == 1, db.len() == 1);
        if va {
            da.insert(0, 1);
        }
        if vb {
            db.push(1);
        }
        let spec = MatMulSpec::matmul(&da, &db)
            .with_context(|| format!("cannot multiply {da:?} by {db:?}"))?;
        let mut out = spec.batch.clone();
        if !va {
            out.push(spec.m);
        }
        if !vb {
            out.push(spec.n);
        }
        let (av, _) = self.gpu(&a)?;
        let (inputs, constant_b, weights) = match self.get(&b)?.clone() {
            Val::Const(t) => (vec![av], true, t.data.iter().map(|&x| x as f32).collect()),
            Val::Gpu(bv, _) => (vec![av, bv], false, Vec::new()),
        };
        let id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::MatMul { spec, constant_b }),
            inputs,
            out.clone(),
            weights,
        );
        Ok(Val::Gpu(id, out))
    }

    fn gemm(&mut self, node: &NodeProto) -> Result<Val> {
        let (a, b) = (
            node.input[0].clone(),
            node.input.get(1).context("has no B")?.clone(),
        );
        let (da, db) = (self.dims_of(&a)?, self.dims_of(&b)?);
        if da.len() != 2 || db.len() != 2 {
            bail!("Gemm takes matrices, not {da:?} and {db:?}");
        }
        let (ta, tb) = (
            attr_int(node, "transA", 0) == 1,
            attr_int(node, "transB", 0) == 1,
        );
        let (m, k) = if ta { (da[1], da[0]) } else { (da[0], da[1]) };
        let (kb, n) = if tb { (db[1], db[0]) } else { (db[0], db[1]) };
        if k != kb {
            bail!("cannot multiply {da:?} by {db:?} (transA {ta}, transB {tb})");
        }
        let spec = MatMulSpec {
            batch: Vec::new(),
            a_batch: Vec::new(),
            b_batch: Vec::new(),
            m,
            k,
            n,
            a_row: if ta { 1 } else { k },
            a_col: if ta { m } else { 1 },
            b_row: if tb { 1 } else { n },
            b_col: if tb { k } else { 1 },
            alpha: attr_float(node, "alpha", 1.0),
        };
        let (av, _) = self.gpu(&a)?;
        let (inputs, constant_b, weights) = match self.get(&b)?.clone() {
            Val::Const(t) => (vec![av], true, t.data.iter().map(|&x| x as f32).collect()),
            Val::Gpu(bv, _) => (vec![av, bv], false, Vec::new()),
        };
        let out = vec![m, n];
        let id = self.push(
            format!("{} (product)", node_name(node)),
            LayerOp::Tensor(TensorOp::MatMul { spec, constant_b }),
            inputs,
            out.clone(),
            weights,
        );
        let product = Val::Gpu(id, out);
        let Some(c) = node.input.get(2).filter(|c| !c.is_empty()).cloned() else {
            return Ok(product);
        };
        let beta = attr_float(node, "beta", 1.0) as f64;
        let pname = format!("{} (product)", node_name(node));
        self.vals.insert(pname.clone(), product);
        let c_name = match self.get(&c)?.clone() {
            Val::Const(mut t) => {
                t.data.iter_mut().for_each(|x| *x *= beta);
                let n = format!("{} (C)", node_name(node));
                self.vals.insert(n.clone(), Val::Const(t));
                n
            }
            Val::Gpu(..) if beta == 1.0 => c,
            Val::Gpu(..) => {
                let scaled = self.unary(
                    node,
                    &c,
                    UnaryOp::Affine {
                        scale: beta as f32,
                        offset: 0.0,
                    },
                )?;
                let n = format!("{} (beta C)", node_name(node));
                self.vals.insert(n.clone(), scaled);
                n
            }
        };
        self.binary(node, &pname, &c_name, BinaryOp::Add)
    }

    fn normalize(
        &mut self,
        node: &NodeProto,
        spec: NormSpec,
        scale: &HostTensor,
        bias: &HostTensor,
        dims: &[u32],
    ) -> Result<Val> {
        let (v, _) = self.gpu(&node.input[0])?;
        let weights = scale
            .data
            .iter()
            .chain(&bias.data)
            .map(|&x| x as f32)
            .collect();
        let id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::Normalize(spec)),
            vec![v],
            dims.to_vec(),
            weights,
        );
        Ok(Val::Gpu(id, dims.to_vec()))
    }

    fn layer_norm(&mut self, node: &NodeProto) -> Result<Val> {
        let x = node.input[0].clone();
        let dims = self.dims_of(&x)?;
        let a = axis(attr_int(node, "axis", -1), dims.len())?;
        let eps = attr_float(node, "epsilon", 1e-5);
        let len = numel(&dims[a..]);
        let norm_dims = &dims[a..];
        // Scale and bias broadcast over the normalised dims: expand them to one value each.
        let expand = |t: &HostTensor| -> Result<HostTensor> {
            let zero = HostTensor {
                dims: norm_dims.iter().map(|&d| d as usize).collect(),
                data: vec![0.0; len as usize],
                int: false,
            };
            let e = host_binary(&zero, t, |_, v| v)?;
            if e.data.len() != len as usize {
                bail!("scale or bias of {:?} does not fit {norm_dims:?}", t.dims);
            }
            Ok(e)
        };
        let scale = expand(
            &self
                .constant(node, 1, "the scale")?
                .context("has no scale")?,
        )?;
        let bias = match self.constant(node, 2, "the bias")? {
            Some(b) => expand(&b)?,
            None => HostTensor::vector(vec![0.0; len as usize], false),
        };
        let spec = NormSpec {
            rows: numel(&dims[..a]),
            len,
            channels: 1,
            per_element: true,
            eps,
        };
        let y = self.normalize(node, spec, &scale, &bias, &dims)?;
        // Optional outputs: the mean and 1 / sqrt(var + eps), over the normalised axes (kept).
        let wants = |k: usize| node.output.get(k).is_some_and(|o| !o.is_empty());
        if wants(1) || wants(2) {
            let base = node_name(node);
            let mut stat_dims = dims[..a].to_vec();
            stat_dims.extend(std::iter::repeat_n(1, dims.len() - a));
            let (xv, _) = self.gpu(&x)?;
            let mean_spec = ReduceSpec {
                op: ReduceOp::Mean,
                dims: dims.clone(),
                axes: (a..dims.len()).collect(),
            };
            let mean = self.push(
                format!("{base} (mean)"),
                LayerOp::Tensor(TensorOp::Reduce(mean_spec.clone())),
                vec![xv],
                stat_dims.clone(),
                Vec::new(),
            );
            let d = NdBinarySpec::new(BinaryOp::Sub, &dims, &stat_dims).expect("broadcasts");
            let diff = self.push(
                format!("{base} (centred)"),
                LayerOp::Tensor(TensorOp::Binary {
                    spec: d,
                    constant: None,
                }),
                vec![xv, mean],
                dims.clone(),
                Vec::new(),
            );
            let sq = self.push(
                format!("{base} (var)"),
                LayerOp::Tensor(TensorOp::Reduce(ReduceSpec {
                    op: ReduceOp::SumSquare,
                    ..mean_spec
                })),
                vec![diff],
                stat_dims.clone(),
                Vec::new(),
            );
            let var_eps = self.push(
                format!("{base} (var + eps)"),
                LayerOp::Unary(UnaryOp::Affine {
                    scale: 1.0 / len as f32,
                    offset: eps,
                }),
                vec![sq],
                stat_dims.clone(),
                Vec::new(),
            );
            let root = self.push(
                format!("{base} (std)"),
                LayerOp::Unary(UnaryOp::Sqrt),
                vec![var_eps],
                stat_dims.clone(),
                Vec::new(),
            );
            let inv = self.push(
                format!("{base} (inv std)"),
                LayerOp::Unary(UnaryOp::Reciprocal),
                vec![root],
                stat_dims.clone(),
                Vec::new(),
            );
            self.set(node, 1, Val::Gpu(mean, stat_dims.clone()));
            self.set(node, 2, Val::Gpu(inv, stat_dims));
        }
        Ok(y)
    }
}

/// `node` with 2-D attributes and explicit pads: a 1-D node gains a leading unit axis; auto_pad
/// SAME_UPPER / SAME_LOWER / VALID and ConvTranspose's output_shape become pads for an input of
/// `spatial` (height, width) and a kernel of `kernel`.
fn two_d_node(node: &NodeProto, one_d: bool, spatial: &[u32], kernel: &[i64]) -> Result<NodeProto> {
    let mut n = node.clone();
    let ints = |name: &str, default: i64| -> Vec<i64> {
        let mut v = attr_ints(node, name).unwrap_or_else(|| vec![default; 2 - one_d as usize]);
        if one_d {
            v.insert(0, default);
        }
        v
    };
    let stride = ints("strides", 1);
    let dilation = ints("dilations", 1);
    let mut output_padding = ints("output_padding", 0);
    let mut pads = match attr_ints(node, "pads") {
        Some(p) if one_d && p.len() == 2 => vec![0, p[0], 0, p[1]],
        Some(p) => p,
        None => vec![0; 4],
    };
    let mode = attr(node, "auto_pad").map_or(String::new(), |a| {
        String::from_utf8_lossy(&a.s).into_owned()
    });
    let transpose = node.op_type == "ConvTranspose";
    let output_shape = attr_ints(node, "output_shape").map(|mut v| {
        if one_d {
            v.insert(0, 1);
        }
        v
    });
    if mode.starts_with("SAME") || mode == "VALID" || (transpose && output_shape.is_some()) {
        for a in 0..2 {
            let (len, k, s, d) = (spatial[a] as i64, kernel[a], stride[a], dilation[a]);
            let span = (k - 1) * d + 1;
            let total = if transpose {
                let out = match &output_shape {
                    Some(o) => o[o.len() - 2 + a],
                    None if mode == "VALID" => 0,
                    None => len * s,
                };
                if mode == "VALID" && output_shape.is_none() {
                    0
                } else {
                    s * (len - 1) + output_padding[a] + span - out
                }
            } else if mode == "VALID" {
                0
            } else {
                let out = (len + s - 1) / s;
                ((out - 1) * s + span - len).max(0)
            };
            if total < 0 {
                // A larger output_shape than the kernel reaches: the rest is output padding.
                output_padding[a] -= total;
                pads[a] = 0;
                pads[a + 2] = 0;
                continue;
            }
            // ONNX: SAME_UPPER puts the odd pad at the end; otherwise it goes first.
            let small = total / 2;
            let (begin, end) = if mode == "SAME_UPPER" {
                (small, total - small)
            } else {
                (total - small, small)
            };
            pads[a] = begin;
            pads[a + 2] = end;
        }
    }
    n.attribute
        .retain(|a| !matches!(a.name.as_str(), "auto_pad" | "output_shape"));
    for a in &mut n.attribute {
        match a.name.as_str() {
            "kernel_shape" => a.ints = kernel.to_vec(),
            "strides" => a.ints = stride.clone(),
            "dilations" => a.ints = dilation.clone(),
            "output_padding" => a.ints = output_padding.clone(),
            "pads" => a.ints = pads.clone(),
            _ => {}
        }
    }
    if transpose && attr(&n, "output_padding").is_none() {
        n.attribute.push(super::proto::AttributeProto {
            name: "output_padding".into(),
            ints: output_padding,
            r#type: 7,
            ..Default::default()
        });
    }
    if attr(&n, "pads").is_none() {
        n.attribute.push(super::proto::AttributeProto {
            name: "pads".into(),
            ints: pads,
            r#type: 7,
            ..Default::default()
        });
    }
    Ok(n)
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
