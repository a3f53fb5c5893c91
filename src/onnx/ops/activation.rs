//! Activations and elementwise functions of one input: the ONNX node as a [`UnaryOp`], the one
//! translation for free and fixed dims alike (so both take every function the unary kernel runs);
//! PRelu and Clip.

use anyhow::{Context as _, Result, bail};

use crate::model::{BinaryOp, UnaryOp};
use crate::onnx::lowering::{Lowering, input};
use crate::onnx::proto::NodeProto;
use crate::onnx::{attr, attr_float};

/// `node` as one [`UnaryOp`] with its attributes; `Ok(None)` for ops that are not a function of
/// one input (Clip, whose bounds are inputs, is not one here); an error for attribute values
/// batchwise does not compute (running them as something else would be silently wrong).
pub fn unary_op(node: &NodeProto) -> Result<Option<UnaryOp>> {
    let a = |name, default| attr_float(node, name, default);
    Ok(Some(match node.op_type.as_str() {
        "Relu" => UnaryOp::LeakyRelu { alpha: 0.0 },
        "LeakyRelu" => UnaryOp::LeakyRelu {
            alpha: a("alpha", 0.01),
        },
        "Sigmoid" => UnaryOp::Sigmoid,
        "Tanh" => UnaryOp::Tanh,
        "HardSwish" => UnaryOp::HardSwish,
        "HardSigmoid" => UnaryOp::HardSigmoid {
            alpha: a("alpha", 0.2),
            beta: a("beta", 0.5),
        },
        "Gelu" => match attr(node, "approximate").map(|x| x.s.as_slice()) {
            None | Some(b"none") => UnaryOp::Gelu,
            Some(b"tanh") => UnaryOp::GeluTanh,
            Some(other) => bail!(
                "Gelu approximate=\"{}\" is not supported (\"none\" and \"tanh\" are)",
                String::from_utf8_lossy(other)
            ),
        },
        "Erf" => UnaryOp::Erf,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Sqrt" => UnaryOp::Sqrt,
        "Abs" => UnaryOp::Abs,
        "Neg" => UnaryOp::Neg,
        "Reciprocal" => UnaryOp::Reciprocal,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Round" => UnaryOp::Round,
        "Sign" => UnaryOp::Sign,
        "Softplus" => UnaryOp::Softplus,
        "Softsign" => UnaryOp::Softsign,
        "Elu" => UnaryOp::Elu {
            alpha: a("alpha", 1.0),
        },
        "Selu" => UnaryOp::Selu {
            alpha: a("alpha", 1.673_263_2),
            gamma: a("gamma", 1.050_701),
        },
        "Celu" => UnaryOp::Celu {
            alpha: a("alpha", 1.0),
        },
        "ThresholdedRelu" => UnaryOp::ThresholdedRelu {
            alpha: a("alpha", 1.0),
        },
        "Mish" => UnaryOp::Mish,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Shrink" => UnaryOp::Shrink {
            lambd: a("lambd", 0.5),
            bias: a("bias", 0.0),
        },
        _ => return Ok(None),
    }))
}

impl Lowering<'_> {
    /// Every op [`unary_op`] maps (activations and elementwise functions of one input).
    pub(crate) fn lower_unary(&mut self, node: &NodeProto, u: UnaryOp) -> Result<()> {
        let v = self.unary(node, input(node, 0)?, u)?;
        self.set(node, 0, v);
        Ok(())
    }

    /// ONNX PRelu: a binary op, the slope broadcast.
    pub(crate) fn lower_prelu(&mut self, node: &NodeProto) -> Result<()> {
        let v = self.binary(node, input(node, 0)?, input(node, 1)?, BinaryOp::PRelu)?;
        self.set(node, 0, v);
        Ok(())
    }

    /// ONNX Clip.
    pub(crate) fn lower_clip(&mut self, node: &NodeProto) -> Result<()> {
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
        let v = self.unary(node, input(node, 0)?, UnaryOp::Clip { min, max })?;
        self.set(node, 0, v);
        Ok(())
    }
}
