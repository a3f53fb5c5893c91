//! The engine's thread: owns the GPU engine, runs jobs, and sends events back to the UI.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};

use crate::engine::Engine;
use crate::gpu::{AdapterChoice, AdapterSummary, VramLedger};
use crate::job::{self, JobEvent, JobSpec};

pub enum WorkerCommand {
    Run(JobSpec),
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

    pub fn run(&self, spec: JobSpec) {
        self.control.cancel.store(false, Ordering::Relaxed);
        self.control.pause.store(false, Ordering::Relaxed);
        if let Some(commands) = &self.commands {
            let _ = commands.send(WorkerCommand::Run(spec));
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
    let mut engine: Option<Engine> = None;
    while let Ok(command) = commands.recv() {
        match command {
            WorkerCommand::Run(spec) => {
                if engine.is_none() {
                    match Engine::new(&AdapterChoice::Auto) {
                        Ok(e) => {
                            let cache = crate::autotune::default_cache_dir();
                            if let Err(err) = crate::autotune::tune(&e, cache.as_deref()) {
                                log::warn!("autotune failed, keeping the default kernel: {err:#}");
                            }
                            send(WorkerEvent::EngineReady {
                                adapter: e.gpu.adapter.clone(),
                                ledger: e.gpu.ledger.clone(),
                            });
                            engine = Some(e);
                        }
                        Err(e) => {
                            send(WorkerEvent::Error(format!("{e:#}")));
                            send(WorkerEvent::Idle);
                            continue;
                        }
                    }
                }
                let engine = engine.as_ref().expect("created above");
                let result = job::run(engine, &spec, &control, &mut |ev| {
                    send(WorkerEvent::Job(ev))
                });
                if let Err(e) = result {
                    send(WorkerEvent::Error(format!("{e:#}")));
                }
                send(WorkerEvent::Idle);
            }
        }
    }
}
