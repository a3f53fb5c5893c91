//! The settings side panel: model, batch and export.

use std::path::Path;

use crate::builtin::{BUILTINS, Task};
use crate::job::{OutputFormat, Overwrite};

use super::{BatchwiseApp, mib};

impl BatchwiseApp {
    pub(super) fn side_panel_ui(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            egui::CollapsingHeader::new("Model")
                .default_open(true)
                .show(ui, |ui| self.model_ui(ui));
            egui::CollapsingHeader::new("Batch")
                .default_open(true)
                .show(ui, |ui| self.batch_ui(ui));
            egui::CollapsingHeader::new("Export")
                .default_open(true)
                .show(ui, |ui| self.export_ui(ui));
            egui::CollapsingHeader::new("Preset")
                .default_open(true)
                .show(ui, |ui| self.presets_ui(ui));
        });
    }

    fn model_ui(&mut self, ui: &mut egui::Ui) {
        let model_label = ui.label("Model");
        self.steps_ui(ui, model_label.id);
        if ui.button("Load model...").clicked() {
            self.load_model(None, ui.ctx());
        }
        self.models_folder_ui(ui);
        // What the chosen model (or chain) is and needs.
        let steps = self.model_steps();
        let Some(facts) = steps
            .iter()
            .map(|id| self.step_facts(id))
            .collect::<Option<Vec<_>>>()
        else {
            return;
        };
        let user = facts.iter().any(|f| f.user);
        let last = facts.last().expect("a model has a step");
        // A chain's last step may take whole images of a fixed size (its results are that
        // model's); the steps before it set the scale of the images it sees.
        let (task, input_size) = (last.task, last.input_size);
        let scale = facts.iter().map(|f| f.scale).product::<u32>();
        let description = match facts.as_slice() {
            [one] => one.description.clone(),
            _ => format!(
                "a chain, run as one model on the GPU: {}",
                steps.join(", then ")
            ),
        };
        ui.label(egui::RichText::new(description).small());
        egui::Grid::new("model facts")
            .num_columns(2)
            .show(ui, |ui| {
                ui.label("Task");
                ui.label(task_name(task));
                ui.end_row();
                ui.label("Input");
                ui.label(if input_size > 0 {
                    format!("{input_size} x {input_size} px (each image fitted)")
                } else {
                    "any size, in tiles".to_owned()
                });
                ui.end_row();
                if matches!(task, Task::Upscale | Task::Enhance) {
                    ui.label("Scale");
                    ui.label(format!("{scale}x"));
                    ui.end_row();
                }
                if let Some(info) = self.model_infos.get(&self.settings.model) {
                    ui.label("Parameters");
                    ui.label(format_count(info.parameters));
                    ui.end_row();
                    ui.label("Memory per item");
                    ui.label(format!(
                        "{:.1} MiB at {} px",
                        mib(info.bytes_per_item),
                        info.side
                    ))
                    .on_hover_text("activations and pixel buffers of one image or tile, float32");
                    ui.end_row();
                    if info.tiles_change_output {
                        ui.label("Tiles");
                        ui.label("change its output: it takes means over each tile's whole map")
                            .on_hover_text(
                                "a tile size at least the images' longer side keeps each image \
                                 in one tile",
                            );
                        ui.end_row();
                    }
                }
            });
        if user {
            self.user_model_inputs_ui(ui);
        }
        match task {
            Task::Classify => {
                ui.add(egui::Slider::new(&mut self.settings.top_k, 1..=20).text("top labels"));
            }
            Task::Segment => {
                ui.checkbox(&mut self.settings.mask_only, "Write the mask alone");
            }
            Task::DetectFaces => {
                ui.checkbox(&mut self.settings.annotate, "Also write images with boxes");
            }
            _ => {}
        }
    }

    /// A user model's input conventions; changing one loads the model again with it.
    fn user_model_inputs_ui(&mut self, ui: &mut egui::Ui) {
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
            ui.horizontal(|ui| {
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
            });
        }
        if changed {
            let path = std::path::PathBuf::from(&self.settings.model);
            self.load_model(Some(path), ui.ctx());
        }
    }

    fn batch_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.checkbox(&mut self.settings.batch_auto, "Auto")
                .on_hover_text("the largest batch whose planned memory fits the budget");
            ui.add_enabled(
                !self.settings.batch_auto,
                egui::Slider::new(&mut self.settings.batch_size, 1..=64)
                    .logarithmic(true)
                    .text("Batch size"),
            );
        });
        ui.horizontal(|ui| {
            let l = ui.label("Memory budget");
            ui.add(
                egui::DragValue::new(&mut self.settings.memory_budget_mb)
                    .range(0..=1 << 20)
                    .speed(16)
                    .custom_formatter(|v, _| {
                        if v == 0.0 {
                            "default".into()
                        } else {
                            format!("{v} MiB")
                        }
                    }),
            )
            .labelled_by(l.id)
            .on_hover_text(
                "GPU memory a job plans for; default: half of what the driver offers (1 GiB \
                 where it says nothing)",
            );
        });
        ui.horizontal(|ui| {
            let l = ui.label("Tile size");
            egui::ComboBox::from_id_salt("tile")
                .selected_text(if self.settings.tile_size == 0 {
                    "Auto".to_owned()
                } else {
                    format!("{} px", self.settings.tile_size)
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.settings.tile_size, 0, "Auto");
                    for t in [32, 64, 96, 128, 192, 256] {
                        ui.selectable_value(&mut self.settings.tile_size, t, format!("{t} px"));
                    }
                })
                .response
                .labelled_by(l.id);
        });
        let f16 = self.adapters.as_ref().is_none_or(|list| {
            let chosen = self.settings.adapter.unwrap_or(self.auto_adapter());
            list.get(chosen).is_some_and(|a| a.shader_f16)
        });
        ui.add_enabled(
            f16,
            egui::Checkbox::new(&mut self.settings.float16, "float16"),
        )
        .on_hover_text("half the activation memory; needs the adapter's SHADER_F16")
        .on_disabled_hover_text("this adapter has no float16 shaders");
        if !f16 {
            self.settings.float16 = false;
        }
        self.adapter_ui(ui);
        ui.add_space(4.0);
        let tunable = !self.items.is_empty() && !self.running && !self.tuning_running();
        if ui
            .add_enabled(tunable, egui::Button::new("Tune batch size..."))
            .on_hover_text("measure items/s and GPU memory at each batch size on these inputs")
            .clicked()
        {
            self.start_tune();
        }
    }

    fn adapter_ui(&mut self, ui: &mut egui::Ui) {
        let Some(list) = &self.adapters else {
            ui.label(egui::RichText::new("listing adapters...").small());
            return;
        };
        let auto = self.auto_adapter();
        let name = |i: usize| {
            list.get(i).map_or("?".to_owned(), |a| {
                format!("{} ({}, {})", a.name, a.backend, a.device_type)
            })
        };
        let l = ui.label("Adapter");
        let selected = match self.settings.adapter {
            None => format!("Auto: {}", name(auto)),
            Some(i) => name(i),
        };
        egui::ComboBox::from_id_salt("adapter")
            .selected_text(selected)
            .width(ui.available_width() - 8.0)
            .show_ui(ui, |ui| {
                ui.selectable_value(
                    &mut self.settings.adapter,
                    None,
                    format!("Auto: {}", name(auto)),
                );
                for (i, _) in list.iter().enumerate() {
                    ui.selectable_value(&mut self.settings.adapter, Some(i), name(i));
                }
            })
            .response
            .labelled_by(l.id);
        let chosen = self.settings.adapter.unwrap_or(auto);
        let software = list.get(chosen).is_some_and(|a| a.device_type == "Cpu");
        let real_exists = list.iter().any(|a| a.device_type != "Cpu");
        if software {
            let note = if real_exists {
                "a software adapter runs on the CPU; a GPU is listed above"
            } else {
                "software adapter: no GPU was found, so this runs on the CPU"
            };
            ui.colored_label(ui.visuals().warn_fg_color, note);
        }
    }

    fn export_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if ui.button("Output folder...").clicked() {
                self.ask(super::DialogKind::OutputDir, ui.ctx());
            }
            let dir = self.output_dir();
            if ui
                .button("Open")
                .on_hover_text("open the output folder in the file manager")
                .clicked()
                && let Err(e) = open::that_detached(&dir)
            {
                self.message = Some(format!(
                    "cannot open {} (it is made by the first run): {e}",
                    dir.display()
                ));
            }
        });
        ui.label(egui::RichText::new(self.output_dir().display().to_string()).small());
        ui.horizontal(|ui| {
            let l = ui.label("Format");
            egui::ComboBox::from_id_salt("format")
                .selected_text(super::output_ui::format_name(self.settings.format))
                .show_ui(ui, |ui| {
                    for f in [
                        OutputFormat::Png,
                        OutputFormat::Jpeg,
                        OutputFormat::Webp,
                        OutputFormat::Tiff,
                        OutputFormat::Same,
                    ] {
                        let name = super::output_ui::format_name(f);
                        ui.selectable_value(&mut self.settings.format, f, name);
                    }
                })
                .response
                .labelled_by(l.id);
        });
        let model_scale = self.model_scale();
        super::output_ui::encoding_ui(&mut self.settings, ui, model_scale);
        ui.horizontal(|ui| {
            let l = ui.label("Name");
            ui.text_edit_singleline(&mut self.settings.pattern)
                .labelled_by(l.id)
                .on_hover_text("{stem}, {model}, {scale} and {ext} are replaced");
        });
        let preview = self.name_preview();
        ui.label(egui::RichText::new(format!("e.g. {preview}")).small());
        ui.horizontal(|ui| {
            let l = ui.label("If it exists");
            egui::ComboBox::from_id_salt("overwrite")
                .selected_text(overwrite_name(self.settings.overwrite))
                .show_ui(ui, |ui| {
                    for o in [Overwrite::Rename, Overwrite::Skip, Overwrite::Overwrite] {
                        ui.selectable_value(&mut self.settings.overwrite, o, overwrite_name(o));
                    }
                })
                .response
                .labelled_by(l.id);
        });
    }

    /// The picked model's scale for an image-to-image model; None for the others (fixed input).
    fn model_scale(&self) -> Option<u32> {
        BUILTINS
            .iter()
            .find(|m| m.id == self.settings.model)
            .map(|m| (m.input_size == 0, m.spec.scale))
            .or_else(|| {
                self.user_models
                    .iter()
                    .find(|m| m.id == self.settings.model)
                    .map(|m| (m.input_size == 0, m.spec.scale))
            })
            .and_then(|(tiled, scale)| tiled.then_some(scale))
    }

    /// The first input's output name under the current pattern.
    pub fn name_preview(&self) -> String {
        let first = self.items.first().map(|i| i.path.as_path());
        let stem = first
            .and_then(|p| p.file_stem())
            .map_or("photo".to_owned(), |s| s.to_string_lossy().into_owned());
        let export = self.settings.export();
        let scale = match self.model_scale() {
            Some(scale) => export.scale_label(scale),
            None => "1".to_owned(),
        };
        let format = match (self.settings.format, first) {
            (OutputFormat::Same, Some(p)) => OutputFormat::of_input(p),
            (f, _) => f,
        };
        crate::job::output_name(
            &self.settings.pattern,
            &stem,
            &short_name(&self.settings.model),
            &scale,
            format.extension(),
        )
    }
}

