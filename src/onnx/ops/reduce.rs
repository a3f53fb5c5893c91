//! Reductions: ReduceSum, ReduceMean, ReduceMax, ... over any axes with fixed shapes; with a free
//! input size, of an image over its channels (axis 1), or its mean over height and width.

use anyhow::{Context as _, Result, bail};

use crate::model::{AcrossChannels, LayerOp, MAX_RANK, ReduceOp, ReduceSpec, TensorOp};
use crate::onnx::lowering::{Dim, FreeVal, Lowering, Val, axis, plain_layer};
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
        // Axes: an attribute before opset 18 (13 for ReduceSum), an input after.
        let axes = match self.constant(node, 1, "the axes")? {
            Some(t) => Some(t.ints()),
            None => attr_ints(node, "axes"),
        };
        let keep = attr_int(node, "keepdims", 1) == 1;
        if let Some(x) = self.free_val(&name) {
            return self.reduce_free(node, r, &x, (axes, keep));
        }
        let dims = self.dims_of(&name)?;
        let rank = dims.len();
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

    /// A reduction of an image of free size, with `keepdims`: over its channels (axis 1), or its
    /// mean over height and width (GlobalAveragePool).
    fn reduce_free(
        &mut self,
        node: &NodeProto,
        r: ReduceOp,
        x: &FreeVal,
        (axes, keep): (Option<Vec<i64>>, bool),
    ) -> Result<Val> {
        let c = x.channels()?;
        let mut axes: Vec<usize> = match axes.filter(|a| !a.is_empty()) {
            Some(a) => a.iter().map(|&k| axis(k, 4)).collect::<Result<_>>()?,
            None => bail!("{r:?} over every axis needs fixed input dims"),
        };
        axes.sort_unstable();
        if !keep {
            bail!("{r:?} with keepdims 0 needs fixed input dims");
        }
        let (op, out) = match axes.as_slice() {
            [1] => {
                let mut out = x.clone();
                (out.dims[1], out.c) = (Dim::Fixed(1), 1);
                (LayerOp::AcrossChannels(AcrossChannels::Reduce(r)), out)
            }
            [2, 3] if r == ReduceOp::Mean => {
                (LayerOp::GlobalAvgPool, FreeVal::image(c, Some((1, 1))))
            }
            _ => bail!(
                "{r:?} over axes {axes:?} needs fixed input dims; with a free size batchwise \
                 reduces over the channels (axis 1), or takes the mean over axes 2 and 3"
            ),
        };
        let layer = plain_layer(node_name(node), op, vec![x.id]);
        Ok(self.push_free(layer, out))
    }
}
