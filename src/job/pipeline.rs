//! The one job loop: decode ahead on the I/O pool -> fill a batch -> submit it before reading
//! back the batch ahead of it (two in flight) -> write finished items on the I/O pool. What
//! differs between models lives behind [`Stage`]: the tiled stage ([`super::tiled`]: tiles,
//! stitching, 16-bit) and the fixed-input stage ([`super::fixed`]: fit, analyse, collect).
//!
//! Out-of-memory halving, pause and cancel, progress, the input == output guard and the
//! failure of one item without the others hold for both, here, once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result};

use super::decode::{Decoded, ItemLimits, Prepare};
use super::export::Exporter;
use super::plan::Planned;
use super::{Control, ItemReport, ItemResult, ItemStatus, JobEvent, JobSpec, JobSummary};
use crate::engine::Engine;

mod decoder;
use decoder::Decoder;

/// Images decoded ahead of the GPU beyond what a batch holds.
pub(crate) const DECODE_AHEAD: usize = 8;

/// An item whose outputs are complete: its write (or analysis) runs on the I/O pool and gives
/// its result, for models that have one.
pub(crate) type WriteTask = Box<dyn FnOnce() -> Result<Option<ItemResult>, String> + Send>;

/// A write task under way on the I/O pool.
type Writing = tokio::task::JoinHandle<Result<Option<ItemResult>, String>>;

/// A batch that failed: the images it held, and why.
pub(crate) struct BatchFailure {
    pub images: Vec<usize>,
    pub error: anyhow::Error,
}

/// What one kind of model does with images: cut them into batch items, run batches, and turn
/// results into write tasks. The runner inside is built (and rebuilt smaller) by [`drive`].
pub(crate) trait Stage {
    /// A batch on the GPU whose results are not read yet, with the items it holds.
    type Flight;

    /// (Re)allocates the GPU runner for batches of `batch` items (the old one freed first).
    fn rebuild(&mut self, batch: u32) -> Result<()>;
    /// Items per batch of the current runner.
    fn batch_size(&self) -> u32;
    /// The tile side (tiled) or the model's input side (fixed), for the summary.
    fn tile_size(&self) -> u32;
    /// Images to keep decoding ahead of the GPU.
    fn decode_ahead(&self) -> usize;
    /// Kernel dispatches in one full batch of the current runner.
    fn dispatches(&self) -> usize;
    /// Work on each decoded image that runs in its decode task, off the thread that feeds the
    /// GPU (fitting a photo to a fixed-input model); None for none.
    fn prepare(&self) -> Option<Prepare> {
        None
    }
    /// The I/O pool, given before the first image, for a stage with work of its own to run
    /// there (a chain fitting the images its tiled steps finish).
    fn use_io(&mut self, _io: &tokio::runtime::Handle) {}
    /// Takes a decoded image: its items wait for a batch.
    fn admit(&mut self, index: usize, image: Decoded);
    /// Items waiting for a batch.
    fn waiting(&self) -> usize;
    /// Whether the runner must be rebuilt (at the same batch size) before the next submit; done
    /// once nothing is in flight.
    fn needs_rebuild(&self) -> bool {
        false
    }
    /// Submits one batch of waiting items. On out-of-memory the items wait again.
    fn submit(&mut self) -> Result<Self::Flight, BatchFailure>;
    /// Reads a batch back and hands `start` the write tasks to run on the I/O pool: the images
    /// it completed, and the writers of outputs written by rows as their first rows land (such
    /// a writer ends once the stage sends its last rows, or fails, leaving no file, when the
    /// stage drops the image). Tiles land in image order, so at most one such writer waits on
    /// the stage at a time, and the I/O pool always has a thread for the others.
    fn land(
        &mut self,
        flight: Self::Flight,
        start: &mut dyn FnMut(usize, WriteTask),
    ) -> Result<(), BatchFailure>;
    /// Drops image `index` (its batch failed): true if it was in progress.
    fn forget(&mut self, index: usize) -> bool;
    /// Images in progress (decoded, not finished).
    fn in_progress(&self) -> Vec<usize>;
    /// Outputs are written by rows as they complete, never held whole.
    fn streams_rows(&self) -> bool {
        false
    }
    /// A chain run step by step ([`super::stepwise`]), not as one composed model.
    fn step_by_step(&self) -> bool {
        false
    }
    /// Images with items landed since the last call that are not finished: (image, items
    /// landed, items in all); an image whose last item landed is in it once more, with all
    /// landed, while it is written.
    fn partial(&mut self) -> Vec<(usize, usize, usize)> {
        Vec::new()
    }
}

