//! The real app driven headless with egui_kittest: drop files, Run, wait, check every item.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]
#![allow(
    clippy::too_many_lines,
    reason = "a test walks one user story end to end"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use batchwise::app::BatchwiseApp;
use batchwise::job::ItemStatus;
use common::app::{Dropped, step_until};
use egui_kittest::kittest::{NodeT as _, Queryable as _};
use egui_kittest::{Harness, SnapshotOptions};

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
            let mut app = common::app(cc);
            app.settings.output_dir = Some(out.clone());
            app.settings.batch_size = 4;
            app
        });
    harness.step();
    // A tiny model made for tests (a 2x pixel shuffle, 2 KB): the test is about the app's job
    // path, and lavapipe runs it in moments even on a busy machine.
    let tiny = dir.path().join("tiny-2x.onnx");
    std::fs::copy(common::fixture("user/pixel_shuffle_2x.onnx"), &tiny).unwrap();
    let ctx = harness.ctx.clone();
    harness.state_mut().load_model(Some(tiny.clone()), &ctx);
    step_until(&mut harness, "the tiny model to load", |app| {
        app.settings.model == tiny.to_string_lossy()
    });
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
    // The engine the job opened was tuned with the cache the settings name.
    assert!(common::tune_cache().join("autotune.json").is_file());
    // The models folder read at the start was the tests' own, not the user's.
    assert_eq!(app.models_folder.dir, Some(common::app_models_dir()));
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
        .build_eframe(|cc| common::app(cc));
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

/// A chain of models built on the panel: "Add step" adds a step, each step has its own model
/// choice, and steps move up and down and go away; the chain composes into one model (scales
/// multiply) that a job runs like any other.
#[test]
fn a_chain_of_models_is_built_step_by_step() {
    let mut harness = Harness::builder()
        .with_size([1000.0, 700.0])
        .wgpu()
        .build_eframe(|cc| common::app(cc));
    harness.step();
    harness.state_mut().settings.model = "upscale-photo-2x".into();
    harness.step();
    harness.get_by_label("Add step").click();
    harness.step();
    assert_eq!(
        harness.state().settings.model,
        "upscale-photo-2x,upscale-photo-2x"
    );
    // The second step's choice: enhance-low-light.
    harness.step();
    choose(&mut harness, "then", "enhance-low-light");
    harness.step();
    assert_eq!(
        harness.state().settings.model,
        "upscale-photo-2x,enhance-low-light"
    );
    let chain = harness.state().model_choice().unwrap();
    assert_eq!((chain.spec.scale, chain.steps.len()), (2, 2));
    harness.get_by_label_contains("a chain, run as one model");
    // "Keep each step's output": saved in presets and written by "Copy as command".
    harness.get_by_label("Keep each step's output").click();
    harness.step();
    assert!(harness.state().settings.keep_steps);
    assert!(harness.state().settings.export().keep_steps);
    let toml = harness.state().settings.preset().to_toml();
    assert!(toml.contains("keep-steps = true"), "{toml}");
    let line = harness.state().command_line();
    assert!(line.contains("--keep-steps"), "{line}");

    // Brighten first: the second step moves up.
    harness
        .get_all_by_label("Up")
        .find(|n| !n.accesskit_node().is_disabled())
        .expect("the second step's Up")
        .click();
    harness.step();
    harness.step();
    assert_eq!(
        harness.state().settings.model,
        "enhance-low-light,upscale-photo-2x"
    );
    harness
        .get_all_by_label("Remove step")
        .next()
        .unwrap()
        .click();
    harness.step();
    assert_eq!(harness.state().settings.model, "upscale-photo-2x");
    harness.step();
    assert!(
        harness.query_by_label("Up").is_none(),
        "one step has no move buttons"
    );
    // One model has no steps to keep: no checkbox, and the flag is not written.
    assert!(harness.query_by_label("Keep each step's output").is_none());
    let line = harness.state().command_line();
    assert!(!line.contains("--keep-steps"), "{line}");
}

