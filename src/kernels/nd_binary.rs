//! Elementwise binary ops of general tensors with numpy broadcasting (`shaders/nd_binary.wgsl`).

use super::{Bind, Step, pad_front};
use crate::model::{MAX_RANK, NdBinarySpec};

impl NdBinarySpec {
    /// CPU reference for one item.
    pub fn reference(&self, a: &[f32], b: &[f32]) -> Vec<f32> {
        (0..self.count() as usize)
            .map(|i| {
                let (mut rest, mut ia, mut ib) = (i, 0usize, 0usize);
                for k in (0..self.dims.len()).rev() {
                    let n = self.dims[k] as usize;
                    let at = rest % n;
                    rest /= n;
                    ia += at * self.a_strides[k] as usize;
                    ib += at * self.b_strides[k] as usize;
                }
                self.op.apply(a[ia], b[ib])
            })
            .collect()
    }
}

/// `spec` with its axes of size 1 dropped and the axes contiguous in both operands merged: the
/// same elements in the same order, in as few dims as the kernel must divide by.
pub fn simplified(spec: &NdBinarySpec) -> NdBinarySpec {
    let mut s = NdBinarySpec {
        dims: Vec::new(),
        a_strides: Vec::new(),
        b_strides: Vec::new(),
        ..spec.clone()
    };
    for k in 0..spec.dims.len() {
        let (n, a, b) = (spec.dims[k], spec.a_strides[k], spec.b_strides[k]);
        if n == 1 {
            continue;
        }
        let outer = s.dims.len().checked_sub(1);
        match outer {
            Some(o) if s.a_strides[o] == a * n && s.b_strides[o] == b * n => {
                s.dims[o] *= n;
                s.a_strides[o] = a;
                s.b_strides[o] = b;
            }
            _ => {
                s.dims.push(n);
                s.a_strides.push(a);
                s.b_strides.push(b);
            }
        }
    }
    s
}

/// Where `spec`'s operand `constant` holds one value a column of rows that the other operand
/// holds whole (a bias or a scale over the last axis): the rows and the columns.
pub fn per_column(spec: &NdBinarySpec, constant: usize) -> Option<(u32, u32)> {
    let s = simplified(spec);
    let (by, value) = match constant {
        0 => (&s.a_strides, &s.b_strides),
        _ => (&s.b_strides, &s.a_strides),
    };
    match (&s.dims[..], &by[..], &value[..]) {
        (&[r, n], &[0, 1], &[vn, 1]) if vn == n => Some((r, n)),
        (&[n], &[1], &[1]) => Some((1, n)),
        _ => None,
    }
}

/// Mirror of `Params` in shaders/nd_binary.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NdBinaryParams {
    pub dims: [u32; MAX_RANK],
    pub a_strides: [u32; MAX_RANK],
    pub b_strides: [u32; MAX_RANK],
    pub count: u32,
    pub op: u32,
    pub a_item: u32,
    pub b_item: u32,
    /// The dims in use: `dims`' last `rank`.
    pub rank: u32,
    pub _pad: [u32; 3],
}

/// Records `a op b` for every item; `a_item` / `b_item` are elements per item (0: a constant).
pub fn prepare(
    cx: Bind,
    spec: &NdBinarySpec,
    a: &wgpu::Buffer,
    a_item: u32,
    b: &wgpu::Buffer,
    b_item: u32,
    dst: &wgpu::Buffer,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = &kernels.nd_binary;
    let spec = &simplified(spec);
    let count = spec.count() as u32;
    let params = NdBinaryParams {
        dims: pad_front(&spec.dims, 1),
        a_strides: pad_front(&spec.a_strides, 0),
        b_strides: pad_front(&spec.b_strides, 0),
        count,
        op: spec.op as u32,
        a_item,
        b_item,
        rank: spec.dims.len() as u32,
        _pad: [0; 3],
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[a, b, dst],
        super::flat_groups(count),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BinaryOp;

    fn spec(dims: &[u32], a: &[u32], b: &[u32]) -> NdBinarySpec {
        NdBinarySpec {
            op: BinaryOp::Add,
            dims: dims.to_vec(),
            a_strides: a.to_vec(),
            b_strides: b.to_vec(),
        }
    }

    #[test]
    fn simplifying_merges_contiguous_axes_and_drops_unit_ones() {
        // Same shapes: one axis.
        let same = simplified(&spec(&[1, 197, 768], &[0, 768, 1], &[0, 768, 1]));
        assert_eq!(same, spec(&[151296], &[1], &[1]));
        // A bias over the last axis: rows and columns stay apart.
        let bias = simplified(&spec(&[2, 197, 768], &[151296, 768, 1], &[0, 0, 1]));
        assert_eq!(bias, spec(&[394, 768], &[768, 1], &[0, 1]));
        // A per-channel scale of an NCHW map: its planes merge.
        let planes = simplified(&spec(&[3, 4, 5], &[20, 5, 1], &[1, 0, 0]));
        assert_eq!(planes, spec(&[3, 20], &[20, 1], &[1, 0]));
        // Every axis of size 1: no axis, one element.
        let one = simplified(&spec(&[1, 1], &[1, 1], &[0, 0]));
        assert_eq!((one.dims.len(), one.count()), (0, 1));
        // The same elements in the same order as the reference reads them.
        let s = spec(&[2, 1, 3, 4], &[12, 12, 4, 1], &[0, 0, 1, 0]);
        let (a, b): (Vec<f32>, Vec<f32>) =
            ((0..24).map(|x| x as f32).collect(), vec![1.0, 2.0, 3.0]);
        assert_eq!(simplified(&s).reference(&a, &b), s.reference(&a, &b));
    }

    #[test]
    fn a_constant_per_column_is_a_bias_over_rows() {
        let bias = spec(&[1, 197, 768], &[0, 768, 1], &[0, 0, 1]);
        assert_eq!(per_column(&bias, 1), Some((197, 768)));
        assert_eq!(per_column(&bias, 0), None, "the value is not the constant");
        let one_row = spec(&[1, 8], &[0, 1], &[0, 1]);
        assert_eq!(per_column(&one_row, 1), Some((1, 8)));
        // One value a row: not a column's. A whole tensor is one row's columns (the callers
        // ask for their own rows and columns).
        assert_eq!(per_column(&spec(&[197, 768], &[768, 1], &[1, 0]), 1), None);
        let whole = spec(&[197, 768], &[768, 1], &[768, 1]);
        assert_eq!(per_column(&whole, 1), Some((1, 197 * 768)));
    }
}
