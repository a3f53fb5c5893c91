//! Convolution, ConvolutionDepthWise and Deconvolution with their fused activations, and ReLU /
//! PReLU: fused into the convolution before them where it is their only reader, else standalone.

use anyhow::{Context as _, Result, anyhow, bail};

use super::build::Builder;
use super::param::LayerLine;
use crate::model::{
    Activation, BinaryOp, Conv2dSpec, ConvTranspose2dSpec, ItemShape, LayerOp, UnaryOp,
};

/// The shape params shared by the three convolution layers.
struct ConvShape {
    in_c: u32,
    out_c: u32,
    /// Height, width.
    kernel: [u32; 2],
    stride: [u32; 2],
    dilation: [u32; 2],
    groups: u32,
}

impl ConvShape {
    fn read(l: &LayerLine, in_c: u32) -> Result<Self> {
        let out_c = l.uint(0, 0)?;
        let k_w = l.uint(1, 0)?;
        let k_h = l.uint(11, k_w)?;
        let dil_w = l.uint(2, 1)?;
        let s_w = l.uint(3, 1)?;
        let groups = if l.kind == "ConvolutionDepthWise" {
            l.uint(7, 1)?
        } else {
            1
        };
        if out_c == 0
            || k_w == 0
            || k_h == 0
            || groups == 0
            || !in_c.is_multiple_of(groups)
            || !out_c.is_multiple_of(groups)
        {
            bail!(
                "num_output {out_c}, kernel {k_w}, group {groups} do not fit {in_c} input channels"
            );
        }
        let shape = ConvShape {
            in_c,
            out_c,
            kernel: [k_h, k_w],
            stride: [l.uint(13, s_w)?, s_w],
            dilation: [l.uint(12, dil_w)?, dil_w],
            groups,
        };
        if shape.stride.contains(&0) || shape.dilation.contains(&0) {
            bail!("stride and dilation must be at least 1");
        }
        // Checked before any size arithmetic on them (the limits check the model again at the
        // end).
        let max = crate::model::limits::MAX_WINDOW;
        if [shape.kernel, shape.stride, shape.dilation]
            .iter()
            .any(|v| v.iter().any(|&x| x > max))
        {
            bail!(
                "kernel {:?}, stride {:?} or dilation {:?} exceed {max}, the most batchwise takes",
                shape.kernel,
                shape.stride,
                shape.dilation
            );
        }
        Ok(shape)
    }

    /// The number of weights, `out_c * in_c / groups * k_h * k_w`, where it fits in memory.
    fn weight_count(&self) -> Option<usize> {
        [self.in_c / self.groups, self.kernel[0], self.kernel[1]]
            .into_iter()
            .try_fold(self.out_c as usize, |n, d| n.checked_mul(d as usize))
    }
}

pub(super) fn convolution(b: &mut Builder<'_>, l: &LayerLine) -> Result<()> {
    let input = b.input_of(l)?;
    let s = ConvShape::read(l, b.channels(input))?;
    let size = l.int(6, 0);
    let count = s
        .weight_count()
        .filter(|&n| i64::try_from(n) == Ok(size))
        .ok_or_else(|| anyhow!("weight_data_size {size} does not match the shape"))?;
    if l.int(8, 0) != 0 {
        bail!("int8 quantized convolutions are not supported");
    }
    let weights = b.bin.tagged(count)?;
    let bias = if l.int(5, 0) != 0 {
        b.bin.raw_f32(s.out_c as usize)?
    } else {
        Vec::new()
    };
    let (pads, activation) = (pads(l)?, activation(l)?);
    let (op, weights) = if l.kind == "Deconvolution" {
        if l.int(20, 0) != 0 || l.int(21, 0) != 0 {
            bail!("a fixed output size is not supported");
        }
        let spec = ConvTranspose2dSpec {
            in_c: s.in_c,
            out_c: s.out_c,
            k_h: s.kernel[0],
            k_w: s.kernel[1],
            stride: s.stride,
            pads,
            dilation: s.dilation,
            output_padding: [l.uint(19, 0)?, l.uint(18, 0)?],
            groups: s.groups,
            activation,
        };
        // `passes::conv_transpose_phases` rewrites it where that is faster.
        (LayerOp::ConvTranspose2d(spec), in_out_swapped(&s, &weights))
    } else {
        let spec = Conv2dSpec {
            in_c: s.in_c,
            out_c: s.out_c,
            k_h: s.kernel[0],
            k_w: s.kernel[1],
            stride: s.stride,
            pads,
            dilation: s.dilation,
            groups: s.groups,
            activation,
        };
        crate::kernels::conv2d::supported(&spec).map_err(|e| anyhow!("{e}"))?;
        (LayerOp::Conv2d(spec), weights)
    };
    let layer = b.push(l, op, vec![input], s.out_c)?;
    layer.weights = weights;
    layer.bias = bias;
    Ok(())
}

