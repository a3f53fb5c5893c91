//! Across the channels at each pixel (`shaders/across_channels.wgsl`): a reduction over the
//! channels (ReduceMean, ReduceMax, ... over axis 1 of an image), and the layer norm over the
//! channels of restoration models (NAFNet's LayerNorm2d, `passes::normalize_channels`).

use super::{Bind, Step};
use crate::model::{AcrossChannels, ItemShape};

/// Mirror of `Params` in shaders/across_channels.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AcrossParams {
    pub channels: u32,
    /// Per plane, in the kernel's values an invocation.
    pub pixels: u32,
    pub op: u32,
    pub epsilon: f32,
}

/// The shader's code for `op`.
fn code(op: AcrossChannels) -> (u32, f32) {
    match op {
        AcrossChannels::Reduce(r) => (r as u32, 0.0),
        AcrossChannels::Normalize { epsilon } => (16, epsilon),
    }
}

/// CPU reference in f64 for `items` items of shape `s`.
pub fn reference(op: AcrossChannels, input: &[f32], s: ItemShape, items: u32) -> Vec<f32> {
    let (c, plane) = (s.c as usize, (s.h * s.w) as usize);
    let mut out = vec![0.0f32; items as usize * op.output(s).elements() as usize];
    for n in 0..items as usize {
        let item = &input[n * c * plane..(n + 1) * c * plane];
        for q in 0..plane {
            let xs: Vec<f32> = (0..c).map(|k| item[k * plane + q]).collect();
            match op {
                AcrossChannels::Reduce(r) => out[n * plane + q] = r.apply(&xs),
                AcrossChannels::Normalize { epsilon } => {
                    let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / c as f64;
                    let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / c as f64;
                    let sd = (var + epsilon as f64).sqrt();
                    for (k, &x) in xs.iter().enumerate() {
                        out[(n * c + k) * plane + q] = ((x as f64 - mean) / sd) as f32;
                    }
                }
            }
        }
    }
    out
}

/// CPU reference of a norm's per-channel scale and shift (`affine`: `C` scales, then `C`
/// shifts) applied in place to `values`, items of shape `s`.
pub fn affine_reference(values: &mut [f32], s: ItemShape, affine: &[f32]) {
    let (c, plane) = (s.c as usize, (s.h * s.w) as usize);
    for (i, x) in values.iter_mut().enumerate() {
        let k = i / plane % c;
        *x = *x * affine[k] + affine[c + k];
    }
}

/// Pixels an invocation: 4 where the planes hold a multiple of 4, else 1.
pub fn per_invocation(s: ItemShape) -> u32 {
    if (s.h * s.w).is_multiple_of(4) { 4 } else { 1 }
}

/// across_channels.wgsl with `per` (1 or 4) pixels an invocation, and `op` and `channels`
/// compiled in (`BATCHWISE_ACROSS=params` reads them from the params, to measure). With
/// `affine`, a norm's output is scaled and shifted per channel (binding 3: the scales, then the
/// shifts, f32).
pub fn source(per: u32, op: AcrossChannels, channels: u32, affine: bool) -> String {
    let mut shader = super::shader("across_channels.wgsl").to_owned();
    if affine {
        shader = shader.replace(
            "fn affine_of(x: vec, c: u32) -> vec { return x; }",
            "@group(0) @binding(3) var<storage, read> affine: array<f32>;\n\
             fn affine_of(x: vec, c: u32) -> vec { return x * affine[c] + affine[p.channels + c]; }",
        );
    }
    if per == 4 {
        shader = shader
            .replace("alias vec = f32;", "alias vec = vec4<f32>;")
            .replace("alias vec_act = act;", "alias vec_act = vec4<act>;");
    }
    if std::env::var("BATCHWISE_ACROSS").is_ok_and(|v| v == "params") {
        return shader;
    }
    let constants = format!(
        "const OP: u32 = {}u;\nconst CHANNELS: u32 = {channels}u;\n",
        code(op).0
    );
    let body = shader
        .find("@compute")
        .expect("across_channels.wgsl has an entry point");
    let main = shader[body..]
        .replace("p.op", "OP")
        .replace("p.channels", "CHANNELS");
    format!("{}{constants}\n{main}", &shader[..body])
}

/// `op` over `src` (items of shape `s`) into `dst`; a norm scaled and shifted per channel by
/// `affine` (`C` scales, then `C` shifts, f32) where given.
pub fn prepare(
    cx: Bind,
    op: AcrossChannels,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    s: ItemShape,
    affine: Option<&wgpu::Buffer>,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let per = per_invocation(s);
    let source = source(per, op, s.c, affine.is_some());
    let pipeline = kernels.generated("across_channels", &source);
    let (op, epsilon) = code(op);
    let pixels = s.h * s.w / per;
    let params = AcrossParams {
        channels: s.c,
        pixels,
        op,
        epsilon,
    };
    let groups = super::flat_groups(pixels);
    let buffers: Vec<&wgpu::Buffer> = [src, dst].into_iter().chain(affine).collect();
    super::step(gpu, label, &pipeline, &params, &buffers, groups, 1)
}
