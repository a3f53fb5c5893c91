//! Shape ops: Reshape, Transpose, Flatten, DepthToSpace, Identity.

// Free sizes: the image lowering.

use anyhow::{Context as _, Result, bail};

use crate::model::{Layer, LayerOp};
use crate::onnx::image::ImageLowering;
use crate::onnx::proto::NodeProto;
use crate::onnx::{attr, attr_int, attr_ints, node_name, tensor_to_i64};

impl ImageLowering<'_> {
    pub(crate) fn lower_flatten(&mut self, node: &NodeProto) -> Result<()> {
        // [N, C, 1, 1] -> [N, C] is the same memory: an alias. Flattening spatial planes needs a
        // reshape, which is not supported yet.
        let input = self.value_of(&node.input[0])?;
        let pooled = self
            .layers
            .iter()
            .any(|l| l.output == input && matches!(l.op, LayerOp::GlobalAvgPool));
        let axis = attr_int(node, "axis", 1);
        if axis != 1 && axis != -3 {
            bail!("Flatten on axis {axis} is not supported (axis 1 keeps the batch apart)");
        }
        if pooled {
            self.values.insert(node.output[0].clone(), input);
        } else {
            let c = self.channels[input];
            self.push_plain(node, LayerOp::Flatten, vec![input], c);
        }
        Ok(())
    }

    pub(crate) fn lower_depth_to_space(&mut self, node: &NodeProto) -> Result<()> {
        let input = self.value_of(&node.input[0])?;
        let block = attr_int(node, "blocksize", 0);
        let mode =
            attr(node, "mode").map_or("DCR".into(), |a| String::from_utf8_lossy(&a.s).into_owned());
        let b = block as u32;
        if block < 1
            || !self.channels[input].is_multiple_of(b * b)
            || (mode != "DCR" && mode != "CRD")
        {
            bail!(
                "blocksize {block} and mode {mode} do not fit {} channels",
                self.channels[input]
            );
        }
        let output = self.channels.len();
        self.channels.push(self.channels[input] / (b * b));
        self.values.insert(node.output[0].clone(), output);
        self.layers.push(Layer {
            name: node_name(node),
            op: LayerOp::DepthToSpace(crate::model::DepthToSpaceSpec {
                block: [b, b],
                crd: mode == "CRD",
                crop: [0, 0],
            }),
            inputs: vec![input],
            output,
            weights: Vec::new(),
            bias: Vec::new(),
        });
        Ok(())
    }

    pub(crate) fn lower_transpose(&mut self, node: &NodeProto) -> Result<()> {
        let input = self.value_of(&node.input[0])?;
        let perm = attr_ints(node, "perm").unwrap_or_default();
        let is_output = self.graph.output.iter().any(|o| o.name == node.output[0]);
        if input == 0 && self.nhwc_input && perm == [0, 3, 1, 2] {
            // The NHWC input: the engine already packs pixels as NCHW.
            self.values.insert(node.output[0].clone(), 0);
        } else if perm == [0, 2, 3, 1] && self.channels[input] == 1 && is_output {
            // A one-channel map is the same memory in NCHW and NHWC.
            self.values.insert(node.output[0].clone(), input);
        } else if perm == [0, 2, 3, 1] {
            // Channels last, kept flat per item for a Reshape and Concat that follow.
            let c = self.channels[input];
            self.push_plain(node, LayerOp::ToNhwc, vec![input], c);
            self.flat.insert(
                *self.values.get(&node.output[0]).expect("just inserted"),
                Vec::new(),
            );
        } else {
            bail!(
                "Transpose {perm:?} is supported only from an NHWC input to NCHW, or from NCHW to \
                 NHWC"
            );
        }
        Ok(())
    }

    pub(crate) fn lower_reshape(&mut self, node: &NodeProto) -> Result<()> {
        // Of a flat (channels-last) value: the same memory with [N, ...dims] on top; the dims
        // after the first are kept so that a Concat on axis 1 can check them.
        let input = self.value_of(&node.input[0])?;
        let shape_name = node.input.get(1).context("has no shape")?;
        let dims = self
            .initializers
            .get(shape_name.as_str())
            .with_context(|| format!("shape {shape_name} is not a constant"))
            .and_then(|t| tensor_to_i64(t))?;
        let flat_input = self.flat.contains_key(&input)
            || self
                .layers
                .iter()
                .any(|l| l.output == input && matches!(l.op, LayerOp::GlobalAvgPool));
        let to_matrix = dims.len() == 2
            && (dims[1] == -1 || (dims[1] > 0 && [0, 1, -1].contains(&dims[0])))
            && [0, 1, -1].contains(&dims[0]);
        if !flat_input && to_matrix {
            // [N, C, H, W] -> [N, C*H*W], whatever the batch dim the file hard-codes.
            let c = self.channels[input];
            self.push_plain(node, LayerOp::Flatten, vec![input], c);
            return Ok(());
        }
        if !flat_input || dims.len() < 2 || dims[0] != 1 {
            bail!(
                "Reshape to {dims:?} is supported only for [1, ...] of a channels-last or pooled \
                 value"
            );
        }
        self.values.insert(node.output[0].clone(), input);
        self.flat.insert(input, dims[2..].to_vec());
        Ok(())
    }

    pub(crate) fn lower_identity(&mut self, node: &NodeProto) -> Result<()> {
        let input = self.value_of(&node.input[0])?;
        self.values.insert(node.output[0].clone(), input);
        Ok(())
    }
}

