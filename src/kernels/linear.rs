//! Products by a constant matrix over rows of any rank (a transformer's Linear layers: MatMul of
//! tokens `[.., T, K]` by weights `[K, N]`) on gemm.wgsl, the 1x1 convolutions' register-blocked
//! kernel, instead of the general matmul.wgsl: each row of A is one q of the product, its K
//! values the input channels (stride 1), the output row's N values the output channels.

use super::gemm::{GemmLayer, Layout};
use crate::gpu::Gpu;
use crate::model::{Activation, MatMulSpec};

/// The rows of A (every batch index's M rows, one after another) where `spec` multiplies dense
/// rows of A by a B shared across the batch: then A is `rows x K` and the output `rows x N`,
/// both row-major. None where A is read transposed or through a broadcast, or B per batch
/// index, or the product is not one gemm.wgsl takes. `BATCHWISE_LINEAR=off` keeps every
/// product on matmul.wgsl (to measure).
pub fn rows(spec: &MatMulSpec) -> Option<u32> {
    if std::env::var("BATCHWISE_LINEAR").is_ok_and(|v| v == "off") {
        return None;
    }
    let shared_b = spec
        .batch
        .iter()
        .zip(&spec.b_batch)
        .all(|(&d, &s)| d == 1 || s == 0);
    let mut dense = spec.m * spec.k;
    let mut dense_a = true;
    for (&d, &s) in spec.batch.iter().zip(&spec.a_batch).rev() {
        dense_a &= d == 1 || s == dense;
        dense *= d;
    }
    let rows_a = spec.a_row == spec.k && spec.a_col == 1;
    (shared_b && dense_a && rows_a && super::gemm::supported(spec.n))
        .then(|| spec.batch.iter().product::<u32>() * spec.m)
}

/// Uploads B (`weights`, read through `spec`'s strides) times `spec.alpha` as gemm.wgsl's
/// constant matrix `[N][K]`, with `bias` added to every row (N values; empty: none).
pub fn upload(
    gpu: &Gpu,
    label: &str,
    spec: &MatMulSpec,
    weights: &[f32],
    bias: &[f32],
) -> GemmLayer {
    let (k, n) = (spec.k as usize, spec.n as usize);
    let (row, col) = (spec.b_row as usize, spec.b_col as usize);
    let packed: Vec<f32> = (0..n)
        .flat_map(|j| (0..k).map(move |i| spec.alpha * weights[i * row + j * col]))
        .collect();
    GemmLayer::upload(
        gpu,
        label,
        (spec.n, spec.k),
        &packed,
        bias,
        &Activation::None,
    )
}

/// gemm.wgsl's layout of the product: `rows` q, A's and the output's rows (items of `in_item`
/// and `out_item` elements).
pub fn layout(spec: &MatMulSpec, rows: u32, in_item: u32, out_item: u32) -> Layout {
    Layout {
        q_count: rows,
        in_cs: 1,
        in_qs: spec.k,
        in_item,
        out_cs: 1,
        out_qs: spec.n,
        out_item,
        skip_c: spec.n,
        skip_item: out_item,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_layers_of_dense_rows_by_a_shared_b_run_as_rows() {
        let tokens = MatMulSpec::matmul(&[1, 197, 192], &[192, 768]).unwrap();
        assert_eq!(rows(&tokens), Some(197));
        let heads = MatMulSpec::matmul(&[2, 3, 10, 8], &[8, 4]).unwrap();
        assert_eq!(rows(&heads), Some(60));
        // B per batch index (attention's k^T), A broadcast, A transposed: the general kernel.
        let per_batch = MatMulSpec::matmul(&[3, 10, 8], &[3, 8, 10]).unwrap();
        assert_eq!(rows(&per_batch), None);
        let broadcast = MatMulSpec::matmul(&[1, 10, 8], &[3, 8, 4]).unwrap();
        assert_eq!(rows(&broadcast), None);
        let transposed = MatMulSpec {
            a_row: 1,
            a_col: 10,
            ..MatMulSpec::matmul(&[10, 8], &[8, 4]).unwrap()
        };
        assert_eq!(rows(&transposed), None);
    }
}
