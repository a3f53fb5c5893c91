//! The engine's thread: owns the GPU engine, runs jobs, and sends events back to the UI.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::bench::{BenchRow, BenchSetup};
use crate::builtin::ModelChoice;
use crate::engine::Engine;
use crate::gpu::{AdapterChoice, AdapterSummary, VramLedger};
use crate::job::{self, JobEvent, JobSpec};

/// Commands in the channel to the engine thread. The UI sends one only while no job or sweep runs
/// (Run and Tune are disabled meanwhile), so the thread is waiting for it or about to be: one slot
/// is all it needs. The UI never blocks on it (`try_send`); a full slot is a message.
const COMMAND_CAPACITY: usize = 1;
/// Events waiting for the UI. The UI drains them every frame and every event wakes it, so the
/// engine thread blocks on a full channel (between items or batches) only when a job reports more
/// than this between two frames; the bound keeps a stalled UI from queueing a job's worth of
/// events.
const EVENT_CAPACITY: usize = 256;

pub enum WorkerCommand {
    Run(JobSpec, Device),
    /// A sweep over batch sizes on the given images (compute only).
    Tune(ModelChoice, BenchSetup, Device),
}

/// The device a command runs on: the adapter, and where the kernel tuning it gets when it opens
/// is cached (None: not cached).
#[derive(Clone, Debug)]
pub struct Device {
    pub adapter: AdapterChoice,
    pub tune_cache: Option<std::path::PathBuf>,
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
        // Closes the events too: a send blocked on a full channel returns instead of waiting for
        // a UI that is gone.
        self.events = crossbeam_channel::never();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl EngineWorker {
    /// Starts the thread; `wake` is called after every event so the UI repaints. A thread that
    /// cannot start is a [`WorkerEvent::Error`] waiting for the first frame.
    pub fn spawn(wake: impl Fn() + Send + 'static) -> Self {
        let (cmd_tx, cmd_rx) = bounded::<WorkerCommand>(COMMAND_CAPACITY);
        let (ev_tx, ev_rx) = bounded::<WorkerEvent>(EVENT_CAPACITY);
        let control = Arc::new(job::Control::default());
        let control_flag = control.clone();
        let tx = ev_tx.clone();
        let thread = super::spawn_thread("engine", move || {
            engine_thread(&cmd_rx, &tx, &control_flag, wake);
        });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                let _ = ev_tx.try_send(WorkerEvent::Error(e));
                None
            }
        };
        Self {
            commands: Some(cmd_tx),
            events: ev_rx,
            control,
            thread,
        }
    }

    /// Starts a job, or says why the engine cannot take it now.
    pub fn run(&self, spec: JobSpec, device: Device) -> Result<(), String> {
        self.control.cancel.store(false, Ordering::Relaxed);
        self.control.pause.store(false, Ordering::Relaxed);
        self.send(WorkerCommand::Run(spec, device))
    }

    /// Starts a sweep, or says why the engine cannot take it now.
    pub fn tune(
        &self,
        model: ModelChoice,
        setup: BenchSetup,
        device: Device,
    ) -> Result<(), String> {
        self.send(WorkerCommand::Tune(model, setup, device))
    }

    /// Never blocks: a full channel or a stopped thread is a message.
    fn send(&self, command: WorkerCommand) -> Result<(), String> {
        let Some(commands) = &self.commands else {
            return Err("the engine is shutting down".into());
        };
        commands.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => "the engine is still busy; try again when it is idle".into(),
            TrySendError::Disconnected(_) => "the engine thread has stopped".into(),
        })
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
    commands: &Receiver<WorkerCommand>,
    events: &Sender<WorkerEvent>,
    control: &Arc<job::Control>,
    wake: impl Fn(),
) {
    // Blocks while the channel is full (until the UI's next frame); fails only once the UI is
    // gone, and then the job is cancelled already.
    let send = |e: WorkerEvent| {
        let _ = events.send(e);
        wake();
    };
    // The engine and the adapter it was made for.
    let mut engine: Option<(Engine, AdapterChoice)> = None;
    while let Ok(command) = commands.recv() {
        // A panic (a bug, or a model or file nothing else caught) ends that command with a
        // message, not the thread: the engine is opened afresh for the next one.
        let tune = matches!(command, WorkerCommand::Tune(..));
        let run = std::panic::AssertUnwindSafe(|| serve(command, &mut engine, control, &send));
        if let Err(panic) = std::panic::catch_unwind(run) {
            engine = None;
            send(WorkerEvent::Error(format!(
                "the engine stopped on an internal error and was reset: {}",
                super::panic_text(&*panic)
            )));
            send(if tune {
                WorkerEvent::TuneDone(Err("the sweep stopped on an internal error".into()))
            } else {
                WorkerEvent::Idle
            });
        }
    }
}

/// One command on the engine thread.
fn serve(
    command: WorkerCommand,
    engine: &mut Option<(Engine, AdapterChoice)>,
    control: &Arc<job::Control>,
    send: &impl Fn(WorkerEvent),
) {
    match command {
        WorkerCommand::Run(spec, device) => {
            let again = device.adapter.clone();
            if let Some(engine) = open(engine, device, send) {
                let reopen = || Engine::new(&again);
                let before = std::sync::Arc::as_ptr(&engine.gpu);
                let result = job::run_recovering(engine, &reopen, &spec, control, &mut |ev| {
                    send(WorkerEvent::Job(ev));
                });
                if std::sync::Arc::as_ptr(&engine.gpu) != before {
                    // A lost device was replaced: the panel follows the new one's ledger.
                    send(WorkerEvent::EngineReady {
                        adapter: engine.gpu.adapter.clone(),
                        ledger: engine.gpu.ledger.clone(),
                    });
                }
                if let Err(e) = result {
                    send(WorkerEvent::Error(format!("{e:#}")));
                }
            }
            send(WorkerEvent::Idle);
        }
        WorkerCommand::Tune(model, setup, device) => {
            let result = match open(engine, device, send) {
                Some(engine) => crate::bench::run(engine, &model, &setup, |row| {
                    send(WorkerEvent::TuneRow(row.clone()));
                })
                .map(|_| ())
                .map_err(|e| format!("{e:#}")),
                None => Err("no GPU adapter could be opened".into()),
            };
            send(WorkerEvent::TuneDone(result));
        }
    }
}

/// The engine on `device`'s adapter, opening it (and closing one on another adapter) when
/// needed; a new one tuned, with `device`'s cache.
fn open<'a>(
    engine: &'a mut Option<(Engine, AdapterChoice)>,
    device: Device,
    send: &impl Fn(WorkerEvent),
) -> Option<&'a mut Engine> {
    let choice = device.adapter;
    if engine.as_ref().is_none_or(|(_, c)| *c != choice) {
        *engine = None; // the old device goes before the new one opens
        match Engine::new(&choice) {
            Ok(e) => {
                if let Err(err) = crate::autotune::tune(&e, device.tune_cache.as_deref()) {
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
    engine.as_mut().map(|(e, _)| e)
}