/// Where a job's images come from: files decoded on the I/O pool, or images already in memory
/// (`bench`: the same pipeline without the disk).
pub(crate) enum Source {
    Files,
    Memory(std::sync::Arc<Vec<Decoded>>),
}

/// How a job's items end: written one file each, and/or collected into files at the end.
pub(crate) struct Outputs {
    /// The exporter of collected results (labels, embeddings, faces).
    pub exporter: Option<Box<dyn Exporter>>,
    /// Items write a file of their own (done when written); else done when collected.
    pub per_image: bool,
    /// Nothing is written (`bench`): an item is done when its batch lands.
    pub discard: bool,
}

/// Item bookkeeping and the events that report it.
struct Book<'e> {
    emit: &'e mut dyn FnMut(JobEvent),
    reports: Vec<ItemReport>,
    inputs: Vec<PathBuf>,
    done: usize,
    failed: usize,
    /// Finished by the run this one resumes (not counted in the rate).
    resumed: usize,
    retries: usize,
    /// Images not settled yet with items landed: the share landed.
    landed: HashMap<usize, f64>,
}

impl<'e> Book<'e> {
    /// Every item queued, its output the file it will write or the collected file it joins.
    fn new(
        emit: &'e mut dyn FnMut(JobEvent),
        planned: &Planned,
        outputs: &Outputs,
        spec: &JobSpec,
    ) -> Self {
        let report_output = |i: usize| match (&outputs.exporter, outputs.per_image) {
            (Some(e), false) => Some(e.path(&spec.output_dir)),
            _ => Some(planned.outputs[i].clone()),
        };
        let reports = (0..planned.inputs.len())
            .map(|i| ItemReport {
                input: planned.inputs[i].clone(),
                output: report_output(i),
                status: ItemStatus::Queued,
                error: None,
            })
            .collect();
        Self {
            emit,
            reports,
            inputs: planned.inputs.clone(),
            done: 0,
            failed: 0,
            resumed: 0,
            retries: 0,
            landed: HashMap::new(),
        }
    }

    fn set(&mut self, index: usize, status: ItemStatus, error: Option<String>) {
        if !matches!(status, ItemStatus::Queued | ItemStatus::Running) {
            self.landed.remove(&index);
        }
        let r = &mut self.reports[index];
        r.status = status;
        r.error = error.clone();
        (self.emit)(JobEvent::Item {
            index,
            status,
            output: r.output.clone().filter(|_| status == ItemStatus::Done),
            error,
        });
    }

    fn done(&mut self, index: usize) {
        self.done += 1;
        self.set(index, ItemStatus::Done, None);
    }

    /// Fails item `index` with `why`, naming its file (once: an item that failed already keeps
    /// its first reason).
    fn fail(&mut self, index: usize, why: &str) {
        if self.reports[index].status == ItemStatus::Failed {
            return;
        }
        self.failed += 1;
        let msg = format!("{}: {why}", self.inputs[index].display());
        self.set(index, ItemStatus::Failed, Some(msg));
    }

    fn retry(&mut self, batch_size: u32, reason: String) {
        self.retries += 1;
        (self.emit)(JobEvent::Retry { batch_size, reason });
    }
}

