//! The command line: `batchwise run | models | devices | app`. With no command, the app opens.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

mod devices;
mod dry_run;
mod models;
mod output;
pub mod preset;
mod report;
mod watch;

use crate::builtin;
use crate::gpu::AdapterChoice;
use crate::job::{self, ItemStatus, JobSpec};

#[derive(Parser, Debug)]
#[command(
    name = "batchwise",
    version = VERSION,
    about = "Batch image inference on any GPU",
    long_about = "Batch image inference on any GPU: upscale, restore, cut out, classify, embed and \
                  find faces in many images at once, batched into few large GPU dispatches. \
                  With no command, batchwise opens its window.",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The version, with the wgpu it runs on (`--version`; kept in step with Cargo.toml by a test).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (wgpu 30)");

const EXAMPLES: &str = "Examples:
  batchwise                                   open the window
  batchwise run -o out photos/                upscale a folder 2x (upscale-photo-2x)
  batchwise run -m upscale-anime-4x -b 16 -o out a.png b.jpg
  batchwise run -m upscale-anime-4x --scale 2 --format same -o out photos/
  batchwise run --format webp --quality 80 -o out photos/   lossy WebP
  batchwise run --dry-run -o out photos/      what would be written, the batch and its GPU memory
  batchwise run --preset photo.toml photos/   flags from a TOML file (keys: the long flag names)
  batchwise run -m remove-background --format webp -o cutouts photos/
  batchwise run -m classify --json -o labels photos/ > summary.json
  batchwise run -m my-model.onnx --input-range -1-1 -o out photos/
  batchwise run --shard 3/8 -o out photos/    one of 8 machines splitting a folder
  batchwise bench -m upscale-photo-2x --batch-sizes 1,4,16
  batchwise check                             the built-ins against onnxruntime, on this GPU
  batchwise completions bash > ~/.local/share/bash-completion/completions/batchwise
  batchwise man > batchwise.1";

/// Exit status when some items failed (or did not finish): the others were done.
pub const EXIT_ITEMS_FAILED: u8 = 3;
/// Exit status after Ctrl+C (128 + SIGINT, as shells report it).
pub const EXIT_CANCELLED: u8 = 130;

/// The exit statuses, as `run --help` and the README give them.
const EXIT_CODES: &str = "Exit status:
  0  every item was done, or skipped by rule (not an image, a system file, --overwrite skip,
     done by an earlier run)
  1  the job could not start (the model, the GPU, the output folder)
  2  the command line is wrong (usage, or a bad --preset file)
  3  some items failed or did not finish (each is reported; the others were done)
  130  cancelled with Ctrl+C (what was in flight finished whole; the summary and the collected
     results of what finished are written; a second Ctrl+C stops at once)

Outside a terminal (CI, Slurm, Kubernetes logs) progress is plain lines: the start, each failed
item and retry, progress every 5 seconds, and the summary.";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a model over images and folders, writing one output per input.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// List the built-in models and those of the models folder (with their measured scale, or
    /// why a file cannot run).
    Models {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: models::ModelsDirArg,
    },
    /// Process images as they arrive in a folder, each once (a restart resumes); Ctrl+C stops.
    #[command(after_help = watch::WATCH_HELP)]
    Watch(watch::WatchArgs),
    /// List the GPU adapters and their limits.
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Measure the conv kernels on an adapter and keep the fastest for every later command.
    #[command(after_help = devices::TUNE_HELP)]
    Tune(devices::TuneArgs),
    /// Measure items/s, GPU time and memory per batch size on synthetic images.
    Bench(BenchArgs),
    /// Check the built-in models on this GPU against onnxruntime's outputs on committed images.
    #[command(after_help = CHECK_EXIT_CODES)]
    Check(CheckArgs),
    /// Open the window, with these files or folders queued.
    App { inputs: Vec<PathBuf> },
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff; `batchwise man > batchwise.1`).
    Man,
}

/// How a user's model file is fed (ignored for built-ins).
#[derive(clap::Args, Debug, Clone)]
pub struct InputArgs {
    /// Value range the model expects: 0-1, 0-255 or -1-1 (default: the file's metadata, else 0-1).
    #[arg(long, value_parser = ["0-1", "0-255", "-1-1"], allow_hyphen_values = true, help_heading = "A user's model file")]
    pub input_range: Option<String>,
    /// Channel order the model expects: rgb or bgr (default: metadata, else rgb).
    #[arg(long, value_parser = ["rgb", "bgr"], help_heading = "A user's model file")]
    pub channel_order: Option<String>,
    /// Input layout: nchw or nhwc (default: metadata, else nchw).
    #[arg(long, value_parser = ["nchw", "nhwc"], help_heading = "A user's model file")]
    pub input_layout: Option<String>,
    /// Pixels of context around each tile (default: what the model eats, else 16).
    #[arg(long, help_heading = "A user's model file", value_name = "PX")]
    pub context: Option<u32>,
}

