//! 2-D convolution (`shaders/conv2d.wgsl`): bias, padding, stride, dilation, groups, fused activation.

use super::{Activation, Step};
use crate::gpu::{Gpu, TrackedBuffer};

/// Output channels one invocation computes (4 vec4 accumulators). Keep in sync with conv2d.wgsl.
pub const OC_BLOCK: u32 = 16;
/// Output rows one invocation computes. Keep in sync with `ROWS` in conv2d.wgsl.
pub const ROWS: u32 = 8;
const WORKGROUP_X: u32 = 16;

/// The shape of a convolution, independent of the input size.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dSpec {
    pub in_c: u32,
    pub out_c: u32,
    pub k_h: u32,
    pub k_w: u32,
    pub stride: [u32; 2],
    /// top, left, bottom, right
    pub pads: [u32; 4],
    pub dilation: [u32; 2],
    pub groups: u32,
    pub activation: Activation,
}

impl Conv2dSpec {
    /// Output height and width for an input of `in_h x in_w`, or `None` if the kernel does not fit.
    pub fn output_hw(&self, in_h: u32, in_w: u32) -> Option<(u32, u32)> {
        let span_h = self.dilation[0] * (self.k_h - 1) + 1;
        let span_w = self.dilation[1] * (self.k_w - 1) + 1;
        let padded_h = in_h + self.pads[0] + self.pads[2];
        let padded_w = in_w + self.pads[1] + self.pads[3];
        if padded_h < span_h || padded_w < span_w {
            return None;
        }
        Some((
            (padded_h - span_h) / self.stride[0] + 1,
            (padded_w - span_w) / self.stride[1] + 1,
        ))
    }

    /// Multiply-adds for one item of `in_h x in_w`.
    pub fn macs(&self, in_h: u32, in_w: u32) -> u64 {
        let (oh, ow) = self.output_hw(in_h, in_w).unwrap_or((0, 0));
        oh as u64
            * ow as u64
            * self.out_c as u64
            * (self.in_c / self.groups) as u64
            * (self.k_h * self.k_w) as u64
    }

    fn blocks_per_group(&self) -> u32 {
        (self.out_c / self.groups).div_ceil(OC_BLOCK)
    }
}

/// Mirror of `Params` in shaders/conv2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Conv2dParams {
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

/// Repacks OIHW weights and the bias into the blocked layout conv2d.wgsl reads.
pub fn pack_weights(spec: &Conv2dSpec, weights: &[f32], bias: &[f32]) -> (Vec<f32>, Vec<f32>) {
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
                let oc = g * ocg + o;
                packed_bias[block * blk + j] = bias.get(oc).copied().unwrap_or(0.0);
                for ic in 0..icg {
                    for t in 0..taps {
                        packed[((block * icg + ic) * taps + t) * blk + j] =
                            weights[(oc * icg + ic) * taps + t];
                    }
                }
            }
        }
    }
    (packed, packed_bias)
}

/// CPU reference: NCHW input of `n` items, OIHW weights. Accumulates in f64.
pub fn reference(
    spec: &Conv2dSpec,
    input: &[f32],
    n: u32,
    in_h: u32,
    in_w: u32,
    weights: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    let (oh, ow) = spec.output_hw(in_h, in_w).expect("kernel fits the input");
    let icg = spec.in_c / spec.groups;
    let ocg = spec.out_c / spec.groups;
    let mut out = vec![0.0f32; (n * spec.out_c * oh * ow) as usize];
    for b in 0..n {
        for oc in 0..spec.out_c {
            let g = oc / ocg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.get(oc as usize).copied().unwrap_or(0.0) as f64;
                    for ic in 0..icg {
                        let c = g * icg + ic;
                        for ky in 0..spec.k_h {
                            let iy = (oy * spec.stride[0] + ky * spec.dilation[0]) as i64
                                - spec.pads[0] as i64;
                            if iy < 0 || iy >= in_h as i64 {
                                continue;
                            }
                            for kx in 0..spec.k_w {
                                let ix = (ox * spec.stride[1] + kx * spec.dilation[1]) as i64
                                    - spec.pads[1] as i64;
                                if ix < 0 || ix >= in_w as i64 {
                                    continue;
                                }
                                let x = input[(((b * spec.in_c + c) * in_h) as i64 + iy) as usize
                                    * in_w as usize
                                    + ix as usize];
                                let w = weights
                                    [(((oc * icg + ic) * spec.k_h + ky) * spec.k_w + kx) as usize];
                                acc += x as f64 * w as f64;
                            }
                        }
                    }
                    out[(((b * spec.out_c + oc) * oh + oy) * ow + ox) as usize] =
                        spec.activation.apply(acc as f32);
                }
            }
        }
    }
    out
}

/// A convolution's weights on the GPU.
pub struct Conv2dLayer {
    pub spec: Conv2dSpec,
    weights: TrackedBuffer,
    bias: TrackedBuffer,
}

impl Conv2dLayer {
    pub fn upload(gpu: &Gpu, label: &str, spec: Conv2dSpec, weights: &[f32], bias: &[f32]) -> Self {
        let (w, b) = pack_weights(&spec, weights, bias);
        let usage = wgpu::BufferUsages::STORAGE;
        Self {
            weights: gpu.create_buffer_init(label, bytemuck::cast_slice(&w), usage),
            bias: gpu.create_buffer_init(label, bytemuck::cast_slice(&b), usage),
            spec,
        }
    }

    /// Binds `src` (input, `in_h x in_w`) and `dst` into a step.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        gpu: &Gpu,
        pipeline: &wgpu::ComputePipeline,
        label: &str,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        in_h: u32,
        in_w: u32,
    ) -> Step {
        let s = &self.spec;
        let (out_h, out_w) = s
            .output_hw(in_h, in_w)
            .expect("shapes were checked at load");
        let (activation, alpha, beta) = s.activation.encode();
        let blocks = s.groups * s.blocks_per_group();
        let params = Conv2dParams {
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
            [out_w.div_ceil(WORKGROUP_X), out_h.div_ceil(ROWS)],
            blocks,
        )
    }
}