/// (Re)builds `stage`'s runner for `batch` items, halving the batch while the GPU runs out of
/// memory (each halving reported as a retry). Returns the batch size that fit.
fn fit<S: Stage>(stage: &mut S, mut batch: u32, book: &mut Book) -> Result<u32> {
    loop {
        match stage.rebuild(batch) {
            Ok(()) => return Ok(stage.batch_size()),
            Err(e) if crate::engine::is_out_of_memory(&e) && batch > 1 => {
                batch /= 2;
                book.retry(batch, format!("{e:#}"));
            }
            Err(e) => return Err(e),
        }
    }
}

/// What [`drive`] needs besides the stage.
pub(crate) struct Job<'a> {
    pub engine: &'a Engine,
    pub spec: &'a JobSpec,
    pub control: &'a Control,
    pub started: Instant,
    pub planned: Planned,
    pub source: Source,
    pub outputs: Outputs,
    /// The batch size asked for (Auto already resolved) and the budget it was planned against.
    pub batch: u32,
    pub budget: u64,
}

/// What one item may take in host memory for this job (its decoded pixels and its output's).
fn item_limits(spec: &JobSpec, streamed: bool) -> ItemLimits {
    ItemLimits {
        max_bytes: spec.max_item_bytes.unwrap_or(super::MAX_DECODE_BYTES),
        // A chain ending in a fixed-input model holds its steps' output whole, at their scale.
        scale: crate::chain::written_scale(&spec.model),
        streamed,
        resampled: spec
            .export
            .scale
            .filter(|&s| super::export::resample::resamples(Some(s), spec.model.spec.scale)),
        // The chain's kept steps (`--keep-steps`: the job runs the model that keeps them).
        kept_area: (spec.model.model.image_outputs.iter())
            .map(|&s| u64::from(s) * u64::from(s))
            .sum(),
    }
}

