//! The engine's thread: owns the GPU engine, runs jobs, and sends events back to the UI.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};

use crate::bench::{BenchRow, BenchSetup};
use crate::builtin::ModelChoice;
use crate::engine::Engine;
use crate::gpu::{AdapterChoice, AdapterSummary, VramLedger};
use crate::job::{self, JobEvent, JobSpec};

pub enum WorkerCommand {
    Run(JobSpec, AdapterChoice),
    /// A sweep over batch sizes on the given images (compute only).
    Tune(ModelChoice, BenchSetup, AdapterChoice),
}

pub enum WorkerEvent {
    /// The device is open; the ledger can be read at any time without blocking.
    EngineReady {
        adapter: AdapterSummary,
        ledger: VramLedger,
    },
    Job(JobEvent),
    /// The job could not start or the engine could not be created.
    Error(String),
    /// One batch size of a Tune sweep was measured.
    TuneRow(BenchRow),
    /// The sweep is over (an error ends it early).
    TuneDone(Result<(), String>),
    /// The job is over (finished, failed or cancelled).
    Idle,
}

/// Handle to the engine thread, held by the UI. Dropping it cancels any job and waits for the
/// thread to release the GPU device: a device still alive while the process exits can crash the
/// driver's own teardown (seen with lavapipe).
pub struct EngineWorker {
    commands: Option<Sender<WorkerCommand>>,
    pub events: Receiver<WorkerEvent>,
    control: Arc<job::Control>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EngineWorker {
    fn drop(&mut self) {
        self.control.cancel.store(true, Ordering::Relaxed);
        self.commands = None; // closes the channel: the thread's loop ends
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl EngineWorker {
    /// Starts the thread; `wake` is called after every event so the UI repaints.
    pub fn spawn(wake: impl Fn() + Send + 'static) -> Self {
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<WorkerCommand>();
        let (ev_tx, ev_rx) = std::sync::mpsc::channel::<WorkerEvent>();
        let control = Arc::new(job::Control::default());
        let control_flag = control.clone();
        let thread = std::thread::Builder::new()
            .name("batchwise-engine".into())
            .spawn(move || engine_thread(cmd_rx, ev_tx, control_flag, wake))
            .expect("spawning the engine thread");
        Self {
            commands: Some(cmd_tx),
            events: ev_rx,
            control,
            thread: Some(thread),
        }
    }

    pub fn run(&self, spec: JobSpec, adapter: AdapterChoice) {
        self.control.cancel.store(false, Ordering::Relaxed);
        self.control.pause.store(false, Ordering::Relaxed);
        self.send(WorkerCommand::Run(spec, adapter));
    }

    pub fn tune(&self, model: ModelChoice, setup: BenchSetup, adapter: AdapterChoice) {
        self.send(WorkerCommand::Tune(model, setup, adapter));
    }

    fn send(&self, command: WorkerCommand) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(command);
        }
    }

    /// Pauses the running job between batches, or resumes it.
    pub fn set_paused(&self, paused: bool) {
        self.control.pause.store(paused, Ordering::Relaxed);
    }

    pub fn is_paused(&self) -> bool {
        self.control.pause.load(Ordering::Relaxed)
    }

    pub fn cancel(&self) {
        self.control.cancel.store(true, Ordering::Relaxed);
    }
}

fn engine_thread(
    commands: Receiver<WorkerCommand>,
    events: Sender<WorkerEvent>,
    control: Arc<job::Control>,
    wake: impl Fn(),
) {
    let send = |e: WorkerEvent| {
        let _ = events.send(e);
        wake();
    };
    // The engine and the adapter it was made for.
    let mut engine: Option<(Engine, AdapterChoice)> = None;
    while let Ok(command) = commands.recv() {
        match command {
            WorkerCommand::Run(spec, choice) => {
                if let Some(engine) = open(&mut engine, choice, &send) {
                    let result = job::run(engine, &spec, &control, &mut |ev| {
                        send(WorkerEvent::Job(ev))
                    });
                    if let Err(e) = result {
                        send(WorkerEvent::Error(format!("{e:#}")));
                    }
                }
                send(WorkerEvent::Idle);
            }
            WorkerCommand::Tune(model, setup, choice) => {
                let result = match open(&mut engine, choice, &send) {
                    Some(engine) => crate::bench::run(engine, &model, &setup, |row| {
                        send(WorkerEvent::TuneRow(row.clone()))
                    })
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}")),
                    None => Err("no GPU adapter could be opened".into()),
                };
                send(WorkerEvent::TuneDone(result));
            }
        }
    }
}

/// The engine on `choice`, opening it (and closing one on another adapter) when needed.
fn open<'a>(
    engine: &'a mut Option<(Engine, AdapterChoice)>,
    choice: AdapterChoice,
    send: &impl Fn(WorkerEvent),
) -> Option<&'a Engine> {
    if engine.as_ref().is_none_or(|(_, c)| *c != choice) {
        *engine = None; // the old device goes before the new one opens
        match Engine::new(&choice) {
            Ok(e) => {
                let cache = crate::autotune::default_cache_dir();
                if let Err(err) = crate::autotune::tune(&e, cache.as_deref()) {
                    log::warn!("autotune failed, keeping the default kernel: {err:#}");
                }
                send(WorkerEvent::EngineReady {
                    adapter: e.gpu.adapter.clone(),
                    ledger: e.gpu.ledger.clone(),
                });
                *engine = Some((e, choice));
            }
            Err(e) => send(WorkerEvent::Error(format!("{e:#}"))),
        }
    }
    engine.as_ref().map(|(e, _)| e)
}
