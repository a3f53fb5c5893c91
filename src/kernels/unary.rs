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
}

impl UnaryOp {
    fn encode(self) -> (u32, f32, f32) {
        match self {
            UnaryOp::LeakyRelu { alpha } => (0, alpha, 0.0),
            UnaryOp::Clip { min, max } => (1, min, max),
            UnaryOp::Sigmoid => (2, 0.0, 0.0),
            UnaryOp::Tanh => (3, 0.0, 0.0),
            UnaryOp::HardSwish => (4, 0.0, 0.0),
            UnaryOp::HardSigmoid { alpha, beta } => (5, alpha, beta),
            UnaryOp::Gelu => (6, 0.0, 0.0),
            UnaryOp::Erf => (7, 0.0, 0.0),
            UnaryOp::GeluTanh => (9, 0.0, 0.0),
            UnaryOp::Affine { scale, offset } => (8, scale, offset),
        }
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
        };
        y as f32
    }
}

/// Mirror of `Params` in shaders/unary.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct UnaryParams {
    pub op: u32,
    pub channels: u32,
    pub h: u32,
    pub w: u32,
    pub alpha: f32,
    pub beta: f32,
    pub _pad: [u32; 2],
}

#[allow(clippy::too_many_arguments)]
pub fn prepare(
    gpu: &Gpu,
    pipeline: &wgpu::ComputePipeline,
    label: &str,
    op: UnaryOp,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    channels: u32,
    h: u32,
    w: u32,
) -> Step {
    let (code, alpha, beta) = op.encode();
    let params = UnaryParams {
        op: code,
        channels,
        h,
        w,
        alpha,
        beta,
        _pad: [0; 2],
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        [w.div_ceil(16), h.div_ceil(4)],
        channels,
    )
}
