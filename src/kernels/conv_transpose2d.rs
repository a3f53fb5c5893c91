//! 2-D transposed convolution (`shaders/conv_transpose2d.wgsl`).

use super::{Bind, Step};
use crate::gpu::{Gpu, TrackedBuffer};
use crate::model::ConvTranspose2dSpec;

/// Output channels one invocation computes (one vec4). Keep in sync with conv_transpose2d.wgsl.
pub const OC_BLOCK: u32 = 4;
const WORKGROUP: [u32; 2] = [16, 4];

impl ConvTranspose2dSpec {
    fn blocks_per_group(&self) -> u32 {
        (self.out_c / self.groups).div_ceil(OC_BLOCK)
    }
}

/// Mirror of `Params` in shaders/conv_transpose2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvTranspose2dParams {
    pub in_c: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub out_c: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub k_h: u32,
    pub k_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub dil_h: u32,
    pub dil_w: u32,
    pub in_c_per_group: u32,
    pub out_c_per_group: u32,
    pub blocks_per_group: u32,
    pub blocks: u32,
    pub activation: u32,
    pub alpha: f32,
    pub beta: f32,
    pub _pad: [u32; 3],
}

/// Repacks ONNX ConvTranspose weights `[in_c, out_c / groups, k_h, k_w]` and the bias into the
/// blocked layout conv_transpose2d.wgsl reads.
pub fn pack_weights(
    spec: &ConvTranspose2dSpec,
    weights: &[f32],
    bias: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let icg = (spec.in_c / spec.groups) as usize;
    let ocg = (spec.out_c / spec.groups) as usize;
    let taps = (spec.k_h * spec.k_w) as usize;
    let bpg = spec.blocks_per_group() as usize;
    let blk = OC_BLOCK as usize;
    let mut packed = vec![0.0f32; spec.groups as usize * bpg * icg * taps * blk];
    let mut packed_bias = vec![0.0f32; spec.groups as usize * bpg * blk];
    for g in 0..spec.groups as usize {
        for b in 0..bpg {
            let block = g * bpg + b;
            for j in 0..blk {
                let o = b * blk + j;
                if o >= ocg {
                    continue;
                }
                packed_bias[block * blk + j] = bias.get(g * ocg + o).copied().unwrap_or(0.0);
                for ic in 0..icg {
                    let c = g * icg + ic;
                    for t in 0..taps {
                        packed[((block * icg + ic) * taps + t) * blk + j] =
                            weights[(c * ocg + o) * taps + t];
                    }
                }
            }
        }
    }
    (packed, packed_bias)
}

/// CPU reference, scatter form (the opposite of the shader's gather), accumulating in f64.
pub fn reference(
    spec: &ConvTranspose2dSpec,
    input: &[f32],
    n: u32,
    in_h: u32,
    in_w: u32,
    weights: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    let (oh, ow) = spec.output_hw(in_h, in_w).expect("output is not empty");
    let icg = spec.in_c / spec.groups;
    let ocg = spec.out_c / spec.groups;
    let plane = (oh * ow) as usize;
    let mut acc = vec![0.0f64; n as usize * spec.out_c as usize * plane];
    for b in 0..n {
        for oc in 0..spec.out_c {
            let base = (b * spec.out_c + oc) as usize * plane;
            let v = bias.get(oc as usize).copied().unwrap_or(0.0) as f64;
            acc[base..base + plane].iter_mut().for_each(|a| *a = v);
        }
        for c in 0..spec.in_c {
            let g = c / icg;
            for iy in 0..in_h {
                for ix in 0..in_w {
                    let x = input[(((b * spec.in_c + c) * in_h + iy) * in_w + ix) as usize] as f64;
                    for o in 0..ocg {
                        let oc = g * ocg + o;
                        for ky in 0..spec.k_h {
                            let oy = (iy * spec.stride[0] + ky * spec.dilation[0]) as i64
                                - spec.pads[0] as i64;
                            if oy < 0 || oy >= oh as i64 {
                                continue;
                            }
                            for kx in 0..spec.k_w {
                                let ox = (ix * spec.stride[1] + kx * spec.dilation[1]) as i64
                                    - spec.pads[1] as i64;
                                if ox < 0 || ox >= ow as i64 {
                                    continue;
                                }
                                let w = weights
                                    [(((c * ocg + o) * spec.k_h + ky) * spec.k_w + kx) as usize];
                                acc[(b * spec.out_c + oc) as usize * plane
                                    + oy as usize * ow as usize
                                    + ox as usize] += x * w as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    acc.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let oc = (i / plane) % spec.out_c as usize;
            spec.activation.apply(a as f32, oc)
        })
        .collect()
}

/// A transposed convolution's weights on the GPU.
pub struct ConvTranspose2dLayer {
    pub spec: ConvTranspose2dSpec,
    weights: TrackedBuffer,
    bias: TrackedBuffer,
}

impl ConvTranspose2dLayer {
    pub fn upload(
        gpu: &Gpu,
        label: &str,
        spec: ConvTranspose2dSpec,
        weights: &[f32],
        bias: &[f32],
    ) -> Self {
        let (w, b) = pack_weights(&spec, weights, bias);
        let usage = wgpu::BufferUsages::STORAGE;
        Self {
            weights: gpu.create_buffer_init(label, bytemuck::cast_slice(&w), usage),
            bias: gpu.create_buffer_init(label, bytemuck::cast_slice(&b), usage),
            spec,
        }
    }

    pub fn prepare(
        &self,
        cx: Bind,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        in_h: u32,
        in_w: u32,
    ) -> Step {
        let Bind {
            gpu,
            kernels,
            label,
        } = cx;
        let pipeline = &kernels.conv_transpose2d;
        let s = &self.spec;
        let (out_h, out_w) = s
            .output_hw(in_h, in_w)
            .expect("shapes were checked at load");
        let (activation, alpha, beta) = s.activation.encode();
        let blocks = s.groups * s.blocks_per_group();
        let params = ConvTranspose2dParams {
            in_c: s.in_c,
            in_h,
            in_w,
            out_c: s.out_c,
            out_h,
            out_w,
            k_h: s.k_h,
            k_w: s.k_w,
            stride_h: s.stride[0],
            stride_w: s.stride[1],
            pad_top: s.pads[0],
            pad_left: s.pads[1],
            dil_h: s.dilation[0],
            dil_w: s.dilation[1],
            in_c_per_group: s.in_c / s.groups,
            out_c_per_group: s.out_c / s.groups,
            blocks_per_group: s.blocks_per_group(),
            blocks,
            activation,
            alpha,
            beta,
            _pad: [0; 3],
        };
        super::step(
            gpu,
            label,
            pipeline,
            &params,
            &[src, &self.weights, &self.bias, dst],
            [out_w.div_ceil(WORKGROUP[0]), out_h.div_ceil(WORKGROUP[1])],
            blocks,
        )
    }
}
