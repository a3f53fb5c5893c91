//! Soak runs: thousands of small images through the CLI and through the job path the app's engine
//! thread runs, watching host memory (RSS) and the GPU ledger at the start, the middle and the
//! end. Not part of `cargo test` (minutes of lavapipe); run them with
//! `cargo test --release --test soak -- --ignored --nocapture` and record the figures in
//! RELIABILITY.md. Each asserts that memory stays flat: the end within 5% (plus 8 MiB of
//! allocator slack for RSS) of the middle, so a leak per item shows.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use batchwise::job::{self, Control, JobEvent};

/// `n` small distinct PNGs (24 x 16 crops of the test photo) in `dir`.
fn images(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let photo = image::open(common::fixture("photo-60x44.png")).unwrap();
    (0..n)
        .map(|i| {
            let (x, y) = ((i % 36) as u32, ((i / 36) % 28) as u32);
            let path = dir.join(format!("img{i:05}.png"));
            photo.crop_imm(x, y, 24, 16).save(&path).unwrap();
            path
        })
        .collect()
}

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// Start, middle and end of `samples` (progress fraction, value).
fn three(samples: &[(f64, u64)]) -> [u64; 3] {
    let at = |f: f64| {
        samples
            .iter()
            .min_by(|a, b| (a.0 - f).abs().total_cmp(&(b.0 - f).abs()))
            .map_or(0, |s| s.1)
    };
    [at(0.0), at(0.5), at(1.0)]
}

fn assert_flat(what: &str, [_, middle, end]: [u64; 3], slack: u64) {
    let limit = middle + middle / 20 + slack;
    assert!(
        end <= limit,
        "{what} grew from {:.1} MiB mid-run to {:.1} MiB at the end",
        mib(middle),
        mib(end)
    );
}

/// 5,000 images through `batchwise run` with the tiny pixel-shuffle model: the CLI's RSS sampled
/// every 200 ms, the GPU ledger from its debug progress lines.
#[test]
#[ignore = "a soak run of minutes; see the module docs"]
fn cli_soak_5000_images() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = images(&dir.path().join("in"), 5000);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_batchwise"))
        .args(["run", "-m"])
        .arg(common::fixture("user/pixel_shuffle_2x.onnx"))
        .args(["--batch-size", "16", "-o"])
        .arg(dir.path().join("out"))
        .arg(dir.path().join("in"))
        .env("RUST_LOG", "batchwise::progress=debug")
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let ledger = std::thread::Builder::new()
        .name("stderr".into())
        .spawn(move || {
            let mut samples = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // "... 1234/5000 done, 0 failed, GPU in use 5678 bytes"
                let mut words = line.split_whitespace();
                let done = words
                    .clone()
                    .find(|w| w.contains('/') && w.ends_with(char::is_numeric));
                let bytes = words.rfind(|w| w.parse::<u64>().is_ok());
                if let (Some(done), Some(bytes)) = (done, bytes) {
                    let (d, t) = done.split_once('/').unwrap();
                    let f = d.parse::<f64>().unwrap_or(0.0) / t.parse::<f64>().unwrap_or(1.0);
                    samples.push((f, bytes.parse::<u64>().unwrap()));
                }
            }
            samples
        })
        .unwrap();
    let out = dir.path().join("out");
    let mut rss_samples = Vec::new();
    while child.try_wait().unwrap().is_none() {
        if let Some(r) = rss(pid).filter(|&r| r > 0) {
            let done = std::fs::read_dir(&out).map_or(0, Iterator::count);
            rss_samples.push((done as f64 / inputs.len() as f64, r));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(child.wait().unwrap().success());
    let gpu = three(&ledger.join().unwrap());
    let host = three(&rss_samples);
    println!(
        "CLI, 5000 images: RSS {:.1} / {:.1} / {:.1} MiB, GPU ledger {:.2} / {:.2} / {:.2} MiB \
         (start / middle / end)",
        mib(host[0]),
        mib(host[1]),
        mib(host[2]),
        mib(gpu[0]),
        mib(gpu[1]),
        mib(gpu[2])
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        5000 + 1,
        "outputs and the manifest"
    );
    assert_flat("the CLI's RSS", host, 8 << 20);
    assert_flat("the CLI's GPU ledger", gpu, 0);
}

/// 1,000 images through `job::run`, the call the app's engine thread makes, with the events the
/// app gets: RSS of this process and the ledger's bytes in use at each progress event.
#[test]
#[ignore = "a soak run of minutes; see the module docs"]
fn app_job_path_soak_1000_images() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = images(&dir.path().join("in"), 1000);
    let spec = common::job_spec(inputs, common::tiny_model(), dir.path().join("out"), 16);
    let engine = common::engine();
    let me = std::process::id();
    let (mut host, mut gpu) = (Vec::new(), Vec::new());
    let summary = job::run(&engine, &spec, &Control::default(), &mut |ev| {
        if let JobEvent::Progress {
            done,
            total,
            gpu_bytes,
            ..
        } = ev
        {
            let f = done as f64 / total.max(1) as f64;
            host.push((f, rss(me).unwrap_or(0)));
            gpu.push((f, gpu_bytes));
        }
    })
    .unwrap();
    assert_eq!(summary.done, 1000);
    let (host, gpu) = (three(&host), three(&gpu));
    println!(
        "app job path, 1000 images: RSS {:.1} / {:.1} / {:.1} MiB, GPU ledger {:.2} / {:.2} / \
         {:.2} MiB (start / middle / end)",
        mib(host[0]),
        mib(host[1]),
        mib(host[2]),
        mib(gpu[0]),
        mib(gpu[1]),
        mib(gpu[2])
    );
    assert_flat("the app job path's RSS", host, 8 << 20);
    assert_flat("the app job path's GPU ledger", gpu, 0);
}
