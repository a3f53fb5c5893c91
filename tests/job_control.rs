//! Pause, resume and cancel a running job from another thread, as the app does.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "the test plays the app: a job on a thread of its own, events over a channel"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use batchwise::builtin;
use batchwise::job::{self, Control, ItemStatus, JobEvent, JobSpec};

fn spec(inputs: Vec<std::path::PathBuf>, out: &std::path::Path) -> JobSpec {
    let model = builtin::find("upscale-photo-2x").unwrap().choice().unwrap();
    JobSpec {
        batch_size: 2,
        tile_size: Some(16),
        ..JobSpec::new(model, inputs, out.to_path_buf())
    }
}

/// A paused job does nothing until resumed, then finishes every item; a cancelled one stops
/// between batches and leaves only whole files behind.
#[test]
fn pause_resume_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    let inputs: Vec<_> = (0..6)
        .map(|k| {
            let p = dir.path().join(format!("in{k}.png"));
            photo.crop_imm(k * 5, 0, 24, 16).save(&p).unwrap();
            p
        })
        .collect();
    let engine = Arc::new(common::engine());

    // Paused before it starts: no item finishes while paused.
    let control = Arc::new(Control::default());
    control.pause.store(true, Ordering::Relaxed);
    let out = dir.path().join("paused");
    let (tx, rx) = std::sync::mpsc::channel();
    let job = {
        let (engine, control, spec) = (engine.clone(), control.clone(), spec(inputs.clone(), &out));
        std::thread::spawn(move || {
            job::run(&engine, &spec, &control, &mut |e| {
                let _ = tx.send(e);
            })
            .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let done_while_paused = rx
        .try_iter()
        .filter(|e| {
            matches!(
                e,
                JobEvent::Item {
                    status: ItemStatus::Done,
                    ..
                }
            )
        })
        .count();
    assert_eq!(done_while_paused, 0);
    control.pause.store(false, Ordering::Relaxed);
    let summary = job.join().unwrap();
    assert_eq!(summary.done, 6);

    // Cancelled after the first finished item: the rest is skipped, no partial file is left.
    let control = Arc::new(Control::default());
    let out = dir.path().join("cancelled");
    let summary = {
        let control2 = control.clone();
        job::run(&engine, &spec(inputs, &out), &control, &mut |e| {
            if matches!(
                e,
                JobEvent::Item {
                    status: ItemStatus::Done,
                    ..
                }
            ) {
                control2.cancel.store(true, Ordering::Relaxed);
            }
        })
        .unwrap()
    };
    assert!(
        summary.done >= 1 && summary.done < 6,
        "{} done",
        summary.done
    );
    assert_eq!(summary.skipped + summary.done, 6);
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(!name.ends_with(".partial"), "{name} left behind");
        if name.ends_with(".png") {
            assert!(image::open(out.join(&name)).is_ok(), "{name} is not whole");
        }
    }
}

/// A job keeps two batches on the GPU (the next one is submitted before the one ahead of it is
/// read back), and what it writes equals each image upscaled on its own, batch by batch.
#[test]
fn two_batches_are_in_flight_and_outputs_match_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    let inputs: Vec<_> = (0..5)
        .map(|k| {
            let p = dir.path().join(format!("in{k}.png"));
            photo
                .crop_imm(k * 7, k * 3, 20 + k * 3, 17)
                .save(&p)
                .unwrap();
            p
        })
        .collect();
    let engine = common::engine();
    let out = dir.path().join("out");
    let mut device_memory = Vec::new();
    let summary = job::run(
        &engine,
        &spec(inputs.clone(), &out),
        &Control::default(),
        &mut |e| {
            if let JobEvent::Progress {
                device_memory: m, ..
            } = e
            {
                device_memory.push(m);
            }
        },
    )
    .unwrap();
    assert_eq!(summary.done, 5);
    assert_eq!(summary.batches_in_flight, 2);
    // Vulkan reports the device's heaps (lavapipe: system memory) in every progress event.
    if engine.gpu.adapter.backend == "Vulkan" {
        assert!(!device_memory.is_empty());
        assert!(
            device_memory
                .iter()
                .all(|m| m.is_some_and(|m| m.total_bytes > 0))
        );
    }

    let choice = builtin::find("upscale-photo-2x").unwrap().choice().unwrap();
    let model = engine.load(choice.model.clone()).unwrap();
    let one =
        batchwise::upscale::TiledUpscaler::new(&engine, &model, choice.spec, 1, Some(16)).unwrap();
    for (k, input) in inputs.iter().enumerate() {
        let rgba = image::open(input).unwrap().to_rgba8();
        let alone = one.upscale_all(std::slice::from_ref(&rgba)).unwrap();
        let written = image::open(out.join(format!("in{k}.png")))
            .unwrap()
            .to_rgba8();
        assert!(written == alone[0], "in{k}.png differs from its own run");
    }

    // A fixed-input model too: the classifier, one image a batch.
    let classify = JobSpec {
        model: builtin::find("classify").unwrap().choice().unwrap(),
        batch_size: 1,
        output_dir: dir.path().join("labels"),
        ..spec(inputs[..3].to_vec(), &out)
    };
    let summary = job::run(&engine, &classify, &Control::default(), &mut |_| {}).unwrap();
    assert_eq!(summary.done, 3);
    assert_eq!(summary.batches_in_flight, 2);
}

