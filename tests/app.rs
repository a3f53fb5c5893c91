//! The real app driven headless with egui_kittest: drop files, Run, wait, check every item.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batchwise::app::BatchwiseApp;
use batchwise::job::ItemStatus;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT as _, Queryable as _};

#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn step_until(
    harness: &mut Harness<'_, BatchwiseApp>,
    what: &str,
    done: impl Fn(&BatchwiseApp) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done(harness.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn drop_run_and_every_item_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let a = inputs.join("a.png");
    let b = inputs.join("b.png");
    let broken = inputs.join("broken.jpg");
    std::fs::copy(common::fixture("photo-60x44.png"), &a).unwrap();
    image::open(&a)
        .unwrap()
        .crop_imm(10, 10, 30, 20)
        .save(&b)
        .unwrap();
    std::fs::write(&broken, b"not a jpeg").unwrap();
    let out = dir.path().join("out");

    let mut harness = Harness::builder()
        .with_size([1000.0, 700.0])
        .wgpu()
        .build_eframe(|cc| {
            let mut app = BatchwiseApp::new(cc, Vec::new());
            app.settings.output_dir = Some(out.clone());
            app.settings.batch_size = 4;
            app
        });
    harness.step();
    for path in [&a, &b, &broken] {
        harness
            .input_mut()
            .dropped_files
            .push(Arc::new(Dropped(path.clone())));
    }
    harness.step();
    step_until(&mut harness, "the dropped files to be listed", |app| {
        app.items.len() == 3
    });

    harness.get_by_label("Run").click();
    harness.step();
    step_until(&mut harness, "the job to finish", |app| {
        !app.running && app.progress.done + app.progress.failed == 3
    });
    // A few more frames so thumbnails of the outputs arrive and draw.
    for _ in 0..10 {
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }

    let app = harness.state();
    for item in &app.items {
        let name = item.path.file_name().unwrap().to_str().unwrap();
        if name == "broken.jpg" {
            assert_eq!(item.status, ItemStatus::Failed);
            let error = item.error.as_deref().unwrap();
            assert!(error.contains("broken.jpg"), "{error}");
        } else {
            assert_eq!(item.status, ItemStatus::Done, "{name}: {:?}", item.error);
            let output = item.output.as_ref().unwrap();
            assert!(output.exists(), "{}", output.display());
            assert!(output.starts_with(&out));
        }
    }
    assert_eq!(app.progress.done, 2);
    // The grid shows the states.
    harness.get_by_label("failed");
    assert_eq!(harness.query_all_by_label("done").count(), 2);
}

/// A user's model file loads off the UI thread and becomes the selected model; a file that is not
/// a model gives a message naming it.
#[test]
fn a_user_model_loads_and_a_bad_one_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("my-upscaler.onnx");
    std::fs::copy(
        common::repo().join("assets/models/waifu2x_upconv7_photo_scale2.0x.onnx"),
        &model,
    )
    .unwrap();
    let bad = dir.path().join("notes.onnx");
    std::fs::write(&bad, "not a model").unwrap();

    let mut harness = Harness::builder()
        .with_size([1000.0, 700.0])
        .wgpu()
        .build_eframe(|cc| BatchwiseApp::new(cc, Vec::new()));
    harness.step();
    let ctx = harness.ctx.clone();
    harness.state_mut().load_model(Some(model.clone()), &ctx);
    step_until(&mut harness, "the model to load", |app| {
        !app.user_models.is_empty()
    });
    let app = harness.state();
    assert_eq!(app.settings.model, model.to_string_lossy());
    assert_eq!(app.user_models[0].spec.scale, 2);
    assert_eq!(app.user_models[0].spec.context, 7);
    assert!(!app.user_models[0].spec.input_map.bgr);

    // Its input conventions show beside it; choosing BGR loads it again with that order.
    harness.step();
    harness
        .query_all_by_label("Channels")
        .find(|n| n.accesskit_node().role() == egui::accesskit::Role::ComboBox)
        .expect("a Channels choice for the user model")
        .click();
    harness.step();
    harness.step();
    harness.get_by_label("bgr").click();
    harness.step();
    step_until(&mut harness, "the model to load again as BGR", |app| {
        app.user_models.iter().any(|m| m.spec.input_map.bgr)
    });
    assert_eq!(harness.state().settings.channel_order, "bgr");

    harness.state_mut().load_model(Some(bad.clone()), &ctx);
    step_until(&mut harness, "the error", |app| app.message.is_some());
    let message = harness.state().message.clone().unwrap();
    assert!(
        message.contains("notes.onnx") && message.contains("cannot run"),
        "{message}"
    );
}