/// Deconvolution weights: ncnn stores `[out][in][kh][kw]` per group; ONNX ConvTranspose (the
/// IR's layout) is `[in][out][kh][kw]`.
fn in_out_swapped(s: &ConvShape, weights: &[f32]) -> Vec<f32> {
    let icg = (s.in_c / s.groups) as usize;
    let ocg = (s.out_c / s.groups) as usize;
    let taps = (s.kernel[0] * s.kernel[1]) as usize;
    let mut w = vec![0.0; weights.len()];
    for g in 0..s.groups as usize {
        for o in 0..ocg {
            for i in 0..icg {
                for t in 0..taps {
                    w[((g * icg + i) * ocg + o) * taps + t] =
                        weights[((g * ocg + o) * icg + i) * taps + t];
                }
            }
        }
    }
    w
}

/// The activation fused into a convolution (params 9 and 10).
fn activation(l: &LayerLine) -> Result<Activation> {
    let p = l.array(10);
    Ok(match l.int(9, 0) {
        0 => Activation::None,
        1 => Activation::LeakyRelu { alpha: 0.0 },
        2 => Activation::LeakyRelu {
            alpha: p.first().copied().unwrap_or(0.0),
        },
        3 => Activation::Clip {
            min: p.first().copied().unwrap_or(f32::MIN),
            max: p.get(1).copied().unwrap_or(f32::MAX),
        },
        other => {
            bail!("activation type {other} is not supported yet (none, relu, leaky relu, clip)")
        }
    })
}

/// Pads: top, left, bottom, right from ncnn's left, top, right, bottom with its defaults (each
/// falls back to the one before).
fn pads(l: &LayerLine) -> Result<[u32; 4]> {
    let left = l.int(4, 0);
    if left < 0 {
        bail!("automatic SAME padding ({left}) is not supported yet");
    }
    let top = l.int(14, left);
    let right = l.int(15, left);
    let bottom = l.int(16, top);
    let pad = |v: i64| {
        u32::try_from(v)
            .ok()
            .filter(|&p| p <= crate::model::limits::MAX_PAD)
            .with_context(|| format!("padding {v} is out of range"))
    };
    Ok([pad(top)?, pad(left)?, pad(bottom)?, pad(right)?])
}

/// ReLU (LeakyReLU where it has a slope) and PReLU.
pub(super) fn relu(b: &mut Builder<'_>, l: &LayerLine) -> Result<()> {
    let input = b.input_of(l)?;
    let c = b.channels(input);
    let act = if l.kind == "ReLU" {
        Activation::LeakyRelu {
            alpha: l.float(0, 0.0),
        }
    } else {
        let slopes = b.bin.raw_f32(l.uint(0, 1)? as usize)?;
        Activation::PRelu {
            slopes: match slopes[..] {
                [one] => vec![one; c as usize],
                _ => slopes,
            },
        }
    };
    if l.inputs.first().is_some_and(|blob| b.sole_reader(blob))
        && let Some(layer) = b.last_writing(input)
        && let LayerOp::Conv2d(spec) = &mut layer.op
    {
        fuse(spec, act)?;
        return b.bind(l.sole_output()?, input);
    }
    let (op, weights) = match act {
        Activation::LeakyRelu { alpha } => {
            (LayerOp::Unary(UnaryOp::LeakyRelu { alpha }), Vec::new())
        }
        Activation::PRelu { slopes } if slopes.len() == c as usize => (
            LayerOp::BinaryConst {
                op: BinaryOp::PRelu,
                constant: ItemShape { c, h: 1, w: 1 },
                constant_first: false,
            },
            slopes,
        ),
        _ => bail!("{} slopes do not fit {c} channels", l.kind),
    };
    b.push(l, op, vec![input], c)?.weights = weights;
    Ok(())
}

/// Runs `act` inside the convolution `spec`.
fn fuse(spec: &mut Conv2dSpec, act: Activation) -> Result<()> {
    if spec.activation != Activation::None {
        bail!("two activations in a row are not supported");
    }
    if let Activation::PRelu { slopes } = &act
        && slopes.len() != spec.out_c as usize
    {
        bail!("{} slopes for {} channels", slopes.len(), spec.out_c);
    }
    spec.activation = act;
    Ok(())
}