/// A chain's last step may be a fixed-input model: a step added after enhance-low-light and set
/// to classify makes a chain with the classifier's task, input and options on the panel, and a
/// run gives each image's labels (of the processed image) as classify alone does.
#[test]
fn a_chain_may_end_in_a_fixed_input_model() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.png");
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    photo.save(&input).unwrap();
    let out = dir.path().join("out");
    let mut harness = Harness::builder()
        .with_size([1000.0, 700.0])
        .wgpu()
        .build_eframe(|cc| {
            let mut app = common::app(cc);
            app.settings.output_dir = Some(out.clone());
            app
        });
    harness.step();
    harness.state_mut().settings.model = "enhance-low-light".into();
    harness.step();
    harness.get_by_label("Add step").click();
    harness.step();
    harness.step();
    choose(&mut harness, "then", "classify");
    harness.step();
    assert_eq!(harness.state().settings.model, "enhance-low-light,classify");
    let chain = harness.state().model_choice().unwrap();
    assert_eq!(chain.task, batchwise::builtin::Task::Classify);
    harness.get_by_label_contains("a chain, run as one model");
    harness.get_by_label_contains("(each image fitted)");
    assert!(
        harness.query_all_by_label("top labels").next().is_some(),
        "the classifier's option"
    );

    harness
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(input)));
    harness.step();
    step_until(&mut harness, "the adapters and the image", |app| {
        app.adapters.is_some() && app.items.len() == 1
    });
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    harness.step();
    step_until(&mut harness, "the chain", |app| !app.running);
    let app = harness.state();
    assert_eq!(app.progress.done, 1, "{:?}", app.message);
    assert!(out.join("labels.csv").exists());
    let Some(batchwise::job::ItemResult::Labels(labels)) = app.items[0].result.clone() else {
        panic!("the chain gives labels")
    };
    let top = labels[0].label.clone();
    harness.get_by_label("a.png").click();
    harness.step();
    harness.step();
    assert!(
        harness.query_by_label_contains(&top).is_some(),
        "the viewer shows the top label {top}"
    );
}

