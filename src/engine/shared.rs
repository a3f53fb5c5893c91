//! [`SharedBuffers`]: activation and scratch buffers shared by runners whose batches never run
//! at the same time on the GPU: the steps of a chain run step by step ([`crate::job`]'s
//! stepwise stage). Their memory is then the peak of the steps, not the sum.
//!
//! Sharing is safe because the queue runs submissions in order and every batch leaves nothing
//! in these buffers that a later batch reads: it writes each value before reading it, and copies
//! its results out (to its runner's own pixel and read-back buffers) in its own submit. A
//! runner's batches already reuse its buffers the same way, one after another.

use std::sync::Arc;

use anyhow::Result;

use super::OutOfMemory;
use crate::gpu::{Gpu, TrackedBuffer};

/// What every shared buffer may be used as (an activation, the split Winograd's scratch).
const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Buffers for runners that each need a list of buffer sizes: the `r`-th largest is as large as
/// the largest `r`-th largest any runner needs.
pub struct SharedBuffers {
    /// Largest first.
    buffers: Vec<Arc<TrackedBuffer>>,
}

impl SharedBuffers {
    /// Allocates buffers for runners needing `sizes` each (in any order; see
    /// [`super::BatchRunner::buffer_sizes`]).
    /// Fails with [`OutOfMemory`] where the GPU cannot hold them.
    pub fn new(gpu: &Gpu, sizes: &[Vec<u64>]) -> Result<Self> {
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffers: Vec<_> = pooled(sizes)
            .into_iter()
            .enumerate()
            .map(|(r, size)| Arc::new(gpu.create_buffer(&format!("shared {r}"), size, USAGE)))
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            let mib = buffers.iter().map(|b| b.size()).sum::<u64>() >> 20;
            return Err(OutOfMemory(format!(
                "the GPU ran out of memory allocating {mib} MiB of activations shared by a \
                 chain's steps: {e}; use a smaller batch size or tile size"
            ))
            .into());
        }
        Ok(Self { buffers })
    }
}

/// The pool's sizes for runners needing `sizes` each: the largest `r`-th largest, for each `r`.
pub fn pooled(sizes: &[Vec<u64>]) -> Vec<u64> {
    let mut pool: Vec<u64> = Vec::new();
    for list in sizes {
        let mut list = list.clone();
        list.sort_unstable_by(|a, b| b.cmp(a));
        for (r, size) in list.into_iter().enumerate() {
            match pool.get_mut(r) {
                Some(p) => *p = (*p).max(size),
                None => pool.push(size),
            }
        }
    }
    pool
}

/// One runner's buffers: from the pool where it has one free and large enough (the smallest
/// such), each pool buffer at most once; else a buffer of its own (a runner whose layout differs
/// from the one the pool was sized for still runs, with more memory).
pub(crate) struct Lease<'a> {
    pool: Option<&'a SharedBuffers>,
    taken: Vec<bool>,
}

impl<'a> Lease<'a> {
    pub fn new(pool: Option<&'a SharedBuffers>) -> Self {
        let taken = vec![false; pool.map_or(0, |p| p.buffers.len())];
        Self { pool, taken }
    }

    /// A buffer of at least `size` bytes with [`USAGE`].
    pub fn take(&mut self, gpu: &Gpu, label: &str, size: u64) -> Arc<TrackedBuffer> {
        let size = size.max(4).next_multiple_of(4);
        if let Some(pool) = self.pool {
            let sizes: Vec<u64> = pool.buffers.iter().map(|b| b.size()).collect();
            if let Some(r) = best_fit(&sizes, &self.taken, size) {
                self.taken[r] = true;
                return pool.buffers[r].clone();
            }
        }
        Arc::new(gpu.create_buffer(label, size, USAGE))
    }
}

/// The smallest pool buffer not `taken` that holds `need` bytes. Where each runner's needs fit
/// the pool rank by rank ([`pooled`]), taking the best fit for each, in any order, leaves a fit
/// for the rest.
fn best_fit(pool: &[u64], taken: &[bool], need: u64) -> Option<usize> {
    (0..pool.len())
        .filter(|&r| !taken[r] && pool[r] >= need)
        .min_by_key(|&r| pool[r])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_holds_the_largest_of_each_rank() {
        let sizes = [vec![4, 100, 20], vec![50, 60], vec![8]];
        assert_eq!(pooled(&sizes), vec![100, 50, 4]);
        assert_eq!(pooled(&[]), Vec::<u64>::new());
    }

    #[test]
    fn every_runner_fits_the_pool_in_any_order() {
        let sizes = [vec![9, 6, 5], vec![10, 7, 1], vec![3, 3, 3]];
        let pool = pooled(&sizes);
        for list in &sizes {
            for order in [list.clone(), list.iter().rev().copied().collect()] {
                let mut taken = vec![false; pool.len()];
                for need in order {
                    let r = best_fit(&pool, &taken, need).expect("a pool buffer fits");
                    assert!(pool[r] >= need);
                    taken[r] = true;
                }
            }
        }
        // A need larger than every free buffer gets none (the lease allocates its own).
        assert_eq!(best_fit(&pool, &[false, true, true], 11), None);
        assert_eq!(best_fit(&pool, &[true, false, false], 9), None);
    }
}
