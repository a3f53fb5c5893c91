//! The desktop app: drop images, pick a model and a batch size, Run, watch every item.
//!
//! The UI thread only draws and sends commands. Disk work (listing folders, thumbnails) runs on the
//! file thread ([`files`]); GPU work on the engine thread ([`worker`]). Both send events back and
//! wake the UI with `request_repaint`.

mod files;
mod worker;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::builtin::{self, BUILTINS, ModelChoice};
use crate::gpu::{AdapterSummary, VramLedger};
use crate::job::{ItemStatus, JobEvent, JobSpec};
pub use files::{FileReply, FileRequest, FileWorker};
pub use worker::{EngineWorker, WorkerEvent};

/// What the app remembers between runs.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default)]
pub struct Settings {
    pub model: String,
    pub batch_size: u32,
    pub output_dir: Option<PathBuf>,
    /// How a user model's input is fed ("auto": the file's metadata, else the defaults), as the
    /// CLI's `--input-range`, `--channel-order` and `--input-layout`.
    pub input_range: String,
    pub channel_order: String,
    pub input_layout: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: BUILTINS[0].id.to_owned(),
            batch_size: 8,
            output_dir: None,
            input_range: "auto".into(),
            channel_order: "auto".into(),
            input_layout: "auto".into(),
        }
    }
}

/// One input in the grid.
pub struct Item {
    pub id: u64,
    pub path: PathBuf,
    pub status: ItemStatus,
    pub error: Option<String>,
    pub output: Option<PathBuf>,
    thumb: Option<egui::TextureHandle>,
    output_thumb: Option<egui::TextureHandle>,
}

/// Live figures of the running (or last) job.
#[derive(Default)]
pub struct Progress {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    pub items_per_sec: f64,
    pub started: Option<Instant>,
    pub finished_secs: Option<f64>,
    pub batch_size: u32,
    pub tile_size: u32,
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
    /// Folder picked in a native dialog on its own thread.
    picked: Option<std::sync::mpsc::Receiver<Picked>>,
    /// Models the user loaded from files, selectable like the built-ins (by path).
    pub user_models: Vec<ModelChoice>,
}

enum Picked {
    Files(Vec<PathBuf>),
    OutputDir(PathBuf),
    /// A user's model file, parsed on the dialog's thread, or why it cannot run.
    Model(Result<ModelChoice, String>),
}

impl BatchwiseApp {
    pub fn new(cc: &eframe::CreationContext<'_>, inputs: Vec<PathBuf>) -> Self {
        let settings = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        let ctx = cc.egui_ctx.clone();
        let ctx2 = cc.egui_ctx.clone();
        let app = Self {
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
            picked: None,
            user_models: Vec::new(),
        };
        if !inputs.is_empty() {
            app.files.send(FileRequest::Add(inputs));
        }
        app
    }

    /// Queues files or folders (listed on the file thread).
    pub fn add_paths(&mut self, paths: Vec<PathBuf>) {
        if !paths.is_empty() {
            self.files.send(FileRequest::Add(paths));
        }
    }

    /// Where outputs go: the chosen folder, else `batchwise-output` beside the first input.
    pub fn output_dir(&self) -> PathBuf {
        self.settings.output_dir.clone().unwrap_or_else(|| {
            self.items
                .first()
                .and_then(|i| i.path.parent())
                .unwrap_or(std::path::Path::new("."))
                .join("batchwise-output")
        })
    }

    pub fn start(&mut self) {
        if self.running || self.items.is_empty() {
            return;
        }
        let user = self
            .user_models
            .iter()
            .find(|m| m.id == self.settings.model)
            .cloned();
        let model = match user.map_or_else(
            || builtin::find(&self.settings.model).and_then(|b| b.choice()),
            Ok,
        ) {
            Ok(m) => m,
            Err(e) => {
                self.message = Some(format!("{e:#}"));
                return;
            }
        };
        for item in &mut self.items {
            item.status = ItemStatus::Queued;
            item.error = None;
            item.output = None;
            item.output_thumb = None;
        }
        self.progress = Progress {
            total: self.items.len(),
            started: Some(Instant::now()),
            ..Default::default()
        };
        self.message = None;
        self.running = true;
        self.engine.run(JobSpec {
            inputs: self.items.iter().map(|i| i.path.clone()).collect(),
            model,
            batch_size: self.settings.batch_size,
            tile_size: None,
            output_dir: self.output_dir(),
            precision: Default::default(),
            analysis: Default::default(),
            export: Default::default(),
            shard: None,
            memory_budget: None,
        });
    }