/// Runs a job to the end through `stage`.
pub(crate) fn drive<S: Stage>(
    job: Job,
    mut stage: S,
    emit: &mut dyn FnMut(JobEvent),
) -> Result<JobSummary> {
    let Job {
        engine,
        spec,
        control,
        started,
        planned,
        source,
        outputs,
        batch,
        budget,
    } = job;
    let mut book = Book::new(emit, &planned, &outputs, spec);
    let mut batch = fit(&mut stage, batch, &mut book)?;
    let (dispatches, step_by_step) = (stage.dispatches(), stage.step_by_step());
    (book.emit)(JobEvent::Started {
        items: planned.inputs.clone(),
        batch_size: batch,
        tile_size: stage.tile_size(),
    });
    mark_planned(&mut book, &planned);
    let runtime = io_runtime()?;
    stage.use_io(runtime.handle());
    let mut decoder = Decoder::new(&planned, source, item_limits(spec, stage.streams_rows()));
    decoder.prepare = stage.prepare();
    let mut writing: Vec<(usize, Writing)> = Vec::new();
    let mut collected: Vec<(usize, ItemResult)> = Vec::new();
    // The batch on the GPU whose results are not read yet.
    let mut in_flight: Option<S::Flight> = None;
    let mut peak_in_flight = 0usize;
    // Why the job stopped early (the GPU could not hold even one item any more).
    let mut stopped: Option<String> = None;
    let cancelled = || control.cancel.load(Ordering::Relaxed);
    loop {
        if control.stop_or_wait() {
            break;
        }
        let io = Io {
            runtime: &runtime,
            planned: &planned,
            discard: outputs.discard,
        };
        fill(
            &mut stage,
            &mut decoder,
            &io,
            &mut book,
            (batch, &cancelled),
        );
        if cancelled() {
            break;
        }
        // Submit the next batch before reading back the one ahead of it, so that the GPU always
        // has work queued while this thread decodes, packs and stitches.
        let mut out_of_memory = None;
        let rebuild_first = stage.needs_rebuild();
        let mut submitted = None;
        if stage.waiting() > 0 && !rebuild_first {
            match stage.submit() {
                Ok(flight) => submitted = Some(flight),
                Err(f) if crate::engine::is_out_of_memory(&f.error) && batch > 1 => {
                    // The same items again, in smaller batches: none is lost or skipped.
                    out_of_memory = Some(format!("{:#}", f.error));
                }
                Err(f) => fail_images(&mut stage, &mut book, &f),
            }
        }
        let landing = match submitted {
            Some(now) => in_flight.replace(now),
            None => in_flight.take(),
        };
        peak_in_flight =
            peak_in_flight.max(usize::from(landing.is_some()) + usize::from(in_flight.is_some()));
        // A file that did not decode fails now, not when its turn in the batch comes.
        decoder.fail_early(&runtime, &mut book);
        if let Some(flight) = landing {
            land(&mut stage, flight, &io, &mut writing, &mut book);
        }
        decoder.fail_early(&runtime, &mut book);
        if let Some(reason) = engine.gpu.lost() {
            // Nothing more runs on this device: the items in flight fail with the reason, the
            // rest wait for a new device (`job::run_recovering`).
            stopped = Some(format!("the GPU device was lost ({reason})"));
            break;
        }
        // Nothing is in flight when a rebuild is due (no batch was submitted this turn and the
        // one ahead has landed): the runner can be replaced.
        let rebuild = match out_of_memory {
            Some(reason) => Some(((batch / 2).max(1), Some(reason))),
            None => rebuild_first.then_some((batch, None)),
        };
        if let Some((b, reason)) = rebuild {
            if let Some(reason) = reason {
                book.retry(b, reason);
            }
            match fit(&mut stage, b, &mut book) {
                Ok(fitted) => batch = fitted,
                Err(e) => {
                    stopped = Some(format!("the GPU batch could not be allocated: {e:#}"));
                    break;
                }
            }
        }
        let finished_now = settle_finished(&mut writing, &mut book, &outputs, &mut collected, &io);
        report_progress(&mut book, engine, started, finished_now, batch, budget);
        if decoder.exhausted() && stage.waiting() == 0 && in_flight.is_none() {
            break;
        }
    }
    let tile_size = wind_up(
        stage,
        stopped,
        writing,
        &mut book,
        &outputs,
        &mut collected,
        &runtime,
    );
    if let Some(exporter) = &outputs.exporter {
        export_collected(
            &mut book,
            spec,
            &planned,
            exporter.as_ref(),
            collected,
            &outputs,
        );
    }
    let tally = Tally {
        dispatches,
        batch_size: batch,
        peak_in_flight,
        budget,
        step_by_step,
    };
    Ok(finish(engine, spec, &mut book, started, tally, tile_size))
}

/// Ends the job's loop: the images still in progress fail with why the job `stopped` (the
/// device), or, when it was cancelled, end as skipped (the writers of their rows fail without a
/// file once the stage is dropped); then every write under way is waited for and settled.
/// Returns the tile size.
fn wind_up<S: Stage>(
    mut stage: S,
    stopped: Option<String>,
    writing: Vec<(usize, Writing)>,
    book: &mut Book,
    outputs: &Outputs,
    collected: &mut Vec<(usize, ItemResult)>,
    runtime: &tokio::runtime::Runtime,
) -> u32 {
    if let Some(msg) = stopped {
        for i in stage.in_progress() {
            if stage.forget(i) {
                book.fail(i, &msg);
            }
        }
    }
    let tile_size = stage.tile_size();
    let abandoned = stage.in_progress();
    drop(stage);
    let items: Vec<usize> = writing.iter().map(|(i, _)| *i).collect();
    for (k, (i, h)) in writing.into_iter().enumerate() {
        let written = runtime.block_on(h);
        if !abandoned.contains(&i) {
            let last = !items[k + 1..].contains(&i);
            settle(book, outputs, collected, (i, last), written);
        }
    }
    tile_size
}

