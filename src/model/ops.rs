//! The ops of the model IR and their specs: what each layer computes, independent of the
//! kernel that runs it. The kernels read these; nothing here knows about the GPU.

use super::Activation;
use super::shape::{ItemShape, MAX_RANK, broadcast_dims, broadcast_strides, contiguous_strides};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// ReLU is alpha 0.
    LeakyRelu {
        alpha: f32,
    },
    Clip {
        min: f32,
        max: f32,
    },
    Sigmoid,
    Tanh,
    HardSwish,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// The exact (erf) form.
    Gelu,
    Erf,
    /// Gelu with ONNX's `approximate="tanh"`.
    GeluTanh,
    /// `x * scale + offset`: Add, Sub, Mul, Div by a scalar constant, and Sub from one.
    Affine {
        scale: f32,
        offset: f32,
    },
    Exp,
    Log,
    Sqrt,
    Abs,
    Neg,
    Reciprocal,
    Floor,
    Ceil,
    /// Half to even.
    Round,
    Sign,
    Softplus,
    Softsign,
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    Celu {
        alpha: f32,
    },
    ThresholdedRelu {
        alpha: f32,
    },
    Mish,
    Sin,
    Cos,
    Shrink {
        lambd: f32,
        bias: f32,
    },
    /// Rounds toward zero (integer division, casts to integer types).
    Trunc,
}

impl UnaryOp {
    /// CPU reference in f64.
    pub fn apply(self, x: f32) -> f32 {
        let x = x as f64;
        let y = match self {
            UnaryOp::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    x * alpha as f64
                }
            }
            UnaryOp::Clip { min, max } => x.clamp(min as f64, max as f64),
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            UnaryOp::HardSigmoid { alpha, beta } => {
                (x * alpha as f64 + beta as f64).clamp(0.0, 1.0)
            }
            UnaryOp::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            UnaryOp::Erf => libm::erf(x),
            UnaryOp::GeluTanh => {
                0.5 * x
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
            }
            UnaryOp::Affine { scale, offset } => x * scale as f64 + offset as f64,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Neg => -x,
            UnaryOp::Reciprocal => 1.0 / x,
            UnaryOp::Floor => x.floor(),
            UnaryOp::Ceil => x.ceil(),
            UnaryOp::Round => x.round_ties_even(),
            UnaryOp::Sign => {
                if x == 0.0 {
                    0.0
                } else {
                    x.signum()
                }
            }
            UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            UnaryOp::Softsign => x / (1.0 + x.abs()),
            UnaryOp::Elu { alpha } => elu(x, alpha as f64),
            UnaryOp::Selu { alpha, gamma } => gamma as f64 * elu(x, alpha as f64),
            UnaryOp::Celu { alpha } => {
                let a = alpha as f64;
                x.max(0.0) + (a * ((x / a).exp() - 1.0)).min(0.0)
            }
            UnaryOp::ThresholdedRelu { alpha } => {
                if x > alpha as f64 {
                    x
                } else {
                    0.0
                }
            }
            UnaryOp::Mish => x * (x.max(0.0) + (-x.abs()).exp().ln_1p()).tanh(),
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
            UnaryOp::Shrink { lambd, bias } => {
                let (l, b) = (lambd as f64, bias as f64);
                if x < -l {
                    x + b
                } else if x > l {
                    x - b
                } else {
                    0.0
                }
            }
            UnaryOp::Trunc => x.trunc(),
        };
        y as f32
    }
}

fn elu(x: f64, alpha: f64) -> f64 {
    if x > 0.0 { x } else { alpha * (x.exp() - 1.0) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    /// `a < 0 ? a * b : a`: PRelu with slopes `b`.
    PRelu = 4,
    Pow = 5,
    Max = 6,
    Min = 7,
}

impl BinaryOp {
    /// Every op.
    pub const ALL: [BinaryOp; 8] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::PRelu,
        BinaryOp::Pow,
        BinaryOp::Max,
        BinaryOp::Min,
    ];

    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::PRelu => {
                if a >= 0.0 {
                    a
                } else {
                    a * b
                }
            }
            BinaryOp::Pow => a.powf(b),
            BinaryOp::Max => a.max(b),
            BinaryOp::Min => a.min(b),
        }
    }
}

/// The shape of a convolution, independent of the input size.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dSpec {
    pub in_c: u32,
    pub out_c: u32,
    pub k_h: u32,
    pub k_w: u32,
    pub stride: [u32; 2],
    /// top, left, bottom, right
    pub pads: [u32; 4],
    pub dilation: [u32; 2],
    pub groups: u32,
    pub activation: Activation,
}