impl InputArgs {
    fn overrides(&self) -> crate::builtin::InputOverrides {
        crate::builtin::InputOverrides {
            range: self.input_range.clone(),
            channel_order: self.channel_order.clone(),
            layout: self.input_layout.clone(),
            context: self.context,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Built-in model id, a model of the models folder by name (see `batchwise models`), or a
    /// path to an .onnx file or an NCNN .param file; several joined by commas run as one chain
    /// (`enhance-low-light,upscale-photo-2x`), every intermediate image kept on the GPU; the last
    /// step may take fixed-size images (`enhance-low-light,classify`: the processed images'
    /// labels). An ONNX
    /// model with a fixed square RGB input whose outputs are not images writes each output as
    /// OUT/<output>.npy (stacked over the images) with OUT/tensors.json.
    #[arg(
        short,
        long,
        default_value = "upscale-photo-2x",
        help_heading = "Model",
        value_name = "MODEL"
    )]
    pub model: String,
    #[command(flatten)]
    pub models_dir: models::ModelsDirArg,
    #[command(flatten)]
    pub input: InputArgs,
    /// Tiles (or images) per GPU dispatch, or `auto` (the default): the largest batch whose
    /// planned memory fits the memory budget (at most 64). Never more than the job has: `-b 64`
    /// on 12 tiles allocates 12.
    #[arg(short, long, default_value = "auto", value_parser = parse_batch, help_heading = "Batching and memory", value_name = "N|auto")]
    pub batch_size: u32,
    /// GPU memory the job may plan for, in MiB (default: half of the driver's budget, else half
    /// of the device-local memory, else 1024). Auto batch sizes fit it; an out-of-memory error
    /// halves the batch and retries.
    #[arg(long, help_heading = "Batching and memory", value_name = "MIB")]
    pub memory_budget: Option<u64>,
    /// Host memory one image may take, in MiB: its decoded pixels and its output's (the model's
    /// scale included; PNG and TIFF outputs are written by rows, not held), read from its header
    /// before anything is allocated. An image over it fails alone, with the reason.
    #[arg(long, default_value_t = crate::job::MAX_DECODE_BYTES >> 20, value_parser = clap::value_parser!(u64).range(1..=(1 << 24)), help_heading = "Batching and memory", value_name = "MIB")]
    pub max_memory: u64,
    /// Tile size in input pixels (default: the largest that fits the adapter).
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..=4096), help_heading = "Batching and memory", value_name = "PX")]
    pub tile_size: Option<u32>,
    /// Output folder.
    #[arg(short, long, help_heading = "Output", value_name = "DIR")]
    pub output: PathBuf,
    /// Activations in float32, or float16 (storage and arithmetic; needs SHADER_F16).
    #[arg(
        long,
        value_enum,
        default_value = "f32",
        help_heading = "Batching and memory"
    )]
    pub precision: PrecisionArg,
    /// `classify`: labels per image in labels.csv / labels.json.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000), help_heading = "Analysis models", value_name = "K")]
    pub top_k: u32,
    /// `remove-background`: write the mask alone (grayscale PNG) instead of the image with it
    /// as alpha.
    #[arg(long, help_heading = "Analysis models")]
    pub mask_only: bool,
    /// `detect-faces`: also write each image with its faces drawn (faces.json either way).
    #[arg(long, help_heading = "Analysis models")]
    pub annotate: bool,
    /// Output image format; `same`: each output in its input's format (JPEG, PNG, WebP and TIFF
    /// inputs keep theirs; BMP, GIF and others, which batchwise does not write, become PNG).
    /// WebP is lossless unless --quality is given; JPEG drops alpha.
    #[arg(long, value_enum, default_value = "png", help_heading = "Output")]
    pub format: FormatArg,
    /// JPEG quality (default 90) and, when given, lossy WebP at this quality (without it WebP
    /// is lossless); PNG and TIFF ignore it.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100), help_heading = "Output", value_name = "1-100")]
    pub quality: Option<u8>,
    #[command(flatten)]
    pub output_extra: output::OutputArgs,
    /// Output file name: {stem}, {model}, {scale}, {ext}, ending with .{ext}; a folder part
    /// (`{model}/{stem}.{ext}`) makes sub-folders inside the output folder (no `..`, no absolute
    /// path). Inputs from folders keep their sub-folders under the output folder.
    #[arg(
        long,
        default_value = "{stem}.{ext}",
        help_heading = "Output",
        value_name = "PATTERN"
    )]
    pub name: String,
    /// When an output file exists: skip the item, overwrite it, or write name_2.ext.
    #[arg(long, value_enum, default_value = "rename", help_heading = "Output")]
    pub overwrite: OverwriteArg,
    /// Run only shard I of N (`I/N`, 0-based): N machines given the same inputs split them
    /// without talking to each other.
    #[arg(long, value_parser = parse_shard, help_heading = "Jobs and devices", value_name = "I/N")]
    pub shard: Option<(u32, u32)>,
    /// Adapter index from `batchwise devices` (default: the best GPU).
    #[arg(long, help_heading = "Jobs and devices", value_name = "INDEX")]
    pub adapter: Option<usize>,
    /// Print one JSON object with every item and the totals.
    #[arg(long, help_heading = "Reporting")]
    pub json: bool,
    /// Say only what failed (no start line, progress or summary).
    #[arg(short, long, conflicts_with = "verbose", help_heading = "Reporting")]
    pub quiet: bool,
    /// Also a line for every finished item.
    #[arg(short, long, help_heading = "Reporting")]
    pub verbose: bool,
    /// Read flags from a TOML file whose keys are these flags' long names (`model =
    /// "upscale-photo-2x"`, `batch-size = "auto"`, `tile-size = 256`, `mask-only = true`); a flag
    /// given on the command line overrides the file's.
    #[arg(long, value_name = "FILE", help_heading = "Presets and planning")]
    pub preset: Option<PathBuf>,
    /// Print each input's output path, each skip with its reason, the batch size and the GPU
    /// memory planned for it, and write nothing (`--json`: one JSON document).
    #[arg(long, help_heading = "Presets and planning")]
    pub dry_run: bool,
    /// Image files or folders (searched recursively).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Png,
    Jpeg,
    Webp,
    Tiff,
    Same,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum OverwriteArg {
    Skip,
    Overwrite,
    Rename,
}

