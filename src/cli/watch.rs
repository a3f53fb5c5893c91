//! `batchwise watch IN -o OUT`: images are processed as they arrive in IN, each once, by the
//! same job as `run` (a round is a job over what arrived since the last one). The output
//! folder's manifest is what makes it once: a restart starts with a round over everything in
//! IN, and the resume logic skips what an earlier run or watch finished.

mod arrivals;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use notify::{RecursiveMode, Watcher};
use notify_debouncer_full::{DebounceEventResult, Debouncer, FileIdCache};

use super::{EXIT_ITEMS_FAILED, RunArgs, report};
use crate::engine::Engine;
use crate::gpu::AdapterChoice;
use crate::job::{self, ItemStatus};
use arrivals::Arrivals;

pub const WATCH_HELP: &str = "How it works:
  Every image in IN (and its sub-folders) is processed once. An image counts as arrived when its
  size and modification time have held still for --settle seconds and, on Linux, the program
  writing it has closed it. What arrived together runs as one job (batched as `run` batches).
  Outputs are recorded in OUT's manifest: on a restart, images already done are not redone, and
  images that arrived while it was stopped are processed first. A file that fails (cut short,
  not an image) is tried again when it changes.

Limits:
  File events come from the system (inotify, FSEvents, ReadDirectoryChangesW). Network
  filesystems (NFS, SMB) and some container mounts send none for writes made elsewhere: use
  --poll SECS there, which looks at every file each SECS seconds. Outside Linux a writer that
  pauses longer than --settle mid-file may have its file read early; it fails, and is done again
  when the writer finishes. OUT must not be IN (it may be inside it: its files are not read).
  Each job loads the model onto the GPU again.

Exit status: 0 after Ctrl+C when no image is left failed, 3 when some is (each was reported),
1 when watching could not start (the folder, the model, the GPU).";

/// `watch`: the folders to watch and the flags of `run`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Seconds a file's size and modification time must hold still before it is read.
    #[arg(long, default_value_t = 2.0, value_parser = parse_secs, help_heading = "Watching", value_name = "SECS")]
    pub settle: f64,
    /// Look for changes every SECS seconds instead of waiting for the system's file events (for
    /// network filesystems and mounts that send none).
    #[arg(long, value_parser = parse_secs, help_heading = "Watching", value_name = "SECS")]
    pub poll: Option<f64>,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds from 0 to 3600")),
    }
}

/// How often the loop looks at waiting files and for Ctrl+C.
const TICK: Duration = Duration::from_millis(200);
/// How long the system's events settle in the debouncer before they reach the loop.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// Batches of debounced events waiting for the loop; the loop also drains them while a job
/// runs, so the watcher's thread waits only while a job is between two events.
const EVENT_CAPACITY: usize = 64;

pub fn run(args: &WatchArgs) -> Result<ExitCode> {
    let output = args.run.output.clone();
    std::fs::create_dir_all(&output)
        .with_context(|| format!("cannot create the output folder {}", output.display()))?;
    let output = output
        .canonicalize()
        .with_context(|| format!("cannot read the output folder {}", output.display()))?;
    let mut folders = Vec::new();
    for f in &args.run.inputs {
        let folder = f
            .canonicalize()
            .with_context(|| format!("cannot watch {}", f.display()))?;
        if !folder.is_dir() {
            bail!("cannot watch {}: not a folder", f.display());
        }
        if folder == output {
            bail!(
                "{} is both the watched folder and the output folder: outputs would arrive as new \
                 images; choose another -o (a folder inside it is fine)",
                f.display()
            );
        }
        folders.push(folder);
    }
    let model = args
        .run
        .models_dir
        .resolve(&args.run.model, &args.run.input.overrides())?;
    let adapter = args
        .run
        .adapter
        .map_or(AdapterChoice::Auto, AdapterChoice::Index);
    let (mut engine, _) = super::devices::open_engine(&adapter)?;
    let mut spec = super::job_spec(&args.run, model);
    spec.roots.clone_from(&folders);
    let (tx, rx) = crossbeam_channel::bounded::<DebounceEventResult>(EVENT_CAPACITY);
    let _watching = watch(&folders, args.poll, move |r| {
        // The loop is gone only when watch is stopping.
        let _ = tx.send(r);
    })?;
    let mut arrivals = Arrivals::new(
        folders.clone(),
        output,
        Duration::from_secs_f64(args.settle),
    );
    // What arrived while nothing watched: the first round's resume skips what is done.
    arrivals.scan_all();
    let control = Arc::new(job::Control::default());
    super::cancel_on_ctrl_c(&control);
    let reporter = report::Reporter::new(args.run.verbosity());
    reporter.say(&format!(
        "watching {} with {} on {} ({}); Ctrl+C stops",
        folders
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        spec.model.id,
        engine.gpu.adapter.name,
        engine.gpu.adapter.device_type
    ));
    let mut rounds = Rounds::default();
    while !control.cancel.load(Ordering::Relaxed) {
        match rx.recv_timeout(TICK) {
            Ok(result) => apply(&mut arrivals, result, &reporter),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                bail!("the file watcher stopped")
            }
        }
        let ready = arrivals.take_ready();
        if !ready.is_empty() {
            let events = (&rx, &mut arrivals);
            rounds.run(
                &mut engine,
                &adapter,
                &spec,
                &args.run,
                &control,
                ready,
                events,
            )?;
        }
    }
    reporter.say(&format!(
        "stopped: {} done, {} failed while watching",
        rounds.done,
        rounds.failed.len()
    ));
    Ok(if rounds.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ITEMS_FAILED)
    })
}

