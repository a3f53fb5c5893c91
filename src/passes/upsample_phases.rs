//! A convolution over a nearest upsample by whole factors, as one dense convolution on the small
//! input computing every output phase as channels, then DepthToSpace.
//!
//! Output row `Y * f + q` of a convolution over an input upsampled `f` times reads input rows
//! `Y + floor((q + t - pad) / f)` for its taps `t`: each phase `q` is a convolution of the small
//! input whose taps that land on the same input row are summed into one weight. All `f^2`
//! phases together are one convolution with `f^2` times the output channels on a map `f^2`
//! times smaller: the same multiply-adds, but on the shape the fast kernels are made for (a 4x
//! upscaler's last 3x3 convolution to 16 channels at 384 x 384 becomes one to 256 channels at
//! 96 x 96, Winograd's best case), and its input transform reads the small input, not the
//! upsampled one.
//!
//! Applies to dense convolutions of stride 1 whose only input is the upsample (a fused residual
//! would need the phases' order); the rest keep `passes::fuse_upsample`. Models whose shapes
//! were fixed at import (every dim bound) are left alone, as `conv_transpose_phases` does.
//! `BATCHWISE_UPSAMPLE_PHASES=off` leaves every convolution to `fuse_upsample` (to measure).

use super::conv_transpose_phases::{AxisPlan, PhaseConv, into_phases, phase_conv};
use crate::model::{Activation, Conv2dSpec, DepthToSpaceSpec, LayerOp, Model, ValueId};

/// Returns the model and how many convolutions were rewritten.
pub fn apply(mut model: Model) -> (Model, usize) {
    let off = std::env::var("BATCHWISE_UPSAMPLE_PHASES").is_ok_and(|v| v == "off");
    if off || model.static_shapes.is_some() {
        return (model, 0);
    }
    let mut rewritten = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let Some((small, resize_name, phases)) = candidate(&model, i) else {
            i += 1;
            continue;
        };
        let name = format!("{resize_name} + {} (phases)", model.layers[i].name);
        into_phases(&mut model, i, small, name, phases);
        rewritten += 1;
        i += 2;
    }
    (model, rewritten)
}

/// For the layer at `i`, a convolution over a nearest upsample: the upsample's input and name,
/// and the layer's rewrite.
fn candidate(model: &Model, i: usize) -> Option<(ValueId, String, PhaseConv)> {
    let layer = &model.layers[i];
    let LayerOp::Conv2d(spec) = &layer.op else {
        return None;
    };
    let &[up] = layer.inputs.as_slice() else {
        return None;
    };
    let resize = &model.layers[model.producer(up)?];
    let LayerOp::ResizeNearest(factor) = resize.op else {
        return None;
    };
    if factor == [1, 1] || spec.is_pointwise() {
        return None;
    }
    let phases = upsampled_conv_as_conv(spec, factor, &layer.weights, &layer.bias)?;
    Some((resize.inputs[0], resize.name.clone(), phases))
}

/// One axis of a convolution (`k` taps, pads `pad_begin`/`pad_end`, stride 1) over an input
/// upsampled `f` times, split into `f` phases: phase `q` of output `Y * f + q` reads input
/// `Y + d` with tap `t` where `d = floor((q + t - pad_begin) / f)` ([`offset`]).
fn axis_plan(f: u32, k: u32, pad_begin: u32, pad_end: u32) -> Option<AxisPlan> {
    let (f, k, pb, pe) = (f as i64, k as i64, pad_begin as i64, pad_end as i64);
    let d = |q: i64, t: i64| (q + t - pb).div_euclid(f);
    let d_min = d(0, 0);
    let d_max = d(f - 1, k - 1);
    if d_min > 0 {
        return None; // the window would start past the first input row: a negative pad
    }
    // The convolution's output is `f * H + extra` rows; the phases' `H + ceil(extra / f)`.
    let extra = pb + pe - k + 1;
    let phase_extra = extra.div_euclid(f) + i64::from(extra.rem_euclid(f) != 0);
    let phase_pad_end = phase_extra + d_max;
    (phase_pad_end >= 0).then_some(AxisPlan {
        d_min,
        window: (d_max - d_min + 1) as u32,
        pad_end: phase_pad_end as u32,
        crop: (f * phase_extra - extra) as u32,
    })
}