/// A batch size of 1 to 1024, or `auto` (0).
fn parse_batch(s: &str) -> Result<u32, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(crate::job::AUTO_BATCH);
    }
    match s.parse::<u32>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a batch size from 1 to 1024, or auto")),
    }
}

/// `I/N` with I < N.
fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not I/N (for example 0/4)"))?;
    let (i, n): (u32, u32) = (
        i.trim()
            .parse()
            .map_err(|e| format!("shard index {i:?}: {e}"))?,
        n.trim()
            .parse()
            .map_err(|e| format!("shard count {n:?}: {e}"))?,
    );
    if n == 0 || i >= n {
        return Err(format!(
            "shard {i}/{n}: the index counts from 0 and stays below the count"
        ));
    }
    Ok((i, n))
}

/// `--precision` on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum PrecisionArg {
    F32,
    F16,
}

impl From<PrecisionArg> for crate::kernels::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => crate::kernels::Precision::F32,
            PrecisionArg::F16 => crate::kernels::Precision::F16,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Built-in model id, a model of the models folder by name, or a path to an .onnx or NCNN
    /// .param file; several joined by commas are a chain (as `run -m`).
    #[arg(short, long, default_value = "upscale-photo-2x")]
    pub model: String,
    #[command(flatten)]
    pub models_dir: models::ModelsDirArg,
    #[command(flatten)]
    pub input: InputArgs,
    /// Comma-separated batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub batch_sizes: Vec<u32>,
    /// Edge length of the square test images in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: u32,
    /// Number of test images.
    #[arg(long, default_value_t = 32)]
    pub count: u32,
    /// Tile size (default: the image size, or the largest that fits the largest batch).
    #[arg(long)]
    pub tile_size: Option<u32>,
    /// Activations in float32, or float16 (storage and arithmetic; needs SHADER_F16).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// A folder of real images: measure end to end (decode, run, encode, write) beside compute
    /// only, instead of synthetic images (`--size` and `--count` are then ignored).
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    #[arg(long)]
    pub adapter: Option<usize>,
    /// Also time each layer of one batch of the largest batch size (GPU timestamps, each step in
    /// a pass of its own): op, shapes, milliseconds, GFLOP/s and share of the batch.
    #[arg(long)]
    pub profile: bool,
    /// Print one JSON object: `device`, `rows` and, with --profile, `profile`.
    #[arg(long)]
    pub json: bool,
}