/// Starts the system's watcher (or the polling one) on every folder, recursively; dropping what
/// it returns stops it.
fn watch(
    folders: &[PathBuf],
    poll: Option<f64>,
    handler: impl notify_debouncer_full::DebounceEventHandler,
) -> Result<Box<dyn std::any::Any>> {
    fn start<T: Watcher, C: FileIdCache>(
        mut debouncer: Debouncer<T, C>,
        folders: &[PathBuf],
    ) -> Result<Box<dyn std::any::Any>>
    where
        Debouncer<T, C>: 'static,
    {
        for f in folders {
            debouncer
                .watch(f, RecursiveMode::Recursive)
                .with_context(|| format!("cannot watch {}", f.display()))?;
        }
        Ok(Box::new(debouncer))
    }
    match poll {
        Some(secs) => {
            let config = notify::Config::default()
                .with_poll_interval(Duration::from_secs_f64(secs.max(0.1)));
            let debouncer = notify_debouncer_full::new_debouncer_opt::<_, notify::PollWatcher, _>(
                DEBOUNCE,
                None,
                handler,
                notify_debouncer_full::NoCache,
                config,
            )?;
            start(debouncer, folders)
        }
        None => start(
            notify_debouncer_full::new_debouncer(DEBOUNCE, None, handler)?,
            folders,
        ),
    }
}

/// Applies what the watcher sent; a watcher that lost events (its queue overflowed) makes every
/// folder be looked at again.
fn apply(arrivals: &mut Arrivals, result: DebounceEventResult, reporter: &report::Reporter) {
    match result {
        Ok(events) => {
            for e in events {
                if e.need_rescan() {
                    arrivals.scan_all();
                } else {
                    arrivals.apply(e.kind, &e.paths);
                }
            }
        }
        Err(errors) => {
            for e in errors {
                reporter.line(&format!("watch: {e}"));
            }
        }
    }
}

/// The rounds so far: images done, and those whose last try failed.
#[derive(Default)]
struct Rounds {
    done: usize,
    failed: std::collections::BTreeSet<PathBuf>,
    /// Inputs finished (or skipped by rule), for models whose results are collected into one
    /// file over the job (labels, embeddings, faces): each round's job lists them again, and
    /// the resume logic takes their results from the manifest.
    finished: std::collections::BTreeSet<PathBuf>,
}

impl Rounds {
    /// One job over `ready`; events that arrive meanwhile are applied as it runs.
    #[allow(
        clippy::too_many_arguments,
        reason = "the loop's state, passed as it is"
    )]
    fn run(
        &mut self,
        engine: &mut Engine,
        adapter: &AdapterChoice,
        spec: &job::JobSpec,
        args: &RunArgs,
        control: &job::Control,
        ready: Vec<PathBuf>,
        (rx, arrivals): (
            &crossbeam_channel::Receiver<DebounceEventResult>,
            &mut Arrivals,
        ),
    ) -> Result<()> {
        let mut spec = spec.clone();
        let new: std::collections::BTreeSet<PathBuf> = ready.iter().cloned().collect();
        spec.inputs = if job::collects(&spec) {
            self.finished.union(&new).cloned().collect()
        } else {
            ready
        };
        let mut reporter = report::Reporter::new(args.verbosity());
        let reopen = || super::devices::open_engine(adapter).map(|(engine, _)| engine);
        // Items read in this round; the others that are done were finished before (resumed).
        let mut ran = std::collections::HashSet::new();
        let summary = job::run_recovering(engine, &reopen, &spec, control, &mut |event| {
            if let job::JobEvent::Item {
                index,
                status: ItemStatus::Running,
                ..
            } = event
            {
                ran.insert(index);
            }
            reporter.event(&event);
            while let Ok(result) = rx.try_recv() {
                apply(arrivals, result, &reporter);
            }
        })
        .context("the job could not start")?;
        reporter.finish();
        let (mut done, mut failed, mut before) = (0, 0, 0);
        for (i, item) in summary.items.iter().enumerate() {
            if !new.contains(&item.input) {
                continue;
            }
            match item.status {
                ItemStatus::Failed => {
                    failed += 1;
                    self.failed.insert(item.input.clone());
                    self.finished.remove(&item.input);
                }
                ItemStatus::Done | ItemStatus::Skipped => {
                    match (item.status, ran.contains(&i)) {
                        (ItemStatus::Done, true) => done += 1,
                        (ItemStatus::Done, false) => before += 1,
                        _ => {}
                    }
                    self.failed.remove(&item.input);
                    self.finished.insert(item.input.clone());
                }
                // Not started: the job was cancelled; a restart does them.
                ItemStatus::Queued | ItemStatus::Running => {}
            }
        }
        self.done += done;
        if args.json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            reporter.say(&format!(
                "{} arrived: {done} done, {failed} failed, {before} done before, {} skipped in \
                 {:.1} s -> {}",
                new.len(),
                new.len() - done - failed - before,
                summary.elapsed_secs,
                spec.output_dir.display()
            ));
        }
        Ok(())
    }
}
