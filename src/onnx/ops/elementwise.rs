//! Elementwise ops of two inputs: Add, Sub, Mul, Div (those of one input are in `activation`).

use anyhow::{Context as _, Result};

use crate::model::UnaryOp;
use crate::onnx::lowering::{Lowering, binary_op, input};
use crate::onnx::node_name;
use crate::onnx::proto::NodeProto;

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