// Fixed shapes: static_graph::Lowering.

/// Shape ops: views, copies and shape arithmetic folded on the host.
///
/// The fixed-shape translator's part: methods of [`Lowering`], which
/// `Lowering::lower_node` (`onnx/static_graph.rs`) calls by op type.
mod fixed_shapes {
    use anyhow::{Context as _, Result, bail};

    use crate::model::{CopySpec, MAX_RANK, UnaryOp, broadcast_dims};
    use crate::onnx::proto::NodeProto;
    use crate::onnx::static_graph::{HostTensor, Lowering, Val, axis, input, numel, strides_i64};
    use crate::onnx::{attr, attr_float, attr_int, attr_ints};

    impl Lowering<'_> {
        /// ONNX Identity.
        pub(crate) fn lower_identity(&mut self, node: &NodeProto) -> Result<()> {
            let v = self.get(input(node, 0)?)?.clone();
            self.set(node, 0, v);
            Ok(())
        }

        /// ONNX Dropout.
        pub(crate) fn lower_dropout(&mut self, node: &NodeProto) -> Result<()> {
            // Inference: the identity, and a mask of ones. Training mode drops at random.
            let ratio = match self.constant(node, 1, "the ratio")? {
                Some(t) => t.data.first().copied().unwrap_or(0.5),
                None => attr_float(node, "ratio", 0.5) as f64,
            };
            let training = match self.constant(node, 2, "training_mode")? {
                Some(t) => t.data.first().is_some_and(|&x| x != 0.0),
                None => false,
            };
            if training && ratio > 0.0 {
                bail!("Dropout in training mode is random; batchwise runs inference");
            }
            let v = self.get(input(node, 0)?)?.clone();
            let dims: Vec<usize> = self
                .dims_of(input(node, 0)?)?
                .iter()
                .map(|&d| d as usize)
                .collect();
            self.set(node, 0, v);
            let n = dims.iter().product();
            self.set(
                node,
                1,
                Val::Const(HostTensor {
                    dims,
                    data: vec![1.0; n],
                    int: true,
                }),
            );
            Ok(())
        }

        /// ONNX Shape.
        pub(crate) fn lower_shape(&mut self, node: &NodeProto) -> Result<()> {
            let dims = self.dims_of(input(node, 0)?)?;
            let r = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clamp(attr_int(node, "start", 0));
            let end = clamp(attr_int(node, "end", r));
            let d: Vec<f64> = dims[start..end.max(start)]
                .iter()
                .map(|&x| x as f64)
                .collect();
            self.set(node, 0, Val::Const(HostTensor::vector(d, true)));
            Ok(())
        }

