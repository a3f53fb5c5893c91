//! The unary ops' codes in `shaders/unary.wgsl`, whose functions every generated elementwise
//! kernel includes (`kernels::elementwise`; a lone Unary layer runs as a program of one step).

use crate::model::UnaryOp;

impl UnaryOp {
    /// The shader's `(op, alpha, beta, gamma)`.
    pub(crate) fn encode(self) -> (u32, f32, f32, f32) {
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
}