/// Settles the writes that have finished, without waiting for the others; the items finished so
/// far (written, or collected where results are collected).
fn settle_finished(
    writing: &mut Vec<(usize, Writing)>,
    book: &mut Book,
    outputs: &Outputs,
    collected: &mut Vec<(usize, ItemResult)>,
    io: &Io,
) -> usize {
    let (finished, still): (Vec<_>, Vec<_>) = writing.drain(..).partition(|(_, h)| h.is_finished());
    *writing = still;
    let items: Vec<usize> = finished.iter().map(|(i, _)| *i).collect();
    for (k, (i, h)) in finished.into_iter().enumerate() {
        let last = !items[k + 1..].contains(&i) && !writing.iter().any(|(j, _)| *j == i);
        settle(book, outputs, collected, (i, last), io.runtime.block_on(h));
    }
    book.done
        + if outputs.per_image {
            0
        } else {
            collected.len()
        }
}

/// What the loop's helpers share: the I/O pool, the job's files, whether outputs are written.
struct Io<'a> {
    runtime: &'a tokio::runtime::Runtime,
    planned: &'a Planned,
    discard: bool,
}

/// Fills the batch with items from as many images as it takes (up to `batch`, until
/// `cancelled`), decoding ahead on the I/O pool; an image that does not decode fails alone.
fn fill<S: Stage>(
    stage: &mut S,
    decoder: &mut Decoder,
    io: &Io,
    book: &mut Book,
    (batch, cancelled): (u32, &dyn Fn() -> bool),
) {
    decoder.top_up(io.runtime, stage.decode_ahead(), book, io.planned);
    while stage.waiting() < batch as usize && !cancelled() {
        let Some((i, decoded)) = decoder.next(io.runtime) else {
            break;
        };
        match decoded {
            Ok(d) => {
                book.set(i, ItemStatus::Running, None);
                stage.admit(i, d);
            }
            Err(e) => book.fail(i, &e),
        }
        decoder.top_up(io.runtime, stage.decode_ahead(), book, io.planned);
    }
}

/// Reads a batch back and hands the write tasks it starts to the I/O pool (or, with nothing to
/// write, tasks that only settle the item); a failed batch fails its images.
fn land<S: Stage>(
    stage: &mut S,
    flight: S::Flight,
    io: &Io,
    writing: &mut Vec<(usize, Writing)>,
    book: &mut Book,
) {
    let mut start = |i: usize, task: WriteTask| {
        let task: WriteTask = if io.discard {
            Box::new(|| Ok(None))
        } else {
            task
        };
        writing.push((i, io.runtime.spawn_blocking(task)));
    };
    if let Err(f) = stage.land(flight, &mut start) {
        fail_images(stage, book, &f);
    }
    for (index, done, total) in stage.partial() {
        if book.reports[index].status == ItemStatus::Running {
            book.landed.insert(index, done as f64 / total.max(1) as f64);
            (book.emit)(JobEvent::Tiles { index, done, total });
        }
    }
}

/// Fails those of a failed batch's images still in progress (their other items are dropped).
fn fail_images<S: Stage>(stage: &mut S, book: &mut Book, f: &BatchFailure) {
    let msg = format!("the GPU batch failed: {:#}", f.error);
    for &i in &f.images {
        if stage.forget(i) {
            book.fail(i, &msg);
        }
    }
}