        /// ONNX Size.
        pub(crate) fn lower_size(&mut self, node: &NodeProto) -> Result<()> {
            let dims = self.dims_of(input(node, 0)?)?;
            self.set(
                node,
                0,
                Val::Const(HostTensor::scalar(numel(&dims) as f64, true)),
            );
            Ok(())
        }

        /// ONNX Cast and CastLike.
        pub(crate) fn lower_cast(&mut self, node: &NodeProto) -> Result<()> {
            let op = node.op_type.as_str();
            let to = attr_int(node, "to", 1);
            let v = match self.get(input(node, 0)?)?.clone() {
                Val::Const(mut t) => {
                    t.int = !matches!(to, 1 | 10 | 11 | 16);
                    if matches!(to, 2..=7 | 12 | 13) {
                        t.data.iter_mut().for_each(|x| *x = x.trunc());
                    }
                    if to == 9 {
                        t.data
                            .iter_mut()
                            .for_each(|x| *x = (*x != 0.0) as u8 as f64);
                    }
                    Val::Const(t)
                }
                g @ Val::Gpu(..) if matches!(to, 1 | 10 | 11) || op == "CastLike" => g,
                Val::Gpu(..) if matches!(to, 2..=7 | 12 | 13) => {
                    let v = self.unary(node, input(node, 0)?, UnaryOp::Trunc)?;
                    if let Val::Gpu(id, _) = v {
                        self.ints.insert(id);
                    }
                    v
                }
                Val::Gpu(..) => {
                    bail!("casting a computed tensor to type {to} is not supported")
                }
            };
            self.set(node, 0, v);
            Ok(())
        }

        /// ONNX Reshape.
        pub(crate) fn lower_reshape(&mut self, node: &NodeProto) -> Result<()> {
            let opset = self.opset;
            let dims = self.dims_of(input(node, 0)?)?;
            let shape = if opset >= 5 {
                self.constant(node, 1, "the target shape")?
                    .context("has no shape")?
                    .ints()
            } else {
                attr_ints(node, "shape").context("has no shape")?
            };
            let allow_zero = attr_int(node, "allowzero", 0) == 1;
            let mut out: Vec<i64> = shape
                .iter()
                .enumerate()
                .map(|(k, &d)| {
                    if d == 0 && !allow_zero {
                        dims.get(k).map_or(0, |&x| x as i64)
                    } else {
                        d
                    }
                })
                .collect();
            let known: i64 = out.iter().filter(|&&d| d != -1).product();
            if let Some(k) = out.iter().position(|&d| d == -1) {
                out[k] = if known == 0 {
                    0
                } else {
                    numel(&dims) as i64 / known
                };
            }
            let out: Vec<u32> = out.iter().map(|&d| d.max(0) as u32).collect();
            if numel(&out) != numel(&dims) {
                bail!("cannot reshape {dims:?} to {shape:?}");
            }
            let v = self.reshape(node, input(node, 0)?, out)?;
            self.set(node, 0, v);
            Ok(())
        }

        /// ONNX Flatten.
        pub(crate) fn lower_flatten(&mut self, node: &NodeProto) -> Result<()> {
            let dims = self.dims_of(input(node, 0)?)?;
            let a = if attr_int(node, "axis", 1) == dims.len() as i64 {
                dims.len()
            } else {
                axis(attr_int(node, "axis", 1), dims.len())?
            };
            let out = vec![numel(&dims[..a]), numel(&dims[a..])];
            let v = self.reshape(node, input(node, 0)?, out)?;
            self.set(node, 0, v);
            Ok(())
        }