/// The settings panel, Tune and export driven through the UI: a dropped folder (recursive,
/// duplicates ignored), an item removed, tile size, JPEG with a naming pattern (its preview),
/// a Tune sweep applied with one click, Run by its shortcut, the help panel; frame times of the
/// UI during the batch are reported.
#[test]
fn settings_tune_export_and_shortcuts() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(inputs.join("sub")).unwrap();
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    photo.save(inputs.join("a.png")).unwrap();
    photo
        .crop_imm(5, 5, 40, 30)
        .save(inputs.join("sub/b.png"))
        .unwrap();
    photo
        .crop_imm(0, 0, 30, 30)
        .save(inputs.join("c.png"))
        .unwrap();
    // A fixed output path: the panel shows it, and the snapshots must not change between runs.
    let out = std::env::temp_dir().join("batchwise-app-settings-test");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(out.join("models")).unwrap();

    let mut harness = Harness::builder()
        .with_size([1200.0, 800.0])
        .wgpu()
        .build_eframe(|cc| {
            let mut app = common::app(cc);
            app.settings.output_dir = Some(out.clone());
            // Not the user's data folder, which the snapshot would show.
            app.settings.models_dir = Some(out.join("models"));
            app.scan_models_folder(&cc.egui_ctx);
            app
        });
    step_until(
        &mut harness,
        "adapters, model figures and the models folder",
        |app| {
            app.adapters.is_some()
                && app.model_infos.len() == batchwise::builtin::BUILTINS.len()
                && !app.models_folder.reading
        },
    );
    // The chosen model's figures are on the panel.
    harness.get_by_label("Parameters");
    harness.get_by_label("Memory per item");

    // A folder and one of its files again: three items, not four.
    for path in [inputs.clone(), inputs.join("a.png")] {
        harness
            .input_mut()
            .dropped_files
            .push(Arc::new(Dropped(path)));
    }
    harness.step();
    step_until(&mut harness, "the folder to be listed", |app| {
        app.items.len() == 3
    });
    harness.step();
    assert_eq!(harness.state().items.len(), 3);

    // Remove c.png with its context menu.
    harness.get_by_label("c.png").click_secondary();
    harness.step();
    harness.step();
    harness.step();
    harness.get_by_label("Remove").click();
    harness.step();
    let names: Vec<String> = harness
        .state()
        .items
        .iter()
        .map(|i| i.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.png", "b.png"]);

    // Thumbnails in, then the window as it looks before a run.
    for _ in 0..20 {
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.snapshot_options("main-window", &snapshot_options());

    // Clicking an item opens the viewer (the input alone before a run).
    harness.get_by_label("a.png").click();
    harness.step();
    step_until(&mut harness, "the viewer's image", |app| {
        app.viewer.as_ref().is_some_and(|v| v.before.is_some())
    });
    harness.step();
    harness.get_by_label("Before | After");
    harness.snapshot_options("viewer-before-run", &snapshot_options());
    harness.state_mut().viewer = None;
    harness.step();

    // Tile size 32 px and JPEG named {stem}_{scale}x.
    choose(&mut harness, "Tile size", "32 px");
    choose(&mut harness, "Format", "JPEG");
    assert!(harness.query_all_by_label("Quality").next().is_some());
    let name = harness.get_by_label("Name");
    name.click();
    harness.step();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness.step();
    harness
        .get_by_label("Name")
        .type_text("{stem}_{scale}x.{ext}");
    harness.step();
    harness.step();
    assert_eq!(harness.state().settings.pattern, "{stem}_{scale}x.{ext}");
    assert_eq!(harness.state().name_preview(), "a_2x.jpg");
    harness.get_by_label("e.g. a_2x.jpg");

    // Tune: a sweep over batch sizes, plotted; the best applied with one click.
    harness.get_by_label("Tune batch size...").click();
    harness.step();
    step_until(&mut harness, "the sweep", |app| {
        app.tuning.as_ref().is_some_and(|t| t.finished)
    });
    harness.step();
    let tuning = harness.state().tuning.as_ref().unwrap();
    assert!(tuning.error.is_none(), "{:?}", tuning.error);
    // 60x44 and 40x30 at 32 px tiles: 6 + 2 tiles, so batch sizes 1, 2, 4 and 8.
    let sizes: Vec<u32> = tuning.rows.iter().map(|r| r.batch_size).collect();
    assert_eq!(sizes, [1, 2, 4, 8]);
    assert!(
        tuning
            .rows
            .iter()
            .all(|r| r.compute_items_per_sec > 0.0 && r.peak_gpu_bytes > 0)
    );
    let best = tuning.best().unwrap().batch_size;
    harness
        .get_by_label(&format!("Apply batch size {best}"))
        .click();
    harness.step();
    assert_eq!(harness.state().settings.batch_size, best);
    assert!(!harness.state().settings.batch_auto);

    // Run with Ctrl+Enter.
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    harness.step();
    assert!(harness.state().running);
    step_until(&mut harness, "the job", |app| !app.running);
    let app = harness.state();
    assert_eq!(app.progress.done, 2, "{:?}", app.message);
    for name in ["a_2x.jpg", "sub/b_2x.jpg"] {
        let img = image::open(out.join(name)).unwrap();
        assert_eq!(img.color(), image::ColorType::Rgb8, "{name}");
    }
    let (median, p95) = BatchwiseApp::frame_stats(&app.busy_frame_times).unwrap();
    eprintln!(
        "UI frame time during the batch: median {median:.2} ms, 95th percentile {p95:.2} ms over {} frames",
        app.busy_frame_times.len()
    );

    // The viewer on a finished item: input and output, split.
    harness.get_by_label("a.png").click();
    harness.step();
    step_until(&mut harness, "the viewer's images", |app| {
        app.viewer
            .as_ref()
            .is_some_and(|v| v.before.is_some() && v.after.is_some())
    });
    harness.state_mut().viewer = None;
    harness.step();

    // Classify the same images: the viewer lists each image's labels.
    choose(&mut harness, "Model", "classify");
    harness.get_by_label("Parameters");
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    harness.step();
    step_until(&mut harness, "the classifier", |app| !app.running);
    assert_eq!(
        harness.state().progress.done,
        2,
        "{:?}",
        harness.state().message
    );
    assert!(out.join("labels.csv").exists());
    let Some(batchwise::job::ItemResult::Labels(labels)) = harness.state().items[0].result.clone()
    else {
        panic!("the classifier gives labels")
    };
    let top = labels[0].label.clone();
    harness.get_by_label("a.png").click();
    harness.step();
    harness.step();
    assert!(
        harness.query_by_label_contains(&top).is_some(),
        "the viewer shows the top label {top}"
    );
    harness.state_mut().viewer = None;
    harness.step();

    // Tune works for whole-image models too: two images, batch sizes 1 and 2.
    harness.get_by_label("Tune batch size...").click();
    harness.step();
    step_until(&mut harness, "the classifier's sweep", |app| {
        app.tuning.as_ref().is_some_and(|t| t.finished)
    });
    let tuning = harness.state().tuning.as_ref().unwrap();
    assert!(tuning.error.is_none(), "{:?}", tuning.error);
    let sizes: Vec<u32> = tuning.rows.iter().map(|r| r.batch_size).collect();
    assert_eq!(sizes, [1, 2]);
    harness.state_mut().tuning = None;
    harness.step();

    // F1 opens the help with the shortcuts.
    harness.key_press(egui::Key::F1);
    harness.step();
    harness.step();
    harness.get_by_label("Ctrl+Enter");
    harness.get_by_label("pause / resume");
}

/// Opens the combo box labelled `label` and picks `choice`.
fn choose(harness: &mut Harness<'_, BatchwiseApp>, label: &str, choice: &str) {
    harness
        .query_all_by_label(label)
        .find(|n| n.accesskit_node().role() == egui::accesskit::Role::ComboBox)
        .unwrap_or_else(|| panic!("a {label} choice"))
        .click();
    harness.step();
    harness.step();
    harness.get_by_label(choice).click();
    harness.step();
}

/// Snapshot thresholds, in one place. Rendering is deterministic on one adapter and driver
/// (lavapipe in CI, the same Mesa as on the development machine), so egui_kittest's default
/// per-pixel colour tolerance (0.6, which absorbs anti-aliasing differences between backends)
/// and no failing pixels are enough. Snapshots are taken before any run, where nothing on screen
/// depends on timing. `UPDATE_SNAPSHOTS=1 cargo test --test app` rewrites them.
fn snapshot_options() -> SnapshotOptions {
    SnapshotOptions::new().threshold(0.6).max_failed_pixels(0)
}

/// "Copy as command" puts the `batchwise run` line of the current settings and inputs on the
/// clipboard: the CLI's own parser gives back the same settings and inputs. A preset saved and
/// loaded again gives back the same settings; a bad one is a message naming the file, line and
/// key.
#[test]
fn copy_as_command_and_presets_give_back_the_settings() {
    use batchwise::app::Settings;
    use batchwise::job::export::encode::PngCompression;
    use batchwise::job::{OutputFormat, Overwrite};
    use clap::Parser as _;

    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("in folder");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    let photo = common::fixture("photo-60x44.png");
    std::fs::copy(&photo, folder.join("a.png")).unwrap();
    std::fs::copy(&photo, folder.join("sub/b's.png")).unwrap();
    let loose = dir.path().join("loose $file.png");
    std::fs::copy(&photo, &loose).unwrap();
    let settings = Settings {
        // A chain: presets and the command line carry it.
        model: "enhance-low-light,upscale-anime-4x".into(),
        batch_auto: false,
        batch_size: 5,
        memory_budget_mb: 300,
        tile_size: 96,
        float16: false,
        adapter: Some(0),
        models_dir: Some(dir.path().join("my models")),
        output_dir: Some(dir.path().join("out folder")),
        format: OutputFormat::Webp,
        quality: 77,
        webp_lossless: false,
        png_compression: PngCompression::Best,
        scale: 1.5,
        pattern: "{model}/{stem} x{scale}.{ext}".into(),
        overwrite: Overwrite::Skip,
        top_k: 3,
        mask_only: true,
        annotate: true,
        keep_steps: true,
        input_range: "-1-1".into(),
        channel_order: "bgr".into(),
        input_layout: "auto".into(),
        tune_cache: Some(common::tune_cache()),
    };
    let chosen = settings.clone();
    let mut harness = Harness::builder()
        .with_size([1000.0, 1400.0])
        .wgpu()
        .build_eframe(|cc| {
            let mut app = common::app(cc);
            app.settings = chosen;
            app
        });
    harness.step();
    for path in [folder.clone(), loose.clone()] {
        harness
            .input_mut()
            .dropped_files
            .push(Arc::new(Dropped(path)));
    }
    harness.step();
    step_until(&mut harness, "the inputs to be listed", |app| {
        app.items.len() == 3
    });
    assert_eq!(harness.state().command_inputs(), [folder.clone(), loose]);

    // Clicked through AccessKit: one event, so the frame that copies is the one `output` keeps.
    harness.get_by_label("Copy as command").click_accesskit();
    let mut copied = None;
    for _ in 0..5 {
        harness.step();
        copied = copied.or_else(|| {
            harness
                .output()
                .platform_output
                .commands
                .iter()
                .find_map(|c| match c {
                    egui::OutputCommand::CopyText(text) => Some(text.clone()),
                    _ => None,
                })
        });
    }
    let line = copied.expect("Copy as command put a line on the clipboard");
    assert!(line.starts_with("batchwise run "), "{line}");
    let argv = shlex::split(&line).unwrap();
    let cli = batchwise::cli::Cli::try_parse_from(&argv).unwrap();
    let Some(batchwise::cli::Command::Run(args)) = cli.command else {
        panic!("not a run command: {line}");
    };
    assert_eq!(args.inputs, harness.state().command_inputs(), "{line}");
    // The defaults, with the tests' tuning cache (no preset or command line carries it).
    let defaults = Settings {
        tune_cache: Some(common::tune_cache()),
        ..Settings::default()
    };
    assert_eq!(defaults.with_run_args(&args, true), settings, "{line}");

    // Save, change everything, load: the same settings again.
    let ctx = harness.ctx.clone();
    let file = dir.path().join("preset.toml");
    harness.state_mut().save_preset(Some(file.clone()), &ctx);
    let expected = settings.preset().to_toml();
    step_until(&mut harness, "the preset to be written", |_| {
        std::fs::read_to_string(&file).is_ok_and(|t| t == expected)
    });
    harness.state_mut().settings = defaults;
    harness.state_mut().load_preset(Some(file), &ctx);
    step_until(&mut harness, "the preset to be loaded", |app| {
        app.settings == settings
    });

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "model = \"classify\"\nbatch = 4\n").unwrap();
    harness.state_mut().load_preset(Some(bad.clone()), &ctx);
    step_until(&mut harness, "the bad preset's message", |app| {
        app.message.is_some()
    });
    let message = harness.state().message.clone().unwrap();
    assert!(
        message.contains(&format!("{}:2: batch: unknown key", bad.display())),
        "{message}"
    );
    assert_eq!(
        harness.state().settings,
        settings,
        "a bad preset changed nothing"
    );
}