/// Reports a finished write: the item is done (or its result waits to be collected), or failed
/// with the write's error. An item with several files (a chain's kept steps) is done with the
/// `last` of its writes, if none failed (every one has started by the batch of its last tile,
/// before which none can end).
fn settle(
    book: &mut Book,
    outputs: &Outputs,
    collected: &mut Vec<(usize, ItemResult)>,
    (i, last): (usize, bool),
    written: Result<Result<Option<ItemResult>, String>, tokio::task::JoinError>,
) {
    match written.unwrap_or_else(|e| Err(format!("the writer crashed: {e}"))) {
        Ok(result) => {
            if let Some(r) = result {
                (book.emit)(JobEvent::Result {
                    index: i,
                    result: r.clone(),
                });
                collected.push((i, r));
            }
            if outputs.per_image && last && book.reports[i].status != ItemStatus::Failed {
                book.done(i);
            }
        }
        // A writer of rows fails when its image failed first (its batch, the device): the item
        // keeps that reason.
        Err(_) if book.reports[i].status == ItemStatus::Failed => {}
        Err(e) => {
            book.failed += 1;
            book.set(i, ItemStatus::Failed, Some(e));
        }
    }
}

/// Writes the collected results, the resumed run's and this one's in input order, whole or not
/// at all; the items collected now are done once it is written.
fn export_collected(
    book: &mut Book,
    spec: &JobSpec,
    planned: &Planned,
    exporter: &dyn Exporter,
    collected: Vec<(usize, ItemResult)>,
    outputs: &Outputs,
) {
    let fresh: Vec<usize> = collected.iter().map(|(i, _)| *i).collect();
    let mut all: Vec<(usize, ItemResult)> = planned
        .resumed_results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.clone()?)))
        .chain(collected)
        .collect();
    all.sort_by_key(|(i, _)| *i);
    let rows: Vec<(&std::path::Path, &ItemResult)> = all
        .iter()
        .map(|(i, r)| (planned.inputs[*i].as_path(), r))
        .collect();
    let written = exporter.write(&exporter.path(&spec.output_dir), &rows);
    for i in fresh {
        match (&written, outputs.per_image) {
            (Ok(()), true) => {}
            (Ok(()), false) => book.done(i),
            (Err(e), per_image) => {
                book.done -= usize::from(per_image);
                book.failed += 1;
                book.set(i, ItemStatus::Failed, Some(e.clone()));
            }
        }
    }
}

/// Reports the items settled before any is read: skipped or failed (with the reason) or finished
/// by the run this one resumes.
fn mark_planned(book: &mut Book, planned: &Planned) {
    for (i, why) in planned.skips.iter().enumerate() {
        if let Some(why) = why {
            let msg = format!("{}: {why}", planned.inputs[i].display());
            book.set(i, ItemStatus::Skipped, Some(msg));
        } else if let Some(why) = &planned.failures[i] {
            book.fail(i, why);
        } else if planned.resumed[i] {
            book.resumed += 1;
            book.done(i);
        }
    }
}

fn report_progress(
    book: &mut Book,
    engine: &Engine,
    started: Instant,
    finished: usize,
    batch: u32,
    budget: u64,
) {
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let partial: f64 = book.landed.values().sum();
    let rate = (finished.saturating_sub(book.resumed) as f64 + partial) / secs;
    let total = book.reports.len();
    let left = (total.saturating_sub(finished + book.failed) as f64 - partial).max(0.0);
    log::debug!(
        target: "batchwise::progress",
        "{finished}/{total} done, {} failed, GPU in use {} bytes",
        book.failed,
        engine.gpu.ledger.in_use_bytes()
    );
    (book.emit)(JobEvent::Progress {
        done: finished,
        failed: book.failed,
        total,
        partial_items: partial,
        items_per_sec: rate,
        eta_secs: (rate > 0.0).then(|| left / rate),
        batch_size: batch,
        gpu_bytes: engine.gpu.ledger.in_use_bytes(),
        peak_gpu_bytes: engine.gpu.ledger.peak_bytes(),
        budget_bytes: budget,
        device_memory: engine.gpu.device_memory(),
    });
}

/// How a job went, for its summary.
#[derive(Clone, Copy)]
struct Tally {
    /// Kernel dispatches in one full batch of the first runner.
    dispatches: usize,
    batch_size: u32,
    peak_in_flight: usize,
    /// The budget the batch size was planned against.
    budget: u64,
    step_by_step: bool,
}

