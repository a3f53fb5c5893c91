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
    if let Some(dir) = mesa_cache_home() {
        cmd.env("MESA_SHADER_CACHE_DIR", dir);
    }
    cmd
}

/// Where Mesa keeps its shader cache (`mesa_shader_cache` in this folder) for this test process,
/// passed on as `MESA_SHADER_CACHE_DIR`: a child given a temporary `XDG_CACHE_HOME` (for
/// batchwise's autotune cache) then still reads the kernels lavapipe jitted for earlier tests
/// instead of compiling every one anew (a tune's ~20 kernels took 60-80 s cold).
pub fn mesa_cache_home() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    var("MESA_SHADER_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME"))
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache")))
}

/// A committed reference output: raw little-endian float32.
pub fn reference(name: &str) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&std::fs::read(fixture(name)).unwrap())
}

/// The 60 x 44 photo the image models' references were made from.
pub fn photo() -> image::RgbaImage {
    image::open(fixture("photo-60x44.png")).unwrap().to_rgba8()
}

/// Jobs on the 60 x 44 photo in 16 px tiles (12 of them), each into a folder of its own, read
/// back as `run --json`'s summary.
pub struct PhotoRuns {
    dir: tempfile::TempDir,
    /// Flags every run takes (the model).
    flags: Vec<String>,
    /// An environment variable every run sets.
    env: Option<(String, String)>,
}

impl PhotoRuns {
    pub fn new(flags: &[&str]) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            flags: flags.iter().map(ToString::to_string).collect(),
            env: None,
        }
    }

    /// These runs with `key=value` in every run's environment.
    pub fn with_env(self, key: &str, value: &str) -> Self {
        Self {
            env: Some((key.to_owned(), value.to_owned())),
            ..self
        }
    }

    /// `batchwise run --json` with `args` (and `env` set).
    pub fn run(&self, args: &[&str], env: Option<(&str, &str)>) -> serde_json::Value {
        let mut cmd = batchwise();
        if let Some((k, v)) = &self.env {
            cmd.env(k, v);
        }
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd
            .args(["run", "--json", "--tile-size", "16"])
            .args(&self.flags)
            .args(args)
            .arg("-o")
            .arg(self.dir.path().join(format!("{}{env:?}", args.join("_"))))
            .arg(fixture("photo-60x44.png"))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    }

    /// Auto batch fits the budget: 4 MiB gives a smaller batch than the default budget. Returns
    /// both summaries.
    pub fn assert_auto_fits_the_budget(&self) -> (serde_json::Value, serde_json::Value) {
        let roomy = self.run(&["-b", "auto"], None);
        let tight = self.run(&["-b", "auto", "--memory-budget", "4"], None);
        let (roomy_b, tight_b) = (
            roomy["batch_size"].as_u64().unwrap(),
            tight["batch_size"].as_u64().unwrap(),
        );
        assert!(
            tight_b >= 1 && tight_b < roomy_b,
            "auto: {tight_b} vs {roomy_b}"
        );
        (roomy, tight)
    }

    /// An out-of-memory error (injected: lavapipe has memory to spare), allocating the batch or
    /// running it, halves a batch of 8 and retries the same tiles until 2 fit.
    pub fn assert_out_of_memory_halves_the_batch(&self) {
        for var in ["BATCHWISE_FAIL_BATCHES_ABOVE", "BATCHWISE_FAIL_RUNS_ABOVE"] {
            let json = self.run(&["-b", "8"], Some((var, "2")));
            assert_eq!(json["done"], 1, "{var}: {json}");
            assert_eq!(json["batch_size"], 2, "{var}");
            assert_eq!(json["retries"], 2, "{var}");
        }
    }
}

/// Records `step` for `items` items in one pass, submits it and reads `bytes` of `out` back;
/// panics with the GPU's error where it rejects the step (a kernel that did not compile: its
/// output would read as zeros).
pub fn run_step(
    gpu: &batchwise::gpu::Gpu,
    step: &batchwise::kernels::Step,
    items: u32,
    out: &wgpu::Buffer,
    bytes: u64,
) -> Vec<u8> {
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        step.record(&mut pass, items);
    }
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    gpu.queue.submit([encoder.finish()]);
    if let Some(e) = pollster::block_on(scope.pop()) {
        panic!("the GPU rejected step {}: {e}", step.label);
    }
    gpu.read_back(out, bytes).unwrap()
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
        batch_size,
        ..batchwise::job::JobSpec::new(model, inputs, out)
    }
}

/// The 2 KB pixel-shuffle model made for tests, as a job's model.
pub fn tiny_model() -> batchwise::builtin::ModelChoice {
    let path = fixture("user/pixel_shuffle_2x.onnx");
    batchwise::builtin::resolve(&path.to_string_lossy(), &Default::default()).unwrap()
}

/// What the depthwise kernel's block depends on (`depthwise_conv2d::Variant::for_map`): whether
/// the adapter is a CPU, and whether `kernels` move 8 values a load.
pub fn adapter_kind(
    engine: &batchwise::engine::Engine,
    kernels: &batchwise::kernels::Kernels,
) -> [bool; 2] {
    [
        engine.gpu.adapter.device_type == "Cpu",
        kernels.eight_a_load,
    ]
}

/// The kernel tuning cache of the app tests: in the target folder's scratch space for tests, not
/// the user's cache folder.
pub fn tune_cache() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("tune-cache")
}

/// The models folder of the app tests: an empty folder in the target folder's scratch space, not
/// the user's models folder (which the app reads as it starts).
pub fn app_models_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("app-models");
    std::fs::create_dir_all(&dir).expect("the app tests' models folder");
    dir
}

/// The app as the tests open it: no inputs, the default settings but for its models folder
/// ([`app_models_dir`]) and its kernel tuning cache ([`tune_cache`]).
pub fn app(cc: &eframe::CreationContext<'_>) -> batchwise::app::BatchwiseApp {
    let settings = batchwise::app::Settings {
        models_dir: Some(app_models_dir()),
        tune_cache: Some(tune_cache()),
        ..Default::default()
    };
    batchwise::app::BatchwiseApp::with_settings(cc, Vec::new(), settings)
}
