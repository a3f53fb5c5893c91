//! The desktop app: drop images, pick a model and a batch size, Run, watch every item.
//!
//! The UI thread only draws and sends commands. Disk work (listing folders, thumbnails) runs on the
//! file thread ([`files`]); GPU work on the engine thread ([`worker`]). Both send events back and
//! wake the UI with `request_repaint`. Every channel is bounded: the UI never blocks on one
//! (`try_send`, or an outbox that sends on a later frame), and it drains every channel back to
//! it each frame, so the threads that block on a full one wait one frame at most.

mod desktop;
mod dialogs;
mod events;
mod files;
mod grid;
mod models_folder;
mod output_ui;
mod panels;
mod preset;
mod settings;
mod tune;
mod viewer;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow};
use crossbeam_channel::{Receiver, Sender};

use crate::builtin::{self, ModelChoice, ModelInfo};
use crate::gpu::{AdapterSummary, DeviceMemory, VramLedger};
use crate::job::ItemStatus;
pub(crate) use crate::models_dir::panic_text;
pub use dialogs::{DialogKind, DialogMemory, DialogRequest, DialogSupport, Dialogs};
pub use files::{FileCommand, FileReply, FileWorker, ImageRequest};
pub use settings::Settings;
pub use tune::{TUNE_BATCH_SIZES, Tuning};
pub use viewer::Viewer;
pub use worker::{EngineWorker, WorkerEvent};

/// Frames whose UI time the app keeps, for the figures in the status bar.
const FRAME_HISTORY: usize = 600;

/// One input in the grid.
pub struct Item {
    pub id: u64,
    pub path: PathBuf,
    pub status: ItemStatus,
    pub error: Option<String>,
    pub output: Option<PathBuf>,
    /// Labels, an embedding or faces, for models that give them.
    pub result: Option<crate::job::ItemResult>,
    /// Tiles landed and tiles in all, while it runs (image-to-image models).
    pub tiles: Option<(usize, usize)>,
    thumb: Option<egui::TextureHandle>,
    output_thumb: Option<egui::TextureHandle>,
}

/// Live figures of the running (or last) job.
#[derive(Default)]
pub struct Progress {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    /// Items in progress, each counted by the share of its tiles landed.
    pub partial_items: f64,
    pub items_per_sec: f64,
    pub started: Option<Instant>,
    pub finished_secs: Option<f64>,
    pub batch_size: u32,
    pub tile_size: u32,
    /// The budget the job planned against, and the device's memory where its driver reports it.
    pub budget_bytes: u64,
    pub device_memory: Option<DeviceMemory>,
}

pub struct BatchwiseApp {
    pub settings: Settings,
    pub items: Vec<Item>,
    pub running: bool,
    pub progress: Progress,
    pub message: Option<String>,
    pub adapter: Option<AdapterSummary>,
    ledger: Option<VramLedger>,
    next_id: u64,
    engine: EngineWorker,
    files: FileWorker,
    /// What native dialogs and model loading (each on its own thread) send back.
    picked: Receiver<Picked>,
    pick_sender: Sender<Picked>,
    /// Models the user loaded from files, selectable like the built-ins (by path).
    pub user_models: Vec<ModelChoice>,
    /// The models folder's models, and any that cannot run.
    pub models_folder: models_folder::ModelsFolder,
    /// Every adapter with compute, once the file thread has listed them.
    pub adapters: Option<Vec<AdapterSummary>>,
    /// Parameters and memory per item of the built-ins, by id.
    pub model_infos: HashMap<String, ModelInfo>,
    pub tuning: Option<Tuning>,
    /// Time the UI code took in recent frames (seconds), newest last.
    frame_times: VecDeque<f32>,
    /// Frame times while a job ran, for the responsiveness figures.
    pub busy_frame_times: Vec<f32>,
    pub show_help: bool,
    pub viewer: Option<Viewer>,
    /// Folders the user added: their files keep their sub-folders in the output.
    roots: Vec<PathBuf>,
    /// File dialogs: the folders they open in, and the window shown when none can open.
    pub dialogs: Dialogs,
    /// The window's title as last sent.
    title: String,
}

