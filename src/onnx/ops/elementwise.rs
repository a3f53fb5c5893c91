//! Elementwise ops of two inputs: Add, Sub, Mul, Div (those of one input are in `activation`).

// Free sizes: the image lowering.

use anyhow::{Result, bail};

use crate::model::{BinaryOp, Layer, LayerOp, UnaryOp};
use crate::onnx::image::{ImageLowering, constant_item_shape};
use crate::onnx::proto::NodeProto;
use crate::onnx::{node_name, tensor_to_f32};

impl ImageLowering<'_> {
    /// Add, Sub, Mul or Div: with a scalar constant, an affine map; with a constant tensor, a
    /// constant operand broadcast over each item; else two values.
    pub(crate) fn lower_binary(&mut self, node: &NodeProto) -> Result<()> {
        if node.input.len() != 2 {
            bail!("has {} inputs, not 2", node.input.len());
        }
        let scalar = |name: &str| -> Option<f32> {
            let t = self.initializers.get(name)?;
            let w = tensor_to_f32(t).ok()?;
            (w.data.len() == 1).then(|| w.data[0])
        };
        let (ka, kb) = (scalar(&node.input[0]), scalar(&node.input[1]));
        if ka.is_some() || kb.is_some() {
            // A value and a scalar constant: x * scale + offset.
            let (value, k, constant_first) = match (ka, kb) {
                (None, Some(k)) => (&node.input[0], k, false),
                (Some(k), None) => (&node.input[1], k, true),
                _ => {
                    bail!("both operands are constants; fold them before export");
                }
            };
            let input = self.value_of(value)?;
            let (scale, offset) = match (node.op_type.as_str(), constant_first) {
                ("Add", _) => (1.0, k),
                ("Sub", false) => (1.0, -k),
                ("Sub", true) => (-1.0, k),
                ("Mul", _) => (k, 0.0),
                ("Div", false) => (1.0 / k, 0.0),
                _ => {
                    bail!("dividing a constant by a tensor is not supported yet");
                }
            };
            let c = self.channels[input];
            self.push_plain(
                node,
                LayerOp::Unary(UnaryOp::Affine { scale, offset }),
                vec![input],
                c,
            );
            return Ok(());
        }
        let op = match node.op_type.as_str() {
            "Add" => BinaryOp::Add,
            "Sub" => BinaryOp::Sub,
            "Mul" => BinaryOp::Mul,
            _ => BinaryOp::Div,
        };
        // A value and a constant tensor (per-channel scales, a bias map): the constant is
        // uploaded once and shared by every batch item.
        let constant_of = |name: &str| self.initializers.get(name).copied();
        let (ca, cb) = (constant_of(&node.input[0]), constant_of(&node.input[1]));
        if let Some((t, constant_first, other)) = match (ca, cb) {
            (None, Some(t)) => Some((t, false, &node.input[0])),
            (Some(t), None) => Some((t, true, &node.input[1])),
            _ => None,
        } {
            let input = self.value_of(other)?;
            let w = tensor_to_f32(t)?;
            let shape = constant_item_shape(&w.dims)?;
            let output = self.channels.len();
            self.channels.push(self.channels[input].max(shape.c));
            self.values.insert(node.output[0].clone(), output);
            self.layers.push(Layer {
                name: node_name(node),
                op: LayerOp::BinaryConst {
                    op,
                    constant: shape,
                    constant_first,
                },
                inputs: vec![input],
                output,
                weights: w.data,
                bias: Vec::new(),
            });
            return Ok(());
        }
        let a = self.value_of(&node.input[0])?;
        let b = self.value_of(&node.input[1])?;
        let output = self.channels.len();
        self.channels.push(self.channels[a].max(self.channels[b]));
        self.values.insert(node.output[0].clone(), output);
        self.layers.push(Layer {
            name: node_name(node),
            op: LayerOp::Binary(op),
            inputs: vec![a, b],
            output,
            weights: Vec::new(),
            bias: Vec::new(),
        });
        Ok(())
    }
}

// Fixed shapes: static_graph::Lowering.

/// Elementwise ops of two or more inputs, numpy broadcasting.
///
/// The fixed-shape translator's part: methods of [`Lowering`], which
/// `Lowering::lower_node` (`onnx/static_graph.rs`) calls by op type.
mod fixed_shapes {
    use anyhow::{Context as _, Result};

    use crate::model::UnaryOp;
    use crate::onnx::node_name;
    use crate::onnx::proto::NodeProto;
    use crate::onnx::static_graph::{Lowering, binary_op, input};

    impl Lowering<'_> {
        /// ONNX Add, Sub, Mul, Div and Pow.
        pub(crate) fn lower_binary(&mut self, node: &NodeProto) -> Result<()> {
            let op = node.op_type.as_str();
            let bop = binary_op(op).expect("a binary op");
            let v = self.binary(node, input(node, 0)?, input(node, 1)?, bop)?;
            self.set(node, 0, v);
            Ok(())
        }

        /// ONNX Sum, Mean, Max and Min.
        pub(crate) fn lower_variadic(&mut self, node: &NodeProto) -> Result<()> {
            let op = node.op_type.as_str();
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
            Ok(())
        }
    }
}
