//! Shape ops: Reshape, Transpose, Flatten, DepthToSpace, Identity.

use anyhow::{Context as _, Result, bail};

use crate::model::LayerOp;
use crate::model::{CopySpec, MAX_RANK, UnaryOp, broadcast_dims};
use crate::onnx::lowering::{
    Dim, FreeVal, HostTensor, Lowering, Val, axis, input, numel, plain_layer, strides_i64,
};
use crate::onnx::proto::NodeProto;
use crate::onnx::{attr, attr_float, attr_int, attr_ints, node_name};

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
            g @ (Val::Gpu(..) | Val::Free(_)) if matches!(to, 1 | 10 | 11) || op == "CastLike" => g,
            Val::Gpu(..) | Val::Free(_) if matches!(to, 2..=7 | 12 | 13) => {
                let v = self.unary(node, input(node, 0)?, UnaryOp::Trunc)?;
                if let Val::Gpu(id, _) = v {
                    self.ints.insert(id);
                }
                v
            }
            Val::Gpu(..) | Val::Free(_) => {
                bail!("casting a computed tensor to type {to} is not supported")
            }
        };
        self.set(node, 0, v);
        Ok(())
    }

    /// ONNX Reshape.
    pub(crate) fn lower_reshape(&mut self, node: &NodeProto) -> Result<()> {
        let opset = self.opset;
        let shape = if opset >= 5 {
            self.constant(node, 1, "the target shape")?
                .context("has no shape")?
                .ints()
        } else {
            attr_ints(node, "shape").context("has no shape")?
        };
        if let Some(x) = self.free_val(input(node, 0)?) {
            let v = self.reshape_free(node, &x, &shape)?;
            self.set(node, 0, v);
            return Ok(());
        }
        let dims = self.dims_of(input(node, 0)?)?;
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
        if out.iter().filter(|&&d| d == -1).count() > 1 || out.iter().any(|&d| d < -1) {
            bail!("Reshape to {shape:?}: at most one -1, and no other negative dim");
        }
        let known = out
            .iter()
            .filter(|&&d| d != -1)
            .try_fold(1i64, |n, &d| n.checked_mul(d))
            .with_context(|| format!("Reshape to {shape:?} asks for too many elements"))?;
        if let Some(k) = out.iter().position(|&d| d == -1) {
            out[k] = if known == 0 {
                0
            } else {
                numel(&dims) as i64 / known
            };
        }
        let out: Vec<u32> = out
            .iter()
            .map(|&d| u32::try_from(d))
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("cannot reshape {dims:?} to {shape:?}"))?;
        if numel(&out) != numel(&dims) {
            bail!("cannot reshape {dims:?} to {shape:?}");
        }
        let v = self.reshape(node, input(node, 0)?, out)?;
        self.set(node, 0, v);
        Ok(())
    }

    /// Reshape with free dims, to `[N, ...]` (the first target dim is the batch, whatever the
    /// file hard-codes there): of a value stored flat (channels last, reshaped, or `[N, C, 1, 1]`)
    /// the same memory under the new dims; of an image, to `[N, C * H * W]` only, a Flatten.
    fn reshape_free(&mut self, node: &NodeProto, x: &FreeVal, shape: &[i64]) -> Result<Val> {
        let pooled = x.dims.len() == 4 && x.dims[2..] == [Dim::Fixed(1), Dim::Fixed(1)];
        let dims: Vec<Dim> = shape
            .iter()
            .enumerate()
            .map(|(k, &d)| match d {
                0 => x.dims.get(k).copied().unwrap_or(Dim::Free),
                d if d > 0 => u32::try_from(d).map_or(Dim::Free, Dim::Fixed),
                _ => Dim::Free,
            })
            .collect();
        let batch_first = shape.first().is_some_and(|d| [0, 1, -1].contains(d));
        if !batch_first || shape.len() < 2 {
            bail!(
                "Reshape to {shape:?} with a free batch: the first dim must be the batch (0, 1 \
                 or -1)"
            );
        }
        let mut dims = dims;
        dims[0] = Dim::Free;
        if x.flat || pooled {
            let out = FreeVal {
                dims,
                flat: true,
                id: x.id,
                c: x.c,
            };
            return Ok(Val::Free(out));
        }
        if shape.len() == 2 {
            let c = x.c;
            let out = FreeVal {
                id: 0,
                dims: vec![Dim::Free, Dim::product(&x.dims[1..])],
                c,
                flat: false,
            };
            let layer = plain_layer(node_name(node), LayerOp::Flatten, vec![x.id]);
            return Ok(self.push_free(layer, out));
        }
        bail!(
            "Reshape to {shape:?} of an image of free size: only [N, C * H * W] (a Flatten), or \
             any [N, ...] of a channels-last or pooled value"
        )
    }

    /// ONNX Flatten.
    pub(crate) fn lower_flatten(&mut self, node: &NodeProto) -> Result<()> {
        if let Some(x) = self.free_val(input(node, 0)?) {
            // Axis 1 keeps the batch apart: [N, C, 1, 1] -> [N, C] is the same memory, else a
            // Flatten layer.
            let a = axis(attr_int(node, "axis", 1), x.dims.len())?;
            if a != 1 {
                bail!("Flatten on axis {a} is not supported (axis 1 keeps the batch apart)");
            }
            let v = self.reshape_free(node, &x, &[-1, -1])?;
            self.set(node, 0, v);
            return Ok(());
        }
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
            let axes: Vec<usize> = axes.iter().map(|&a| axis(a, rank)).collect::<Result<_>>()?;
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

    /// DepthToSpace or SpaceToDepth of an image of free size: the image kernels.
    fn depth_to_space_free(&mut self, node: &NodeProto, x: &FreeVal) -> Result<Val> {
        let c = x.channels()?;
        let block = attr_int(node, "blocksize", 0);
        let mode =
            attr(node, "mode").map_or("DCR".into(), |a| String::from_utf8_lossy(&a.s).into_owned());
        if node.op_type == "SpaceToDepth" {
            let b = u32::try_from(block).unwrap_or(0);
            if b == 0 || b > crate::model::limits::MAX_WINDOW {
                bail!(
                    "blocksize {block} is not in 1..={}",
                    crate::model::limits::MAX_WINDOW
                );
            }
            if mode != "DCR" {
                bail!("SpaceToDepth in mode {mode} needs fixed input dims (free sizes take DCR)");
            }
            let hw = match x.hw() {
                Some((h, w)) if !h.is_multiple_of(b) || !w.is_multiple_of(b) => {
                    bail!("blocksize {b} does not divide {h}x{w}")
                }
                hw => hw.map(|(h, w)| (h / b, w / b)),
            };
            let layer = plain_layer(node_name(node), LayerOp::SpaceToDepth([b, b]), vec![x.id]);
            let c = c.checked_mul(b * b).context("too many channels")?;
            return Ok(self.push_free(layer, FreeVal::image(c, hw)));
        }
        let b = u32::try_from(block).unwrap_or(0);
        if b == 0
            || b > crate::model::limits::MAX_WINDOW
            || !c.is_multiple_of(b * b)
            || (mode != "DCR" && mode != "CRD")
        {
            bail!("blocksize {block} and mode {mode} do not fit {c} channels");
        }
        let spec = crate::model::DepthToSpaceSpec {
            block: [b, b],
            crd: mode == "CRD",
            crop: [0, 0],
        };
        let hw = x
            .hw()
            .map(|(h, w)| (h.saturating_mul(b), w.saturating_mul(b)));
        let layer = plain_layer(node_name(node), LayerOp::DepthToSpace(spec), vec![x.id]);
        Ok(self.push_free(layer, FreeVal::image(c / (b * b), hw)))
    }

    /// ONNX Transpose.
    pub(crate) fn lower_transpose(&mut self, node: &NodeProto) -> Result<()> {
        if let Some(x) = self.free_val(input(node, 0)?) {
            let v = self.transpose_free(node, &x)?;
            self.set(node, 0, v);
            return Ok(());
        }
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

    /// Transpose with free dims: of an NHWC input to NCHW (the engine feeds NCHW already), or of
    /// an NCHW image to channels last (kept flat per item for a Reshape and Concat after it).
    fn transpose_free(&mut self, node: &NodeProto, x: &FreeVal) -> Result<Val> {
        let perm = attr_ints(node, "perm").unwrap_or_default();
        let permuted = |x: &FreeVal| -> Vec<Dim> {
            perm.iter()
                .filter_map(|&p| usize::try_from(p).ok().and_then(|p| x.dims.get(p).copied()))
                .collect()
        };
        let is_output = node
            .output
            .first()
            .is_some_and(|o| self.graph.output.iter().any(|g| g.name == *o));
        if x.id == 0 && self.nhwc_input && perm == [0, 3, 1, 2] {
            // The NHWC input: the engine already packs pixels as NCHW.
            let dims = permuted(x);
            return Ok(Val::Free(FreeVal {
                dims,
                flat: false,
                id: x.id,
                c: x.c,
            }));
        }
        if perm != [0, 2, 3, 1] || x.flat || x.dims.len() != 4 {
            bail!(
                "Transpose {perm:?} with a free size is supported only from an NHWC input to \
                 NCHW, or from NCHW to NHWC"
            );
        }
        let dims = permuted(x);
        if x.c == 1 && is_output {
            // A one-channel map is the same memory in NCHW and NHWC.
            return Ok(Val::Free(FreeVal {
                dims,
                flat: true,
                id: x.id,
                c: x.c,
            }));
        }
        let out = FreeVal {
            id: 0,
            dims,
            c: x.c,
            flat: true,
        };
        let layer = plain_layer(node_name(node), LayerOp::ToNhwc, vec![x.id]);
        Ok(self.push_free(layer, out))
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
        if reps.len() != dims.len() || 2 * dims.len() > MAX_RANK + 4 || reps.iter().any(|&r| r < 0)
        {
            bail!("repeats {reps:?} do not fit {dims:?}");
        }
        // Saturating: a product beyond u32 is refused by the limits after the node.
        let out: Vec<u32> = dims
            .iter()
            .zip(&reps)
            .map(|(&d, &r)| d.saturating_mul(u32::try_from(r).unwrap_or(u32::MAX)))
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
        if let Some(x) = self.free_val(input(node, 0)?) {
            let v = self.depth_to_space_free(node, &x)?;
            self.set(node, 0, v);
            return Ok(());
        }
        let dims = self.dims_of(input(node, 0)?)?;
        let b = u32::try_from(attr_int(node, "blocksize", 0)).unwrap_or(0);
        let [n, c, h, w] = dims[..] else {
            bail!("{op} takes rank-4 input, not {dims:?}");
        };
        if b == 0 || b > crate::model::limits::MAX_WINDOW {
            bail!(
                "blocksize {b} is not in 1..={}",
                crate::model::limits::MAX_WINDOW
            );
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
                    vec![n, cc, h.saturating_mul(b), w.saturating_mul(b)],
                )
            } else {
                (
                    vec![n, b, b, cc, h, w],
                    vec![0, 3, 4, 1, 5, 2],
                    vec![n, cc, h.saturating_mul(b), w.saturating_mul(b)],
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
                vec![n, c.saturating_mul(b * b), h / b, w / b],
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
