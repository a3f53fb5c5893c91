//! Layers that change the height and width: Pooling, Padding, PixelShuffle and Interp.

use anyhow::{Context as _, Result, anyhow, bail};

use super::build::Builder;
use super::param::LayerLine;
use crate::model::{DepthToSpaceSpec, LayerOp, PadMode, PadSpec, Pool2dSpec};

/// Max and average pooling, windowed or global (average only).
pub(super) fn pooling(b: &mut Builder<'_>, l: &LayerLine) -> Result<()> {
    let input = b.input_of(l)?;
    let c = b.channels(input);
    let average = match l.int(0, 0) {
        0 => false,
        1 => true,
        other => bail!("pooling type {other} is not supported"),
    };
    if l.int(7, 0) != 0 {
        bail!("adaptive pooling is not supported yet");
    }
    let op = if l.int(4, 0) != 0 {
        if !average {
            bail!("global max pooling is not supported yet");
        }
        LayerOp::GlobalAvgPool
    } else {
        LayerOp::Pool2d(window(l, average)?)
    };
    b.push(l, op, vec![input], c)?;
    Ok(())
}

/// The window of a Pooling layer that is not global.
fn window(l: &LayerLine, average: bool) -> Result<Pool2dSpec> {
    let k_w = l.int(1, 0);
    let k_h = l.int(11, k_w);
    let s_w = l.int(2, 1);
    let s_h = l.int(12, s_w);
    let left = l.int(3, 0);
    let right = l.int(14, left);
    let top = l.int(13, left);
    let bottom = l.int(15, top);
    // pad_mode 0: "full" padding, a partial last window (ceil); 1: valid (floor).
    let ceil_mode = match l.int(5, 0) {
        0 => true,
        1 => false,
        other => bail!("pad_mode {other} (automatic SAME padding) is not supported yet"),
    };
    let range = || anyhow!("kernel, stride or pads out of range");
    let (max_window, max_pad) = (
        crate::model::limits::MAX_WINDOW,
        crate::model::limits::MAX_PAD,
    );
    let positive = |v: i64| {
        u32::try_from(v)
            .ok()
            .filter(|&v| v > 0 && v <= max_window)
            .ok_or_else(range)
    };
    let pad = |v: i64| {
        u32::try_from(v)
            .ok()
            .filter(|&v| v <= max_pad)
            .ok_or_else(range)
    };
    Ok(Pool2dSpec {
        average,
        k: [positive(k_h)?, positive(k_w)?],
        stride: [positive(s_h)?, positive(s_w)?],
        pads: [pad(top)?, pad(left)?, pad(bottom)?, pad(right)?],
        dilation: [1, 1],
        ceil_mode,
        count_include_pad: l.int(6, 0) != 0,
    })
}

/// Constant, edge or reflect padding of height and width (and constant padding of channels).
pub(super) fn padding(b: &mut Builder<'_>, l: &LayerLine) -> Result<()> {
    let input = b.input_of(l)?;
    let c = b.channels(input);
    let p = |k: i32| -> Result<u32> {
        let v = l.int(k, 0);
        u32::try_from(v).map_err(|_| anyhow!("negative padding {v}"))
    };
    let mode = match l.int(4, 0) {
        0 => PadMode::Constant,
        1 => PadMode::Edge,
        2 => PadMode::Reflect,
        other => bail!("padding type {other} is not supported"),
    };
    if l.int(6, 0) != 0 {
        bail!("per-channel pad values are not supported yet");
    }
    let spec = PadSpec {
        channels: [p(7)?, p(8)?],
        height: [p(0)?, p(1)?],
        width: [p(2)?, p(3)?],
        mode,
        value: l.float(5, 0.0),
    };
    if mode != PadMode::Constant && spec.channels != [0, 0] {
        bail!("edge or reflect padding of channels is not supported");
    }
    let out_c = spec
        .channels
        .iter()
        .try_fold(c, |sum, &p| sum.checked_add(p))
        .with_context(|| format!("{c} channels padded by {:?} are too many", spec.channels))?;
    b.push(l, LayerOp::Pad(spec), vec![input], out_c)?;
    Ok(())
}

/// PixelShuffle: channels to an `r x r` block (DepthToSpace).
pub(super) fn pixel_shuffle(b: &mut Builder<'_>, l: &LayerLine) -> Result<()> {
    let input = b.input_of(l)?;
    let r = l.uint(0, 1)?;
    let c = b.channels(input);
    let Some(r2) = r
        .checked_mul(r)
        .filter(|&r2| r2 != 0 && c.is_multiple_of(r2))
    else {
        bail!("upscale factor {r} does not fit {c} channels");
    };
    // mode 0 is PyTorch's pixel_shuffle, ONNX DepthToSpace CRD.
    let spec = DepthToSpaceSpec {
        block: [r, r],
        crd: l.int(1, 0) == 0,
        crop: [0, 0],
    };
    b.push(l, LayerOp::DepthToSpace(spec), vec![input], c / r2)?;
    Ok(())
}

/// Interp: nearest-neighbour upscaling by whole scale factors.
pub(super) fn interp(b: &mut Builder<'_>, l: &LayerLine) -> Result<()> {
    let input = b.input_of(l)?;
    let (hs, ws) = (l.float(1, 1.0), l.float(2, 1.0));
    let whole = |v: f32| (v >= 1.0 && v.fract() == 0.0).then_some(v as u32);
    let (Some(h), Some(w)) = (whole(hs), whole(ws)) else {
        bail!("scales {hs} x {ws} are not whole numbers >= 1");
    };
    if l.int(0, 0) != 1 || l.int(3, 0) != 0 || l.int(4, 0) != 0 {
        bail!("only nearest Interp by scale factors is supported yet");
    }
    let c = b.channels(input);
    b.push(l, LayerOp::ResizeNearest([h, w]), vec![input], c)?;
    Ok(())
}
