//! Values of the translator: tensors known at import, free dims, and shape helpers.

use anyhow::{Context as _, Result, bail};

use crate::model::BinaryOp;
use crate::model::NdBinarySpec;
use crate::model::ReduceOp;
use crate::model::contiguous_strides;
use crate::model::{ItemShape, Layer, LayerOp, ValueId};
use crate::onnx::proto::{NodeProto, TensorProto, data_type};

/// A tensor known at import: initializers, Constant nodes, folded shape arithmetic.
#[derive(Clone, Debug)]
pub(crate) struct HostTensor {
    pub(crate) dims: Vec<usize>,
    pub(crate) data: Vec<f64>,
    /// An integer or bool tensor (Div truncates, Cast keeps the type apart).
    pub(crate) int: bool,
}

impl HostTensor {
    pub(crate) fn ints(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }

    pub(crate) fn scalar(v: f64, int: bool) -> Self {
        Self {
            dims: Vec::new(),
            data: vec![v],
            int,
        }
    }

    pub(crate) fn vector(v: Vec<f64>, int: bool) -> Self {
        Self {
            dims: vec![v.len()],
            data: v,
            int,
        }
    }

    /// The same elements under other dims.
    pub(crate) fn with_dims(&self, dims: Vec<usize>, data: Vec<f64>) -> Self {
        Self {
            dims,
            data,
            int: self.int,
        }
    }
}

