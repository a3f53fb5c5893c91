//! Limits on what a model file may ask for: the sizes in layer specs and the sizes of the values
//! they compute.
//!
//! Model files come from strangers. Every size an importer reads ends up in a spec of
//! [`super::ops`] whose shape rules use `u32` arithmetic; with each parameter capped here and each
//! value's sides and element count capped per layer ([`fits`], checked by
//! [`super::Model::shapes`]), that arithmetic cannot overflow, and a file asking for more gets an
//! error naming the layer instead of a wrapped size (a black image) or an abort.

use anyhow::{Result, bail};

use super::{ItemShape, Layer, LayerOp, Model};

/// Kernel sides, strides, dilations and whole resize factors.
pub const MAX_WINDOW: u32 = 1 << 10;
/// Paddings, crops and output paddings, per side.
pub const MAX_PAD: u32 = 1 << 14;
/// Channels of one layer's input or output.
pub const MAX_CHANNELS: u32 = 1 << 20;
/// Height or width of any value.
pub const MAX_SIDE: u32 = 1 << 18;
/// Elements of one value of one batch item (a storage buffer indexes them with `u32`).
pub const MAX_ELEMENTS: u64 = 1 << 31;
/// Layers in a model.
pub const MAX_LAYERS: usize = 1 << 16;

/// Whether a value of `s` per item is within the limits.
pub fn fits(s: ItemShape) -> bool {
    s.h <= MAX_SIDE && s.w <= MAX_SIDE && s.c <= MAX_ELEMENTS as u32 && s.elements() <= MAX_ELEMENTS
}

/// The first layer of `model` whose spec asks for more than the limits, as an error naming it.
pub fn check(model: &Model) -> Result<()> {
    if model.layers.len() > MAX_LAYERS {
        bail!(
            "{} has {} layers; batchwise takes at most {MAX_LAYERS}",
            model.name,
            model.layers.len()
        );
    }
    if model.input_channels > MAX_CHANNELS {
        bail!(
            "{} reads {} input channels; batchwise takes at most {MAX_CHANNELS}",
            model.name,
            model.input_channels
        );
    }
    for layer in &model.layers {
        if let Err(why) = check_layer(layer) {
            bail!(
                "layer {} ({}) {why}; batchwise takes kernels, strides, dilations and scales up \
                 to {MAX_WINDOW}, pads up to {MAX_PAD}, channels up to {MAX_CHANNELS}",
                layer.name,
                layer.op.kind()
            );
        }
    }
    if let Some(shapes) = &model.static_shapes
        && let Some((v, s)) = shapes.iter().enumerate().find(|(_, s)| !fits(**s))
    {
        bail!(
            "{} computes a value ({v}) of {}x{}x{} per item, beyond batchwise's limits ({MAX_SIDE} \
             px a side, {MAX_ELEMENTS} elements)",
            model.name,
            s.c,
            s.h,
            s.w
        );
    }
    Ok(())
}

/// Why `layer`'s spec is out of limits.
fn check_layer(layer: &Layer) -> std::result::Result<(), String> {
    let window = |what: &str, v: &[u32]| match v.iter().find(|&&x| x == 0 || x > MAX_WINDOW) {
        Some(x) => Err(format!("has {what} {x}")),
        None => Ok(()),
    };
    let pad = |what: &str, v: &[u32]| match v.iter().find(|&&x| x > MAX_PAD) {
        Some(x) => Err(format!("has {what} {x}")),
        None => Ok(()),
    };
    let channels = |v: &[u32]| match v.iter().find(|&&x| x == 0 || x > MAX_CHANNELS) {
        Some(x) => Err(format!("has {x} channels")),
        None => Ok(()),
    };
    match &layer.op {
        LayerOp::Conv2d(s)
        | LayerOp::Conv2dResidual { spec: s, .. }
        | LayerOp::Conv2dUpsampled { spec: s, .. }
        | LayerOp::Conv2dGated(s)
        | LayerOp::Conv2dProgram { spec: s, .. } => {
            window("a kernel side", &[s.k_h, s.k_w])?;
            window("a stride", &s.stride)?;
            window("a dilation", &s.dilation)?;
            pad("a pad", &s.pads)?;
            channels(&[s.in_c, s.out_c, s.groups])
        }
        LayerOp::ConvTranspose2d(s) => {
            window("a kernel side", &[s.k_h, s.k_w])?;
            window("a stride", &s.stride)?;
            window("a dilation", &s.dilation)?;
            pad("a pad", &s.pads)?;
            pad("an output padding", &s.output_padding)?;
            channels(&[s.in_c, s.out_c, s.groups])
        }
        LayerOp::Pool2d(s) => {
            window("a kernel side", &s.k)?;
            window("a stride", &s.stride)?;
            window("a dilation", &s.dilation)?;
            pad("a pad", &s.pads)
        }
        LayerOp::DepthToSpace(s) => {
            window("a block", &s.block)?;
            pad("a crop", &s.crop)
        }
        LayerOp::ResizeNearest(scale) => window("a scale", scale),
        LayerOp::SpaceToDepth(block) => window("a block", block),
        LayerOp::ResizeFilter(s) => resize_filter(s),
        LayerOp::Pad(s) => {
            pad("a pad", &[s.height, s.width].concat())?;
            pad("a channel pad", &s.channels)
        }
        LayerOp::SliceChannels { count, .. } => channels(&[*count]),
        LayerOp::BinaryConst { constant, .. } => {
            if fits(*constant) && constant.elements() == layer.weights.len() as u64 {
                Ok(())
            } else {
                Err(format!(
                    "has a constant of {}x{}x{} and {} values",
                    constant.c,
                    constant.h,
                    constant.w,
                    layer.weights.len()
                ))
            }
        }
        _ => Ok(()),
    }
}

fn resize_filter(s: &super::ResizeFilterSpec) -> std::result::Result<(), String> {
    use super::Target;
    let ok = match s.target {
        Target::Scale([h, w]) => [h, w]
            .iter()
            .all(|f| f.is_finite() && *f > 0.0 && *f <= MAX_WINDOW as f32),
        Target::Size([h, w]) | Target::Fit { size: [h, w], .. } => {
            (1..=MAX_SIDE).contains(&h) && (1..=MAX_SIDE).contains(&w)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("resizes to {:?}", s.target))
    }
}