        /// ONNX Squeeze and Unsqueeze.
        pub(crate) fn lower_squeeze(&mut self, node: &NodeProto) -> Result<()> {
            let op = node.op_type.as_str();
            let dims = self.dims_of(input(node, 0)?)?;
            let axes = match self.constant(node, 1, "the axes")? {
                Some(t) => Some(t.ints()),
                None => attr_ints(node, "axes"),
            };
            let out: Vec<u32> = if op == "Squeeze" {
                match axes {
                    None => dims.iter().copied().filter(|&d| d != 1).collect(),
                    Some(axes) => {
                        let axes: Vec<usize> = axes
                            .iter()
                            .map(|&a| axis(a, dims.len()))
                            .collect::<Result<_>>()?;
                        if axes.iter().any(|&a| dims[a] != 1) {
                            bail!("cannot squeeze axes {axes:?} of {dims:?}");
                        }
                        dims.iter()
                            .enumerate()
                            .filter(|(k, _)| !axes.contains(k))
                            .map(|(_, &d)| d)
                            .collect()
                    }
                }
            } else {
                let axes = axes.context("has no axes")?;
                let rank = dims.len() + axes.len();
                let axes: Vec<usize> =
                    axes.iter().map(|&a| axis(a, rank)).collect::<Result<_>>()?;
                let mut rest = dims.iter();
                (0..rank)
                    .map(|k| {
                        if axes.contains(&k) {
                            1
                        } else {
                            *rest.next().unwrap_or(&1)
                        }
                    })
                    .collect()
            };
            let v = self.reshape(node, input(node, 0)?, out)?;
            self.set(node, 0, v);
            Ok(())
        }