/// Where in `plan`'s window phase `q`'s tap `t` reads.
fn offset(plan: &AxisPlan, f: u32, pad_begin: u32, q: u32, t: u32) -> usize {
    let d = (q as i64 + t as i64 - pad_begin as i64).div_euclid(f as i64);
    (d - plan.d_min) as usize
}

/// A convolution over an input upsampled (nearest) by `factor`, as one convolution of the
/// small input producing every output phase as channels (`(qy * fw + qx) * out_c + c`), then
/// DepthToSpace (DCR) with a crop. Returns the convolution, its weights and bias, DepthToSpace,
/// or None where the rewrite does not apply (stride, dilation, groups; a kernel the conv2d
/// kernels do not run).
fn upsampled_conv_as_conv(
    spec: &Conv2dSpec,
    factor: [u32; 2],
    weights: &[f32],
    bias: &[f32],
) -> Option<PhaseConv> {
    if spec.groups != 1 || spec.dilation != [1, 1] || spec.stride != [1, 1] {
        return None;
    }
    let [fh, fw] = factor;
    let ph = axis_plan(fh, spec.k_h, spec.pads[0], spec.pads[2])?;
    let pw = axis_plan(fw, spec.k_w, spec.pads[1], spec.pads[3])?;
    let (ic, oc) = (spec.in_c as usize, spec.out_c as usize);
    let (kh, kw) = (spec.k_h as usize, spec.k_w as usize);
    let (wh, ww) = (ph.window as usize, pw.window as usize);
    let out_c = (fh * fw) as usize * oc;
    let mut w = vec![0.0f32; out_c * ic * wh * ww];
    for qy in 0..fh {
        for qx in 0..fw {
            let phase = (qy * fw + qx) as usize;
            for ty in 0..spec.k_h {
                let a = offset(&ph, fh, spec.pads[0], qy, ty);
                for tx in 0..spec.k_w {
                    let b = offset(&pw, fw, spec.pads[1], qx, tx);
                    for o in 0..oc {
                        for i in 0..ic {
                            w[(((phase * oc + o) * ic + i) * wh + a) * ww + b] +=
                                weights[((o * ic + i) * kh + ty as usize) * kw + tx as usize];
                        }
                    }
                }
            }
        }
    }
    let activation = match &spec.activation {
        Activation::PRelu { slopes } => Activation::PRelu {
            slopes: slopes.repeat((fh * fw) as usize),
        },
        a => a.clone(),
    };
    let conv = phase_conv(spec.in_c, out_c as u32, [&ph, &pw], activation);
    crate::kernels::conv2d::supported(&conv).ok()?;
    let d2s = DepthToSpaceSpec {
        block: factor,
        crd: false,
        crop: [ph.crop, pw.crop],
    };
    Some((conv, w, bias.repeat((fh * fw) as usize), d2s))
}

#[cfg(test)]
mod tests {
    use super::super::cpu::{layer_of, max_diff, model, random, run};
    use super::super::tests::conv;
    use super::*;

    fn upsampled_conv(spec: &Conv2dSpec, factor: [u32; 2], seed: u64) -> Model {
        let n = (spec.out_c * spec.in_c * spec.k_h * spec.k_w) as usize;
        let mut conv = layer_of(LayerOp::Conv2d(spec.clone()), vec![1], 2);
        conv.weights = random(n, seed);
        conv.bias = random(spec.out_c as usize, seed + 1);
        let up = layer_of(LayerOp::ResizeNearest(factor), vec![0], 1);
        model(spec.in_c, vec![up, conv], 2)
    }