impl Conv2dSpec {
    /// Output height and width for an input of `in_h x in_w`, or `None` if the kernel does not fit.
    pub fn output_hw(&self, in_h: u32, in_w: u32) -> Option<(u32, u32)> {
        let span_h = self.dilation[0] * (self.k_h - 1) + 1;
        let span_w = self.dilation[1] * (self.k_w - 1) + 1;
        let padded_h = in_h + self.pads[0] + self.pads[2];
        let padded_w = in_w + self.pads[1] + self.pads[3];
        if padded_h < span_h || padded_w < span_w {
            return None;
        }
        Some((
            (padded_h - span_h) / self.stride[0] + 1,
            (padded_w - span_w) / self.stride[1] + 1,
        ))
    }

    /// Multiply-adds for one item of `in_h x in_w`.
    pub fn macs(&self, in_h: u32, in_w: u32) -> u64 {
        let (oh, ow) = self.output_hw(in_h, in_w).unwrap_or((0, 0));
        oh as u64
            * ow as u64
            * self.out_c as u64
            * (self.in_c / self.groups) as u64
            * (self.k_h * self.k_w) as u64
    }

    /// One input and one output channel per group: the depthwise kernel runs it.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_c && self.groups == self.out_c
    }
}

/// Where a fused residual Add goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Residual {
    /// `act(conv + skip)`: an Add followed by the activation.
    BeforeActivation = 1,
    /// `act(conv) + skip`: an activation followed by the Add.
    AfterActivation = 2,
}

/// The shape of a transposed convolution, independent of the input size.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose2dSpec {
    pub in_c: u32,
    pub out_c: u32,
    pub k_h: u32,
    pub k_w: u32,
    pub stride: [u32; 2],
    /// top, left, bottom, right
    pub pads: [u32; 4],
    pub dilation: [u32; 2],
    /// Extra rows and columns added at the bottom and right of the output.
    pub output_padding: [u32; 2],
    pub groups: u32,
    pub activation: Activation,
}

impl ConvTranspose2dSpec {
    pub fn output_hw(&self, in_h: u32, in_w: u32) -> Option<(u32, u32)> {
        let full = |i: u32, s: u32, d: u32, k: u32, op: u32| {
            Some((i.checked_sub(1)? * s + d * (k - 1) + 1 + op) as i64)
        };
        let h = full(
            in_h,
            self.stride[0],
            self.dilation[0],
            self.k_h,
            self.output_padding[0],
        )? - (self.pads[0] + self.pads[2]) as i64;
        let w = full(
            in_w,
            self.stride[1],
            self.dilation[1],
            self.k_w,
            self.output_padding[1],
        )? - (self.pads[1] + self.pads[3]) as i64;
        (h > 0 && w > 0).then_some((h as u32, w as u32))
    }

    pub fn macs(&self, in_h: u32, in_w: u32) -> u64 {
        in_h as u64
            * in_w as u64
            * self.in_c as u64
            * (self.out_c / self.groups) as u64
            * (self.k_h * self.k_w) as u64
    }
}

/// The shape of a DepthToSpace, independent of the input size.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthToSpaceSpec {
    pub block: [u32; 2],
    /// ONNX mode CRD (true) or DCR (false).
    pub crd: bool,
    /// Rows and columns dropped at the bottom and right of the output.
    pub crop: [u32; 2],
}

