//! Per-step GPU times of one batch (`batchwise bench --profile`): each kernel of each step of the
//! batch's first lane recorded in a compute pass of its own with timestamps at its start and end.

use anyhow::{Result, bail};

use super::BatchRunner;
use crate::kernels::Step;

/// Steps timed per submit: two timestamps each, within wgpu's 4096 queries per query set.
const STEPS_PER_SUBMIT: usize = 1024;
/// Each step's time is the median of this many runs.
const RUNS: usize = 3;

/// The GPU time of one step of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct StepTime {
    /// The model layer the step belongs to; None for the pixel pack and unpack steps.
    pub layer: Option<usize>,
    pub label: String,
    pub dispatches: usize,
    /// Workgroups over all its dispatches.
    pub workgroups: u64,
    pub ms: f64,
    /// A step of several kernels (the split Winograd's input transform, products and output
    /// transform): each one's label, dispatches and time, timed in passes of their own; empty
    /// for a step of one kernel.
    pub phases: Vec<(String, usize, f64)>,
}

impl BatchRunner {
    /// Runs one batch of `items` tiles (a fixed pattern of pixels: a kernel's time does not
    /// depend on the values) with every step timed on its own, three times, and gives each step's
    /// median. Needs timestamp queries.
    pub fn profile(&self, items: u32) -> Result<Vec<StepTime>> {
        let gpu = &self.gpu;
        if !gpu
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            bail!(
                "{} has no GPU timestamps: no per-layer profile",
                gpu.adapter.name
            );
        }
        let lane = &self.lanes[0];
        let items = items.clamp(1, lane.items);
        if !self.float_input {
            let words = (self.input.h * self.input.w) as usize * self.depth.words();
            let pattern: Vec<u32> = (0..words * items as usize)
                .map(|i| (i as u32).wrapping_mul(2_654_435_761))
                .collect();
            self.upload(&pattern, items)?;
        }
        let mut steps: Vec<(Option<usize>, &Step)> = Vec::new();
        if !self.float_input {
            steps.push((None, &lane.pack));
        }
        steps.extend(lane.layers.iter().map(|(i, s)| (Some(*i), s)));
        steps.extend(lane.unpack.iter().map(|s| (None, s)));
        // Every kernel of a step in a pass of its own: (the step, the kernel).
        let parts: Vec<(usize, &Step)> = steps
            .iter()
            .enumerate()
            .flat_map(|(k, (_, s))| s.parts().into_iter().map(move |p| (k, p)))
            .collect();
        let mut part_ms = Vec::with_capacity(parts.len());
        for chunk in parts.chunks(STEPS_PER_SUBMIT) {
            let mut runs = Vec::with_capacity(RUNS);
            for _ in 0..RUNS {
                runs.push(self.time_steps(chunk.iter().map(|(_, s)| *s), chunk.len(), items)?);
            }
            // The median of the runs, kernel by kernel.
            part_ms.extend((0..chunk.len()).map(|k| {
                let mut each: Vec<f64> = runs.iter().map(|r| r[k]).collect();
                each.sort_by(f64::total_cmp);
                each[RUNS / 2]
            }));
        }
        let mut times: Vec<StepTime> = steps
            .iter()
            .map(|(layer, step)| StepTime {
                layer: *layer,
                label: step.label.clone(),
                dispatches: step.dispatches(),
                workgroups: step.workgroups(items),
                ms: 0.0,
                phases: Vec::new(),
            })
            .collect();
        for ((k, part), ms) in parts.iter().zip(part_ms) {
            times[*k].ms += ms;
            times[*k]
                .phases
                .push((part.label.clone(), part.own_dispatches(), ms));
        }
        for t in &mut times {
            if t.phases.len() < 2 {
                t.phases.clear();
            }
        }
        Ok(times)
    }

    /// Records `count` steps, each in a pass of its own between two timestamps, submits them and
    /// returns each one's milliseconds.
    fn time_steps<'a>(
        &self,
        steps: impl Iterator<Item = &'a Step>,
        count: usize,
        items: u32,
    ) -> Result<Vec<f64>> {
        let gpu = &self.gpu;
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * count as u32,
        });
        let bytes = 16 * count as u64;
        let resolve = gpu.create_buffer(
            "profile",
            bytes,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        );
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("profile"),
            });
        for (k, step) in steps.enumerate() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&step.label),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some(2 * k as u32),
                    end_of_pass_write_index: Some(2 * k as u32 + 1),
                }),
            });
            step.record_own(&mut pass, items);
        }
        encoder.resolve_query_set(&queries, 0..2 * count as u32, &resolve, 0);
        self.submit_encoder(encoder)?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&gpu.read_back(&resolve, bytes)?);
        let period_ns = gpu.queue.get_timestamp_period() as f64;
        Ok(ticks
            .chunks_exact(2)
            .map(|t| t[1].saturating_sub(t[0]) as f64 * period_ns / 1e6)
            .collect())
    }
}
