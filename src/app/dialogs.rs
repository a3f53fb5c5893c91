//! Native file dialogs (rfd, each on a thread of its own). They open in the folder used last
//! (kept with the app's saved state, apart from the job settings: a preset does not carry it).
//! Where the system has no dialog backend (on Linux: no desktop portal and no zenity; rfd then
//! comes back empty at once), the app says so and offers drag and drop or a typed path instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{BatchwiseApp, Picked};

/// The eframe storage key the dialog folders are saved under.
pub const DIALOG_KEY: &str = "batchwise-dialogs";

/// A dialog that comes back empty sooner than this without zenity never showed: the portal
/// refused it (a person does not cancel a dialog that fast).
const QUICK_EMPTY: Duration = Duration::from_millis(700);

/// What a dialog asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogKind {
    Images,
    Folder,
    Model,
    OutputDir,
}

impl DialogKind {
    /// What to type instead, in the message when no dialog can open.
    fn what(self) -> &'static str {
        match self {
            Self::Images | Self::Folder => "an image or a folder to add",
            Self::Model => "an .onnx or .param model file",
            Self::OutputDir => "the output folder",
        }
    }
}

/// The folders the dialogs opened in last, saved with the app's state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct DialogMemory {
    /// Where images or folders were last added from.
    pub inputs: Option<PathBuf>,
    /// Where a model file was last loaded from.
    pub models: Option<PathBuf>,
}

impl DialogMemory {
    /// Remembers where `picked` came from: a folder itself, a file's folder.
    pub fn remember(slot: &mut Option<PathBuf>, picked: &Path) {
        let dir = if picked.is_dir() {
            Some(picked)
        } else {
            picked.parent()
        };
        if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
            *slot = Some(dir.to_path_buf());
        }
    }
}

/// Whether this system can show a file dialog, as far as can be told without showing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialogSupport {
    /// Linux and the BSDs (rfd's portal and zenity); elsewhere the system's own dialogs.
    pub portal_platform: bool,
    /// `zenity` is on the PATH (rfd's fallback when the portal does not answer).
    pub zenity: bool,
    /// A D-Bus session bus to reach a desktop portal on.
    pub session_bus: bool,
}

impl DialogSupport {
    /// Looks at this process's environment.
    pub fn detect() -> Self {
        let zenity = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("zenity").is_file()));
        let default_bus = std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|dir| Path::new(&dir).join("bus").exists());
        Self {
            portal_platform: cfg!(all(unix, not(target_os = "macos"))),
            zenity,
            session_bus: std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() || default_bus,
        }
    }

    /// A dialog may open: not known to be impossible before trying.
    pub fn may_open(self) -> bool {
        !self.portal_platform || self.zenity || self.session_bus
    }

    /// A dialog that came back empty after `elapsed` never showed (rather than being cancelled).
    pub fn never_showed(self, elapsed: Duration) -> bool {
        self.portal_platform && !self.zenity && elapsed < QUICK_EMPTY
    }
}

/// The dialogs' state in the app.
pub struct Dialogs {
    pub memory: DialogMemory,
    pub support: DialogSupport,
    /// No dialog could open for this: the window that offers a typed path is shown.
    pub missing: Option<DialogKind>,
    /// The path typed there.
    pub typed: String,
    /// Why the typed path was not taken.
    pub typed_error: Option<String>,
}

impl Dialogs {
    pub fn new(memory: DialogMemory) -> Self {
        Self {
            memory,
            support: DialogSupport::detect(),
            missing: None,
            typed: String::new(),
            typed_error: None,
        }
    }
}

/// One dialog, ready to show on another thread.
#[derive(Clone, Debug, PartialEq)]
pub struct DialogRequest {
    pub kind: DialogKind,
    /// The folder it opens in.
    pub start: Option<PathBuf>,
    support: DialogSupport,
}

impl DialogRequest {
    /// Shows the dialog (blocking): the paths picked, None when cancelled, Err when no dialog
    /// could show.
    pub fn show(&self) -> Result<Option<Vec<PathBuf>>, DialogKind> {
        let mut dialog = rfd::FileDialog::new();
        if let Some(dir) = &self.start {
            dialog = dialog.set_directory(dir);
        }
        let started = Instant::now();
        let picked = match self.kind {
            DialogKind::Images => dialog
                .add_filter("Images", crate::job::IMAGE_EXTENSIONS)
                .pick_files(),
            DialogKind::Model => dialog
                .add_filter("Models", &["onnx", "param"])
                .pick_file()
                .map(|p| vec![p]),
            DialogKind::Folder | DialogKind::OutputDir => dialog.pick_folder().map(|p| vec![p]),
        };
        match picked {
            Some(paths) if !paths.is_empty() => Ok(Some(paths)),
            _ if self.support.never_showed(started.elapsed()) => Err(self.kind),
            _ => Ok(None),
        }
    }
}

