//! What `batchwise run` says on stderr while a job runs: a bar on a terminal; elsewhere (CI,
//! Slurm, Kubernetes logs) plain lines — the start, each failed item and retry, progress every
//! few seconds — so a log shows what happened without a terminal. The summary comes from the
//! caller.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use crate::job::{ItemStatus, JobEvent};

/// How much is said: `--quiet` keeps failures only, `-v` adds a line per finished item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// How often a progress line is written outside a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub struct Reporter {
    verbosity: Verbosity,
    /// On a terminal, not quiet: the bar; otherwise lines.
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
    total: usize,
}

impl Reporter {
    pub fn new(verbosity: Verbosity) -> Self {
        let on_terminal = std::io::stderr().is_terminal();
        let bar = (on_terminal && verbosity != Verbosity::Quiet).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} items  {msg}  [{elapsed_precise}, ETA {eta}]",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            verbosity,
            bar,
            last_line: Instant::now(),
            total: 0,
        }
    }

    /// A line above the bar, or on its own.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// A line unless `--quiet`.
    pub fn say(&self, text: &str) {
        if self.verbosity > Verbosity::Quiet {
            self.line(text);
        }
    }

    pub fn event(&mut self, event: &JobEvent) {
        match event {
            JobEvent::Started {
                items,
                batch_size,
                tile_size,
            } => {
                self.total = items.len();
                if let Some(bar) = &self.bar {
                    bar.set_length(items.len() as u64);
                }
                self.say(&format!(
                    "{} items, batches of {batch_size} tiles of {tile_size} px",
                    items.len()
                ));
            }
            JobEvent::Item {
                status: ItemStatus::Failed,
                error: Some(e),
                ..
            } => self.line(&format!("failed: {e}")),
            JobEvent::Item {
                status: ItemStatus::Done,
                output: Some(out),
                ..
            } if self.verbosity == Verbosity::Verbose => {
                self.line(&format!("done: {}", out.display()));
            }
            JobEvent::Retry { batch_size, reason } => {
                self.say(&format!("{reason}; retrying in batches of {batch_size}"));
            }
            JobEvent::Progress {
                done,
                failed,
                items_per_sec,
                eta_secs,
                gpu_bytes,
                ..
            } => self.progress(*done, *failed, *items_per_sec, *eta_secs, *gpu_bytes),
            _ => {}
        }
    }

    fn progress(
        &mut self,
        done: usize,
        failed: usize,
        rate: f64,
        eta: Option<f64>,
        gpu_bytes: u64,
    ) {
        let gpu = gpu_bytes as f64 / (1 << 20) as f64;
        if let Some(bar) = &self.bar {
            bar.set_position((done + failed) as u64);
            bar.set_message(format!("{rate:.2} items/s, GPU {gpu:.1} MiB"));
            return;
        }
        if self.verbosity == Verbosity::Quiet || self.last_line.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last_line = Instant::now();
        let eta = eta.map_or(String::new(), |s| format!(", ETA {s:.0} s"));
        eprintln!(
            "progress: {done}/{} done, {failed} failed, {rate:.2} items/s{eta}, GPU {gpu:.1} MiB",
            self.total
        );
    }

    /// Clears the bar before the summary.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