impl DepthToSpaceSpec {
    /// Output channels, height and width for an input of `c x h x w`.
    pub fn output_chw(&self, c: u32, h: u32, w: u32) -> Option<(u32, u32, u32)> {
        let b = self.block[0] * self.block[1];
        let (oh, ow) = (h * self.block[0], w * self.block[1]);
        (c.is_multiple_of(b) && oh > self.crop[0] && ow > self.crop[1])
            .then(|| (c / b, oh - self.crop[0], ow - self.crop[1]))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Constant = 0,
    Edge = 1,
    Reflect = 2,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PadSpec {
    /// Before and after, for channels, height, width.
    pub channels: [u32; 2],
    pub height: [u32; 2],
    pub width: [u32; 2],
    pub mode: PadMode,
    pub value: f32,
}

impl PadSpec {
    pub fn output(&self, s: ItemShape) -> ItemShape {
        ItemShape {
            c: s.c + self.channels[0] + self.channels[1],
            h: s.h + self.height[0] + self.height[1],
            w: s.w + self.width[0] + self.width[1],
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pool2dSpec {
    pub average: bool,
    pub k: [u32; 2],
    pub stride: [u32; 2],
    /// top, left, bottom, right
    pub pads: [u32; 4],
    pub dilation: [u32; 2],
    pub ceil_mode: bool,
    pub count_include_pad: bool,
}

impl Pool2dSpec {
    pub fn output_hw(&self, h: u32, w: u32) -> Option<(u32, u32)> {
        let axis = |len: u32, k: u32, s: u32, d: u32, a: u32, b: u32| {
            let span = d * (k - 1) + 1;
            let padded = len + a + b;
            if padded < span {
                return None;
            }
            let steps = padded - span;
            let mut out = if self.ceil_mode {
                steps.div_ceil(s) + 1
            } else {
                steps / s + 1
            };
            // ONNX: the last window must start inside the input or its left padding.
            if self.ceil_mode && (out - 1) * s >= len + a {
                out -= 1;
            }
            Some(out)
        };
        Some((
            axis(
                h,
                self.k[0],
                self.stride[0],
                self.dilation[0],
                self.pads[0],
                self.pads[2],
            )?,
            axis(
                w,
                self.k[1],
                self.stride[1],
                self.dilation[1],
                self.pads[1],
                self.pads[3],
            )?,
        ))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coords {
    HalfPixel = 0,
    PytorchHalfPixel = 1,
    AlignCorners = 2,
    Asymmetric = 3,
    /// Half pixel about the image centre when the output rounds to whole pixels.
    HalfPixelSymmetric = 4,
}

/// Output size: fixed, the input size times a scale, or (ONNX's keep_aspect_ratio_policy) one
/// scale for both axes that fits the size from inside (`not_larger`) or outside (`not_smaller`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    Size([u32; 2]),
    Scale([f32; 2]),
    Fit { size: [u32; 2], not_smaller: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestMode {
    RoundPreferFloor = 0,
    RoundPreferCeil = 1,
    Floor = 2,
    Ceil = 3,
}

impl NearestMode {
    pub fn index(self, x: f64, len: u32) -> usize {
        let i = match self {
            NearestMode::RoundPreferFloor if x.fract() == 0.5 => x.floor(),
            NearestMode::RoundPreferCeil if x.fract() == 0.5 => x.ceil(),
            NearestMode::RoundPreferFloor | NearestMode::RoundPreferCeil => x.round(),
            NearestMode::Floor => x.floor(),
            NearestMode::Ceil => x.ceil(),
        };
        i.clamp(0.0, len as f64 - 1.0) as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Filter {
    /// Nearest neighbour with ONNX's `nearest_mode`.
    Nearest(NearestMode),
    Linear,
    /// Keys' cubic with ONNX's `cubic_coeff_a` (-0.75 by default); `exclude_outside`: taps
    /// outside the image get weight 0 and the others are renormalised.
    Cubic {
        a: f32,
        exclude_outside: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResizeFilterSpec {
    pub target: Target,
    pub coords: Coords,
    pub filter: Filter,
}

impl ResizeFilterSpec {
    pub fn output_hw(&self, h: u32, w: u32) -> (u32, u32) {
        match self.target {
            Target::Size(s) => (s[0], s[1]),
            Target::Scale([sh, sw]) => ((h as f32 * sh) as u32, (w as f32 * sw) as u32),
            Target::Fit { .. } => {
                let [s, _] = self.scales(h, w);
                ((h as f32 * s).round() as u32, (w as f32 * s).round() as u32)
            }
        }
    }

    /// The scale the coordinate transform divides by: as given, out / in for sizes (ONNX), or
    /// the one fitting scale.
    pub fn scales(&self, h: u32, w: u32) -> [f32; 2] {
        match self.target {
            Target::Scale(s) => s,
            Target::Size([oh, ow]) => [oh as f32 / h as f32, ow as f32 / w as f32],
            Target::Fit { size, not_smaller } => {
                let (a, b) = (size[0] as f32 / h as f32, size[1] as f32 / w as f32);
                let s = if not_smaller { a.max(b) } else { a.min(b) };
                [s, s]
            }
        }
    }
}

/// For every index `i` of `dims`: `dst[dst_offset + i . dst_strides] = src[src_offset + i . src_strides]`.
/// Strides may be 0 (broadcast) or negative (a Slice with a negative step).
#[derive(Clone, Debug, PartialEq)]
pub struct CopySpec {
    pub dims: Vec<u32>,
    pub src_strides: Vec<i64>,
    pub src_offset: i64,
    pub dst_strides: Vec<i64>,
    pub dst_offset: i64,
}

impl CopySpec {
    /// A contiguous copy of `count` elements (Reshape, Flatten, Squeeze, Identity).
    pub fn contiguous(count: u32) -> Self {
        Self {
            dims: vec![count],
            src_strides: vec![1],
            src_offset: 0,
            dst_strides: vec![1],
            dst_offset: 0,
        }
    }

    pub fn count(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product()
    }

    /// Drops axes of size 1 and merges axes that are contiguous in both source and destination,
    /// so that up to `MAX_RANK` kernel dims cover specs of higher rank.
    pub fn simplified(&self) -> Self {
        let mut dims: Vec<u32> = Vec::new();
        let mut ss: Vec<i64> = Vec::new();
        let mut ds: Vec<i64> = Vec::new();
        for k in 0..self.dims.len() {
            let (n, s, d) = (self.dims[k], self.src_strides[k], self.dst_strides[k]);
            if n == 1 {
                continue;
            }
            if let (Some(&pn), Some(&ps), Some(&pd)) = (dims.last(), ss.last(), ds.last())
                && ps == s * n as i64
                && pd == d * n as i64
            {
                *dims.last_mut().expect("non-empty") = pn * n;
                *ss.last_mut().expect("non-empty") = s;
                *ds.last_mut().expect("non-empty") = d;
                continue;
            }
            dims.push(n);
            ss.push(s);
            ds.push(d);
        }
        Self {
            dims,
            src_strides: ss,
            src_offset: self.src_offset,
            dst_strides: ds,
            dst_offset: self.dst_offset,
        }
    }
}

/// `out = a op b` over `dims`, each input read through its strides (0 where it broadcasts).
#[derive(Clone, Debug, PartialEq)]
pub struct NdBinarySpec {
    pub op: BinaryOp,
    pub dims: Vec<u32>,
    pub a_strides: Vec<u32>,
    pub b_strides: Vec<u32>,
}

impl NdBinarySpec {
    pub fn new(op: BinaryOp, a: &[u32], b: &[u32]) -> Option<Self> {
        let dims = broadcast_dims(a, b)?;
        (dims.len() <= MAX_RANK).then(|| Self {
            op,
            a_strides: broadcast_strides(a, &dims),
            b_strides: broadcast_strides(b, &dims),
            dims,
        })
    }

    pub fn count(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum = 0,
    Mean = 1,
    Max = 2,
    Min = 3,
    Prod = 4,
    SumSquare = 5,
    L1 = 6,
    L2 = 7,
    LogSum = 8,
    LogSumExp = 9,
}

impl ReduceOp {
    pub const ALL: [ReduceOp; 10] = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::Prod,
        ReduceOp::SumSquare,
        ReduceOp::L1,
        ReduceOp::L2,
        ReduceOp::LogSum,
        ReduceOp::LogSumExp,
    ];

    /// CPU reference in f64.
    pub fn apply(self, xs: &[f32]) -> f32 {
        let x = xs.iter().map(|&v| v as f64);
        let n = xs.len() as f64;
        let y = match self {
            ReduceOp::Sum => x.sum(),
            ReduceOp::Mean => x.sum::<f64>() / n,
            ReduceOp::Max => x.fold(f64::MIN, f64::max),
            ReduceOp::Min => x.fold(f64::MAX, f64::min),
            ReduceOp::Prod => x.product(),
            ReduceOp::SumSquare => x.map(|v| v * v).sum(),
            ReduceOp::L1 => x.map(f64::abs).sum(),
            ReduceOp::L2 => x.map(|v| v * v).sum::<f64>().sqrt(),
            ReduceOp::LogSum => x.sum::<f64>().ln(),
            ReduceOp::LogSumExp => {
                let m = xs.iter().fold(f64::MIN, |a, &v| a.max(v as f64));
                xs.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() + m
            }
        };
        y as f32
    }
}

/// An op across the channels at each pixel of an image (`LayerOp::AcrossChannels`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AcrossChannels {
    /// The channels reduced to one: `[C, H, W] -> [1, H, W]` (ReduceMean over axis 1, ...).
    Reduce(ReduceOp),
    /// Each pixel's channels to mean 0 and variance 1: `(x - mean) / sqrt(var + epsilon)`, the
    /// mean and (biased) variance over the channels (a layer norm over the channels).
    Normalize { epsilon: f32 },
}

impl AcrossChannels {
    /// The output's shape for an input of shape `s`.
    pub fn output(self, s: ItemShape) -> ItemShape {
        match self {
            AcrossChannels::Reduce(_) => ItemShape { c: 1, ..s },
            AcrossChannels::Normalize { .. } => s,
        }
    }
}

/// A reduction of a tensor of shape `dims` over `axes`; the output keeps the other axes in order
/// (keepdims only changes the output's nominal shape, not its elements).
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceSpec {
    pub op: ReduceOp,
    pub dims: Vec<u32>,
    pub axes: Vec<usize>,
}

impl ReduceSpec {
    pub fn split(&self) -> [(Vec<u32>, Vec<u32>); 2] {
        let strides = contiguous_strides(&self.dims);
        let mut kept = (Vec::new(), Vec::new());
        let mut reduced = (Vec::new(), Vec::new());
        for (k, (&d, &s)) in self.dims.iter().zip(&strides).enumerate() {
            let to = if self.axes.contains(&k) {
                &mut reduced
            } else {
                &mut kept
            };
            to.0.push(d);
            to.1.push(s);
        }
        [kept, reduced]
    }

    /// Elements of the output.
    pub fn count(&self) -> u32 {
        self.split()[0].0.iter().product()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftmaxKind {
    Softmax = 0,
    LogSoftmax = 1,
    /// 1 at the first maximum of the row, 0 elsewhere.
    Hardmax = 2,
}

/// The tensor seen as `[outer, len, inner]`, normalised along `len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct SoftmaxSpec {
    pub outer: u32,
    pub len: u32,
    pub inner: u32,
    pub kind: u32,
}

impl SoftmaxSpec {
    /// Softmax of `dims` along `axis` (opset 13 and later).
    pub fn along(kind: SoftmaxKind, dims: &[u32], axis: usize) -> Self {
        Self {
            outer: dims[..axis].iter().product(),
            len: dims[axis],
            inner: dims[axis + 1..].iter().product(),
            kind: kind as u32,
        }
    }
}

/// `out[b, i, j] = alpha * sum_k A[b, i, k] * B[b, k, j]` over up to 4 batch dims; A and B are
/// read through strides, so transposed operands need no copy.
#[derive(Clone, Debug, PartialEq)]
pub struct MatMulSpec {
    /// Output batch dims (at most 4).
    pub batch: Vec<u32>,
    pub a_batch: Vec<u32>,
    pub b_batch: Vec<u32>,
    pub m: u32,
    pub k: u32,
    pub n: u32,
    /// A's strides along i and k.
    pub a_row: u32,
    pub a_col: u32,
    /// B's strides along k and j.
    pub b_row: u32,
    pub b_col: u32,
    pub alpha: f32,
}

impl MatMulSpec {
    /// numpy `matmul` of `a` (`[.., M, K]`) and `b` (`[.., K, N]`), both of rank >= 2.
    pub fn matmul(a: &[u32], b: &[u32]) -> Option<Self> {
        let (ra, rb) = (a.len(), b.len());
        if ra < 2 || rb < 2 || a[ra - 1] != b[rb - 2] {
            return None;
        }
        let (ab, bb) = (&a[..ra - 2], &b[..rb - 2]);
        let batch = broadcast_dims(ab, bb)?;
        if batch.len() > 4 {
            return None;
        }
        let (m, k, n) = (a[ra - 2], a[ra - 1], b[rb - 1]);
        let stride = |own: &[u32], per: u32| -> Vec<u32> {
            let full: Vec<u32> = broadcast_strides(own, &batch);
            full.iter().map(|s| s * per).collect()
        };
        Some(Self {
            a_batch: stride(ab, m * k),
            b_batch: stride(bb, k * n),
            batch,
            m,
            k,
            n,
            a_row: k,
            a_col: 1,
            b_row: n,
            b_col: 1,
            alpha: 1.0,
        })
    }

    pub fn count(&self) -> u32 {
        self.batch.iter().product::<u32>() * self.m * self.n
    }
}

/// Each item is `rows` rows of `len` elements, normalised to zero mean and unit variance, then
/// scaled and shifted: per channel (`row % channels`) or per element of the row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormSpec {
    pub rows: u32,
    pub len: u32,
    pub channels: u32,
    pub per_element: bool,
    pub eps: f32,
}

impl NormSpec {
    /// How many scale (and bias) values the spec reads.
    pub fn affine_len(&self) -> usize {
        if self.per_element {
            self.len as usize
        } else {
            self.channels as usize
        }
    }
}