/// Answers of dialogs and model loads waiting for the UI: each of those threads sends one, and
/// the user starts them one at a time. A thread finding the channel full blocks until the UI
/// drains it on its next frame.
const PICKED_CAPACITY: usize = 4;

enum Picked {
    Files(Vec<PathBuf>),
    OutputDir(PathBuf),
    /// A user's model file, parsed on the dialog's thread, or why it cannot run.
    Model(Result<ModelChoice, String>),
    /// No file dialog could open (no portal, no zenity).
    NoDialog(DialogKind),
    Preset(preset::PresetReply),
    /// The models folder chosen in a dialog.
    ModelsDir(PathBuf),
    /// The models folder's models, read on a thread, or why the folder cannot be read.
    ModelsFolder(PathBuf, Result<Vec<crate::models_dir::FolderModel>, String>),
}

impl BatchwiseApp {
    /// The app with the settings saved last time (the defaults where none are), `inputs` queued.
    pub fn new(cc: &eframe::CreationContext<'_>, inputs: Vec<PathBuf>) -> Self {
        let settings = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        Self::with_settings(cc, inputs, settings)
    }

    /// The app with `settings` (its models folder read and its model loaded from them, as at a
    /// start): what the tests open, with a models folder and a tuning cache of their own.
    pub fn with_settings(
        cc: &eframe::CreationContext<'_>,
        inputs: Vec<PathBuf>,
        settings: Settings,
    ) -> Self {
        let memory = cc
            .storage
            .and_then(|s| eframe::get_value(s, dialogs::DIALOG_KEY))
            .unwrap_or_default();
        let ctx = cc.egui_ctx.clone();
        let ctx2 = cc.egui_ctx.clone();
        let (pick_sender, picked) = crossbeam_channel::bounded(PICKED_CAPACITY);
        let mut app = Self {
            settings,
            items: Vec::new(),
            running: false,
            progress: Progress::default(),
            message: None,
            adapter: None,
            ledger: None,
            next_id: 0,
            engine: EngineWorker::spawn(move || ctx.request_repaint()),
            files: FileWorker::spawn(move || ctx2.request_repaint()),
            picked,
            pick_sender,
            user_models: Vec::new(),
            models_folder: models_folder::ModelsFolder::default(),
            adapters: None,
            model_infos: HashMap::new(),
            tuning: None,
            frame_times: VecDeque::new(),
            busy_frame_times: Vec::new(),
            show_help: false,
            viewer: None,
            roots: Vec::new(),
            dialogs: Dialogs::new(memory),
            title: "batchwise".to_owned(),
        };
        app.files.startup();
        app.scan_models_folder(&cc.egui_ctx);
        // A model of the user's chosen last time loads again (off this thread).
        if builtin::find(&app.settings.model).is_err() {
            let path = PathBuf::from(&app.settings.model);
            app.load_model(Some(path), &cc.egui_ctx);
        }
        if !inputs.is_empty() {
            app.files.add(inputs);
        }
        app
    }

    /// Queues files or folders (listed on the file thread).
    pub fn add_paths(&mut self, paths: Vec<PathBuf>) {
        if !paths.is_empty() {
            self.files.add(paths);
        }
    }

    /// Where outputs go: the chosen folder, else `batchwise-output` beside the first folder
    /// added (or the first file).
    pub fn output_dir(&self) -> PathBuf {
        self.settings.output_dir.clone().unwrap_or_else(|| {
            self.roots
                .first()
                .or(self.items.first().map(|i| &i.path))
                .and_then(|p| p.parent())
                .unwrap_or(std::path::Path::new("."))
                .join("batchwise-output")
        })
    }

    /// The chosen model: a built-in or one the user loaded, or a chain of them (steps joined by
    /// [`crate::chain::SEPARATOR`]) composed into one.
    pub fn model_choice(&self) -> Result<ModelChoice, String> {
        let steps = self
            .model_steps()
            .iter()
            .map(|id| self.step_choice(id))
            .collect::<Result<Vec<_>, _>>()?;
        crate::chain::compose(steps).map_err(|e| format!("{e:#}"))
    }

