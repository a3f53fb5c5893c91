//! Reductions over any set of axes (`shaders/reduce.wgsl`): ReduceMean, ReduceSum, ReduceMax, ...

use super::{MAX_RANK, Step, contiguous_strides, pad_front};
use crate::gpu::Gpu;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum = 0,
    Mean = 1,
    Max = 2,
    Min = 3,
    Prod = 4,
    SumSquare = 5,
    L1 = 6,
    L2 = 7,
    LogSum = 8,
    LogSumExp = 9,
}

impl ReduceOp {
    pub const ALL: [ReduceOp; 10] = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::Prod,
        ReduceOp::SumSquare,
        ReduceOp::L1,
        ReduceOp::L2,
        ReduceOp::LogSum,
        ReduceOp::LogSumExp,
    ];

    /// CPU reference in f64.
    pub fn apply(self, xs: &[f32]) -> f32 {
        let x = xs.iter().map(|&v| v as f64);
        let n = xs.len() as f64;
        let y = match self {
            ReduceOp::Sum => x.sum(),
            ReduceOp::Mean => x.sum::<f64>() / n,
            ReduceOp::Max => x.fold(f64::MIN, f64::max),
            ReduceOp::Min => x.fold(f64::MAX, f64::min),
            ReduceOp::Prod => x.product(),
            ReduceOp::SumSquare => x.map(|v| v * v).sum(),
            ReduceOp::L1 => x.map(f64::abs).sum(),
            ReduceOp::L2 => x.map(|v| v * v).sum::<f64>().sqrt(),
            ReduceOp::LogSum => x.sum::<f64>().ln(),
            ReduceOp::LogSumExp => {
                let m = xs.iter().fold(f64::MIN, |a, &v| a.max(v as f64));
                xs.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() + m
            }
        };
        y as f32
    }
}

/// A reduction of a tensor of shape `dims` over `axes`; the output keeps the other axes in order
/// (keepdims only changes the output's nominal shape, not its elements).
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceSpec {
    pub op: ReduceOp,
    pub dims: Vec<u32>,
    pub axes: Vec<usize>,
}

impl ReduceSpec {
    fn split(&self) -> [(Vec<u32>, Vec<u32>); 2] {
        let strides = contiguous_strides(&self.dims);
        let mut kept = (Vec::new(), Vec::new());
        let mut reduced = (Vec::new(), Vec::new());
        for (k, (&d, &s)) in self.dims.iter().zip(&strides).enumerate() {
            let to = if self.axes.contains(&k) {
                &mut reduced
            } else {
                &mut kept
            };
            to.0.push(d);
            to.1.push(s);
        }
        [kept, reduced]
    }

    /// Elements of the output.
    pub fn count(&self) -> u32 {
        self.split()[0].0.iter().product()
    }

    /// CPU reference for one item.
    pub fn reference(&self, src: &[f32]) -> Vec<f32> {
        let [(kd, ks), (rd, rs)] = self.split();
        let walk = |mut i: usize, dims: &[u32], strides: &[u32]| {
            let mut o = 0;
            for k in (0..dims.len()).rev() {
                o += (i % dims[k] as usize) * strides[k] as usize;
                i /= dims[k] as usize;
            }
            o
        };
        let reduced: usize = rd.iter().map(|&d| d as usize).product();
        (0..self.count() as usize)
            .map(|i| {
                let base = walk(i, &kd, &ks);
                let xs: Vec<f32> = (0..reduced)
                    .map(|r| src[base + walk(r, &rd, &rs)])
                    .collect();
                self.op.apply(&xs)
            })
            .collect()
    }
}

/// Mirror of `Params` in shaders/reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReduceParams {
    pub kept: [u32; MAX_RANK],
    pub kept_strides: [u32; MAX_RANK],
    pub reduced: [u32; MAX_RANK],
    pub reduced_strides: [u32; MAX_RANK],
    pub count: u32,
    pub reduced_count: u32,
    pub op: u32,
    pub src_item: u32,
    pub _pad: [u32; 4],
}

pub fn prepare(
    gpu: &Gpu,
    pipeline: &wgpu::ComputePipeline,
    label: &str,
    spec: &ReduceSpec,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Step {
    let [(kd, ks), (rd, rs)] = spec.split();
    let count = spec.count();
    let params = ReduceParams {
        kept: pad_front(&kd, 1),
        kept_strides: pad_front(&ks, 0),
        reduced: pad_front(&rd, 1),
        reduced_strides: pad_front(&rs, 0),
        count,
        reduced_count: rd.iter().product(),
        op: spec.op as u32,
        src_item: spec.dims.iter().product(),
        _pad: [0; 4],
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        super::flat_groups(count),
        1,
    )
}