pub(crate) fn host_tensor(t: &TensorProto) -> Result<HostTensor> {
    crate::onnx::refuse_external(t)?;
    let raw = &t.raw_data;
    let from_raw = |size: usize, f: &dyn Fn(&[u8]) -> f64| -> Vec<f64> {
        raw.chunks_exact(size).map(f).collect()
    };
    let data: Vec<f64> = match t.data_type {
        data_type::FLOAT | data_type::FLOAT16 | data_type::DOUBLE => crate::onnx::tensor_to_f32(t)?
            .data
            .iter()
            .map(|&v| v as f64)
            .collect(),
        data_type::INT64 | data_type::INT32 => crate::onnx::tensor_to_i64(t)?
            .iter()
            .map(|&v| v as f64)
            .collect(),
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
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("tensor {} has a negative dim in {:?}", t.name, t.dims))?;
    let count = checked_count(&dims)
        .with_context(|| format!("tensor {} has dims {:?}, too many elements", t.name, t.dims))?;
    if count != data.len() {
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

/// One dimension of a value: known at import, or free (the batch, and the sizes that follow the
/// input's height and width, which the engine works out per batch at run time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dim {
    Fixed(u32),
    Free,
}

impl Dim {
    pub(crate) fn fixed(self) -> Option<u32> {
        match self {
            Dim::Fixed(d) => Some(d),
            Dim::Free => None,
        }
    }

    /// The product of `dims`, free when any of them is.
    pub(crate) fn product(dims: &[Dim]) -> Dim {
        dims.iter()
            .map(|d| d.fixed())
            .product::<Option<u32>>()
            .map_or(Dim::Free, Dim::Fixed)
    }
}

/// A value computed per batch item with free dims: `dims[0]` is the batch, the engine's item is
/// the rest, stored row-major.
#[derive(Clone, Debug)]
pub(crate) struct FreeVal {
    pub(crate) id: ValueId,
    pub(crate) dims: Vec<Dim>,
    /// The engine's channel count of the item (for an image, `dims[1]`).
    pub(crate) c: u32,
    /// Stored flat per item (channels last, or reshaped): not an `[N, C, H, W]` image that the
    /// image ops read.
    pub(crate) flat: bool,
}

impl FreeVal {
    /// The channel count of an image value, or an error saying why there is none.
    pub(crate) fn channels(&self) -> Result<u32> {
        match self.dims.get(1) {
            Some(Dim::Fixed(c)) if !self.flat && self.dims.len() == 4 => Ok(*c),
            _ => bail!(
                "takes [N, C, H, W] images, not a value of dims {:?}",
                self.dims
            ),
        }
    }

    /// An image of the same batch with `c` channels; height and width `hw` (None: free).
    pub(crate) fn image(c: u32, hw: Option<(u32, u32)>) -> Self {
        let (h, w) = hw.map_or((Dim::Free, Dim::Free), |(h, w)| {
            (Dim::Fixed(h), Dim::Fixed(w))
        });
        Self {
            id: 0,
            dims: vec![Dim::Free, Dim::Fixed(c), h, w],
            c,
            flat: false,
        }
    }

    /// Height and width when both are known.
    pub(crate) fn hw(&self) -> Option<(u32, u32)> {
        Some((self.dims.get(2)?.fixed()?, self.dims.get(3)?.fixed()?))
    }
}

/// numpy broadcasting of free dims: a 1 takes the other side's dim; two free dims are taken to
/// agree (the engine checks the sizes at run time).
pub(crate) fn broadcast_free(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>> {
    let r = a.len().max(b.len());
    let at = |d: &[Dim], k: usize| (k + d.len()).checked_sub(r).map_or(Dim::Fixed(1), |i| d[i]);
    (0..r)
        .map(|k| match (at(a, k), at(b, k)) {
            (Dim::Fixed(1), d) | (d, Dim::Fixed(1)) => Ok(d),
            (Dim::Fixed(x), Dim::Fixed(y)) if x != y => {
                bail!("dims {a:?} and {b:?} do not broadcast")
            }
            (Dim::Fixed(x), _) | (_, Dim::Fixed(x)) => Ok(Dim::Fixed(x)),
            (Dim::Free, Dim::Free) => Ok(Dim::Free),
        })
        .collect()
}

/// A weightless layer; the caller sets its output (see [`Lowering::push_free`]).
pub(crate) fn plain_layer(name: String, op: LayerOp, inputs: Vec<ValueId>) -> Layer {
    Layer {
        name,
        op,
        inputs,
        output: 0,
        weights: Vec::new(),
        bias: Vec::new(),
    }
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

/// Elements of a tensor of `dims`, saturating at `u32::MAX` (the limits refuse such a value).
pub(crate) fn numel(dims: &[u32]) -> u32 {
    dims.iter().fold(1u32, |n, &d| n.saturating_mul(d))
}

/// The most elements a tensor computed on the host (folded constants) may hold.
pub(crate) const MAX_HOST_ELEMENTS: usize = 1 << 24;

/// Elements of a host tensor of `dims`, when at most [`MAX_HOST_ELEMENTS`].
pub(crate) fn checked_count(dims: &[usize]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_HOST_ELEMENTS)
}

/// A negative axis counted from the end, checked against the rank.
pub(crate) fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let fixed = if a < 0 { a + r } else { a };
    if !(0..r).contains(&fixed) {
        bail!("axis {a} is out of range for rank {rank}");
    }
    Ok(fixed as usize)
}

pub(crate) fn binary_op(op: &str) -> Option<BinaryOp> {
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

pub(crate) fn reduce_op(op: &str) -> Option<ReduceOp> {
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
pub(crate) fn host_binary(
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
pub(crate) fn input(node: &NodeProto, i: usize) -> Result<&str> {
    node.input
        .get(i)
        .filter(|n| !n.is_empty())
        .map(String::as_str)
        .with_context(|| format!("has no input {i}"))
}

/// Row-major strides as i64.
pub(crate) fn strides_i64(dims: &[u32]) -> Vec<i64> {
    contiguous_strides(dims).iter().map(|&s| s as i64).collect()
}

/// The item shape of a constant that broadcasts against `[N, C, H, W]` values (numpy rules: its
/// dims align to the right), shared by every item of a batch.
pub(crate) fn constant_item_shape(dims: &[i64]) -> Result<ItemShape> {
    if dims.len() > 4 || (dims.len() == 4 && dims[0] != 1) {
        bail!("a constant of shape {dims:?} does not broadcast over [N, C, H, W] items");
    }
    let mut d = vec![1i64; 4 - dims.len()];
    d.extend(dims);
    Ok(ItemShape {
        c: d[1] as u32,
        h: d[2] as u32,
        w: d[3] as u32,
    })
}
