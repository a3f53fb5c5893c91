//! Reading every output of a batch back in float (models whose outputs are not images, tests).

use anyhow::Result;

use super::{BatchRunner, SubmittedFloats};
use crate::engine::injected_out_of_memory;
use crate::kernels::Precision;
use crate::model::ItemShape;

impl BatchRunner {
    /// Records the batch (without unpacking) and copies every output to a staging buffer.
    pub(super) fn submit_outputs(&self, items: u32) -> Result<SubmittedFloats> {
        if let Some(e) = injected_out_of_memory("BATCHWISE_FAIL_RUNS_ABOVE", items) {
            return Err(e.into());
        }
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("batch"),
            });
        self.record(&mut encoder, items, false, false);
        let shapes: Vec<ItemShape> = std::iter::once(self.output)
            .chain(self.extra_outputs.iter().copied())
            .collect();
        let eb = self.precision.bytes();
        // Each lane's copy in whole 4 bytes.
        let total: u64 = shapes
            .iter()
            .map(|s| {
                (eb * s.elements() * items as u64).next_multiple_of(4) + 4 * self.lanes.len() as u64
            })
            .sum();
        let staging = self.gpu.create_buffer(
            "float read back",
            total,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let mut at = 0;
        let mut ranges = Vec::new();
        for (k, shape) in shapes.iter().enumerate() {
            let per_item = eb * shape.elements();
            let mut parts = Vec::new();
            for (lane, n) in self.split(items) {
                let buffer = if k == 0 {
                    lane.model_out
                } else {
                    lane.extra_out[k - 1]
                };
                let bytes = per_item * n as u64;
                let copied = bytes.next_multiple_of(4);
                encoder.copy_buffer_to_buffer(&lane.values[buffer], 0, &staging, at, copied);
                parts.push(at as usize..(at + bytes) as usize);
                at += copied;
            }
            ranges.push(parts);
        }
        let index = self.submit_encoder(encoder)?;
        Ok(SubmittedFloats {
            index,
            items,
            staging,
            bytes: at,
            ranges,
        })
    }

    /// Waits for a batch from [`Self::submit_f32`] and returns every output in float.
    pub fn collect_floats(&self, submitted: SubmittedFloats) -> Result<Vec<Vec<f32>>> {
        let SubmittedFloats {
            index,
            staging,
            bytes,
            ranges,
            ..
        } = submitted;
        let precision = self.precision;
        self.gpu.read_mapped(&staging, bytes, Some(index), |out| {
            let floats = |parts: Vec<std::ops::Range<usize>>| {
                let bytes: usize = parts.iter().map(ExactSizeIterator::len).sum();
                let mut all = Vec::with_capacity(bytes / precision.bytes() as usize);
                for r in parts {
                    let bytes = &out[r];
                    match precision {
                        Precision::F32 => all.extend(
                            bytes
                                .chunks_exact(4)
                                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                        ),
                        Precision::F16 => all.extend(
                            bytes
                                .chunks_exact(2)
                                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
                        ),
                    }
                }
                all
            };
            ranges.into_iter().map(floats).collect()
        })
    }
}
