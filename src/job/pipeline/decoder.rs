//! Decoding ahead of the GPU: the job's images, in order, on the I/O pool.

use std::collections::VecDeque;

use super::super::decode::{Decoded, ItemLimits, Prepare, decode};
use super::super::naming::same_file;
use super::super::plan::Planned;
use super::{Book, Source};

/// A decode under way, or one whose image was taken out of its task early (see
/// [`Decoder::fail_early`]).
enum Slot {
    Decoding(tokio::task::JoinHandle<Result<Decoded, String>>),
    Decoded(Decoded),
}

/// Decodes the job's images on the I/O pool, in order, a few ahead of the GPU.
pub(super) struct Decoder {
    queue: VecDeque<(usize, Slot)>,
    next: usize,
    total: usize,
    source: Source,
    limits: ItemLimits,
    /// The stage's work on each decoded image, in the decode task.
    pub(super) prepare: Option<Prepare>,
}

impl Decoder {
    pub(super) fn new(planned: &Planned, source: Source, limits: ItemLimits) -> Self {
        Self {
            queue: VecDeque::new(),
            next: 0,
            total: planned.inputs.len(),
            source,
            limits,
            prepare: None,
        }
    }

    /// Starts decodes until `ahead` are under way: files not to read (skipped, resumed) are
    /// passed over, and an output that would overwrite its input fails the item.
    pub(super) fn top_up(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        ahead: usize,
        book: &mut Book,
        planned: &Planned,
    ) {
        while self.queue.len() < ahead && self.next < self.total {
            let i = self.next;
            self.next += 1;
            if !planned.todo(i) {
                continue;
            }
            if same_file(&planned.inputs[i], &planned.outputs[i]) {
                book.fail(
                    i,
                    "the output would overwrite the input; choose another output folder",
                );
                continue;
            }
            let prepare = self.prepare.clone();
            let finish = move |decoded: Result<Decoded, String>| {
                decoded.map(|mut d| {
                    if let Some(prepare) = &prepare {
                        prepare(&mut d);
                    }
                    d
                })
            };
            let handle = match &self.source {
                Source::Files => {
                    let path = planned.inputs[i].clone();
                    let limits = self.limits;
                    runtime.spawn_blocking(move || finish(decode(&path, limits)))
                }
                Source::Memory(images) => {
                    let images = images.clone();
                    runtime.spawn_blocking(move || finish(Ok(images[i].clone())))
                }
            };
            self.queue.push_back((i, Slot::Decoding(handle)));
        }
    }

    /// The next decoded image in order (waiting for it), or None when none is under way.
    pub(super) fn next(
        &mut self,
        runtime: &tokio::runtime::Runtime,
    ) -> Option<(usize, Result<Decoded, String>)> {
        let (i, slot) = self.queue.pop_front()?;
        let decoded = match slot {
            Slot::Decoding(handle) => join(runtime, handle),
            Slot::Decoded(d) => Ok(d),
        };
        Some((i, decoded))
    }

    /// Fails the images whose decode has failed already, wherever they wait in the queue, so
    /// that a file that cannot be read shows as failed as soon as it is read; images that
    /// decoded wait in order as before. Never waits for a decode.
    pub(super) fn fail_early(&mut self, runtime: &tokio::runtime::Runtime, book: &mut Book) {
        for (i, slot) in std::mem::take(&mut self.queue) {
            let slot = match slot {
                Slot::Decoding(handle) if handle.is_finished() => match join(runtime, handle) {
                    Ok(d) => Slot::Decoded(d),
                    Err(e) => {
                        book.fail(i, &e);
                        continue;
                    }
                },
                other => other,
            };
            self.queue.push_back((i, slot));
        }
    }

    /// Every image was decoded and handed on.
    pub(super) fn exhausted(&self) -> bool {
        self.queue.is_empty() && self.next >= self.total
    }
}

/// A decode task's result (a task that panicked is that image's error).
fn join(
    runtime: &tokio::runtime::Runtime,
    handle: tokio::task::JoinHandle<Result<Decoded, String>>,
) -> Result<Decoded, String> {
    runtime
        .block_on(handle)
        .unwrap_or_else(|e| Err(format!("the decoder crashed: {e}")))
}