/// The exit statuses of `check`.
const CHECK_EXIT_CODES: &str = "Exit status:
  0  every model checked is within its tolerance (or refused at this precision, with the reason)
  1  the check could not start (the GPU, the reference folder)
  3  some model is outside its tolerance or could not run (each row says which)";

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Built-in model ids, comma-separated (default: every built-in with a reference).
    #[arg(short, long, value_delimiter = ',')]
    pub model: Vec<String>,
    /// The folder of reference inputs and outputs (`tests/reference/make_reference.py` writes
    /// them).
    #[arg(long, value_name = "DIR", default_value_os_t = crate::check::default_fixtures())]
    pub fixtures: PathBuf,
    /// Activations in float32, or float16 (looser tolerances: 45 dB on images).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    #[arg(long)]
    pub adapter: Option<usize>,
    /// Print one JSON object: the device, `passed` and a row per model.
    #[arg(long)]
    pub json: bool,
}

/// 0 when every item was done or skipped by rule, else [`EXIT_ITEMS_FAILED`].
pub fn exit_code(summary: &job::JobSummary) -> ExitCode {
    if summary.failed == 0 && summary.done + summary.skipped == summary.total {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ITEMS_FAILED)
    }
}

/// How the command line opens the window (`crate::app::run_native`, handed in by `main.rs`: the
/// app reads the run flags' definition, so this module does not depend on it).
pub type OpenWindow = fn(Vec<PathBuf>) -> Result<()>;

/// Parses the command line (a `--preset`'s flags added: [`preset::expand`]) and runs it; the exit
/// code says whether every item was done ([`EXIT_CODES`]).
pub fn main(open_window: OpenWindow) -> ExitCode {
    let argv = match preset::expand(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("Error: {e:#}");
            // A bad preset is a usage error, as clap's own.
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(argv);
    match run(cli, open_window) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, open_window: OpenWindow) -> Result<ExitCode> {
    match cli.command {
        None => open_window(Vec::new()).map(|()| ExitCode::SUCCESS),
        Some(Command::App { inputs }) => open_window(inputs).map(|()| ExitCode::SUCCESS),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory as _;
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "batchwise", &mut script);
            print_all(&script)
        }
        Some(Command::Man) => {
            use clap::CommandFactory as _;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            print_all(&page)
        }
        Some(Command::Models { json, dir }) => models::list(json, &dir),
        Some(Command::Devices { json }) => devices::list(json),
        Some(Command::Tune(args)) => devices::tune(&args),
        Some(Command::Run(args)) => run_job(&args),
        Some(Command::Watch(args)) => watch::run(&args),
        Some(Command::Bench(args)) => run_bench(&args),
        Some(Command::Check(args)) => run_check(&args),
    }
}

fn run_job(args: &RunArgs) -> Result<ExitCode> {
    let model = args
        .models_dir
        .resolve(&args.model, &args.input.overrides())?;
    let adapter = args
        .adapter
        .map_or(AdapterChoice::Auto, AdapterChoice::Index);
    let (mut engine, kernels) = devices::open_engine(&adapter)?;
    let spec = job_spec(args, model.clone());
    if args.dry_run {
        return dry_run::print(&engine, &spec, args.json);
    }
    let verbosity = args.verbosity();
    let mut reporter = report::Reporter::new(verbosity);
    if !args.json {
        reporter.say(&format!(
            "{} on {} ({})",
            model.id, engine.gpu.adapter.name, engine.gpu.adapter.device_type
        ));
        if verbosity == report::Verbosity::Verbose {
            reporter.line(&kernels);
        }
        if model.input_size == 0 && model.model.means_over_the_map() {
            reporter.say(&format!(
                "note: {} takes means over each tile's whole map (GlobalAveragePool), so tiles \
                 change its output; --tile-size at least the images' longer side keeps each in one \
                 tile",
                model.id
            ));
        }
    }
    let control = std::sync::Arc::new(job::Control::default());
    cancel_on_ctrl_c(&control);
    let reopen = || devices::open_engine(&adapter).map(|(engine, _)| engine);
    let summary = job::run_recovering(&mut engine, &reopen, &spec, &control, &mut |event| {
        reporter.event(&event);
    })
    .context("the job could not start")?;
    reporter.finish();
    let cancelled = control.cancel.load(std::sync::atomic::Ordering::Relaxed);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if verbosity > report::Verbosity::Quiet {
        for item in summary
            .items
            .iter()
            .filter(|i| i.status != ItemStatus::Done)
        {
            eprintln!(
                "{:?}: {}",
                item.status,
                item.error.as_deref().unwrap_or("no reason")
            );
        }
        eprintln!(
            "{} done, {} failed, {} skipped of {} in {:.1} s ({:.2} items/s, batch {}, tile {} px, \
             peak GPU {:.1} MiB) -> {}",
            summary.done,
            summary.failed,
            summary.skipped,
            summary.total,
            summary.elapsed_secs,
            summary.items_per_sec,
            summary.batch_size,
            summary.tile_size,
            summary.peak_gpu_bytes as f64 / (1 << 20) as f64,
            spec.output_dir.display()
        );
    }
    Ok(if cancelled {
        ExitCode::from(EXIT_CANCELLED)
    } else {
        exit_code(&summary)
    })
}