    /// The rewrite computes the same function as the convolution over the upsample, on the CPU
    /// references, for the shapes upscalers use (3x3 pad 1 after 2x and 4x) and odd ones:
    /// uneven factors, asymmetric and large pads, 2x2, 5x5 and 1x3 kernels, PRelu. The bound is
    /// float32 rounding of sums of up to 5 x 5 x 3 products of values in -1..1 (the phase
    /// weights sum taps first: another order of the same additions).
    #[test]
    fn phases_compute_the_same_function() {
        let cases: [([u32; 2], [u32; 2], [u32; 4]); 8] = [
            ([4, 4], [3, 3], [1; 4]),
            ([2, 2], [3, 3], [1; 4]),
            ([2, 3], [3, 3], [1; 4]),
            ([2, 2], [5, 5], [2; 4]),
            ([3, 2], [2, 2], [0, 0, 1, 1]),
            ([2, 2], [3, 3], [0; 4]),
            ([4, 2], [1, 3], [0, 2, 0, 1]),
            ([2, 2], [3, 3], [4, 3, 1, 5]),
        ];
        for (i, (factor, [k_h, k_w], pads)) in cases.into_iter().enumerate() {
            let spec = Conv2dSpec {
                k_h,
                k_w,
                pads,
                activation: Activation::PRelu {
                    slopes: vec![0.1, -0.3],
                },
                ..conv(3, 2, 1)
            };
            let before = upsampled_conv(&spec, factor, i as u64);
            let (after, n) = apply(before.clone());
            assert_eq!(n, 1, "case {i}");
            assert!(matches!(after.layers[1].op, LayerOp::Conv2d(_)), "case {i}");
            assert!(
                matches!(after.layers[2].op, LayerOp::DepthToSpace(_)),
                "case {i}"
            );
            assert_eq!(after.layers[1].inputs, [0], "case {i}");
            let (h, w) = (5, 4);
            let x = random((3 * h * w) as usize, 40 + i as u64);
            let (expected, got) = (run(&before, &x, h, w), run(&after, &x, h, w));
            assert!(max_diff(&expected, &got) < 1e-5, "case {i}");
        }
    }

    /// 4x nearest then 3x3 pad 1: phases 0 and 3 of each axis read 2 input rows, 1 and 2 one;
    /// the phase convolution is 3x3 pad 1 to 16x the channels.
    #[test]
    fn a_4x_upscaler_s_last_convolution_becomes_16_phases() {
        let (after, _) = apply(upsampled_conv(&conv(4, 3, 3), [4, 4], 7));
        let LayerOp::Conv2d(phases) = &after.layers[1].op else {
            panic!("not a convolution: {:?}", after.layers[1].op)
        };
        assert_eq!(
            (phases.out_c, phases.k_h, phases.k_w, phases.pads),
            (48, 3, 3, [1; 4])
        );
        let LayerOp::DepthToSpace(d2s) = &after.layers[2].op else {
            panic!("not DepthToSpace")
        };
        assert_eq!((d2s.block, d2s.crop), ([4, 4], [0, 0]));
    }

    /// What stays: a 1x1 (it commutes with the upsample), a strided convolution, a model of fixed
    /// shapes.
    #[test]
    fn leaves_what_it_cannot_rewrite() {
        assert_eq!(apply(upsampled_conv(&conv(2, 2, 1), [2, 2], 1)).1, 0);
        let mut spec = conv(2, 2, 3);
        spec.stride = [2, 2];
        assert_eq!(apply(upsampled_conv(&spec, [2, 2], 2)).1, 0);
        spec.stride = [1, 1];
        let mut fixed = upsampled_conv(&spec, [2, 2], 3);
        fixed.static_shapes = Some(fixed.shapes(4, 4).unwrap());
        assert_eq!(apply(fixed).1, 0);
    }
}
