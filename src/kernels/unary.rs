//! Elementwise activations and affine maps (`shaders/unary.wgsl`).

use super::Step;
use crate::gpu::Gpu;

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
    /// The shader's `(op, alpha, beta, gamma)`.
    fn encode(self) -> (u32, f32, f32, f32) {
        let plain = |code| (code, 0.0, 0.0, 0.0);
        match self {
            UnaryOp::LeakyRelu { alpha } => (0, alpha, 0.0, 0.0),
            UnaryOp::Clip { min, max } => (1, min, max, 0.0),
            UnaryOp::Sigmoid => plain(2),
            UnaryOp::Tanh => plain(3),
            UnaryOp::HardSwish => plain(4),
            UnaryOp::HardSigmoid { alpha, beta } => (5, alpha, beta, 0.0),
            UnaryOp::Gelu => plain(6),
            UnaryOp::Erf => plain(7),
            UnaryOp::Affine { scale, offset } => (8, scale, offset, 0.0),
            UnaryOp::GeluTanh => plain(9),
            UnaryOp::Exp => plain(10),
            UnaryOp::Log => plain(11),
            UnaryOp::Sqrt => plain(12),
            UnaryOp::Abs => plain(13),
            UnaryOp::Neg => plain(14),
            UnaryOp::Reciprocal => plain(15),
            UnaryOp::Floor => plain(16),
            UnaryOp::Ceil => plain(17),
            UnaryOp::Round => plain(18),
            UnaryOp::Sign => plain(19),
            UnaryOp::Softplus => plain(20),
            UnaryOp::Softsign => plain(21),
            UnaryOp::Elu { alpha } => (22, alpha, 0.0, 0.0),
            UnaryOp::Selu { alpha, gamma } => (23, alpha, 0.0, gamma),
            UnaryOp::Celu { alpha } => (24, alpha, 0.0, 0.0),
            UnaryOp::ThresholdedRelu { alpha } => (25, alpha, 0.0, 0.0),
            UnaryOp::Mish => plain(26),
            UnaryOp::Sin => plain(27),
            UnaryOp::Cos => plain(28),
            UnaryOp::Shrink { lambd, bias } => (29, lambd, bias, 0.0),
            UnaryOp::Trunc => plain(30),
        }
    }

    /// Every op, with typical parameters (for tests).
    pub fn all() -> Vec<UnaryOp> {
        vec![
            UnaryOp::LeakyRelu { alpha: 0.1 },
            UnaryOp::Clip {
                min: -0.5,
                max: 0.7,
            },
            UnaryOp::Sigmoid,
            UnaryOp::Tanh,
            UnaryOp::HardSwish,
            UnaryOp::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            UnaryOp::Gelu,
            UnaryOp::Erf,
            UnaryOp::GeluTanh,
            UnaryOp::Affine {
                scale: 1.5,
                offset: -0.25,
            },
            UnaryOp::Exp,
            UnaryOp::Log,
            UnaryOp::Sqrt,
            UnaryOp::Abs,
            UnaryOp::Neg,
            UnaryOp::Reciprocal,
            UnaryOp::Floor,
            UnaryOp::Ceil,
            UnaryOp::Round,
            UnaryOp::Sign,
            UnaryOp::Softplus,
            UnaryOp::Softsign,
            UnaryOp::Elu { alpha: 0.8 },
            UnaryOp::Selu {
                alpha: 1.67,
                gamma: 1.05,
            },
            UnaryOp::Celu { alpha: 1.3 },
            UnaryOp::ThresholdedRelu { alpha: 0.3 },
            UnaryOp::Mish,
            UnaryOp::Sin,
            UnaryOp::Cos,
            UnaryOp::Shrink {
                lambd: 0.4,
                bias: 0.1,
            },
            UnaryOp::Trunc,
        ]
    }

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

/// Mirror of `Params` in shaders/unary.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct UnaryParams {
    pub op: u32,
    pub count: u32,
    pub alpha: f32,
    pub beta: f32,
    pub gamma: f32,
    pub _pad: [u32; 3],
}

/// Applies `op` to every element of each item of `src` (`count` elements an item).
pub fn prepare(
    gpu: &Gpu,
    pipeline: &wgpu::ComputePipeline,
    label: &str,
    op: UnaryOp,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    count: u32,
) -> Step {
    let (code, alpha, beta, gamma) = op.encode();
    let params = UnaryParams {
        op: code,
        count,
        alpha,
        beta,
        gamma,
        _pad: [0; 3],
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        super::flat_groups(count),
        1,
    )
}
