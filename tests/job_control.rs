//! Pause, resume and cancel a running job from another thread, as the app does.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use batchwise::builtin;
use batchwise::job::{self, Control, ItemStatus, JobEvent, JobSpec};

fn spec(inputs: Vec<std::path::PathBuf>, out: &std::path::Path) -> JobSpec {
    JobSpec {
        inputs,
        model: builtin::find("upscale-photo-2x").unwrap().choice().unwrap(),
        batch_size: 2,
        tile_size: Some(16),
        output_dir: out.to_path_buf(),
        precision: Default::default(),
        analysis: Default::default(),
        export: Default::default(),
        shard: None,
        memory_budget: None,
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