/// The job the flags of `run` (and `watch`) describe, with `model` resolved.
pub(crate) fn job_spec(args: &RunArgs, model: builtin::ModelChoice) -> JobSpec {
    JobSpec {
        inputs: args.inputs.clone(),
        model,
        batch_size: args.batch_size,
        tile_size: args.tile_size,
        output_dir: args.output.clone(),
        precision: args.precision.into(),
        analysis: crate::job::AnalysisOptions {
            top_k: args.top_k as usize,
            mask_only: args.mask_only,
            annotate: args.annotate,
        },
        export: crate::job::ExportOptions {
            format: match args.format {
                FormatArg::Png => crate::job::OutputFormat::Png,
                FormatArg::Jpeg => crate::job::OutputFormat::Jpeg,
                FormatArg::Webp => crate::job::OutputFormat::Webp,
                FormatArg::Tiff => crate::job::OutputFormat::Tiff,
                FormatArg::Same => crate::job::OutputFormat::Same,
            },
            quality: args.quality.unwrap_or(90),
            webp_lossless: args.quality.is_none(),
            png_compression: args.output_extra.png_compression,
            scale: args.output_extra.scale,
            pattern: args.name.clone(),
            overwrite: match args.overwrite {
                OverwriteArg::Skip => crate::job::Overwrite::Skip,
                OverwriteArg::Overwrite => crate::job::Overwrite::Overwrite,
                OverwriteArg::Rename => crate::job::Overwrite::Rename,
            },
            keep_steps: args.output_extra.keep_steps,
        },
        shard: args.shard,
        memory_budget: args.memory_budget.map(|mb| mb << 20),
        roots: Vec::new(),
        max_item_bytes: Some(args.max_memory << 20),
    }
}

impl RunArgs {
    /// `--quiet`, `-v` or neither.
    pub(crate) fn verbosity(&self) -> report::Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => report::Verbosity::Quiet,
            (_, true) => report::Verbosity::Verbose,
            _ => report::Verbosity::Normal,
        }
    }
}

/// Writes `bytes` to stdout; a reader that stopped early (`| head`) is not an error.
fn print_all(bytes: &[u8]) -> Result<ExitCode> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The first Ctrl+C cancels the job between batches (what is in flight finishes whole, the
/// summary and collected results are written); a second one exits at once.
fn cancel_on_ctrl_c(control: &std::sync::Arc<job::Control>) {
    let control = control.clone();
    let handler = move || {
        if control
            .cancel
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            eprintln!("stopped");
            std::process::exit(i32::from(EXIT_CANCELLED));
        }
        eprintln!("cancelling after the batch in flight (Ctrl+C again to stop at once)");
    };
    if let Err(e) = ctrlc::set_handler(handler) {
        log::warn!("Ctrl+C will stop the job at once: {e}");
    }
}

