//! Normalisations: BatchNormalization.

use anyhow::{Context as _, Result, bail};

use crate::model::{
    BinaryOp, LayerOp, NdBinarySpec, NormSpec, ReduceOp, ReduceSpec, SoftmaxKind, SoftmaxSpec,
    TensorOp, UnaryOp,
};
use crate::onnx::lowering::{HostTensor, Lowering, Val, axis, host_binary, input, numel};
use crate::onnx::proto::NodeProto;
use crate::onnx::{attr_float, attr_int, node_name};

impl Lowering<'_> {
    /// ONNX Softmax, LogSoftmax and Hardmax.
    pub(crate) fn lower_softmax(&mut self, node: &NodeProto) -> Result<()> {
        let op = node.op_type.as_str();
        let opset = self.opset;
        let dims = self.dims_of(input(node, 0)?)?;
        let kind = match op {
            "Softmax" => SoftmaxKind::Softmax,
            "LogSoftmax" => SoftmaxKind::LogSoftmax,
            _ => SoftmaxKind::Hardmax,
        };
        let spec = if opset >= 13 {
            SoftmaxSpec::along(kind, &dims, axis(attr_int(node, "axis", -1), dims.len())?)
        } else {
            // Before opset 13 the input is coerced to 2-D at `axis`.
            let a = axis(attr_int(node, "axis", 1), dims.len())?;
            SoftmaxSpec::along(kind, &[numel(&dims[..a]), numel(&dims[a..])], 1)
        };
        let (v, _) = self.gpu(input(node, 0)?)?;
        let id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::Softmax(spec)),
            vec![v],
            dims.clone(),
            Vec::new(),
        );
        self.set(node, 0, Val::Gpu(id, dims));
        Ok(())
    }

    /// ONNX InstanceNormalization.
    pub(crate) fn lower_instance_norm(&mut self, node: &NodeProto) -> Result<()> {
        let dims = self.dims_of(input(node, 0)?)?;
        if dims.len() < 3 {
            bail!("InstanceNormalization takes [N, C, ...], not {dims:?}");
        }
        let scale = self
            .constant(node, 1, "the scale")?
            .context("has no scale")?;
        let bias = self.constant(node, 2, "the bias")?.context("has no bias")?;
        let c = dims[1];
        if scale.data.len() != c as usize || bias.data.len() != c as usize {
            bail!("scale and bias must have {c} values");
        }
        let spec = NormSpec {
            rows: dims[0] * c,
            len: numel(&dims[2..]),
            channels: c,
            per_element: false,
            eps: attr_float(node, "epsilon", 1e-5),
        };
        let v = self.normalize(node, spec, &scale, &bias, &dims)?;
        self.set(node, 0, v);
        Ok(())
    }

    /// ONNX LayerNormalization.
    pub(crate) fn lower_layer_norm(&mut self, node: &NodeProto) -> Result<()> {
        let v = self.layer_norm(node)?;
        self.set(node, 0, v);
        Ok(())
    }

    /// ONNX BatchNormalization.
    pub(crate) fn lower_batch_norm(&mut self, node: &NodeProto) -> Result<()> {
        if node.output.iter().skip(1).any(|o| !o.is_empty())
            || attr_int(node, "training_mode", 0) == 1
        {
            bail!("BatchNormalization in training mode is not supported");
        }
        // One code for free and fixed dims: a per-channel scale and shift, which `binary`
        // lowers for either (and `passes::fold_affine` folds into the convolution before).
        let dims = self.shape_of(input(node, 0)?)?;
        let c = dims
            .get(1)
            .and_then(|d| d.fixed())
            .context("BatchNormalization takes [N, C, ...] with C known")? as usize;
        let t = |s: &Self, i: usize| -> Result<Vec<f64>> {
            let t = s
                .constant(node, i, "a statistic")?
                .context("has too few inputs")?;
            if t.data.len() != c {
                bail!("a statistic has {} values for {c} channels", t.data.len());
            }
            Ok(t.data)
        };
        let (scale, b, mean, var) = (t(self, 1)?, t(self, 2)?, t(self, 3)?, t(self, 4)?);
        let eps = attr_float(node, "epsilon", 1e-5) as f64;
        let a: Vec<f64> = (0..c).map(|k| scale[k] / (var[k] + eps).sqrt()).collect();
        let shift: Vec<f64> = (0..c).map(|k| b[k] - mean[k] * a[k]).collect();
        let mut cdims = vec![c];
        cdims.extend(std::iter::repeat_n(1, dims.len() - 2));
        let scale_name = format!("{} (scale)", node_name(node));
        let shift_name = format!("{} (shift)", node_name(node));
        self.vals.insert(
            scale_name.clone(),
            Val::Const(HostTensor {
                dims: cdims.clone(),
                data: a,
                int: false,
            }),
        );
        self.vals.insert(
            shift_name.clone(),
            Val::Const(HostTensor {
                dims: cdims,
                data: shift,
                int: false,
            }),
        );
        let scaled = self.binary(node, input(node, 0)?, &scale_name, BinaryOp::Mul)?;
        let mid = format!("{} (scaled)", node_name(node));
        self.vals.insert(mid.clone(), scaled);
        let v = self.binary(node, &mid, &shift_name, BinaryOp::Add)?;
        self.set(node, 0, v);
        Ok(())
    }

    fn normalize(
        &mut self,
        node: &NodeProto,
        spec: NormSpec,
        scale: &HostTensor,
        bias: &HostTensor,
        dims: &[u32],
    ) -> Result<Val> {
        let (v, _) = self.gpu(input(node, 0)?)?;
        let weights = scale
            .data
            .iter()
            .chain(&bias.data)
            .map(|&x| x as f32)
            .collect();
        let id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::Normalize(spec)),
            vec![v],
            dims.to_vec(),
            weights,
        );
        Ok(Val::Gpu(id, dims.to_vec()))
    }

    fn layer_norm(&mut self, node: &NodeProto) -> Result<Val> {
        let x = input(node, 0)?.to_owned();
        let dims = self.dims_of(&x)?;
        let a = axis(attr_int(node, "axis", -1), dims.len())?;
        let eps = attr_float(node, "epsilon", 1e-5);
        let len = numel(&dims[a..]);
        let norm_dims = &dims[a..];
        // Scale and bias broadcast over the normalised dims: expand them to one value each.
        let expand = |t: &HostTensor| -> Result<HostTensor> {
            let zero = HostTensor {
                dims: norm_dims.iter().map(|&d| d as usize).collect(),
                data: vec![0.0; len as usize],
                int: false,
            };
            let e = host_binary(&zero, t, |_, v| v)?;
            if e.data.len() != len as usize {
                bail!("scale or bias of {:?} does not fit {norm_dims:?}", t.dims);
            }
            Ok(e)
        };
        let scale = expand(
            &self
                .constant(node, 1, "the scale")?
                .context("has no scale")?,
        )?;
        let bias = match self.constant(node, 2, "the bias")? {
            Some(b) => expand(&b)?,
            None => HostTensor::vector(vec![0.0; len as usize], false),
        };
        let spec = NormSpec {
            rows: numel(&dims[..a]),
            len,
            channels: 1,
            per_element: true,
            eps,
        };
        let y = self.normalize(node, spec, &scale, &bias, &dims)?;
        // Optional outputs: the mean and 1 / sqrt(var + eps), over the normalised axes (kept).
        let wants = |k: usize| node.output.get(k).is_some_and(|o| !o.is_empty());
        if wants(1) || wants(2) {
            let base = node_name(node);
            let mut stat_dims = dims[..a].to_vec();
            stat_dims.extend(std::iter::repeat_n(1, dims.len() - a));
            let (xv, _) = self.gpu(&x)?;
            let mean_spec = ReduceSpec {
                op: ReduceOp::Mean,
                dims: dims.clone(),
                axes: (a..dims.len()).collect(),
            };
            let mean = self.push(
                format!("{base} (mean)"),
                LayerOp::Tensor(TensorOp::Reduce(mean_spec.clone())),
                vec![xv],
                stat_dims.clone(),
                Vec::new(),
            );
            let d = NdBinarySpec::new(BinaryOp::Sub, &dims, &stat_dims).expect("broadcasts");
            let diff = self.push(
                format!("{base} (centred)"),
                LayerOp::Tensor(TensorOp::Binary {
                    spec: d,
                    constant: None,
                }),
                vec![xv, mean],
                dims.clone(),
                Vec::new(),
            );
            let sq = self.push(
                format!("{base} (var)"),
                LayerOp::Tensor(TensorOp::Reduce(ReduceSpec {
                    op: ReduceOp::SumSquare,
                    ..mean_spec
                })),
                vec![diff],
                stat_dims.clone(),
                Vec::new(),
            );
            let var_eps = self.push(
                format!("{base} (var + eps)"),
                LayerOp::Unary(UnaryOp::Affine {
                    scale: 1.0 / len as f32,
                    offset: eps,
                }),
                vec![sq],
                stat_dims.clone(),
                Vec::new(),
            );
            let root = self.push(
                format!("{base} (std)"),
                LayerOp::Unary(UnaryOp::Sqrt),
                vec![var_eps],
                stat_dims.clone(),
                Vec::new(),
            );
            let inv = self.push(
                format!("{base} (inv std)"),
                LayerOp::Unary(UnaryOp::Reciprocal),
                vec![root],
                stat_dims.clone(),
                Vec::new(),
            );
            self.set(node, 1, Val::Gpu(mean, stat_dims.clone()));
            self.set(node, 2, Val::Gpu(inv, stat_dims));
        }
        Ok(y)
    }
}