impl BatchwiseApp {
    /// The dialog for `kind`, opening where the last one of its kind picked (the output folder
    /// dialog: in the output folder, or where inputs came from).
    pub fn dialog_request(&self, kind: DialogKind) -> DialogRequest {
        let memory = &self.dialogs.memory;
        let start = match kind {
            DialogKind::Images | DialogKind::Folder => memory.inputs.clone(),
            DialogKind::Model => memory.models.clone(),
            DialogKind::OutputDir => self
                .settings
                .output_dir
                .clone()
                .filter(|d| d.is_dir())
                .or_else(|| memory.inputs.clone()),
        };
        DialogRequest {
            kind,
            start,
            support: self.dialogs.support,
        }
    }

    /// Shows a dialog for images, a folder or the output folder off the UI thread; where none
    /// can open, the window that offers a typed path.
    pub(super) fn ask(&mut self, kind: DialogKind, ctx: &egui::Context) {
        if !self.dialogs.support.may_open() {
            self.no_dialog(kind);
            return;
        }
        let request = self.dialog_request(kind);
        self.off_ui(ctx, move || match request.show() {
            Err(kind) => Some(Picked::NoDialog(kind)),
            Ok(None) => None,
            Ok(Some(mut paths)) => Some(match kind {
                DialogKind::OutputDir => Picked::OutputDir(paths.remove(0)),
                _ => Picked::Files(paths),
            }),
        });
    }

    /// Opens the window that says no dialog can open and offers a typed path.
    pub(super) fn no_dialog(&mut self, kind: DialogKind) {
        log::warn!("no file dialog could open (no desktop portal and no zenity)");
        self.dialogs.missing = Some(kind);
        self.dialogs.typed_error = None;
    }

    /// Takes a typed path for what the missing dialog was to pick.
    fn take_typed(&mut self, kind: DialogKind, ctx: &egui::Context) {
        let path = PathBuf::from(self.dialogs.typed.trim());
        let fits = match kind {
            DialogKind::Folder | DialogKind::OutputDir => path.is_dir(),
            DialogKind::Images => path.exists(),
            DialogKind::Model => path.is_file(),
        };
        if !fits && kind != DialogKind::OutputDir {
            self.dialogs.typed_error = Some(format!("{} was not found", path.display()));
            return;
        }
        match kind {
            DialogKind::Images | DialogKind::Folder => {
                DialogMemory::remember(&mut self.dialogs.memory.inputs, &path);
                self.add_paths(vec![path]);
            }
            // A folder that does not exist yet is made by the first run.
            DialogKind::OutputDir => self.settings.output_dir = Some(path),
            DialogKind::Model => self.load_model(Some(path), ctx),
        }
        self.dialogs.missing = None;
        self.dialogs.typed.clear();
    }

    /// The window shown when no file dialog can open.
    pub(super) fn no_dialog_window(&mut self, ctx: &egui::Context) {
        let Some(kind) = self.dialogs.missing else {
            return;
        };
        let mut open = true;
        let mut take = false;
        egui::Window::new("No file dialog")
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                ui.label(
                    "This system has no file dialog: no desktop portal answered and zenity is \
                     not installed.",
                );
                ui.label(format!(
                    "Drop files or folders onto the window, or type the path of {}:",
                    kind.what()
                ));
                ui.horizontal(|ui| {
                    let field = ui.add(
                        egui::TextEdit::singleline(&mut self.dialogs.typed)
                            .hint_text("/path/to/...")
                            .desired_width(320.0),
                    );
                    let entered =
                        field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                    let button = if kind == DialogKind::Model {
                        "Load"
                    } else {
                        "Use path"
                    };
                    take = ui.button(button).clicked() || entered;
                });
                if let Some(e) = &self.dialogs.typed_error {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                ui.label(
                    egui::RichText::new(
                        "For dialogs, install a desktop portal (xdg-desktop-portal-gtk or -kde) \
                         or zenity.",
                    )
                    .small(),
                );
            });
        if take {
            self.take_typed(kind, ctx);
        }
        if !open {
            self.dialogs.missing = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialog_is_known_missing_only_without_portal_and_zenity() {
        let linux = |zenity, session_bus| DialogSupport {
            portal_platform: true,
            zenity,
            session_bus,
        };
        assert!(!linux(false, false).may_open());
        assert!(linux(true, false).may_open());
        assert!(linux(false, true).may_open());
        let other = DialogSupport {
            portal_platform: false,
            zenity: false,
            session_bus: false,
        };
        assert!(other.may_open());
        // An empty answer at once, with no zenity to fall back on: the portal refused.
        let quick = Duration::from_millis(50);
        assert!(linux(false, true).never_showed(quick));
        assert!(!linux(false, true).never_showed(Duration::from_secs(5)));
        assert!(!linux(true, true).never_showed(quick));
        assert!(!other.never_showed(quick));
    }

    #[test]
    fn a_picked_file_remembers_its_folder_and_a_folder_itself() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.png");
        std::fs::write(&file, b"x").unwrap();
        let mut slot = None;
        DialogMemory::remember(&mut slot, &file);
        assert_eq!(slot.as_deref(), Some(dir.path()));
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        DialogMemory::remember(&mut slot, &sub);
        assert_eq!(slot.as_deref(), Some(sub.as_path()));
    }
}