    /// The chosen model's steps: one, or a chain's in order. A loaded file whose path holds the
    /// separator is one step.
    pub fn model_steps(&self) -> Vec<String> {
        let model = &self.settings.model;
        if self.user_models.iter().any(|m| &m.id == model) {
            return vec![model.clone()];
        }
        model
            .split(crate::chain::SEPARATOR)
            .map(str::to_owned)
            .collect()
    }

    /// A built-in or a loaded model by id.
    fn step_choice(&self, id: &str) -> Result<ModelChoice, String> {
        let user = self.user_models.iter().find(|m| m.id == id).cloned();
        user.map_or_else(
            || builtin::find(id).and_then(super::builtin::BuiltinModel::choice),
            Ok,
        )
        .map_err(|e| format!("{e:#}"))
    }

    /// The adapter Auto picks: a discrete GPU, else an integrated one, else virtual, other, and
    /// software last; Vulkan, Metal and D3D12 before GL (as `Gpu::new`).
    pub fn auto_adapter(&self) -> usize {
        let rank = |a: &AdapterSummary| {
            let kind = ["DiscreteGpu", "IntegratedGpu", "VirtualGpu", "Other", "Cpu"]
                .iter()
                .position(|t| *t == a.device_type)
                .unwrap_or(3);
            let api = usize::from(!["Vulkan", "Metal", "Dx12"].contains(&a.backend.as_str()));
            (kind, api)
        };
        self.adapters
            .as_ref()
            .and_then(|list| (0..list.len()).min_by_key(|&i| rank(&list[i])))
            .unwrap_or(0)
    }

    /// Removes an item from the queue (not while a job runs: indices are the job's).
    pub fn remove_item(&mut self, id: u64) {
        if !self.running {
            self.items.retain(|i| i.id != id);
        }
    }

    pub fn start(&mut self) {
        if self.running || self.items.is_empty() || self.tuning_running() {
            return;
        }
        let model = match self.model_choice() {
            Ok(m) => m,
            Err(e) => {
                self.message = Some(e);
                return;
            }
        };
        let inputs = self.items.iter().map(|i| i.path.clone()).collect();
        let spec = self
            .settings
            .job(inputs, self.roots.clone(), model, self.output_dir());
        if let Err(e) = self.engine.run(spec, self.settings.device()) {
            self.message = Some(e);
            return;
        }
        for item in &mut self.items {
            item.status = ItemStatus::Queued;
            item.error = None;
            item.output = None;
            item.result = None;
            item.tiles = None;
            item.output_thumb = None;
        }
        self.progress = Progress {
            total: self.items.len(),
            started: Some(Instant::now()),
            ..Default::default()
        };
        self.message = None;
        self.running = true;
        self.busy_frame_times.clear();
    }

    fn tuning_running(&self) -> bool {
        self.tuning.as_ref().is_some_and(|t| !t.finished)
    }

    /// Runs `work` (a native dialog, a model load) on a thread of its own and hands what it
    /// gives back to the next frame.
    fn off_ui(
        &mut self,
        ctx: &egui::Context,
        work: impl FnOnce() -> Option<Picked> + Send + 'static,
    ) {
        let tx = self.pick_sender.clone();
        let ctx = ctx.clone();
        let spawned = spawn_thread("dialog", move || {
            if let Some(picked) = work() {
                let _ = tx.send(picked);
            }
            ctx.request_repaint();
        });
        if let Err(e) = spawned {
            self.message = Some(e);
        }
    }

    /// The input conventions the settings give a user model.
    pub fn input_overrides(&self) -> builtin::InputOverrides {
        let pick = |v: &str| (v != "auto").then(|| v.to_owned());
        builtin::InputOverrides {
            range: pick(&self.settings.input_range),
            channel_order: pick(&self.settings.channel_order),
            layout: pick(&self.settings.input_layout),
            context: None,
        }
    }