        /// ONNX Transpose.
        pub(crate) fn lower_transpose(&mut self, node: &NodeProto) -> Result<()> {
            let rank = self.dims_of(input(node, 0)?)?.len();
            let perm: Vec<usize> = match attr_ints(node, "perm") {
                Some(p) => p.iter().map(|&a| axis(a, rank)).collect::<Result<_>>()?,
                None => (0..rank).rev().collect(),
            };
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..rank).collect::<Vec<_>>() {
                bail!("perm {perm:?} is not a permutation of {rank} axes");
            }
            let v = self.transpose(node, input(node, 0)?, &perm)?;
            self.set(node, 0, v);
            Ok(())
        }

        /// A general transpose: output axis k is input axis `perm[k]`.
        fn transpose(&mut self, node: &NodeProto, name: &str, perm: &[usize]) -> Result<Val> {
            let dims = self.dims_of(name)?;
            let st = strides_i64(&dims);
            let out: Vec<u32> = perm.iter().map(|&p| dims[p]).collect();
            let spec = CopySpec {
                dims: out.clone(),
                src_strides: perm.iter().map(|&p| st[p]).collect(),
                src_offset: 0,
                dst_strides: strides_i64(&out),
                dst_offset: 0,
            };
            if spec.simplified().dims.len() > MAX_RANK {
                bail!("a transpose of {dims:?} by {perm:?} needs more than {MAX_RANK} dimensions");
            }
            if let Val::Const(t) = self.get(name)? {
                let src: Vec<f32> = t.data.iter().map(|&x| x as f32).collect();
                let mut data = vec![0.0f32; src.len()];
                spec.reference(&src, &mut data);
                return Ok(Val::Const(t.with_dims(
                    out.iter().map(|&d| d as usize).collect(),
                    data.iter().map(|&x| x as f64).collect(),
                )));
            }
            let (v, _) = self.gpu(name)?;
            Ok(Val::Gpu(self.copy(node, v, spec, out.clone()), out))
        }

        /// ONNX Expand.
        pub(crate) fn lower_expand(&mut self, node: &NodeProto) -> Result<()> {
            let dims = self.dims_of(input(node, 0)?)?;
            let shape: Vec<u32> = self
                .constant(node, 1, "the shape")?
                .context("has no shape")?
                .ints()
                .iter()
                .map(|&d| d as u32)
                .collect();
            let out = broadcast_dims(&dims, &shape)
                .with_context(|| format!("{dims:?} does not expand to {shape:?}"))?;
            let src = crate::model::broadcast_strides(&dims, &out);
            let spec = CopySpec {
                dims: out.clone(),
                src_strides: src.iter().map(|&s| s as i64).collect(),
                src_offset: 0,
                dst_strides: strides_i64(&out),
                dst_offset: 0,
            };
            let (v, _) = self.gpu(input(node, 0)?)?;
            let id = self.copy(node, v, spec, out.clone());
            self.set(node, 0, Val::Gpu(id, out));
            Ok(())
        }

        /// ONNX Tile.
        pub(crate) fn lower_tile(&mut self, node: &NodeProto) -> Result<()> {
            let dims = self.dims_of(input(node, 0)?)?;
            let reps = self
                .constant(node, 1, "the repeats")?
                .context("has no repeats")?
                .ints();
            if reps.len() != dims.len() || 2 * dims.len() > MAX_RANK + 4 {
                bail!("repeats {reps:?} do not fit {dims:?}");
            }
            let out: Vec<u32> = dims
                .iter()
                .zip(&reps)
                .map(|(&d, &r)| d * r as u32)
                .collect();
            let (os, is) = (strides_i64(&out), strides_i64(&dims));
            let mut spec = CopySpec {
                dims: Vec::new(),
                src_strides: Vec::new(),
                src_offset: 0,
                dst_strides: Vec::new(),
                dst_offset: 0,
            };
            for k in 0..dims.len() {
                spec.dims.extend([reps[k] as u32, dims[k]]);
                spec.src_strides.extend([0, is[k]]);
                spec.dst_strides.extend([os[k] * dims[k] as i64, os[k]]);
            }
            if spec.simplified().dims.len() > MAX_RANK {
                bail!("a Tile of {dims:?} by {reps:?} needs more than {MAX_RANK} dimensions");
            }
            let (v, _) = self.gpu(input(node, 0)?)?;
            let id = self.copy(node, v, spec, out.clone());
            self.set(node, 0, Val::Gpu(id, out));
            Ok(())
        }

        /// ONNX DepthToSpace and SpaceToDepth.
        pub(crate) fn lower_depth_to_space(&mut self, node: &NodeProto) -> Result<()> {
            let op = node.op_type.as_str();
            let dims = self.dims_of(input(node, 0)?)?;
            let b = attr_int(node, "blocksize", 0) as u32;
            let [n, c, h, w] = dims[..] else {
                bail!("{op} takes rank-4 input, not {dims:?}");
            };
            if b == 0 {
                bail!("blocksize must be at least 1");
            }
            let (view, perm, out): (Vec<u32>, Vec<usize>, Vec<u32>) = if op == "DepthToSpace" {
                if c % (b * b) != 0 {
                    bail!("{c} channels do not divide by blocksize {b} squared");
                }
                let cc = c / (b * b);
                let crd = attr(node, "mode").is_some_and(|m| m.s == b"CRD");
                if crd {
                    (
                        vec![n, cc, b, b, h, w],
                        vec![0, 1, 4, 2, 5, 3],
                        vec![n, cc, h * b, w * b],
                    )
                } else {
                    (
                        vec![n, b, b, cc, h, w],
                        vec![0, 3, 4, 1, 5, 2],
                        vec![n, cc, h * b, w * b],
                    )
                }
            } else {
                if h % b != 0 || w % b != 0 {
                    bail!("{h}x{w} does not divide by blocksize {b}");
                }
                // DCR (the default): block offsets first, then channels; CRD: channels first.
                let crd = attr(node, "mode").is_some_and(|m| m.s == b"CRD");
                let perm = if crd {
                    vec![0, 1, 3, 5, 2, 4]
                } else {
                    vec![0, 3, 5, 1, 2, 4]
                };
                (
                    vec![n, c, h / b, b, w / b, b],
                    perm,
                    vec![n, c * b * b, h / b, w / b],
                )
            };
            let st = strides_i64(&view);
            let tdims: Vec<u32> = perm.iter().map(|&p| view[p]).collect();
            let spec = CopySpec {
                dims: tdims.clone(),
                src_strides: perm.iter().map(|&p| st[p]).collect(),
                src_offset: 0,
                dst_strides: strides_i64(&tdims),
                dst_offset: 0,
            };
            let (v, _) = self.gpu(input(node, 0)?)?;
            let id = self.copy(node, v, spec, out.clone());
            self.set(node, 0, Val::Gpu(id, out));
            Ok(())
        }
    }
}
