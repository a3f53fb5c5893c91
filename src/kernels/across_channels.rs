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

/// Pixels an invocation: 4 where the planes hold a multiple of 4, else 1.
pub fn per_invocation(s: ItemShape) -> u32 {
    if (s.h * s.w).is_multiple_of(4) { 4 } else { 1 }
}

/// across_channels.wgsl with `per` (1 or 4) pixels an invocation, and `op` and `channels`
/// compiled in (`BATCHWISE_ACROSS=params` reads them from the params, to measure).
pub fn source(per: u32, op: AcrossChannels, channels: u32) -> String {
    let mut shader = super::shader("across_channels.wgsl").to_owned();
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

/// `op` over `src` (items of shape `s`) into `dst`.
pub fn prepare(
    cx: Bind,
    op: AcrossChannels,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    s: ItemShape,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let per = per_invocation(s);
    let pipeline = kernels.generated("across_channels", &source(per, op, s.c));
    let (op, epsilon) = code(op);
    let pixels = s.h * s.w / per;
    let params = AcrossParams {
        channels: s.c,
        pixels,
        op,
        epsilon,
    };
    let groups = super::flat_groups(pixels);
    super::step(gpu, label, &pipeline, &params, &[src, dst], groups, 1)
}
