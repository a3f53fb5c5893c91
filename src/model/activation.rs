//! The activation a convolution kernel applies to what it computes (`Conv2dSpec::activation`):
//! the fused form of some elementwise ops (`passes::fuse_activation`).

use super::UnaryOp;

/// An activation fused into the kernel that produces a value.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Activation {
    #[default]
    None,
    /// `x < 0 ? alpha * x : x`; ReLU is `alpha = 0`.
    LeakyRelu { alpha: f32 },
    /// `clamp(x, min, max)`.
    Clip { min: f32, max: f32 },
    /// `x < 0 ? slopes[channel] * x : x` (conv2d only).
    PRelu { slopes: Vec<f32> },
    /// `x * clamp(x / 6 + 1/2, 0, 1)` (MobileNetV3's).
    HardSwish,
}

impl Activation {
    /// The fused form of an elementwise op, where it has one.
    pub fn from_unary(op: UnaryOp) -> Option<Self> {
        match op {
            UnaryOp::LeakyRelu { alpha } => Some(Activation::LeakyRelu { alpha }),
            UnaryOp::Clip { min, max } => Some(Activation::Clip { min, max }),
            UnaryOp::HardSwish => Some(Activation::HardSwish),
            _ => None,
        }
    }

    /// Applies the activation to `x` of output channel `channel`.
    pub fn apply(&self, x: f32, channel: usize) -> f32 {
        let leaky = |alpha: f32| if x >= 0.0 { x } else { x * alpha };
        match self {
            Activation::None => x,
            Activation::LeakyRelu { alpha } => leaky(*alpha),
            Activation::Clip { min, max } => x.clamp(*min, *max),
            Activation::PRelu { slopes } => leaky(slopes[channel]),
            Activation::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        }
    }
}