/// A model's file name for a user model's path, the id for a built-in.
/// A change to the chain of models.
enum StepEdit {
    Up(usize),
    Down(usize),
    Remove(usize),
    Add,
}

/// What the panel shows of one model.
struct StepFacts {
    task: Task,
    description: String,
    scale: u32,
    input_size: u32,
    /// A user's file (its input conventions can be set).
    user: bool,
}

impl BatchwiseApp {
    /// The model choice: one combo per step of the chain, each with buttons to move or remove
    /// it, and "Add step" (a chain runs each model on the one before's output, on the GPU).
    fn steps_ui(&mut self, ui: &mut egui::Ui, label: egui::Id) {
        let mut steps = self.model_steps();
        let count = steps.len();
        let mut edit = None;
        let in_folder: Vec<String> = self.folder_model_ids().collect();
        for (i, step) in steps.iter_mut().enumerate() {
            // Later steps are named "then" for screen readers and the eye.
            let label = if i == 0 { label } else { ui.label("then").id };
            egui::ComboBox::from_id_salt(("model", i))
                .selected_text(short_name(step))
                .width(ui.available_width() - 8.0)
                .show_ui(ui, |ui| {
                    for m in BUILTINS {
                        ui.selectable_value(step, m.id.to_owned(), m.id)
                            .on_hover_text(m.description);
                    }
                    for m in self
                        .user_models
                        .iter()
                        .filter(|m| !in_folder.contains(&m.id))
                    {
                        ui.selectable_value(step, m.id.clone(), short_name(&m.id))
                            .on_hover_text(&m.id);
                    }
                    self.folder_models_choice_ui(ui, step);
                })
                .response
                .labelled_by(label);
            if count > 1 {
                ui.horizontal(|ui| {
                    let mut button = |text: &str, hover: &str, enabled: bool, e: StepEdit| {
                        let b = ui.add_enabled(enabled, egui::Button::new(text).small());
                        if b.on_hover_text(hover).clicked() {
                            edit = Some(e);
                        }
                    };
                    button("Up", "Run this step earlier", i > 0, StepEdit::Up(i));
                    button(
                        "Down",
                        "Run this step later",
                        i + 1 < count,
                        StepEdit::Down(i),
                    );
                    button(
                        "Remove step",
                        "Remove this step from the chain",
                        true,
                        StepEdit::Remove(i),
                    );
                });
            }
        }
        let add = ui.button("Add step").on_hover_text(
            "Run another model on this one's output: the chain runs as one model, every \
             intermediate image kept on the GPU",
        );
        if add.clicked() {
            edit = Some(StepEdit::Add);
        }
        if count > 1 {
            ui.checkbox(&mut self.settings.keep_steps, "Keep each step's output")
                .on_hover_text(
                    "Also write each step's result but the last beside the output, named by \
                     the step (photo.enhance-low-light.png beside photo.png): --keep-steps",
                );
        }
        match edit {
            Some(StepEdit::Up(i)) => steps.swap(i - 1, i),
            Some(StepEdit::Down(i)) => steps.swap(i, i + 1),
            Some(StepEdit::Remove(i)) => {
                steps.remove(i);
            }
            Some(StepEdit::Add) => steps.push(steps.last().cloned().unwrap_or_default()),
            None => {}
        }
        self.settings.model = steps.join(&crate::chain::SEPARATOR.to_string());
    }

