//! The app as a desktop citizen, driven headless with egui_kittest: the window title follows a
//! job, grid cells are named for screen readers, the viewer's keys, and file dialogs (the folder
//! they open in, remembered between runs; the message when the system has none).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use batchwise::app::{BatchwiseApp, DialogKind, DialogSupport};
use batchwise::job::ItemStatus;
use common::app::{Dropped, step_until};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT as _, Queryable as _};

/// The titles the app sent the window in the last frame.
fn titles(harness: &Harness<'_, BatchwiseApp>) -> Vec<String> {
    harness
        .output()
        .viewport_output
        .values()
        .flat_map(|v| &v.commands)
        .filter_map(|c| match c {
            egui::ViewportCommand::Title(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn app_harness<'a>(storage: Option<&'a MemoryStorage>) -> Harness<'a, BatchwiseApp> {
    Harness::builder()
        .with_size([1000.0, 700.0])
        .wgpu()
        .build_eframe(move |cc| {
            if let Some(s) = storage {
                cc.storage = Some(s);
            }
            common::app(cc)
        })
}

fn drop_files(harness: &mut Harness<'_, BatchwiseApp>, paths: &[&Path]) {
    for path in paths {
        harness
            .input_mut()
            .dropped_files
            .push(Arc::new(Dropped(path.to_path_buf())));
    }
    harness.step();
    let n = paths.len();
    step_until(harness, "the dropped files to be listed", |app| {
        app.items.len() == n
    });
    harness.step();
}

/// The title shows a running job's progress ("batchwise — 0/3 (0%), paused") and goes back to
/// "batchwise" after it; every grid cell is a button named by its file and state, the share of
/// its tiles included while it runs.
#[test]
fn title_follows_the_job_and_cells_are_named_for_screen_readers() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.png");
    let b = dir.path().join("b.png");
    let broken = dir.path().join("broken.jpg");
    std::fs::copy(common::fixture("photo-60x44.png"), &a).unwrap();
    std::fs::copy(common::fixture("photo-60x44.png"), &b).unwrap();
    std::fs::write(&broken, b"not a jpeg").unwrap();
    let tiny = dir.path().join("tiny-2x.onnx");
    std::fs::copy(common::fixture("user/pixel_shuffle_2x.onnx"), &tiny).unwrap();
    let out = dir.path().join("out");

    let mut harness = app_harness(None);
    harness.state_mut().settings.output_dir = Some(out);
    harness.step();
    let ctx = harness.ctx.clone();
    harness.state_mut().load_model(Some(tiny.clone()), &ctx);
    step_until(&mut harness, "the tiny model to load", |app| {
        app.settings.model == tiny.to_string_lossy()
    });
    drop_files(&mut harness, &[&a, &b, &broken]);
    assert_eq!(harness.state().window_title(), "batchwise");
    let cell = harness.get_by_label("a.png, queued");
    assert_eq!(cell.accesskit_node().role(), egui::accesskit::Role::Button);

    // Run, then pause at once: the job waits before its first batch, the title says so.
    harness.get_by_label("Run").click();
    harness.step();
    harness.step();
    harness.get_by_label("Pause").click();
    harness.step();
    harness.step();
    let sent = titles(&harness);
    let title = harness.state().window_title();
    assert!(
        title.starts_with("batchwise — ")
            && title.contains("/3 (")
            && title.ends_with("%), paused"),
        "{title}"
    );
    assert_eq!(sent.last(), Some(&title), "the window was told its title");

    harness.get_by_label("Resume").click();
    harness.step();
    step_until(&mut harness, "the job", |app| !app.running);
    // The frame that saw the job end told the window.
    assert_eq!(titles(&harness), ["batchwise"]);
    harness.step();

    // Each cell is one button to a screen reader, named by its file and state.
    for (label, status) in [
        ("a.png, done", ItemStatus::Done),
        ("b.png, done", ItemStatus::Done),
        ("broken.jpg, failed", ItemStatus::Failed),
    ] {
        let node = harness.get_by_label(label);
        assert_eq!(node.accesskit_node().role(), egui::accesskit::Role::Button);
        let name = label.split(',').next().unwrap();
        let item = harness
            .state()
            .items
            .iter()
            .find(|i| i.path.ends_with(name))
            .unwrap();
        assert_eq!(item.status, status);
    }
    // An item being tiled shows and announces the share of its tiles landed.
    let item = &mut harness.state_mut().items[0];
    item.status = ItemStatus::Running;
    item.tiles = Some((3, 8));
    harness.step();
    harness.get_by_label("a.png, running 37%");
    harness.get_by_label("running 37%");
}

/// Left / Right step through the items in the viewer; Delete removes the one shown and shows the
/// next (the one before at the end); the last one deleted closes the viewer.
#[test]
fn viewer_keys_step_through_and_delete_items() {
    let dir = tempfile::tempdir().unwrap();
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    let paths: Vec<PathBuf> = ["a.png", "b.png", "c.png"]
        .iter()
        .map(|n| {
            let p = dir.path().join(n);
            photo.save(&p).unwrap();
            p
        })
        .collect();
    let mut harness = app_harness(None);
    harness.step();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    drop_files(&mut harness, &refs);
    let viewed = |h: &Harness<'_, BatchwiseApp>| {
        let app = h.state();
        let id = app.viewer.as_ref()?.item;
        let item = app.items.iter().find(|i| i.id == id)?;
        Some(item.path.file_name()?.to_string_lossy().into_owned())
    };
    let press = |h: &mut Harness<'_, BatchwiseApp>, key: egui::Key| {
        h.key_press(key);
        h.step();
        h.step();
    };

    harness.get_by_label("a.png").click();
    harness.step();
    assert_eq!(viewed(&harness).as_deref(), Some("a.png"));
    press(&mut harness, egui::Key::ArrowRight);
    assert_eq!(viewed(&harness).as_deref(), Some("b.png"));
    press(&mut harness, egui::Key::ArrowRight);
    assert_eq!(viewed(&harness).as_deref(), Some("c.png"));
    press(&mut harness, egui::Key::ArrowRight);
    assert_eq!(
        viewed(&harness).as_deref(),
        Some("c.png"),
        "stays on the last"
    );
    press(&mut harness, egui::Key::ArrowLeft);
    assert_eq!(viewed(&harness).as_deref(), Some("b.png"));

    press(&mut harness, egui::Key::Delete);
    assert_eq!(viewed(&harness).as_deref(), Some("c.png"));
    press(&mut harness, egui::Key::Delete);
    assert_eq!(
        viewed(&harness).as_deref(),
        Some("a.png"),
        "the one before, at the end"
    );
    let names: Vec<_> = harness
        .state()
        .items
        .iter()
        .map(|i| i.path.clone())
        .collect();
    assert_eq!(names, [paths[0].clone()]);
    press(&mut harness, egui::Key::Delete);
    assert!(harness.state().items.is_empty());
    assert!(harness.state().viewer.is_none());
}

