//! `batchwise watch`: images are processed as they arrive, each once; a file still being
//! written is not read early; a restart does not redo what is done; Ctrl+C stops cleanly.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]
#![cfg(target_os = "linux")]

mod common;

use std::io::Write as _;

use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Hang guard only: lavapipe on a busy machine can be many times slower than idle.
const HANG_GUARD: Duration = Duration::from_secs(20 * 60);

struct Watching {
    child: Child,
    log: PathBuf,
}

impl Watching {
    fn start(dir: &Path, model: &Path, log_name: &str) -> Self {
        Self::start_with(dir, model, log_name, &[])
    }

    fn start_with(dir: &Path, model: &Path, log_name: &str, flags: &[&str]) -> Self {
        let log = dir.join(log_name);
        let child = Command::new(env!("CARGO_BIN_EXE_batchwise"))
            .args(["watch", "--settle", "0.3"])
            .args(flags)
            .arg("-m")
            .arg(model)
            .arg("-o")
            .arg(dir.join("out"))
            .arg(dir.join("in"))
            .env("RUST_LOG", "error")
            .env("BATCHWISE_CONV_ROWS", "16")
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `path` exists (the watcher still running).
    fn wait_for(&mut self, path: &Path) {
        let deadline = Instant::now() + HANG_GUARD;
        while !path.exists() {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "watch exited: {}",
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "{} never appeared",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ctrl+C; the exit status and the log.
    fn stop(&mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        let deadline = Instant::now() + HANG_GUARD;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "watch did not stop: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        (status.code(), self.log())
    }
}

/// A test that fails part way does not leave the watcher running.
impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn manifest_lines(out: &Path) -> usize {
    std::fs::read_to_string(out.join("batchwise-manifest.jsonl"))
        .unwrap()
        .lines()
        .count()
}

#[test]
fn watch_processes_arrivals_once_and_waits_for_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir_all(input.join("sub")).unwrap();
    let model = common::fixture("user/pixel_shuffle_2x.onnx");
    let photo = common::fixture("photo-60x44.png");
    let bytes = std::fs::read(&photo).unwrap();

    let mut watching = Watching::start(dir.path(), &model, "first.log");
    std::fs::copy(&photo, input.join("a.png")).unwrap();
    std::fs::copy(&photo, input.join("sub/b.png")).unwrap();
    watching.wait_for(&out.join("a.png"));
    watching.wait_for(&out.join("sub/b.png"));

    // A file written in two steps: half of it, held open, then another file that arrives whole.
    // Once that one is done, the half file has held still for longer than the settle time, so
    // only its being open keeps it waiting.
    let mut half = std::fs::File::create(input.join("c.png")).unwrap();
    half.write_all(&bytes[..bytes.len() / 2]).unwrap();
    half.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::copy(&photo, input.join("d.png")).unwrap();
    watching.wait_for(&out.join("d.png"));
    assert!(!out.join("c.png").exists());
    assert!(!watching.log().contains("c.png"), "{}", watching.log());
    half.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(half);
    watching.wait_for(&out.join("c.png"));

    let (code, log) = watching.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("failed:"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    for name in ["a.png", "sub/b.png", "c.png", "d.png"] {
        let img = image::open(out.join(name)).unwrap();
        assert_eq!((img.width(), img.height()), (120, 88), "{name}");
    }
    assert_eq!(manifest_lines(&out), 4);
    let stamp = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let a_written = stamp(&out.join("a.png"));

    // Stopped, an image arrives; the restart does it and nothing else.
    std::fs::copy(&photo, input.join("e.png")).unwrap();
    drop(watching);
    let mut watching = Watching::start(dir.path(), &model, "second.log");
    watching.wait_for(&out.join("e.png"));
    let (code, log) = watching.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(manifest_lines(&out), 5, "{log}");
    assert_eq!(stamp(&out.join("a.png")), a_written);
    assert!(log.contains("4 done before"), "{log}");
    let names: Vec<String> = walk(&out);
    assert!(
        !names
            .iter()
            .any(|n| n.contains("partial") || n.contains("_2.")),
        "{names:?}"
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            names.extend(walk(&e.path()));
        } else {
            names.push(e.path().to_string_lossy().into_owned());
        }
    }
    names
}

/// `--poll`: the polling watcher (for filesystems that send no events) finds arrivals too.
#[test]
fn watch_with_polling_finds_arrivals() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    let model = common::fixture("user/pixel_shuffle_2x.onnx");
    let mut watching = Watching::start_with(dir.path(), &model, "poll.log", &["--poll", "0.2"]);
    std::fs::copy(common::fixture("photo-60x44.png"), input.join("a.png")).unwrap();
    watching.wait_for(&out.join("a.png"));
    let (code, log) = watching.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(manifest_lines(&out), 1, "{log}");
}

/// `watch --help` says how it works and its limits; watching the output folder itself is refused
/// before anything starts.
#[test]
fn watch_documents_its_limits_and_refuses_its_own_output() {
    common::batchwise()
        .args(["watch", "--help"])
        .assert()
        .success()
        .stdout(
            predicates::str::contains("--poll <SECS>")
                .and(predicates::str::contains("--settle <SECS>"))
                .and(predicates::str::contains("NFS"))
                .and(predicates::str::contains("restart")),
        );
    let dir = tempfile::tempdir().unwrap();
    common::batchwise()
        .arg("watch")
        .arg(dir.path())
        .arg("-o")
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "both the watched folder and the output folder",
        ));
}