/// Pause and cancel hold for the fixed-input stage as for the tiled one: a classifier paused
/// before it starts finishes nothing until resumed; cancelled after its first result it skips
/// the rest and writes the collected files for what finished.
#[test]
fn pause_and_cancel_hold_for_fixed_input_models() {
    let dir = tempfile::tempdir().unwrap();
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    let inputs: Vec<_> = (0..4)
        .map(|k| {
            let p = dir.path().join(format!("in{k}.png"));
            photo.crop_imm(k * 5, 0, 32, 32).save(&p).unwrap();
            p
        })
        .collect();
    let engine = Arc::new(common::engine());
    let classify = |out: &std::path::Path| JobSpec {
        model: builtin::find("classify").unwrap().choice().unwrap(),
        batch_size: 1,
        ..spec(inputs.clone(), out)
    };

    let control = Arc::new(Control::default());
    control.pause.store(true, Ordering::Relaxed);
    let (tx, rx) = std::sync::mpsc::channel();
    let job = {
        let (engine, control, spec) = (
            engine.clone(),
            control.clone(),
            classify(&dir.path().join("paused")),
        );
        std::thread::spawn(move || {
            job::run(&engine, &spec, &control, &mut |e| {
                let _ = tx.send(e);
            })
            .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let results_while_paused = rx
        .try_iter()
        .filter(|e| matches!(e, JobEvent::Result { .. }))
        .count();
    assert_eq!(results_while_paused, 0);
    control.pause.store(false, Ordering::Relaxed);
    let summary = job.join().unwrap();
    assert_eq!(summary.done, 4);

    let control = Arc::new(Control::default());
    let out = dir.path().join("cancelled");
    let summary = {
        let control2 = control.clone();
        job::run(&engine, &classify(&out), &control, &mut |e| {
            if matches!(e, JobEvent::Result { .. }) {
                control2.cancel.store(true, Ordering::Relaxed);
            }
        })
        .unwrap()
    };
    assert!(
        summary.done >= 1 && summary.done < 4,
        "{} done",
        summary.done
    );
    assert_eq!(summary.skipped + summary.done, 4);
    let csv = std::fs::read_to_string(out.join("labels.csv")).unwrap();
    let rows = csv.lines().skip(1).count();
    assert_eq!(
        rows,
        summary.done * 5,
        "top-5 labels for each finished image"
    );
}

/// Progress moves within an image: a 24-tile image run one tile a batch reports its tiles as
/// they land (and the job's fractional items, in the rate too) before it is done, all 24 while
/// it is written; a file that
/// cannot be decoded, queued behind it, fails as soon as its decode fails, not when its turn to
/// fill a batch comes (after the big image's last tile).
#[test]
fn tiles_report_progress_and_a_broken_file_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.png");
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    // 96 x 64 at 16 px tiles: 6 x 4 = 24 tiles.
    photo
        .resize_exact(96, 64, image::imageops::FilterType::Triangle)
        .save(&big)
        .unwrap();
    let broken = dir.path().join("broken.png");
    std::fs::write(&broken, b"not a png").unwrap();
    let small = dir.path().join("small.png");
    photo.crop_imm(0, 0, 16, 16).save(&small).unwrap();
    let engine = common::engine();
    let spec = JobSpec {
        batch_size: 1,
        ..spec(
            vec![big.clone(), broken.clone(), small.clone()],
            &dir.path().join("out"),
        )
    };
    let mut events = Vec::new();
    let summary = job::run(&engine, &spec, &Control::default(), &mut |e| events.push(e)).unwrap();
    assert_eq!((summary.done, summary.failed), (2, 1));

    let big_done = events
        .iter()
        .position(|e| {
            matches!(
                e,
                JobEvent::Item {
                    index: 0,
                    status: ItemStatus::Done,
                    ..
                }
            )
        })
        .unwrap();
    let tiles: Vec<(usize, usize, usize)> = events[..big_done]
        .iter()
        .enumerate()
        .filter_map(|(at, e)| match e {
            JobEvent::Tiles {
                index: 0,
                done,
                total,
            } => Some((at, *done, *total)),
            _ => None,
        })
        .collect();
    assert!(tiles.iter().all(|&(_, _, total)| total == 24), "{tiles:?}");
    let counts: Vec<usize> = tiles.iter().map(|&(_, done, _)| done).collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    assert!(counts.contains(&1) && counts.contains(&12), "{counts:?}");
    // All landed, while it is written: the image counts whole until it is done.
    assert_eq!(counts.last(), Some(&24), "{counts:?}");

    // The job's progress counts the part done, before any item is.
    let partial: Vec<(f64, f64)> = events[..big_done]
        .iter()
        .filter_map(|e| match e {
            JobEvent::Progress {
                done: 0,
                partial_items,
                items_per_sec,
                ..
            } => Some((*partial_items, *items_per_sec)),
            _ => None,
        })
        .collect();
    assert!(
        partial
            .iter()
            .any(|&(p, rate)| p > 0.4 && p < 1.0 && rate > 0.0),
        "{partial:?}"
    );

    // The broken file failed before half the big image's tiles had landed.
    let failed = events
        .iter()
        .position(|e| {
            matches!(
                e,
                JobEvent::Item {
                    index: 1,
                    status: ItemStatus::Failed,
                    ..
                }
            )
        })
        .unwrap();
    let half = tiles.iter().find(|&&(_, done, _)| done == 12).unwrap().0;
    assert!(
        failed < half,
        "the broken file failed at event {failed}, half the tiles landed at {half}"
    );
}
