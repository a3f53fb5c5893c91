//! A strided ConvTranspose as one dense convolution over every output phase, then
//! DepthToSpace: 4x faster than the gather kernel, which visits every tap and keeps only 1 in
//! stride^2.
//!
//! Models whose shapes were fixed at import (every dim bound) keep the gather kernel.

use crate::model::{
    Activation, Conv2dSpec, ConvTranspose2dSpec, DepthToSpaceSpec, Layer, LayerOp, Model, ValueId,
};

/// Returns the model and how many transposed convolutions were rewritten.
pub fn apply(mut model: Model) -> (Model, usize) {
    if model.static_shapes.is_some() {
        return (model, 0);
    }
    let mut rewritten = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let layer = &model.layers[i];
        let LayerOp::ConvTranspose2d(spec) = &layer.op else {
            i += 1;
            continue;
        };
        let Some(phases) = conv_transpose_as_conv(spec, &layer.weights, &layer.bias) else {
            i += 1;
            continue;
        };
        let (input, name) = (layer.inputs[0], format!("{} (phases)", layer.name));
        into_phases(&mut model, i, input, name, phases);
        rewritten += 1;
        i += 2;
    }
    (model, rewritten)
}

/// A dense convolution over every output phase, its weights and bias, and the DepthToSpace
/// that puts the phases in place.
pub(super) type PhaseConv = (Conv2dSpec, Vec<f32>, Vec<f32>, DepthToSpaceSpec);

/// Layer `i` as `conv` (named `name`, reading `input`) computing every phase into a new value,
/// then DepthToSpace (named as the layer was) into the layer's output.
pub(super) fn into_phases(
    model: &mut Model,
    i: usize,
    input: ValueId,
    name: String,
    (conv, weights, bias, d2s): PhaseConv,
) {
    let phases = model.value_count;
    model.value_count += 1;
    let layer = &mut model.layers[i];
    let depth_to_space = Layer {
        name: std::mem::replace(&mut layer.name, name),
        op: LayerOp::DepthToSpace(d2s),
        inputs: vec![phases],
        output: layer.output,
        weights: Vec::new(),
        bias: Vec::new(),
    };
    layer.op = LayerOp::Conv2d(conv);
    layer.inputs = vec![input];
    layer.weights = weights;
    layer.bias = bias;
    layer.output = phases;
    model.layers.insert(i + 1, depth_to_space);
}

/// One axis of a transposed convolution split into `stride` phases: output `Y * stride + q` reads
/// input rows `Y + d` for the taps `t = q + pad - d * stride` that exist.
pub(super) struct AxisPlan {
    /// Window of input offsets every phase reads from: `d_min ..= d_min + window - 1`.
    pub d_min: i64,
    pub window: u32,
    pub pad_end: u32,
    /// Output rows of the last phase row past the layer's output, dropped.
    pub crop: u32,
}

/// The dense convolution over every phase's window (the phases as `in_c -> out_c` channels).
pub(super) fn phase_conv(
    in_c: u32,
    out_c: u32,
    [ph, pw]: [&AxisPlan; 2],
    activation: Activation,
) -> Conv2dSpec {
    Conv2dSpec {
        in_c,
        out_c,
        k_h: ph.window,
        k_w: pw.window,
        stride: [1, 1],
        pads: [
            (-ph.d_min) as u32,
            (-pw.d_min) as u32,
            ph.pad_end,
            pw.pad_end,
        ],
        dilation: [1, 1],
        groups: 1,
        activation,
    }
}

fn axis_plan(
    stride: u32,
    k: u32,
    pad_begin: u32,
    pad_end: u32,
    output_padding: u32,
) -> Option<AxisPlan> {
    let (s, k, pb, pe, op) = (
        stride as i64,
        k as i64,
        pad_begin as i64,
        pad_end as i64,
        output_padding as i64,
    );
    let mut ds = Vec::new();
    for q in 0..s {
        for t in 0..k {
            if (q + pb - t).rem_euclid(s) == 0 {
                ds.push((q + pb - t).div_euclid(s));
            }
        }
    }
    let (d_min, d_max) = (*ds.iter().min()?, *ds.iter().max()?);
    if d_min > 0 {
        return None; // the window would start below the input: a negative pad
    }
    let window = d_max - d_min + 1;
    let pad = -d_min;
    // The smallest end pad whose phase grid covers the whole output.
    let pe2 = ((k + op - pb - pe).div_euclid(s) + i64::from((k + op - pb - pe).rem_euclid(s) != 0)
        - pad
        + window
        - 2)
    .max(0);
    let crop = s * (pad + pe2 - window + 2) + pb + pe - k - op;
    (crop >= 0).then_some(AxisPlan {
        d_min,
        window: window as u32,
        pad_end: pe2 as u32,
        crop: crop as u32,
    })
}