    /// Picks an `.onnx` or `.param` file and loads it, both off the UI thread.
    pub fn load_model(&mut self, path: Option<PathBuf>, ctx: &egui::Context) {
        let overrides = self.input_overrides();
        if path.is_none() && !self.dialogs.support.may_open() {
            self.no_dialog(DialogKind::Model);
            return;
        }
        let request = self.dialog_request(DialogKind::Model);
        self.off_ui(ctx, move || {
            let path = match path {
                Some(path) => path,
                None => match request.show() {
                    Ok(picked) => picked?.remove(0),
                    Err(kind) => return Some(Picked::NoDialog(kind)),
                },
            };
            let result = crate::models_dir::load_file(&path, &overrides);
            Some(Picked::Model(result))
        });
    }

    /// Hands waiting requests to the file thread, dropping those nobody wants any more: viewer
    /// images of an item the viewer no longer shows, thumbnails of removed items.
    fn flush_requests(&mut self) {
        let viewing = self.viewer.as_ref().map(|v| v.item);
        let items = &self.items;
        // Item ids grow with their place in the queue (removal keeps the order).
        let exists = |item: u64| items.binary_search_by_key(&item, |i| i.id).is_ok();
        self.files
            .flush(|id| viewing == Some(id >> 1), |id| exists(id >> 1));
    }

