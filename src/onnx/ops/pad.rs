//! Pad.

use anyhow::{Context as _, Result, bail};

use crate::model::{CopySpec, LayerOp, PadMode, PadSpec, TensorOp};
use crate::onnx::lowering::{
    FreeVal, Lowering, Val, axis, item_shape, numel, plain_layer, strides_i64,
};
use crate::onnx::proto::NodeProto;
use crate::onnx::{attr, attr_float, attr_ints, node_name};

impl Lowering<'_> {
    /// ONNX Pad.
    pub(crate) fn lower_pad(&mut self, node: &NodeProto) -> Result<()> {
        let v = self.pad(node)?;
        self.set(node, 0, v);
        Ok(())
    }

    /// Pad: constant on any axis as a fill and a copy (negative pads crop); edge and reflect
    /// through the image pad kernel ([`Self::image_pad`]).
    fn pad(&mut self, node: &NodeProto) -> Result<Val> {
        let name = node.input.first().context("has no input")?.clone();
        let rank = self.shape_of(&name)?.len();
        let mode = match attr(node, "mode").map(|m| m.s.as_slice()) {
            None | Some(b"constant") => None,
            Some(b"edge") => Some(PadMode::Edge),
            Some(b"reflect") => Some(PadMode::Reflect),
            Some(other) => bail!(
                "Pad mode {} is not supported (constant, edge and reflect are)",
                String::from_utf8_lossy(other)
            ),
        };
        let pads = match self.constant(node, 1, "the pads")? {
            Some(t) => t.ints(),
            None => attr_ints(node, "pads").context("has no pads")?,
        };
        let value = match self.constant(node, 2, "the pad value")? {
            Some(t) => t.data.first().copied().unwrap_or(0.0),
            None => attr_float(node, "value", 0.0) as f64,
        };
        let axes: Vec<usize> = match self.constant(node, 3, "the axes")? {
            Some(t) => t
                .ints()
                .iter()
                .map(|&a| axis(a, rank))
                .collect::<Result<_>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            bail!("pads {pads:?} do not fit {} axes", axes.len());
        }
        let (mut before, mut after) = (vec![0i64; rank], vec![0i64; rank]);
        for (k, &a) in axes.iter().enumerate() {
            before[a] = pads[k];
            after[a] = pads[k + axes.len()];
        }
        if let Some(x) = self.free_val(&name) {
            let spec = pad_spec_free(&before, &after, mode, value)?;
            let c = x.channels()? + spec.channels[0] + spec.channels[1];
            let grow = |d: Option<u32>, [a, b]: [u32; 2]| d.map(|d| d + a + b);
            let hw = x
                .hw()
                .and_then(|(h, w)| Some((grow(Some(h), spec.height)?, grow(Some(w), spec.width)?)));
            let layer = plain_layer(node_name(node), LayerOp::Pad(spec), vec![x.id]);
            return Ok(self.push_free(layer, FreeVal::image(c, hw)));
        }
        let dims = self.dims_of(&name)?;
        if let Some(mode) = mode
            && before.iter().chain(&after).any(|&p| p != 0)
        {
            return self.image_pad(node, &name, &before, &after, mode);
        }
        let out: Vec<u32> = (0..rank)
            .map(|k| (dims[k] as i64 + before[k] + after[k]).max(0) as u32)
            .collect();
        // Fill, then copy the part of the input that survives (negative pads crop).
        let os = strides_i64(&out);
        let is = strides_i64(&dims);
        let counts: Vec<u32> = (0..rank)
            .map(|k| (dims[k] as i64 + before[k].min(0) + after[k].min(0)).max(0) as u32)
            .collect();
        let fill = CopySpec {
            dims: out.clone(),
            src_strides: vec![0; rank],
            src_offset: 0,
            dst_strides: os.clone(),
            dst_offset: 0,
        };
        let body = CopySpec {
            dims: counts.clone(),
            src_strides: is.clone(),
            src_offset: (0..rank).map(|k| (-before[k]).max(0) * is[k]).sum(),
            dst_strides: os.clone(),
            dst_offset: (0..rank).map(|k| before[k].max(0) * os[k]).sum(),
        };
        let (v, _) = self.gpu(&name)?;
        let mut copies = vec![(None, fill)];
        if numel(&counts) > 0 {
            copies.push((Some(0), body));
        }
        let id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::Copy(copies)),
            vec![v],
            out.clone(),
            vec![value as f32],
        );
        Ok(Val::Gpu(id, out))
    }

    /// An edge or reflect Pad of `name` by the image pad kernel, which pads the height and
    /// width of `[C, H, W]` items: the axes that [`item_shape`] makes those (of rank 4 and more
    /// the last two, of rank 3 the last, of rank 2 the last as the height), every other axis
    /// folded into the channels, which these modes do not pad.
    fn image_pad(
        &mut self,
        node: &NodeProto,
        name: &str,
        before: &[i64],
        after: &[i64],
        mode: PadMode,
    ) -> Result<Val> {
        let dims = self.dims_of(name)?;
        let rank = dims.len();
        let (h_axis, w_axis) = match rank {
            0 | 1 => (None, None),
            2 => (Some(1), None),
            3 => (None, Some(2)),
            _ => (Some(rank - 2), Some(rank - 1)),
        };
        let mode_name = if mode == PadMode::Edge {
            "edge"
        } else {
            "reflect"
        };
        for k in 0..rank {
            if Some(k) != h_axis && Some(k) != w_axis && (before[k] != 0 || after[k] != 0) {
                bail!(
                    "Pad mode {mode_name} pads axis {k} of {dims:?}; batchwise pads only the last \
                 two axes in this mode (of rank 3, the last)"
                );
            }
        }
        if before.iter().chain(after).any(|&p| p < 0) {
            bail!("negative pads (crops) are not supported in Pad mode {mode_name}");
        }
        if numel(&dims) == 0 {
            bail!("cannot pad an empty tensor in mode {mode_name}");
        }
        let side = |a: Option<usize>| a.map_or([0, 0], |k| [before[k] as u32, after[k] as u32]);
        let spec = PadSpec {
            channels: [0, 0],
            height: side(h_axis),
            width: side(w_axis),
            mode,
            value: 0.0,
        };
        let out: Vec<u32> = (0..rank)
            .map(|k| dims[k] + before[k] as u32 + after[k] as u32)
            .collect();
        if spec.output(item_shape(&dims)) != item_shape(&out) {
            bail!("a Pad of {dims:?} to {out:?} is not a pad of images");
        }
        let (v, _) = self.gpu(name)?;
        let id = self.push(
            node_name(node),
            LayerOp::Pad(spec),
            vec![v],
            out.clone(),
            Vec::new(),
        );
        if self.ints.contains(&v) {
            self.ints.insert(id);
        }
        Ok(Val::Gpu(id, out))
    }
}

/// The image pad kernel's spec for pads of `[N, C, H, W]` with free sizes: channels (constant
/// mode only), height and width, none negative, the batch not padded.
fn pad_spec_free(
    before: &[i64],
    after: &[i64],
    mode: Option<PadMode>,
    value: f64,
) -> Result<PadSpec> {
    let (&[n0, c0, h0, w0], &[n1, c1, h1, w1]) = (before, after) else {
        bail!("pads {before:?} {after:?} are not for a 4-D tensor");
    };
    if n0 != 0 || n1 != 0 || [c0, h0, w0, c1, h1, w1].iter().any(|&v| v < 0) {
        bail!("pads {before:?} {after:?}: batch or negative pads are not supported");
    }
    if (c0 != 0 || c1 != 0) && mode.is_some() {
        bail!("channel padding is supported in constant mode only");
    }
    let side = |a: i64, b: i64| -> Result<[u32; 2]> { Ok([u32::try_from(a)?, u32::try_from(b)?]) };
    Ok(PadSpec {
        channels: side(c0, c1)?,
        height: side(h0, h1)?,
        width: side(w0, w1)?,
        mode: mode.unwrap_or(PadMode::Constant),
        value: value as f32,
    })
}
