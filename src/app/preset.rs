//! Presets in the app: "Save preset...", "Load preset..." and "Copy as command". One function,
//! [`Settings::preset`], turns the settings into `run`'s flags; the preset file and the command
//! line are both written from them ([`Preset::to_toml`], [`Preset::command_line`]), and a preset
//! is read back through the CLI's own parser ([`Preset::run_args`], then
//! [`Settings::with_run_args`]). Files are read and written on the dialog's thread.

use std::path::PathBuf;

use crate::builtin;
use crate::cli::RunArgs;
use crate::cli::preset::Preset;
use crate::job::export::encode::PngCompression;
use crate::job::{AUTO_BATCH, OutputFormat, Overwrite};

use super::{BatchwiseApp, Picked, Settings};

/// Output formats and their `--format` names.
const FORMATS: &[(OutputFormat, &str)] = &[
    (OutputFormat::Png, "png"),
    (OutputFormat::Jpeg, "jpeg"),
    (OutputFormat::Webp, "webp"),
    (OutputFormat::Tiff, "tiff"),
    (OutputFormat::Same, "same"),
];

/// Overwrite policies and their `--overwrite` names.
const OVERWRITES: &[(Overwrite, &str)] = &[
    (Overwrite::Skip, "skip"),
    (Overwrite::Overwrite, "overwrite"),
    (Overwrite::Rename, "rename"),
];

/// What a preset dialog's thread sends back.
pub(super) enum PresetReply {
    Loaded(Result<Preset, String>),
    /// Where the preset was written, or why it was not.
    Saved(Result<PathBuf, String>),
}

impl Settings {
    /// The `run` flags these settings stand for: what a preset file and "Copy as command" hold.
    /// Settings left at Auto (tile size, memory budget, adapter, a user model's conventions) and
    /// switches that are off are left out.
    pub fn preset(&self) -> Preset {
        let mut p = Preset::default();
        p.push("model", self.model.as_str());
        if self.batch_auto {
            p.push("batch-size", "auto");
        } else {
            p.push("batch-size", i64::from(self.batch_size));
        }
        if self.memory_budget_mb > 0 {
            p.push("memory-budget", i64::from(self.memory_budget_mb));
        }
        if self.tile_size > 0 {
            p.push("tile-size", i64::from(self.tile_size));
        }
        p.push("precision", if self.float16 { "f16" } else { "f32" });
        if let Some(a) = self.adapter {
            p.push("adapter", a as i64);
        }
        if let Some(dir) = &self.models_dir {
            p.push("models-dir", dir.to_string_lossy().as_ref());
        }
        if let Some(dir) = &self.output_dir {
            p.push("output", dir.to_string_lossy().as_ref());
        }
        p.push("format", name_of(FORMATS, self.format));
        // `--quality` is JPEG's, and makes WebP lossy.
        let webp = matches!(self.format, OutputFormat::Webp | OutputFormat::Same);
        if self.format == OutputFormat::Jpeg || (webp && !self.webp_lossless) {
            p.push("quality", i64::from(self.quality));
        }
        if self.png_compression != PngCompression::Fast {
            p.push("png-compression", png_name(self.png_compression).as_str());
        }
        if self.scale > 0.0 {
            p.push("scale", f64::from(self.scale));
        }
        p.push("name", self.pattern.as_str());
        p.push("overwrite", name_of(OVERWRITES, self.overwrite));
        p.push("top-k", self.top_k as i64);
        if self.mask_only {
            p.push("mask-only", true);
        }
        if self.annotate {
            p.push("annotate", true);
        }
        if self.keep_steps && self.is_chain() {
            p.push("keep-steps", true);
        }
        for (flag, value) in [
            ("input-range", &self.input_range),
            ("channel-order", &self.channel_order),
            ("input-layout", &self.input_layout),
        ] {
            if value != "auto" {
                p.push(flag, value.as_str());
            }
        }
        p
    }

    /// These settings with what `args` says (a preset read through `run`'s parser, its defaults
    /// for what the preset leaves out). Kept: the batch size a fixed batch would use under
    /// Auto, and the output folder unless `output` names one.
    pub fn with_run_args(&self, args: &RunArgs, output: bool) -> Settings {
        let auto = args.batch_size == AUTO_BATCH;
        let flag = |v: &Option<String>| v.clone().unwrap_or_else(|| "auto".into());
        Settings {
            model: args.model.clone(),
            batch_auto: auto,
            batch_size: if auto {
                self.batch_size
            } else {
                args.batch_size
            },
            memory_budget_mb: args
                .memory_budget
                .map_or(0, |mb| u32::try_from(mb).unwrap_or(u32::MAX)),
            tile_size: args.tile_size.unwrap_or(0),
            float16: value(&args.precision) == "f16",
            adapter: args.adapter,
            models_dir: args.models_dir.models_dir.clone(),
            output_dir: if output {
                Some(args.output.clone())
            } else {
                self.output_dir.clone()
            },
            format: from_name(FORMATS, &value(&args.format)).unwrap_or(self.format),
            quality: args.quality.unwrap_or(self.quality),
            webp_lossless: args.quality.is_none(),
            png_compression: args.output_extra.png_compression,
            scale: args.output_extra.scale.unwrap_or(0.0),
            pattern: args.name.clone(),
            overwrite: from_name(OVERWRITES, &value(&args.overwrite)).unwrap_or(self.overwrite),
            top_k: args.top_k as usize,
            mask_only: args.mask_only,
            annotate: args.annotate,
            keep_steps: args.output_extra.keep_steps,
            input_range: flag(&args.input.input_range),
            channel_order: flag(&args.input.channel_order),
            input_layout: flag(&args.input.input_layout),
            tune_cache: self.tune_cache.clone(),
        }
    }
}