    fn toolbar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.heading("batchwise");
            ui.separator();
            if ui.button("Add images...").on_hover_text("Ctrl+O").clicked() {
                self.ask(DialogKind::Images, ui.ctx());
            }
            if ui
                .button("Add folder...")
                .on_hover_text("Ctrl+Shift+O")
                .clicked()
            {
                self.ask(DialogKind::Folder, ui.ctx());
            }
            ui.add_enabled_ui(!self.running, |ui| {
                if ui.button("Clear").clicked() {
                    self.items.clear();
                    self.roots.clear();
                    self.progress = Progress::default();
                }
            });
            ui.separator();
            if self.running {
                let paused = self.engine.is_paused();
                let label = if paused { "Resume" } else { "Pause" };
                if ui.button(label).on_hover_text("Space").clicked() {
                    self.engine.set_paused(!paused);
                }
                if ui.button("Cancel").on_hover_text("Esc").clicked() {
                    self.cancel();
                }
            } else {
                let ready = !self.items.is_empty() && !self.tuning_running();
                let run = ui.add_enabled(ready, egui::Button::new("Run"));
                if run.on_hover_text("Ctrl+Enter").clicked() {
                    self.start();
                }
            }
            ui.separator();
            if ui.button("Help").on_hover_text("F1").clicked() {
                self.show_help = !self.show_help;
            }
        });
    }

    fn cancel(&mut self) {
        self.engine.set_paused(false);
        self.engine.cancel();
    }

    /// Keyboard shortcuts; none while a text field has the keyboard (Space types a space there).
    fn shortcuts(&mut self, ctx: &egui::Context) {
        use egui::{Key, KeyboardShortcut, Modifiers};
        let typing = ctx.egui_wants_keyboard_input();
        let pressed = |m: Modifiers, k: Key| {
            ctx.input_mut(|i| i.consume_shortcut(&KeyboardShortcut::new(m, k)))
        };
        if pressed(Modifiers::COMMAND | Modifiers::SHIFT, Key::O) {
            self.ask(DialogKind::Folder, ctx);
        }
        if pressed(Modifiers::COMMAND, Key::O) {
            self.ask(DialogKind::Images, ctx);
        }
        if pressed(Modifiers::COMMAND, Key::Enter) {
            self.start();
        }
        if pressed(Modifiers::NONE, Key::F1) {
            self.show_help = !self.show_help;
        }
        if typing {
            return;
        }
        if self.running && pressed(Modifiers::NONE, Key::Space) {
            self.engine.set_paused(!self.engine.is_paused());
        }
        if self.running && pressed(Modifiers::NONE, Key::Escape) {
            self.cancel();
        }
    }

    fn help_window(&mut self, ctx: &egui::Context) {
        egui::Window::new("Help")
            .open(&mut self.show_help)
            .resizable(false)
            .show(ctx, |ui| {
                ui.label("Drop images or folders anywhere on the window, or add them:");
                egui::Grid::new("shortcuts").striped(true).show(ui, |ui| {
                    for (keys, what) in SHORTCUTS {
                        ui.monospace(*keys);
                        ui.label(*what);
                        ui.end_row();
                    }
                });
                ui.label("Right-click an item to remove it from the queue.");
            });
    }

    fn status_ui(&self, ui: &mut egui::Ui) {
        let p = &self.progress;
        let failed = self
            .items
            .iter()
            .filter(|i| i.status == ItemStatus::Failed)
            .count();
        let (finished, _, fraction) = desktop::finished_share(self);
        let elapsed = p
            .finished_secs
            .or_else(|| p.started.map(|s| s.elapsed().as_secs_f64()))
            .unwrap_or(0.0);
        let eta = if self.running && p.items_per_sec > 0.0 {
            format!(
                ", ETA {:.0} s",
                (p.total as f64 - finished as f64 - p.partial_items).max(0.0) / p.items_per_sec
            )
        } else {
            String::new()
        };
        let frames = Self::frame_stats(&self.frame_times.iter().copied().collect::<Vec<_>>());
        let bar = ui.add(egui::ProgressBar::new(fraction as f32).text(format!(
            "{finished}/{} items ({failed} failed), {:.2} items/s, {:.1} s{eta}",
            p.total, p.items_per_sec, elapsed
        )));
        if let Some((median, p95)) = frames {
            bar.on_hover_text(format!(
                "UI frame time: {median:.1} ms median, {p95:.1} ms at the 95th percentile"
            ));
        }
        ui.horizontal(|ui| {
            self.memory_gauge_ui(ui);
            if p.batch_size > 0 {
                ui.separator();
                ui.label(format!(
                    "batch {} tiles of {} px",
                    p.batch_size, p.tile_size
                ));
            }
            if let Some(a) = &self.adapter {
                ui.separator();
                ui.label(format!("{} ({})", a.name, a.backend));
                if a.device_type == "Cpu" {
                    ui.colored_label(
                        ui.visuals().warn_fg_color,
                        "software adapter: expect CPU speed",
                    );
                }
            }
        });
        if let Some(m) = &self.message {
            ui.colored_label(ui.visuals().error_fg_color, m);
        }
    }

    /// GPU memory: what batchwise holds (its ledger) against the budget, the peak, and the
    /// device's own figures where its driver reports them.
    fn memory_gauge_ui(&self, ui: &mut egui::Ui) {
        let Some(ledger) = &self.ledger else {
            return;
        };
        let p = &self.progress;
        let (used, peak) = (ledger.in_use_bytes(), ledger.peak_bytes());
        let budget = p.budget_bytes;
        let fraction = if budget > 0 {
            (used as f64 / budget as f64).min(1.0) as f32
        } else {
            0.0
        };
        let mut text = format!("GPU {:.0} MiB (peak {:.0})", mib(used), mib(peak));
        if budget > 0 {
            text += &format!(" of {:.0} MiB budget", mib(budget));
        }
        if let Some(m) = p.device_memory {
            text += &format!(", device {:.1} GiB", gib(m.total_bytes));
        }
        let gauge = ui.add(
            egui::ProgressBar::new(fraction)
                .desired_width(260.0)
                .text(text),
        );
        let device = match p.device_memory {
            Some(DeviceMemory {
                total_bytes,
                budget_bytes: Some(b),
                usage_bytes: Some(u),
            }) => format!(
                "device: {:.1} GiB, driver budget {:.1} GiB, {:.2} GiB in use by this process",
                gib(total_bytes),
                gib(b),
                gib(u)
            ),
            Some(m) => format!(
                "device: {:.1} GiB (the driver reports no budget)",
                gib(m.total_bytes)
            ),
            None => "the device's total is not reported by this backend".to_owned(),
        };
        gauge.on_hover_text(format!(
            "buffers batchwise holds, from its own ledger (exact on every backend)\n{device}"
        ));
    }

    /// The UI time of recent frames: median and 95th percentile, in milliseconds.
    pub fn frame_stats(times: &[f32]) -> Option<(f32, f32)> {
        if times.is_empty() {
            return None;
        }
        let mut sorted = times.to_vec();
        sorted.sort_by(f32::total_cmp);
        let at = |q: f32| sorted[((sorted.len() - 1) as f32 * q).round() as usize] * 1000.0;
        Some((at(0.5), at(0.95)))
    }
}

