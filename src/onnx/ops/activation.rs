//! Activations and elementwise functions of one input: the ONNX node as a [`UnaryOp`], the one
//! translation both lowerings use (so both take every function the unary kernel runs).

use anyhow::{Result, bail};

use crate::model::UnaryOp;
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

// Free sizes: the image lowering.

use std::collections::HashMap;

use anyhow::Context as _;

use crate::model::{Layer, LayerOp};
use crate::onnx::image::{ImageLowering, constant_item_shape};
use crate::onnx::proto::TensorProto;
use crate::onnx::{node_name, tensor_to_f32};

impl ImageLowering<'_> {
    /// An activation or elementwise function of one input: one layer; `passes::fuse_activation`
    /// runs ReLU / LeakyReLU inside the convolution before it where it can.
    pub(crate) fn lower_unary(&mut self, node: &NodeProto, op: UnaryOp) -> Result<()> {
        let first = node.input.first().context("has no input")?;
        let input = self.value_of(first)?;
        let c = self.channels[input];
        self.push_plain(node, LayerOp::Unary(op), vec![input], c);
        Ok(())
    }

    pub(crate) fn lower_clip(&mut self, node: &NodeProto) -> Result<()> {
        // A layer of its own; `passes::fuse_activation` runs it inside the convolution before it
        // where it can.
        let (min, max) = clip_bounds(node, &self.initializers)?;
        let input = self.value_of(&node.input[0])?;
        let c = self.channels[input];
        self.push_plain(
            node,
            LayerOp::Unary(UnaryOp::Clip { min, max }),
            vec![input],
            c,
        );
        Ok(())
    }

    pub(crate) fn lower_prelu(&mut self, node: &NodeProto) -> Result<()> {
        // Its slopes as a constant operand, broadcast; fused like an activation where there is
        // one slope per channel.
        let input = self.value_of(&node.input[0])?;
        let slope_name = node.input.get(1).context("has no slope")?;
        let w = self
            .initializers
            .get(slope_name.as_str())
            .with_context(|| format!("slope {slope_name} is not a constant"))
            .and_then(|t| tensor_to_f32(t))?;
        let constant = constant_item_shape(&w.dims)?;
        let output = self.channels.len();
        self.channels.push(self.channels[input]);
        self.values.insert(node.output[0].clone(), output);
        self.layers.push(Layer {
            name: node_name(node),
            op: LayerOp::BinaryConst {
                op: crate::model::BinaryOp::PRelu,
                constant,
                constant_first: false,
            },
            inputs: vec![input],
            output,
            weights: w.data,
            bias: Vec::new(),
        });
        Ok(())
    }
}

/// Clip's bounds: attributes before opset 11, constant inputs 1 and 2 after (empty = unbounded).
fn clip_bounds(node: &NodeProto, initializers: &HashMap<&str, &TensorProto>) -> Result<(f32, f32)> {
    let bound = |i: usize, attr_name: &str, default: f32| -> Result<f32> {
        match node.input.get(i).filter(|n| !n.is_empty()) {
            Some(name) => {
                let t = initializers
                    .get(name.as_str())
                    .with_context(|| format!("Clip bound {name} is not a constant"))?;
                tensor_to_f32(t)?
                    .data
                    .first()
                    .copied()
                    .with_context(|| format!("Clip bound {name} is empty"))
            }
            None => Ok(attr_float(node, attr_name, default)),
        }
    };
    Ok((bound(1, "min", f32::MIN)?, bound(2, "max", f32::MAX)?))
}

// Fixed shapes: static_graph::Lowering.

/// Activations and unary functions; PRelu and Clip.
///
/// The fixed-shape translator's part: methods of [`Lowering`], which
/// `Lowering::lower_node` (`onnx/static_graph.rs`) calls by op type.
mod fixed_shapes {
    use anyhow::{Context as _, Result};

    use crate::model::{BinaryOp, UnaryOp};
    use crate::onnx::attr_float;
    use crate::onnx::proto::NodeProto;
    use crate::onnx::static_graph::{Lowering, input};

    impl Lowering<'_> {
        /// Every op [`super::unary_op`] maps (activations and elementwise functions of one input).
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
}