/// A strided ConvTranspose as one dense convolution producing every output phase as channels
/// (`(qy * sw + qx) * out_c + c`), then DepthToSpace (DCR) with a crop. The dense convolution runs
/// on the fast conv2d kernel; the gather kernel visits every tap and keeps only 1 in stride^2.
/// Returns None where the rewrite does not apply (dilation, groups, stride 1).
pub fn conv_transpose_as_conv(
    spec: &ConvTranspose2dSpec,
    weights: &[f32],
    bias: &[f32],
) -> Option<PhaseConv> {
    if spec.groups != 1 || spec.dilation != [1, 1] || spec.stride == [1, 1] {
        return None;
    }
    let [sh, sw] = spec.stride;
    let ph = axis_plan(
        sh,
        spec.k_h,
        spec.pads[0],
        spec.pads[2],
        spec.output_padding[0],
    )?;
    let pw = axis_plan(
        sw,
        spec.k_w,
        spec.pads[1],
        spec.pads[3],
        spec.output_padding[1],
    )?;
    let (ic, oc) = (spec.in_c as usize, spec.out_c as usize);
    let (kh, kw) = (spec.k_h as i64, spec.k_w as i64);
    let out_c = (sh * sw) as usize * oc;
    let (wh, ww) = (ph.window as usize, pw.window as usize);
    let mut w = vec![0.0f32; out_c * ic * wh * ww];
    for qy in 0..sh as i64 {
        for qx in 0..sw as i64 {
            let phase = (qy * sw as i64 + qx) as usize;
            for a in 0..wh {
                let ty = qy + spec.pads[0] as i64 - (a as i64 + ph.d_min) * sh as i64;
                if !(0..kh).contains(&ty) {
                    continue;
                }
                for b in 0..ww {
                    let tx = qx + spec.pads[1] as i64 - (b as i64 + pw.d_min) * sw as i64;
                    if !(0..kw).contains(&tx) {
                        continue;
                    }
                    for o in 0..oc {
                        for i in 0..ic {
                            w[(((phase * oc + o) * ic + i) * wh + a) * ww + b] =
                                weights[((i * oc + o) * kh as usize + ty as usize) * kw as usize
                                    + tx as usize];
                        }
                    }
                }
            }
        }
    }
    let b = bias.repeat((sh * sw) as usize);
    let conv = phase_conv(spec.in_c, out_c as u32, [&ph, &pw], spec.activation.clone());
    crate::kernels::conv2d::supported(&conv).ok()?;
    let d2s = DepthToSpaceSpec {
        block: [sh, sw],
        crd: false,
        crop: [ph.crop, pw.crop],
    };
    Some((conv, w, b, d2s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{conv_transpose2d, conv2d, depth_to_space};
    use crate::model::Activation;

    /// The rewrite computes the same function as the transposed convolution, on the CPU references.
    #[test]
    fn phase_decomposition_matches_conv_transpose() {
        let cases = [
            ([2, 2], 4, [3, 3, 3, 3], [0, 0]), // waifu2x
            ([2, 2], 2, [0, 0, 0, 0], [0, 0]),
            ([2, 3], 3, [1, 0, 2, 1], [1, 2]),
            ([3, 3], 5, [2, 2, 2, 2], [0, 0]),
            ([2, 2], 3, [1, 1, 1, 1], [1, 1]),
        ];
        for (i, (stride, k, pads, output_padding)) in cases.into_iter().enumerate() {
            let spec = ConvTranspose2dSpec {
                in_c: 3,
                out_c: 2,
                k_h: k,
                k_w: k,
                stride,
                pads,
                dilation: [1, 1],
                output_padding,
                groups: 1,
                activation: Activation::None,
            };
            let n = (spec.in_c * spec.out_c * k * k) as usize;
            let weights: Vec<f32> = (0..n)
                .map(|j| ((j * 37 + i) % 23) as f32 / 11.0 - 1.0)
                .collect();
            let bias = [0.25, -0.5];
            let (h, w) = (5, 6);
            let input: Vec<f32> = (0..3 * h * w)
                .map(|j| ((j * 13) % 17) as f32 / 8.0 - 1.0)
                .collect();
            let expected = conv_transpose2d::reference(&spec, &input, 1, h, w, &weights, &bias);
            let (conv, cw, cb, d2s) =
                conv_transpose_as_conv(&spec, &weights, &bias).expect("applies");
            let mid = conv2d::reference(&conv, &input, 1, h, w, &cw, &cb);
            let (mh, mw) = conv.output_hw(h, w).unwrap();
            let got = depth_to_space::reference(&d2s, &mid, 1, conv.out_c, mh, mw);
            assert_eq!(got.len(), expected.len(), "case {i}: shapes differ");
            for (g, e) in got.iter().zip(&expected) {
                assert!((g - e).abs() < 1e-5, "case {i}: {g} vs {e}");
            }
        }
    }
}