    fn pick_files(&mut self, ctx: &egui::Context) {
        let (tx, rx) = std::sync::mpsc::channel();
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("batchwise-dialog".into())
            .spawn(move || {
                if let Some(files) = rfd::FileDialog::new()
                    .add_filter("Images", crate::job::IMAGE_EXTENSIONS)
                    .pick_files()
                {
                    let _ = tx.send(Picked::Files(files));
                }
                ctx.request_repaint();
            })
            .expect("spawning a dialog thread");
        self.picked = Some(rx);
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
        let (tx, rx) = std::sync::mpsc::channel();
        let ctx = ctx.clone();
        let overrides = self.input_overrides();
        std::thread::Builder::new()
            .name("batchwise-model".into())
            .spawn(move || {
                let path = path.or_else(|| {
                    rfd::FileDialog::new()
                        .add_filter("Models", &["onnx", "param"])
                        .pick_file()
                });
                if let Some(path) = path {
                    let result = builtin::resolve(&path.to_string_lossy(), &overrides)
                        .map_err(|e| format!("{} cannot run: {e:#}", path.display()));
                    let _ = tx.send(Picked::Model(result));
                }
                ctx.request_repaint();
            })
            .expect("spawning a model thread");
        self.picked = Some(rx);
    }

    fn pick_output_dir(&mut self, ctx: &egui::Context) {
        let (tx, rx) = std::sync::mpsc::channel();
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("batchwise-dialog".into())
            .spawn(move || {
                if let Some(dir) = rfd::FileDialog::new().pick_folder() {
                    let _ = tx.send(Picked::OutputDir(dir));
                }
                ctx.request_repaint();
            })
            .expect("spawning a dialog thread");
        self.picked = Some(rx);
    }

    /// Applies everything the background threads sent since the last frame.
    fn drain_events(&mut self, ctx: &egui::Context) {
        while let Ok(reply) = self.files.replies.try_recv() {
            match reply {
                FileReply::Added(paths) => {
                    for path in paths {
                        if self.items.iter().any(|i| i.path == path) {
                            continue;
                        }
                        let id = self.next_id;
                        self.next_id += 1;
                        self.files.send(FileRequest::Thumbnail {
                            id: id << 1,
                            path: path.clone(),
                        });
                        self.items.push(Item {
                            id,
                            path,
                            status: ItemStatus::Queued,
                            error: None,
                            output: None,
                            thumb: None,
                            output_thumb: None,
                        });
                    }
                }
                FileReply::Thumbnail { id, image } => {
                    // Thumbnail ids are the item id shifted left, with the low bit set for outputs.
                    let (item_id, is_output) = (id >> 1, id & 1 == 1);
                    if let (Some(item), Some(image)) =
                        (self.items.iter_mut().find(|i| i.id == item_id), image)
                    {
                        let tex = ctx.load_texture(
                            format!("thumb {id}"),
                            image,
                            egui::TextureOptions::LINEAR,
                        );
                        if is_output {
                            item.output_thumb = Some(tex);
                        } else {
                            item.thumb = Some(tex);
                        }
                    }
                }
            }
        }
        while let Ok(event) = self.engine.events.try_recv() {
            match event {
                WorkerEvent::EngineReady { adapter, ledger } => {
                    self.adapter = Some(adapter);
                    self.ledger = Some(ledger);
                }
                WorkerEvent::Error(e) => self.message = Some(e),
                WorkerEvent::Idle => {
                    self.running = false;
                    self.progress.finished_secs =
                        self.progress.started.map(|s| s.elapsed().as_secs_f64());
                }
                WorkerEvent::Job(JobEvent::Started {
                    batch_size,
                    tile_size,
                    ..
                }) => {
                    self.progress.batch_size = batch_size;
                    self.progress.tile_size = tile_size;
                }
                WorkerEvent::Job(JobEvent::Item {
                    index,
                    status,
                    output,
                    error,
                }) => {
                    if let Some(item) = self.items.get_mut(index) {
                        item.status = status;
                        item.error = error;
                        if let Some(out) = &output {
                            self.files.send(FileRequest::Thumbnail {
                                id: (item.id << 1) | 1,
                                path: out.clone(),
                            });
                        }
                        item.output = output;
                    }
                }
                WorkerEvent::Job(JobEvent::Progress {
                    done,
                    failed,
                    total,
                    items_per_sec,
                    ..
                }) => {
                    self.progress.done = done;
                    self.progress.failed = failed;
                    self.progress.total = total;
                    self.progress.items_per_sec = items_per_sec;
                }
                WorkerEvent::Job(JobEvent::Retry { batch_size, reason }) => {
                    self.progress.batch_size = batch_size;
                    self.message = Some(format!("{reason}; retrying in batches of {batch_size}"));
                }
                WorkerEvent::Job(JobEvent::Finished(summary)) => {
                    self.progress.done = summary.done;
                    self.progress.failed = summary.failed;
                    self.progress.items_per_sec = summary.items_per_sec;
                }
            }
        }
        if let Some(rx) = &self.picked
            && let Ok(p) = rx.try_recv()
        {
            self.picked = None;
            match p {
                Picked::Files(files) => self.add_paths(files),
                Picked::OutputDir(dir) => self.settings.output_dir = Some(dir),
                Picked::Model(Ok(model)) => {
                    self.settings.model = model.id.clone();
                    self.message = None;
                    self.user_models.retain(|m| m.id != model.id);
                    self.user_models.push(model);
                }
                Picked::Model(Err(e)) => self.message = Some(e),
            }
        }
    }

