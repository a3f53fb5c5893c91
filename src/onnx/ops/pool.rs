//! Pooling: MaxPool, AveragePool, GlobalAveragePool.

use anyhow::{Context as _, Result, bail};

use crate::model::{CopySpec, Layer, LayerOp, ReduceOp, ReduceSpec, TensorOp, ValueId};
use crate::onnx::lowering::{FreeVal, Lowering, Val, input, plain_layer};
use crate::onnx::proto::NodeProto;
use crate::onnx::{attr_ints, node_name};

impl Lowering<'_> {
    /// ONNX MaxPool and AveragePool.
    pub(crate) fn lower_pool(&mut self, node: &NodeProto) -> Result<()> {
        let v = self.image_op(node)?;
        self.set(node, 0, v);
        Ok(())
    }

    /// ONNX GlobalAveragePool and GlobalMaxPool.
    pub(crate) fn lower_global_pool(&mut self, node: &NodeProto) -> Result<()> {
        let op = node.op_type.as_str();
        if let Some(x) = self.free_val(input(node, 0)?) {
            // Free sizes: the mean of each channel plane, [N, C, 1, 1].
            if op != "GlobalAveragePool" {
                bail!("{op} needs fixed input dims");
            }
            let c = x.channels()?;
            let layer = plain_layer(node_name(node), LayerOp::GlobalAvgPool, vec![x.id]);
            let v = self.push_free(layer, FreeVal::image(c, Some((1, 1))));
            self.set(node, 0, v);
            return Ok(());
        }
        let dims = self.dims_of(input(node, 0)?)?;
        if dims.len() < 3 {
            bail!("{op} takes [N, C, ...], not {dims:?}");
        }
        let r = if op == "GlobalMaxPool" {
            ReduceOp::Max
        } else {
            ReduceOp::Mean
        };
        let spec = ReduceSpec {
            op: r,
            dims: dims.clone(),
            axes: (2..dims.len()).collect(),
        };
        let mut out = dims.clone();
        out[2..].iter_mut().for_each(|d| *d = 1);
        let (v, _) = self.gpu(input(node, 0)?)?;
        let id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::Reduce(spec)),
            vec![v],
            out.clone(),
            Vec::new(),
        );
        self.set(node, 0, Val::Gpu(id, out));
        Ok(())
    }

    /// A 3-D MaxPool or AveragePool as two 2-D pools: over (H, W) for every depth slice, then
    /// over D. Both are separable: the window is a box, so its maximum is the maximum of the
    /// slices' maxima, and its element count (with or without padding) is the product of the
    /// per-axis counts, so the mean is the mean of the slices' means.
    pub(crate) fn pool_3d(&mut self, node: &NodeProto, name: &str, dims: &[u32]) -> Result<Val> {
        let three = |n: &str, default: i64| -> Result<Vec<i64>> {
            let v = attr_ints(node, n).unwrap_or_else(|| vec![default; 3]);
            if v.len() != 3 {
                bail!("{n} {v:?} is not three values");
            }
            Ok(v)
        };
        let (k, st, dl) = (
            three("kernel_shape", 0)?,
            three("strides", 1)?,
            three("dilations", 1)?,
        );
        let pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 6]);
        if pads.len() != 6 {
            bail!("pads {pads:?} are not six values");
        }
        let sub =
            |kernel: [i64; 2], stride: [i64; 2], dil: [i64; 2], p: [i64; 4], spatial: [u32; 2]| {
                let mut n = node.clone();
                n.attribute.retain(|a| {
                    !matches!(
                        a.name.as_str(),
                        "kernel_shape" | "strides" | "dilations" | "pads"
                    )
                });
                for (name, ints) in [
                    ("kernel_shape", kernel.to_vec()),
                    ("strides", stride.to_vec()),
                    ("dilations", dil.to_vec()),
                    ("pads", p.to_vec()),
                ] {
                    n.attribute.push(crate::onnx::proto::AttributeProto {
                        name: name.into(),
                        ints,
                        r#type: 7,
                        ..Default::default()
                    });
                }
                Self::two_d_node(&n, false, &spatial, &kernel)
                    .and_then(|n| crate::onnx::pool_spec(&n))
            };
        let (nc, d, h, w) = (dims[0] * dims[1], dims[2], dims[3], dims[4]);
        let plane = sub(
            [k[1], k[2]],
            [st[1], st[2]],
            [dl[1], dl[2]],
            [pads[1], pads[2], pads[4], pads[5]],
            [h, w],
        )?;
        let depth = sub(
            [k[0], 1],
            [st[0], 1],
            [dl[0], 1],
            [pads[0], 0, pads[3], 0],
            [d, 1],
        )?;
        let (oh, ow) = plane.output_hw(h, w).context("the window does not fit")?;
        let (od, _) = depth.output_hw(d, 1).context("the window does not fit")?;
        let base = node_name(node);
        let (v, _) = self.gpu(name)?;
        let step = |l: &mut Self, what: &str, op: LayerOp, from: ValueId, out: Vec<u32>| {
            let id = l.new_value(out);
            l.layers.push(Layer {
                name: format!("{base} ({what})"),
                op,
                inputs: vec![from],
                output: id,
                weights: Vec::new(),
                bias: Vec::new(),
            });
            id
        };
        let flat =
            |n: u32| LayerOp::Tensor(TensorOp::Copy(vec![(Some(0), CopySpec::contiguous(n))]));
        let a = step(
            self,
            "height, width",
            LayerOp::Pool2d(plane),
            v,
            vec![dims[0], dims[1], d, oh, ow],
        );
        let b = step(
            self,
            "view",
            flat(nc * d * oh * ow),
            a,
            vec![1, nc, d, oh * ow],
        );
        let c = step(
            self,
            "depth",
            LayerOp::Pool2d(depth),
            b,
            vec![1, nc, od, oh * ow],
        );
        let out = vec![dims[0], dims[1], od, oh, ow];
        let y = step(self, "view", flat(nc * od * oh * ow), c, out.clone());
        Ok(Val::Gpu(y, out))
    }
}
