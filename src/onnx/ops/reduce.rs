//! Reductions: ReduceSum, ReduceMean, ReduceMax, ... over any axes (fixed shapes only).

use anyhow::{Context as _, Result, bail};

use crate::model::{LayerOp, MAX_RANK, ReduceOp, ReduceSpec, TensorOp};
use crate::onnx::lowering::{Lowering, Val, axis};
use crate::onnx::proto::NodeProto;
use crate::onnx::{attr_int, attr_ints, node_name};

impl Lowering<'_> {
    /// ONNX Reduce* (`lowering::reduce_op` names them).
    pub(crate) fn lower_reduce(&mut self, node: &NodeProto, r: ReduceOp) -> Result<()> {
        let v = self.reduce(node, r)?;
        self.set(node, 0, v);
        Ok(())
    }

    fn reduce(&mut self, node: &NodeProto, r: ReduceOp) -> Result<Val> {
        let name = node.input.first().context("has no input")?.clone();
        let dims = self.dims_of(&name)?;
        let rank = dims.len();
        // Axes: an attribute before opset 18 (13 for ReduceSum), an input after.
        let axes = match self.constant(node, 1, "the axes")? {
            Some(t) => Some(t.ints()),
            None => attr_ints(node, "axes"),
        };
        let keep = attr_int(node, "keepdims", 1) == 1;
        let axes: Vec<usize> = match axes.filter(|a| !a.is_empty()) {
            Some(a) => a.iter().map(|&x| axis(x, rank)).collect::<Result<_>>()?,
            None if attr_int(node, "noop_with_empty_axes", 0) == 1 => {
                return Ok(self.get(&name)?.clone());
            }
            None => (0..rank).collect(),
        };
        let out: Vec<u32> = (0..rank)
            .filter_map(|k| match (axes.contains(&k), keep) {
                (false, _) => Some(dims[k]),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect();
        let spec = ReduceSpec {
            op: r,
            dims: dims.clone(),
            axes,
        };
        if let Val::Const(t) = self.get(&name)? {
            if t.int && t.data.is_empty() && matches!(r, ReduceOp::Max | ReduceOp::Min) {
                bail!("{r:?} of an empty integer or bool tensor is not supported");
            }
            let src: Vec<f32> = t.data.iter().map(|&x| x as f32).collect();
            let data = spec.reference(&src).iter().map(|&x| x as f64).collect();
            return Ok(Val::Const(
                t.with_dims(out.iter().map(|&d| d as usize).collect(), data),
            ));
        }
        if dims.len() > MAX_RANK {
            bail!("reductions take at most {MAX_RANK} dimensions");
        }
        let (v, _) = self.gpu(&name)?;
        let id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::Reduce(spec)),
            vec![v],
            out.clone(),
            Vec::new(),
        );
        Ok(Val::Gpu(id, out))
    }
}