    fn step_facts(&self, id: &str) -> Option<StepFacts> {
        if let Some(b) = BUILTINS.iter().find(|m| m.id == id) {
            return Some(StepFacts {
                task: b.task,
                description: b.description.to_owned(),
                scale: b.spec.scale,
                input_size: b.input_size,
                user: false,
            });
        }
        let u = self.user_models.iter().find(|m| m.id == id)?;
        Some(StepFacts {
            task: u.task,
            description: format!("your model: {}", u.id),
            scale: u.spec.scale,
            input_size: u.input_size,
            user: true,
        })
    }
}

fn short_name(id: &str) -> String {
    Path::new(id)
        .file_name()
        .map_or(id.to_owned(), |n| n.to_string_lossy().into_owned())
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::Upscale => "upscale",
        Task::Enhance => "enhance / restore",
        Task::Classify => "classify (ImageNet labels)",
        Task::Embed => "embed (feature vectors)",
        Task::Segment => "remove background",
        Task::DetectFaces => "detect faces",
        Task::Tensors => "raw outputs (.npy)",
    }
}

fn overwrite_name(o: Overwrite) -> &'static str {
    match o {
        Overwrite::Rename => "write name_2",
        Overwrite::Skip => "skip the item",
        Overwrite::Overwrite => "replace it",
    }
}

fn format_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1} K", n as f64 / 1e3),
        _ => format!("{:.2} M", n as f64 / 1e6),
    }
}