/// Starts a thread named `batchwise-{what}`; one that cannot start is a message for the UI, not a
/// panic.
fn spawn_thread<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, String> {
    std::thread::Builder::new()
        .name(format!("batchwise-{what}"))
        .spawn(work)
        .map_err(|e| format!("cannot start the {what} thread: {e}"))
}

/// What waits in `rx`, up to its capacity: a frame handles no more than that, so a thread
/// refilling the channel meanwhile cannot hold the frame; another frame is asked for if more may
/// wait.
fn take_some<T>(rx: &Receiver<T>, ctx: &egui::Context) -> Vec<T> {
    let limit = rx.capacity().unwrap_or(usize::MAX);
    let taken: Vec<T> = rx.try_iter().take(limit).collect();
    if taken.len() == limit {
        ctx.request_repaint();
    }
    taken
}

/// Keys and what they do, as the help panel lists them.
pub const SHORTCUTS: &[(&str, &str)] = &[
    ("Ctrl+O", "add images"),
    ("Ctrl+Shift+O", "add a folder"),
    ("Ctrl+Enter", "run"),
    ("Space", "pause / resume"),
    ("Esc", "cancel"),
    ("Left / Right", "previous / next item in the viewer"),
    ("Delete", "remove the viewed item from the queue"),
    ("F1", "this help"),
];

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

impl eframe::App for BatchwiseApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.drain_events(ctx);
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if !dropped.is_empty() {
            self.add_paths(dropped);
        }
        self.flush_requests();
        self.update_title(ctx);
        if self.running {
            // Elapsed time and the memory gauge move between events too.
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        self.shortcuts(&ctx);
        egui::Panel::top("toolbar").show(ui, |ui| self.toolbar_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        egui::Panel::left("settings")
            .resizable(true)
            .default_size(290.0)
            .show(ui, |ui| self.side_panel_ui(ui));
        egui::CentralPanel::default().show(ui, |ui| self.grid_ui(ui));
        self.tune_window(&ctx);
        self.viewer_window(&ctx);
        self.help_window(&ctx);
        self.no_dialog_window(&ctx);
        let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
        if hovering {
            let rect = ctx.content_rect();
            let painter = ctx.layer_painter(egui::LayerId::new(
                egui::Order::Foreground,
                egui::Id::unique("drop"),
            ));
            painter.rect_filled(rect, 0.0, egui::Color32::from_black_alpha(120));
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                "Drop to add images and folders",
                egui::FontId::proportional(24.0),
                egui::Color32::WHITE,
            );
        }
        let took = started.elapsed().as_secs_f32();
        if self.frame_times.len() == FRAME_HISTORY {
            self.frame_times.pop_front();
        }
        self.frame_times.push_back(took);
        if self.running {
            self.busy_frame_times.push(took);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
        eframe::set_value(storage, dialogs::DIALOG_KEY, &self.dialogs.memory);
    }
}

/// eframe options with a wgpu device that keeps the adapter's own limits (the default GL limits
/// have no compute).
pub fn native_options() -> eframe::NativeOptions {
    let mut options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("batchwise")
            .with_inner_size([1000.0, 700.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    if let Some(icon) = desktop::icon() {
        options.viewport = options.viewport.with_icon(icon);
    }
    if let eframe::egui_wgpu::WgpuSetup::CreateNew(setup) = &mut options.wgpu_options.wgpu_setup {
        setup.device_descriptor = std::sync::Arc::new(|adapter| wgpu::DeviceDescriptor {
            label: Some("batchwise ui"),
            required_limits: adapter.limits(),
            ..Default::default()
        });
    }
    options
}

/// Opens the window and blocks until it closes.
pub fn run_native(inputs: Vec<PathBuf>) -> Result<()> {
    eframe::run_native(
        "batchwise",
        native_options(),
        Box::new(move |cc| Ok(Box::new(BatchwiseApp::new(cc, inputs)))),
    )
    .map_err(|e| anyhow!("could not open the window: {e}"))
}