    fn toolbar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.heading("batchwise");
            ui.separator();
            if ui.button("Add images...").clicked() {
                self.pick_files(ui.ctx());
            }
            ui.add_enabled_ui(!self.running, |ui| {
                if ui.button("Clear").clicked() {
                    self.items.clear();
                    self.progress = Progress::default();
                }
            });
            ui.separator();
            let model_label = ui.label("Model");
            let selected = std::path::Path::new(&self.settings.model)
                .file_name()
                .map_or(self.settings.model.clone(), |n| {
                    n.to_string_lossy().into_owned()
                });
            egui::ComboBox::from_id_salt("model")
                .selected_text(selected)
                .show_ui(ui, |ui| {
                    for m in BUILTINS.iter().filter(|m| m.is_image_to_image()) {
                        ui.selectable_value(&mut self.settings.model, m.id.to_owned(), m.id)
                            .on_hover_text(m.description);
                    }
                    for m in &self.user_models {
                        let name = std::path::Path::new(&m.id)
                            .file_name()
                            .map_or(m.id.clone(), |n| n.to_string_lossy().into_owned());
                        ui.selectable_value(&mut self.settings.model, m.id.clone(), name)
                            .on_hover_text(format!(
                                "{} ({}x, {} px context)",
                                m.id, m.spec.scale, m.spec.context
                            ));
                    }
                })
                .response
                .labelled_by(model_label.id);
            if ui.button("Load model...").clicked() {
                self.load_model(None, ui.ctx());
            }
            // A user model's input conventions; changing one loads the model again with it.
            let user = self.user_models.iter().any(|m| m.id == self.settings.model);
            if user {
                let mut changed = false;
                for (label, value, choices) in [
                    (
                        "Input range",
                        &mut self.settings.input_range,
                        &["auto", "0-1", "0-255", "-1-1"][..],
                    ),
                    (
                        "Channels",
                        &mut self.settings.channel_order,
                        &["auto", "rgb", "bgr"][..],
                    ),
                    (
                        "Layout",
                        &mut self.settings.input_layout,
                        &["auto", "nchw", "nhwc"][..],
                    ),
                ] {
                    let l = ui.label(label);
                    egui::ComboBox::from_id_salt(label)
                        .selected_text(value.clone())
                        .show_ui(ui, |ui| {
                            for c in choices {
                                changed |= ui.selectable_value(value, c.to_string(), *c).changed();
                            }
                        })
                        .response
                        .labelled_by(l.id);
                }
                if changed {
                    self.load_model(Some(PathBuf::from(&self.settings.model)), ui.ctx());
                }
            }
            ui.separator();
            ui.add(
                egui::Slider::new(&mut self.settings.batch_size, 1..=64)
                    .logarithmic(true)
                    .text("Batch size"),
            );
            ui.separator();
            if ui.button("Output folder...").clicked() {
                self.pick_output_dir(ui.ctx());
            }
            ui.label(self.output_dir().display().to_string())
                .on_hover_text("Where results are written");
            ui.separator();
            if self.running {
                let paused = self.engine.is_paused();
                if ui.button(if paused { "Resume" } else { "Pause" }).clicked() {
                    self.engine.set_paused(!paused);
                }
                if ui.button("Cancel").clicked() {
                    self.engine.set_paused(false);
                    self.engine.cancel();
                }
            } else {
                let run = ui.add_enabled(!self.items.is_empty(), egui::Button::new("Run"));
                if run.clicked() {
                    self.start();
                }
            }
        });
    }

    fn status_ui(&self, ui: &mut egui::Ui) {
        let p = &self.progress;
        let count = |s: ItemStatus| self.items.iter().filter(|i| i.status == s).count();
        let (done, failed) = (count(ItemStatus::Done), count(ItemStatus::Failed));
        let finished = done + failed;
        let fraction = if p.total == 0 {
            0.0
        } else {
            finished as f32 / p.total as f32
        };
        let elapsed = p
            .finished_secs
            .or_else(|| p.started.map(|s| s.elapsed().as_secs_f64()))
            .unwrap_or(0.0);
        let eta = if self.running && p.items_per_sec > 0.0 {
            format!(
                ", ETA {:.0} s",
                (p.total - finished) as f64 / p.items_per_sec
            )
        } else {
            String::new()
        };
        ui.add(egui::ProgressBar::new(fraction).text(format!(
            "{finished}/{} items ({failed} failed), {:.2} items/s, {:.1} s{eta}",
            p.total, p.items_per_sec, elapsed
        )));
        ui.horizontal(|ui| {
            if let Some(ledger) = &self.ledger {
                ui.label(format!(
                    "GPU memory held by batchwise: {:.1} MiB (peak {:.1} MiB)",
                    mib(ledger.in_use_bytes()),
                    mib(ledger.peak_bytes())
                ));
            }
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

    fn grid_ui(&self, ui: &mut egui::Ui) {
        if self.items.is_empty() {
            ui.centered_and_justified(|ui| {
                ui.label("Drop images or folders here, or use 'Add images...'");
            });
            return;
        }
        let cell = files::THUMB_PX as f32 + 8.0 + ui.spacing().item_spacing.x;
        let columns = ((ui.available_width() / cell).floor() as usize).max(1);
        egui::ScrollArea::vertical().show(ui, |ui| {
            for row in self.items.chunks(columns) {
                ui.horizontal_top(|ui| {
                    for item in row {
                        item_ui(ui, item);
                    }
                });
                ui.add_space(4.0);
            }
        });
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn status_color(ui: &egui::Ui, status: ItemStatus) -> egui::Color32 {
    match status {
        ItemStatus::Queued => ui.visuals().weak_text_color(),
        ItemStatus::Running => ui.visuals().hyperlink_color,
        ItemStatus::Done => egui::Color32::from_rgb(60, 170, 90),
        ItemStatus::Failed => ui.visuals().error_fg_color,
        ItemStatus::Skipped => ui.visuals().warn_fg_color,
    }
}

fn item_ui(ui: &mut egui::Ui, item: &Item) {
    let size = files::THUMB_PX as f32;
    let response = ui
        .vertical(|ui| {
            ui.set_width(size + 8.0);
            let thumb = item.output_thumb.as_ref().or(item.thumb.as_ref());
            let (rect, _) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::hover());
            match thumb {
                Some(t) => {
                    let fit = t.size_vec2() * (size / t.size_vec2().max_elem());
                    let r = egui::Rect::from_center_size(rect.center(), fit);
                    egui::Image::new(t).paint_at(ui, r);
                }
                None => {
                    ui.painter()
                        .rect_filled(rect, 4.0, ui.visuals().faint_bg_color);
                }
            }
            let name = item
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            ui.add(egui::Label::new(egui::RichText::new(name).small()).truncate());
            let status = format!("{:?}", item.status).to_lowercase();
            ui.label(
                egui::RichText::new(status)
                    .small()
                    .color(status_color(ui, item.status)),
            );
        })
        .response;
    let hover = match (&item.error, &item.output) {
        (Some(e), _) => e.clone(),
        (None, Some(o)) => format!("output: {}", o.display()),
        (None, None) => item.path.display().to_string(),
    };
    response.on_hover_text(hover);
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
        if self.running {
            // Elapsed time and the memory gauge move between events too.
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::Panel::top("toolbar").show(ui, |ui| self.toolbar_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        egui::CentralPanel::default().show(ui, |ui| self.grid_ui(ui));
        let hovering = ui.ctx().input(|i| !i.raw.hovered_files.is_empty());
        if hovering {
            let rect = ui.ctx().content_rect();
            ui.ctx()
                .layer_painter(egui::LayerId::new(
                    egui::Order::Foreground,
                    egui::Id::unique("drop"),
                ))
                .rect_filled(rect, 0.0, egui::Color32::from_black_alpha(120));
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
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
