//! `VramLedger`: the engine's own account of every GPU buffer it creates.
//!
//! wgpu has no portable "memory in use" query, so the engine counts its own allocations: every buffer
//! is created through [`crate::gpu::Gpu::create_buffer`], which books its size here, and the returned
//! [`TrackedBuffer`] gives the bytes back when dropped. The figure is exact on every backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default, Debug)]
struct Counters {
    in_use_bytes: AtomicU64,
    peak_bytes: AtomicU64,
}

/// Shared, lock-free counters of GPU bytes held by the engine. Cloning shares the same counters.
#[derive(Clone, Default, Debug)]
pub struct VramLedger {
    counters: Arc<Counters>,
}

impl VramLedger {
    pub fn in_use_bytes(&self) -> u64 {
        self.counters.in_use_bytes.load(Ordering::Relaxed)
    }

    pub fn peak_bytes(&self) -> u64 {
        self.counters.peak_bytes.load(Ordering::Relaxed)
    }

    /// Starts a new peak measurement from what is in use now.
    pub fn reset_peak(&self) {
        self.counters
            .peak_bytes
            .store(self.in_use_bytes(), Ordering::Relaxed);
    }

    fn book(&self, size_bytes: u64) {
        let now = self
            .counters
            .in_use_bytes
            .fetch_add(size_bytes, Ordering::Relaxed)
            + size_bytes;
        self.counters.peak_bytes.fetch_max(now, Ordering::Relaxed);
    }

    fn release(&self, size_bytes: u64) {
        self.counters
            .in_use_bytes
            .fetch_sub(size_bytes, Ordering::Relaxed);
    }
}

/// A `wgpu::Buffer` whose size is booked in a [`VramLedger`] for as long as it lives.
#[derive(Debug)]
pub struct TrackedBuffer {
    buffer: wgpu::Buffer,
    ledger: VramLedger,
}

impl TrackedBuffer {
    pub(crate) fn new(buffer: wgpu::Buffer, ledger: &VramLedger) -> Self {
        ledger.book(buffer.size());
        Self {
            buffer,
            ledger: ledger.clone(),
        }
    }
}

impl std::ops::Deref for TrackedBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for TrackedBuffer {
    fn drop(&mut self) {
        self.ledger.release(self.buffer.size());
        self.buffer.destroy();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_survives_release_and_reset_restarts_it() {
        let ledger = VramLedger::default();
        ledger.book(100);
        ledger.book(50);
        ledger.release(100);
        assert_eq!(ledger.in_use_bytes(), 50);
        assert_eq!(ledger.peak_bytes(), 150);
        ledger.reset_peak();
        assert_eq!(ledger.peak_bytes(), 50);
    }
}