/// Marks what was left as skipped (cancelled), builds the summary and emits it.
fn finish(
    engine: &Engine,
    spec: &JobSpec,
    book: &mut Book,
    started: Instant,
    tally: Tally,
    tile_size: u32,
) -> JobSummary {
    let total = book.reports.len();
    for i in 0..total {
        if matches!(
            book.reports[i].status,
            ItemStatus::Queued | ItemStatus::Running
        ) {
            book.set(i, ItemStatus::Skipped, Some("cancelled".into()));
        }
    }
    for r in &mut book.reports {
        if r.status != ItemStatus::Done {
            r.output = None;
        }
    }
    let skipped = book
        .reports
        .iter()
        .filter(|r| r.status == ItemStatus::Skipped)
        .count();
    let elapsed_secs = started.elapsed().as_secs_f64();
    let summary = JobSummary {
        model: spec.model.id.clone(),
        adapter: engine.gpu.adapter.name.clone(),
        batch_size: tally.batch_size,
        tile_size,
        total,
        done: book.done,
        failed: book.failed,
        skipped,
        elapsed_secs,
        items_per_sec: book.done as f64 / elapsed_secs.max(1e-9),
        peak_gpu_bytes: engine.gpu.ledger.peak_bytes(),
        memory_budget_bytes: tally.budget,
        retries: book.retries,
        device_lost: engine.gpu.lost(),
        batches_in_flight: tally.peak_in_flight,
        dispatches_per_batch: tally.dispatches,
        step_by_step: tally.step_by_step,
        items: std::mem::take(&mut book.reports),
    };
    (book.emit)(JobEvent::Finished(summary.clone()));
    summary
}

/// The blocking-I/O pool that decodes and writes files beside the GPU thread.
fn io_runtime() -> Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(cores.clamp(2, 16))
        .thread_name("batchwise-io")
        .build()
        .context("starting the I/O thread pool")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that is its input fails that item before it is read, with the reason; the
    /// other items are decoded. The guard is the pipeline's, so it holds for every stage.
    #[test]
    fn an_output_equal_to_its_input_fails_that_item_only() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
        for p in [&a, &b] {
            image::RgbaImage::new(4, 4).save(p).unwrap();
        }
        let planned = Planned {
            inputs: vec![a.clone(), b.clone()],
            outputs: vec![a.clone(), dir.path().join("out-b.png")],
            skips: vec![None, None],
            failures: vec![None, None],
            resumed: vec![false, false],
            resumed_results: vec![None, None],
            records: vec![None, None],
            kept: vec![Vec::new(); 2],
            kept_records: vec![Vec::new(); 2],
        };
        let mut events = Vec::new();
        let mut emit = |e: JobEvent| events.push(e);
        let mut book = Book {
            emit: &mut emit,
            reports: (0..2)
                .map(|i| ItemReport {
                    input: planned.inputs[i].clone(),
                    output: None,
                    status: ItemStatus::Queued,
                    error: None,
                })
                .collect(),
            inputs: planned.inputs.clone(),
            done: 0,
            failed: 0,
            resumed: 0,
            retries: 0,
            landed: HashMap::new(),
        };
        let runtime = io_runtime().unwrap();
        let limits = ItemLimits {
            max_bytes: crate::job::MAX_DECODE_BYTES,
            scale: 1,
            streamed: false,
            resampled: None,
            kept_area: 0,
        };
        let mut decoder = Decoder::new(&planned, Source::Files, limits);
        decoder.top_up(&runtime, 8, &mut book, &planned);
        assert_eq!(book.failed, 1);
        let error = book.reports[0].error.clone().unwrap_or_default();
        assert!(error.contains("overwrite the input"), "{error}");
        let (i, decoded) = decoder.next(&runtime).unwrap();
        assert_eq!(i, 1);
        assert!(decoded.is_ok());
        assert!(decoder.exhausted());
    }
}