/// eframe's storage, in memory.
#[derive(Default)]
struct MemoryStorage(HashMap<String, String>);

impl eframe::Storage for MemoryStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

/// Where the system has no file dialog, Add folder... says so and takes a typed path (a wrong
/// one explained); the folder used is where the next dialogs open, after a restart too.
#[test]
fn no_dialog_backend_is_explained_and_the_last_folder_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    photo.save(photos.join("a.png")).unwrap();
    photo.save(photos.join("b.png")).unwrap();

    let mut harness = app_harness(None);
    // No portal on a session bus and no zenity: what a bare X server or a container has.
    harness.state_mut().dialogs.support = DialogSupport {
        portal_platform: true,
        zenity: false,
        session_bus: false,
    };
    harness.step();
    assert_eq!(
        harness.state().dialog_request(DialogKind::Folder).start,
        None
    );
    harness.get_by_label("Add folder...").click();
    harness.step();
    harness.step();
    assert!(
        harness
            .query_by_label_contains("This system has no file dialog")
            .is_some()
    );
    harness.get_by_label_contains("Drop files or folders onto the window");

    let typed = |h: &mut Harness<'_, BatchwiseApp>, text: &str| {
        h.state_mut().dialogs.typed = text.to_owned();
        h.step();
        h.get_by_label("Use path").click();
        h.step();
        h.step();
    };
    typed(&mut harness, &dir.path().join("nowhere").to_string_lossy());
    harness.get_by_label_contains("was not found");
    assert!(harness.state().items.is_empty());
    typed(&mut harness, &photos.to_string_lossy());
    step_until(&mut harness, "the typed folder to be listed", |app| {
        app.items.len() == 2
    });
    assert!(
        harness.state().dialogs.missing.is_none(),
        "the window closed"
    );
    assert!(
        harness
            .query_by_label_contains("This system has no file dialog")
            .is_none()
    );
    let app = harness.state();
    for kind in [
        DialogKind::Images,
        DialogKind::Folder,
        DialogKind::OutputDir,
    ] {
        assert_eq!(
            app.dialog_request(kind).start.as_deref(),
            Some(photos.as_path())
        );
    }

    // Saved with the app's state: a new window's dialogs open there too.
    let mut saved = MemoryStorage::default();
    eframe::App::save(harness.state_mut(), &mut saved);
    drop(harness);
    let harness = app_harness(Some(&saved));
    assert_eq!(
        harness
            .state()
            .dialog_request(DialogKind::Images)
            .start
            .as_deref(),
        Some(photos.as_path())
    );
}

/// A user model whose output is grey (a 1-channel probability map) can be picked and run from
/// the app: its outputs are written grey and its items finish, as an RGB model's do.
#[test]
fn a_grey_model_runs_from_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.png");
    std::fs::copy(common::fixture("photo-60x44.png"), &a).unwrap();
    let grey = dir.path().join("grey.onnx");
    std::fs::copy(common::fixture("user/grey_1x.onnx"), &grey).unwrap();
    let out = dir.path().join("out");
    let mut harness = app_harness(None);
    harness.state_mut().settings.output_dir = Some(out.clone());
    harness.step();
    let ctx = harness.ctx.clone();
    harness.state_mut().load_model(Some(grey.clone()), &ctx);
    step_until(&mut harness, "the grey model to load", |app| {
        app.settings.model == grey.to_string_lossy()
    });
    assert_eq!(harness.state().model_choice().unwrap().spec.scale, 1);
    drop_files(&mut harness, &[&a]);
    harness.get_by_label("Run").click();
    harness.step();
    step_until(&mut harness, "the job", |app| !app.running);
    harness.step();
    harness.get_by_label("a.png, done");
    let item = &harness.state().items[0];
    assert_eq!(item.status, ItemStatus::Done, "{:?}", item.error);
    let written = image::open(item.output.as_ref().unwrap()).unwrap();
    assert_eq!(written.color(), image::ColorType::L16);
}