fn run_bench(args: &BenchArgs) -> Result<ExitCode> {
    let model = args
        .models_dir
        .resolve(&args.model, &args.input.overrides())?;
    let adapter = args
        .adapter
        .map_or(AdapterChoice::Auto, AdapterChoice::Index);
    let (engine, kernels) = devices::open_engine(&adapter)?;
    if !args.json {
        let workload = match &args.inputs {
            Some(dir) => format!(
                "the images in {} (end to end and compute only)",
                dir.display()
            ),
            None => format!("{} images of {}x{}", args.count, args.size, args.size),
        };
        eprintln!(
            "{} on {} ({}, {}): {workload}",
            model.id,
            engine.gpu.adapter.name,
            engine.gpu.adapter.backend,
            engine.gpu.adapter.device_type,
        );
        eprintln!("{kernels}");
        println!(
            "batch  items/s  compute items/s  GPU ms/batch  peak GPU MiB  planned MiB  GFLOP/s  \
             dispatches"
        );
    }
    let json = args.json;
    let setup = crate::bench::BenchSetup {
        batch_sizes: args.batch_sizes.clone(),
        size: args.size,
        count: args.count,
        tile_size: args.tile_size,
        precision: args.precision.into(),
        inputs: args.inputs.clone(),
        files: Vec::new(),
        profile: args.profile,
    };
    let report = crate::bench::run(&engine, &model, &setup, |row| {
        if !json {
            println!(
                "{:>5}  {:>7.3}  {:>15.3}  {:>12}  {:>12.1}  {:>11.1}  {:>7.2}  {:>10}",
                row.batch_size,
                row.items_per_sec,
                row.compute_items_per_sec,
                row.gpu_ms_per_batch
                    .map_or("-".into(), |ms| format!("{ms:.1}")),
                row.peak_gpu_bytes as f64 / (1 << 20) as f64,
                row.planned_gpu_bytes as f64 / (1 << 20) as f64,
                row.gflops,
                row.dispatches_per_batch
            );
            if row.step_by_step {
                println!(
                    "       the chain ran step by step (each step on its own tiles); planned MiB \
                     and GFLOP/s are the composed chain's"
                );
            }
            if let Some(steps) = row.separate_steps_items_per_sec {
                println!(
                    "       the chain's steps as separate jobs: {steps:.3} items/s (the chain \
                     runs {:.2}x as fast)",
                    row.items_per_sec / steps
                );
            }
        }
    })?;
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["kernels"] = kernels.into();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        eprintln!(
            "tile {} px ({} per image); weights {:.1} MiB, {:.1} MiB per batch item",
            report.tile_size,
            report.tiles_per_item,
            report.weight_bytes as f64 / (1 << 20) as f64,
            report.bytes_per_item as f64 / (1 << 20) as f64
        );
        if let Some(profile) = &report.profile {
            print_profile(profile);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A profile as a table, slowest layers first.
fn print_profile(profile: &crate::bench::Profile) {
    println!(
        "\nper layer, one batch of {} ({:.1} ms summed, {:.2} GFLOP/s), slowest first:",
        profile.batch_size, profile.total_ms, profile.gflops
    );
    println!(
        "{:>5}  {:<34} {:>13} {:>13} {:>5} {:>8} {:>9} {:>8} {:>6}  name",
        "layer", "op", "input", "output", "disp", "groups", "ms", "GFLOP/s", "share"
    );
    let mut rows: Vec<&crate::bench::ProfileRow> = profile.rows.iter().collect();
    rows.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    for r in rows {
        println!(
            "{:>5}  {:<34} {:>13} {:>13} {:>5} {:>8} {:>9.2} {:>8} {:>5.1}%  {}",
            r.layer.map_or("-".into(), |i| i.to_string()),
            r.op,
            r.input,
            r.output,
            r.dispatches,
            r.workgroups,
            r.ms,
            r.gflops.map_or("-".into(), |g| format!("{g:.2}")),
            100.0 * r.share,
            r.name
        );
        for p in &r.phases {
            println!(
                "{:>5}    {:<32} {:>13} {:>13} {:>5} {:>8} {:>9.2}",
                "", p.kernel, "", "", p.dispatches, "", p.ms
            );
        }
    }
}

fn run_check(args: &CheckArgs) -> Result<ExitCode> {
    let adapter = args
        .adapter
        .map_or(AdapterChoice::Auto, AdapterChoice::Index);
    let (engine, _) = devices::open_engine(&adapter)?;
    let json = args.json;
    if !json {
        let a = &engine.gpu.adapter;
        eprintln!(
            "{} ({}, {}), {:?}",
            a.name, a.backend, a.device_type, args.precision
        );
    }
    let precision = args.precision.into();
    let report = crate::check::run(&engine, &args.model, &args.fixtures, precision, |row| {
        if !json {
            println!("{}", row.describe());
        }
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ITEMS_FAILED)
    })
}
