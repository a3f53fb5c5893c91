//! Driving the app in egui_kittest: dropped files and stepping until a state is reached.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use batchwise::app::BatchwiseApp;
use egui_kittest::Harness;

/// A file dropped onto the window.
#[derive(Debug)]
pub struct Dropped(pub PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// Steps the app until `done`. The deadline is a hang guard only (30 minutes): on a busy 2-core
/// machine lavapipe runs many times slower than idle, and no test may depend on the machine's
/// speed.
pub fn step_until(
    harness: &mut Harness<'_, BatchwiseApp>,
    what: &str,
    done: impl Fn(&BatchwiseApp) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30 * 60);
    while !done(harness.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
}
