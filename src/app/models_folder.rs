//! The models folder in the app: its models in the model choice with their measured scale (read
//! off the UI thread), and the setting that names the folder.

use std::path::PathBuf;

use crate::models_dir::{self, FolderModel, ModelsDir};

use super::{BatchwiseApp, Picked};

/// The folder's models as last read.
#[derive(Default)]
pub struct ModelsFolder {
    /// The folder they were read from.
    pub dir: Option<PathBuf>,
    pub models: Vec<FolderModel>,
    /// Why the folder could not be read.
    pub error: Option<String>,
    /// A read is under way.
    pub reading: bool,
}

impl BatchwiseApp {
    /// The folder the settings name, else `$BATCHWISE_MODELS_DIR`, else the default one.
    pub fn models_dir(&self) -> Option<ModelsDir> {
        let named = self
            .settings
            .models_dir
            .clone()
            .or_else(|| std::env::var_os(models_dir::ENV_VAR).map(PathBuf::from));
        ModelsDir::choose(named)
    }

    /// Reads the models folder again, off the UI thread (each model is parsed and its scale
    /// measured from its shapes; nothing runs on the GPU).
    pub fn scan_models_folder(&mut self, ctx: &egui::Context) {
        let Some(dir) = self.models_dir() else {
            self.models_folder = ModelsFolder {
                error: Some("this system names no data folder: choose a models folder".into()),
                ..ModelsFolder::default()
            };
            return;
        };
        self.models_folder.reading = true;
        let overrides = self.input_overrides();
        self.off_ui(ctx, move || {
            let read = dir
                .entries()
                .map(|entries| models_dir::load_all(entries, &overrides))
                .map_err(|e| format!("{e:#}"));
            Some(Picked::ModelsFolder(dir.path, read))
        });
    }

    /// The folder's models have been read: those that run join the user's models (selectable
    /// by path, like a loaded file); the others are listed with the reason.
    pub(super) fn on_models_folder(
        &mut self,
        dir: PathBuf,
        read: Result<Vec<FolderModel>, String>,
    ) {
        if self.models_dir().map(|d| d.path) != Some(dir.clone()) {
            // An answer for a folder no longer chosen.
            return;
        }
        let old: Vec<String> = self.folder_model_ids().collect();
        self.user_models
            .retain(|m| !old.contains(&m.id) || m.id == self.settings.model);
        let (models, error) = match read {
            Ok(models) => (models, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        for m in &models {
            if let Ok(choice) = &m.loaded
                && !self.user_models.iter().any(|u| u.id == choice.id)
            {
                self.user_models.push(choice.clone());
            }
        }
        self.models_folder = ModelsFolder {
            dir: Some(dir),
            models,
            error,
            reading: false,
        };
    }

    /// The ids (paths) of the folder's models that run.
    pub(super) fn folder_model_ids(&self) -> impl Iterator<Item = String> + '_ {
        self.models_folder
            .models
            .iter()
            .filter_map(|m| m.loaded.as_ref().ok().map(|c| c.id.clone()))
    }

    /// The folder's models in the model choice: name and scale, or why one cannot run.
    pub(super) fn folder_models_choice_ui(&self, ui: &mut egui::Ui, step: &mut String) {
        if self.models_folder.models.is_empty() {
            return;
        }
        ui.separator();
        ui.label(egui::RichText::new("Models folder").small());
        for m in &self.models_folder.models {
            match &m.loaded {
                Ok(choice) => {
                    let label = format!("{} ({}x)", m.entry.name, choice.spec.scale);
                    ui.selectable_value(step, choice.id.clone(), label)
                        .on_hover_text(&choice.id);
                }
                Err(e) => {
                    ui.add_enabled(
                        false,
                        egui::Button::selectable(false, format!("{} (cannot run)", m.entry.name)),
                    )
                    .on_disabled_hover_text(e);
                }
            }
        }
    }

    /// The models folder setting: where it is, choose another, back to the default, read again.
    pub(super) fn models_folder_ui(&mut self, ui: &mut egui::Ui) {
        let dir = self.models_dir();
        ui.horizontal_wrapped(|ui| {
            ui.label("Models folder");
            let shown = dir
                .as_ref()
                .map_or("none".to_owned(), |d| d.path.display().to_string());
            ui.label(egui::RichText::new(shown).small()).on_hover_text(
                "Put .onnx files or NCNN .param + .bin pairs here: they appear in the model choice",
            );
        });
        ui.horizontal(|ui| {
            if ui.button("Choose...").clicked() {
                self.off_ui(ui.ctx(), || {
                    Some(Picked::ModelsDir(rfd::FileDialog::new().pick_folder()?))
                });
            }
            let custom = self.settings.models_dir.is_some();
            if ui
                .add_enabled(custom, egui::Button::new("Default"))
                .clicked()
            {
                self.settings.models_dir = None;
                self.scan_models_folder(ui.ctx());
            }
            let read = ui.add_enabled(!self.models_folder.reading, egui::Button::new("Read again"));
            if read.clicked() {
                self.scan_models_folder(ui.ctx());
            }
        });
        if let Some(e) = &self.models_folder.error {
            ui.colored_label(ui.visuals().warn_fg_color, e);
        }
    }
}
