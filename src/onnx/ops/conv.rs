//! Convolutions: Conv and ConvTranspose.

use anyhow::{Context as _, Result, bail};

use crate::model::{Layer, LayerOp};
use crate::onnx::lowering::{FreeVal, Lowering, Val, input, numel};
use crate::onnx::proto::NodeProto;
use crate::onnx::{attr, attr_ints, conv_layers, node_name, pool_spec};

impl Lowering<'_> {
    /// ONNX Conv and ConvTranspose.
    pub(crate) fn lower_conv(&mut self, node: &NodeProto) -> Result<()> {
        let v = self.image_op(node)?;
        self.set(node, 0, v);
        Ok(())
    }

    /// Conv, ConvTranspose, MaxPool and AveragePool of a 1-D (`[N, C, L]`, run as
    /// `[N, C, 1, L]`) or 2-D input, through the image kernels. With every size known,
    /// auto_pad and ConvTranspose's output_shape become explicit pads.
    pub(crate) fn image_op(&mut self, node: &NodeProto) -> Result<Val> {
        let name = input(node, 0)?.to_owned();
        if let Some(f) = self.free_val(&name) {
            return self.image_op_free(node, &f);
        }
        let dims = self.dims_of(&name)?;
        if dims.len() == 5 && node.op_type.ends_with("Pool") {
            return self.pool_3d(node, &name, &dims);
        }
        let one_d = dims.len() == 3;
        if dims.len() != 3 && dims.len() != 4 {
            bail!(
                "{} takes 1-D or 2-D input ([N, C, L] or [N, C, H, W]), not {dims:?}",
                node.op_type
            );
        }
        let spatial: Vec<u32> = if one_d {
            vec![1, dims[2]]
        } else {
            dims[2..].to_vec()
        };
        let conv = node.op_type.starts_with("Conv");
        let weights = if conv {
            let mut w = self
                .constant_f32(node, 1, "the weights")?
                .context("has no weights")?;
            if one_d && w.dims.len() == 3 {
                w.dims.insert(2, 1);
            }
            Some(w)
        } else {
            None
        };
        let kernel: Vec<i64> = match &weights {
            Some(w) if w.dims.len() == 4 => w.dims[2..].to_vec(),
            _ => {
                let mut k = attr_ints(node, "kernel_shape").context("has no kernel_shape")?;
                if one_d {
                    k.insert(0, 1);
                }
                k
            }
        };
        let patched = Self::two_d_node(node, one_d, &spatial, &kernel)?;
        let (n, c) = (dims[0], dims[1]);
        let mut out_c;
        let mut layers = Vec::new();
        if weights.is_some() && n > 1 {
            return self.per_image(node, &name, &dims);
        }
        if let Some(w) = weights {
            let bias = self
                .constant_f32(node, 2, "the bias")?
                .map(|t| t.data)
                .unwrap_or_default();
            for l in crate::onnx::conv_layers(&patched, w, bias, c)? {
                layers.push((l.name, l.op, l.weights, l.bias));
            }
        } else {
            layers.push((
                node_name(node),
                LayerOp::Pool2d(crate::onnx::pool_spec(&patched)?),
                Vec::new(),
                Vec::new(),
            ));
        }
        let (mut v, _) = self.gpu(&name)?;
        let (mut h, mut w) = (spatial[0], spatial[1]);
        out_c = c;
        for (lname, op, weights, bias) in layers {
            let next = match &op {
                LayerOp::Conv2d(s) => s.output_hw(h, w).map(|(a, b)| (s.out_c, a, b)),
                LayerOp::ConvTranspose2d(s) => s.output_hw(h, w).map(|(a, b)| (s.out_c, a, b)),
                LayerOp::DepthToSpace(s) => s.output_chw(out_c, h, w),
                LayerOp::Pool2d(s) => s.output_hw(h, w).map(|(a, b)| (out_c, a, b)),
                _ => unreachable!("image layers"),
            };
            let (oc, oh, ow) =
                next.with_context(|| format!("does not fit an input of {dims:?}"))?;
            (out_c, h, w) = (oc, oh, ow);
            let out = if one_d {
                vec![n, out_c, w]
            } else {
                vec![n, out_c, h, w]
            };
            let id = self.new_value(out);
            self.layers.push(Layer {
                name: lname,
                op,
                inputs: vec![v],
                output: id,
                weights,
                bias,
            });
            v = id;
        }
        let out = self.dims[v].clone();
        if numel(&out) == 0 {
            bail!("computes an empty tensor");
        }
        Ok(Val::Gpu(v, out))
    }

    /// Conv, ConvTranspose, MaxPool or AveragePool of an image of free size: the layers of
    /// [`conv_layers`] or a [`pool_spec`] pool, their output sizes known where the input's are.
    fn image_op_free(&mut self, node: &NodeProto, x: &FreeVal) -> Result<Val> {
        let mut c = x.channels()?;
        let layers = if node.op_type.starts_with("Conv") {
            let w = self
                .constant_f32(node, 1, "the weights")?
                .context("has no weights")?;
            let bias = self
                .constant_f32(node, 2, "the bias")?
                .map(|t| t.data)
                .unwrap_or_default();
            conv_layers(node, w, bias, c)?
        } else {
            vec![crate::onnx::ImageLayer {
                name: node_name(node),
                op: LayerOp::Pool2d(pool_spec(node)?),
                weights: Vec::new(),
                bias: Vec::new(),
                out_c: c,
            }]
        };
        let (mut from, mut hw) = (x.id, x.hw());
        let mut out = None;
        for l in layers {
            hw = hw.and_then(|(h, w)| match &l.op {
                LayerOp::Conv2d(s) => s.output_hw(h, w),
                LayerOp::ConvTranspose2d(s) => s.output_hw(h, w),
                LayerOp::DepthToSpace(s) => s.output_chw(c, h, w).map(|(_, h, w)| (h, w)),
                LayerOp::Pool2d(s) => s.output_hw(h, w),
                _ => None,
            });
            c = l.out_c;
            let layer = Layer {
                name: l.name,
                op: l.op,
                inputs: vec![from],
                output: 0,
                weights: l.weights,
                bias: l.bias,
            };
            let Val::Free(v) = self.push_free(layer, FreeVal::image(c, hw)) else {
                unreachable!("push_free makes free values")
            };
            from = v.id;
            out = Some(v);
        }
        out.map(Val::Free).context("lowers to no layers")
    }

    /// A convolution of `[N, C, ...]` with N > 1 inside one tensor: each image alone, then
    /// concatenated on axis 0.
    fn per_image(&mut self, node: &NodeProto, name: &str, dims: &[u32]) -> Result<Val> {
        let mut parts = Vec::new();
        for i in 0..dims[0] {
            let mut counts = dims.to_vec();
            counts[0] = 1;
            let mut starts = vec![0i64; dims.len()];
            starts[0] = i as i64;
            let one = self.slice(node, name, &starts, &vec![1; dims.len()], &counts)?;
            let part = format!("{} (image {i})", node_name(node));
            self.vals.insert(format!("{part} in"), one);
            let mut single = node.clone();
            single.input[0] = format!("{part} in");
            let out = self.image_op(&single)?;
            self.vals.insert(part.clone(), out);
            parts.push(part);
        }
        self.concat(node, &parts, 0)
    }

    /// `node` with 2-D attributes and explicit pads: a 1-D node gains a leading unit axis;
    /// auto_pad SAME_UPPER / SAME_LOWER / VALID and ConvTranspose's output_shape become pads
    /// for an input of `spatial` (height, width) and a kernel of `kernel`.
    pub(crate) fn two_d_node(
        node: &NodeProto,
        one_d: bool,
        spatial: &[u32],
        kernel: &[i64],
    ) -> Result<NodeProto> {
        let mut n = node.clone();
        let ints = |name: &str, default: i64| -> Vec<i64> {
            let mut v = attr_ints(node, name).unwrap_or_else(|| vec![default; 2 - one_d as usize]);
            if one_d {
                v.insert(0, default);
            }
            v
        };
        let stride = ints("strides", 1);
        let dilation = ints("dilations", 1);
        let mut output_padding = ints("output_padding", 0);
        let mut pads = match attr_ints(node, "pads") {
            Some(p) if one_d && p.len() == 2 => vec![0, p[0], 0, p[1]],
            Some(p) => p,
            None => vec![0; 4],
        };
        let mode = attr(node, "auto_pad").map_or(String::new(), |a| {
            String::from_utf8_lossy(&a.s).into_owned()
        });
        let transpose = node.op_type == "ConvTranspose";
        let output_shape = attr_ints(node, "output_shape").map(|mut v| {
            if one_d {
                v.insert(0, 1);
            }
            v
        });
        if mode.starts_with("SAME") || mode == "VALID" || (transpose && output_shape.is_some()) {
            for a in 0..2 {
                let (len, k, s, d) = (spatial[a] as i64, kernel[a], stride[a], dilation[a]);
                let span = (k - 1) * d + 1;
                let total = if transpose {
                    let out = match &output_shape {
                        Some(o) => o[o.len() - 2 + a],
                        None if mode == "VALID" => 0,
                        None => len * s,
                    };
                    if mode == "VALID" && output_shape.is_none() {
                        0
                    } else {
                        s * (len - 1) + output_padding[a] + span - out
                    }
                } else if mode == "VALID" {
                    0
                } else {
                    let out = (len + s - 1) / s;
                    ((out - 1) * s + span - len).max(0)
                };
                if total < 0 {
                    // A larger output_shape than the kernel reaches: the rest is output
                    // padding.
                    output_padding[a] -= total;
                    pads[a] = 0;
                    pads[a + 2] = 0;
                    continue;
                }
                // ONNX: SAME_UPPER puts the odd pad at the end; otherwise it goes first.
                let small = total / 2;
                let (begin, end) = if mode == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[a] = begin;
                pads[a + 2] = end;
            }
        }
        n.attribute
            .retain(|a| !matches!(a.name.as_str(), "auto_pad" | "output_shape"));
        for a in &mut n.attribute {
            match a.name.as_str() {
                "kernel_shape" => a.ints = kernel.to_vec(),
                "strides" => a.ints = stride.clone(),
                "dilations" => a.ints = dilation.clone(),
                "output_padding" => a.ints = output_padding.clone(),
                "pads" => a.ints = pads.clone(),
                _ => {}
            }
        }
        if transpose && attr(&n, "output_padding").is_none() {
            n.attribute.push(crate::onnx::proto::AttributeProto {
                name: "output_padding".into(),
                ints: output_padding,
                r#type: 7,
                ..Default::default()
            });
        }
        if attr(&n, "pads").is_none() {
            n.attribute.push(crate::onnx::proto::AttributeProto {
                name: "pads".into(),
                ints: pads,
                r#type: 7,
                ..Default::default()
            });
        }
        Ok(n)
    }
}