/// `--png-compression`'s value for `c`.
fn png_name(c: PngCompression) -> String {
    match c {
        PngCompression::Fast => "fast".into(),
        PngCompression::Balanced => "balanced".into(),
        PngCompression::Best => "best".into(),
        PngCompression::Level(n) => n.to_string(),
    }
}

/// The name clap gives a value of a `ValueEnum` flag (`--format png`).
fn value<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}

fn name_of<T: PartialEq + Copy>(table: &[(T, &'static str)], value: T) -> &'static str {
    table
        .iter()
        .find(|(v, _)| *v == value)
        .map_or("", |(_, name)| name)
}

fn from_name<T: Copy>(table: &[(T, &'static str)], name: &str) -> Option<T> {
    table.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
}

impl BatchwiseApp {
    /// The inputs as a command line names them: each folder added (its files keep their
    /// sub-folders in the output, as here), then the files outside those folders.
    pub fn command_inputs(&self) -> Vec<PathBuf> {
        let loose = self
            .items
            .iter()
            .map(|i| &i.path)
            .filter(|p| !self.roots.iter().any(|r| p.starts_with(r)));
        self.roots.iter().chain(loose).cloned().collect()
    }

    /// The `batchwise run` line that runs the current settings on the current inputs.
    pub fn command_line(&self) -> String {
        let mut settings = self.settings.clone();
        settings.output_dir = Some(self.output_dir());
        settings.preset().command_line(&self.command_inputs())
    }

    /// Writes the settings as a preset to `path` (None: asks where), off the UI thread.
    pub fn save_preset(&mut self, path: Option<PathBuf>, ctx: &egui::Context) {
        let text = self.settings.preset().to_toml();
        self.off_ui(ctx, move || {
            let path = path.or_else(|| {
                rfd::FileDialog::new()
                    .add_filter("Presets", &["toml"])
                    .set_file_name("batchwise-preset.toml")
                    .save_file()
            })?;
            let saved = std::fs::write(&path, text)
                .map(|()| path.clone())
                .map_err(|e| format!("cannot write the preset {}: {e}", path.display()));
            Some(Picked::Preset(PresetReply::Saved(saved)))
        });
    }

    /// Reads a preset from `path` (None: asks which) off the UI thread; the next frame applies it.
    pub fn load_preset(&mut self, path: Option<PathBuf>, ctx: &egui::Context) {
        self.off_ui(ctx, move || {
            let path = path.or_else(|| {
                rfd::FileDialog::new()
                    .add_filter("Presets", &["toml"])
                    .pick_file()
            })?;
            let read = Preset::read(&path).map_err(|e| format!("{e:#}"));
            Some(Picked::Preset(PresetReply::Loaded(read)))
        });
    }

    /// What a preset dialog's thread sent: a preset to apply, or whether one was written.
    pub(super) fn on_preset(&mut self, reply: PresetReply, ctx: &egui::Context) {
        let preset = match reply {
            PresetReply::Saved(Ok(_)) => return,
            PresetReply::Saved(Err(e)) | PresetReply::Loaded(Err(e)) => {
                self.message = Some(e);
                return;
            }
            PresetReply::Loaded(Ok(preset)) => preset,
        };
        match preset.run_args() {
            Ok(args) => {
                let output = preset.get("output").is_some();
                self.settings = self.settings.with_run_args(&args, output);
                self.message = None;
                // A user's model file (or a chain's) loads as at start-up (off this thread).
                for step in self.model_steps() {
                    if builtin::find(&step).is_err()
                        && !self.user_models.iter().any(|m| m.id == step)
                    {
                        self.load_model(Some(PathBuf::from(step)), ctx);
                    }
                }
            }
            Err(e) => self.message = Some(format!("{e:#}")),
        }
    }

    /// "Copy as command", "Save preset..." and "Load preset...".
    pub(super) fn presets_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            if ui
                .button("Copy as command")
                .on_hover_text("the batchwise run line for these settings and inputs")
                .clicked()
            {
                ui.ctx().copy_text(self.command_line());
            }
            if ui.button("Save preset...").clicked() {
                self.save_preset(None, ui.ctx());
            }
            if ui.button("Load preset...").clicked() {
                self.load_preset(None, ui.ctx());
            }
        });
    }
}