/// The models folder's models appear in the model choice with their measured scale (read off
/// the UI thread); one that cannot run is listed with the reason, and picking one selects it.
#[test]
fn the_models_folder_fills_the_model_choice() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let tiny = models.join("tiny.onnx");
    std::fs::copy(common::fixture("user/pixel_shuffle_2x.onnx"), &tiny).unwrap();
    std::fs::write(models.join("bad.onnx"), "not a model").unwrap();

    let mut harness = Harness::builder()
        .with_size([1000.0, 700.0])
        .wgpu()
        .build_eframe(|cc| common::app(cc));
    harness.step();
    harness.state_mut().settings.models_dir = Some(models.clone());
    let ctx = harness.ctx.clone();
    harness.state_mut().scan_models_folder(&ctx);
    step_until(&mut harness, "the models folder to be read", |app| {
        app.models_folder.dir.as_deref() == Some(models.as_path())
    });
    assert_eq!(harness.state().models_folder.models.len(), 2);
    harness.step();
    harness.get_by_label(&models.display().to_string());
    // The folder's models come after the built-ins, below the fold of the list: clicked as a
    // screen reader clicks.
    harness
        .query_all_by_label("Model")
        .find(|n| n.accesskit_node().role() == egui::accesskit::Role::ComboBox)
        .unwrap()
        .click();
    harness.step();
    harness.step();
    harness.get_by_label("bad (cannot run)");
    harness.get_by_label("tiny (2x)").click_accesskit();
    harness.step();
    assert_eq!(harness.state().settings.model, tiny.to_string_lossy());
    assert_eq!(harness.state().model_choice().unwrap().spec.scale, 2);
}
