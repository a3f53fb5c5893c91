//! Faults while a job runs: the GPU device lost in the middle (injected with `Device::destroy`,
//! which is what a driver reset or an unplugged GPU looks like to wgpu).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::cell::Cell;

use batchwise::job::{self, Control, ItemStatus, JobEvent, JobSpec};

fn spec(dir: &std::path::Path, n: u32) -> JobSpec {
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    let inputs = (0..n)
        .map(|k| {
            let p = dir.join(format!("{k}.png"));
            photo.crop_imm(k, k, 24, 16).save(&p).unwrap();
            p
        })
        .collect();
    common::job_spec(inputs, common::tiny_model(), dir.join("out"), 2)
}

/// Once two items are done, the device goes. Without recovery the items in flight fail with the
/// reason, the rest are not started (not failed), and the summary says the device was lost.
/// With `run_recovering` a new device finishes every item, each output whole and 2x.
#[test]
fn a_lost_device_fails_what_was_in_flight_then_a_new_one_finishes_the_job() {
    for recover in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path(), 10);
        let mut engine = common::engine();
        let device = engine.gpu.device.clone();
        let destroyed = Cell::new(false);
        let mut emit = |ev: JobEvent| {
            if let JobEvent::Progress { done, .. } = ev
                && done >= 2
                && !destroyed.replace(true)
            {
                device.destroy();
            }
        };
        let summary = if recover {
            let reopen = || Ok(common::engine());
            job::run_recovering(&mut engine, &reopen, &spec, &Control::default(), &mut emit)
        } else {
            job::run(&engine, &spec, &Control::default(), &mut emit)
        }
        .unwrap();
        assert!(destroyed.get(), "the device was destroyed mid-job");
        if recover {
            assert_eq!((summary.done, summary.failed), (10, 0), "{summary:?}");
            assert!(summary.device_lost.is_none());
            for item in &summary.items {
                let out = image::open(item.output.as_ref().unwrap()).unwrap();
                assert_eq!((out.width(), out.height()), (48, 32));
            }
        } else {
            let reason = summary.device_lost.clone().expect("the loss is reported");
            assert!(summary.done >= 2 && summary.done < 10, "{summary:?}");
            for item in &summary.items {
                if item.status == ItemStatus::Failed {
                    let error = item.error.as_deref().unwrap();
                    assert!(error.contains("GPU"), "{error}");
                }
            }
            let failed = summary
                .items
                .iter()
                .filter(|i| i.status == ItemStatus::Failed);
            assert!(
                failed.count() <= 4,
                "at most two batches were in flight: {reason}"
            );
        }
        let partial = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".partial")
            })
            .count();
        assert_eq!(partial, 0, "no partial file is left");
    }
}
