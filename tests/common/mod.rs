//! Helpers shared by the integration tests.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]
#![allow(dead_code)]

use std::path::PathBuf;

pub mod app;

use rand::{Rng, SeedableRng};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// Seeded, so a failure reproduces.
pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Uniform values in [-scale, scale].
pub fn random_vec(rng: &mut impl Rng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-scale..=scale)).collect()
}

/// The `batchwise` binary, quiet but for errors, with the kernel choice fixed so that a test does
/// not autotune (tests/autotune.rs covers that).
pub fn batchwise() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("batchwise").unwrap();
    cmd.env("RUST_LOG", "error");
    cmd.env("BATCHWISE_CONV_ROWS", "16");
    cmd
}

pub fn engine() -> batchwise::engine::Engine {
    batchwise::engine::Engine::new(&batchwise::gpu::AdapterChoice::Auto)
        .expect("a GPU adapter (lavapipe: apt-get install mesa-vulkan-drivers)")
}

/// Peak signal-to-noise ratio in dB for signals in [0, 1].
pub fn psnr(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (1.0 / mse.max(1e-30)).log10()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Whether the adapter runs float16 shaders; float16 tests skip (saying so) where it does not.
pub fn has_float16(engine: &batchwise::engine::Engine) -> bool {
    let yes = engine
        .gpu
        .device
        .features()
        .contains(wgpu::Features::SHADER_F16);
    if !yes {
        eprintln!("skipped: the adapter has no SHADER_F16");
    }
    yes
}

/// A job of `inputs` with `model` into `out`, batch `batch`, every other setting the default.
pub fn job_spec(
    inputs: Vec<PathBuf>,
    model: batchwise::builtin::ModelChoice,
    out: PathBuf,
    batch_size: u32,
) -> batchwise::job::JobSpec {
    batchwise::job::JobSpec {
        inputs,
        model,
        batch_size,
        tile_size: None,
        output_dir: out,
        precision: Default::default(),
        analysis: Default::default(),
        export: Default::default(),
        shard: None,
        memory_budget: None,
        roots: Vec::new(),
        max_item_bytes: None,
    }
}

/// The 2 KB pixel-shuffle model made for tests, as a job's model.
pub fn tiny_model() -> batchwise::builtin::ModelChoice {
    let path = fixture("user/pixel_shuffle_2x.onnx");
    batchwise::builtin::resolve(&path.to_string_lossy(), &Default::default()).unwrap()
}
