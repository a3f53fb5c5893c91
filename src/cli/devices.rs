//! `batchwise devices` (the adapters and their limits) and `batchwise tune` (the conv kernels
//! fastest on one adapter, measured and cached for every later command), and the engine every
//! command opens: with the kernels that cache holds for its adapter.

use std::process::ExitCode;

use anyhow::Result;

use crate::engine::Engine;
use crate::gpu::{self, AdapterChoice};

/// Opens the engine on `adapter` with the conv kernels an earlier `batchwise tune` (or the app)
/// measured for it, else the defaults; measures nothing. Also says which, for a log line.
pub(super) fn open_engine(adapter: &AdapterChoice) -> Result<(Engine, String)> {
    let engine = Engine::new(adapter)?;
    let cache = crate::autotune::default_cache_dir();
    let kernels = match crate::autotune::cached(&engine, cache.as_deref()) {
        Some(report) if crate::kernels::conv2d::rows_from_env().is_some() => {
            format!("kernels set by BATCHWISE_CONV_ROWS: {}", report.describe())
        }
        Some(report) => format!("kernels tuned for this adapter: {}", report.describe()),
        None => "default kernels (`batchwise tune` measures this adapter's fastest)".into(),
    };
    let kernels = match crate::kernels::gemm::blocking_from_env() {
        Some(b) => format!(
            "{kernels}; 1x1 convolutions in blocks of {}x{} (BATCHWISE_GEMM_BLOCKING)",
            b.oc_block, b.pix
        ),
        None => kernels,
    };
    Ok((engine, kernels))
}

#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// The adapter to measure (`batchwise devices` lists them; default: the best one).
    #[arg(long, value_name = "INDEX")]
    pub adapter: Option<usize>,
    /// Print the measurements as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The text after `tune --help`.
pub const TUNE_HELP: &str = "Times the direct 3x3 convolution at each row count and, for each \
typical 3x3 shape, the direct kernel against Winograd F(2,3) and F(4,3) fused and F(2,3), F(4,3) \
and F(6,3) split into transforms and GEMMs, in interleaved rounds; the fastest (a default kept \
unless another is 5% faster) are stored in the cache folder ($XDG_CACHE_HOME/batchwise/autotune.json), keyed by adapter, driver and version, \
and every later `run`, `watch`, `bench` and `check` on that adapter uses them. The app measures \
on its first start on an adapter by itself. BATCHWISE_CONV_ROWS and BATCHWISE_WINOGRAD override \
the choice.";

/// `batchwise tune`: measures, stores and prints the kernels fastest on the adapter.
pub(super) fn tune(args: &TuneArgs) -> Result<ExitCode> {
    let adapter = args
        .adapter
        .map_or(AdapterChoice::Auto, AdapterChoice::Index);
    let engine = Engine::new(&adapter)?;
    if !args.json {
        let a = &engine.gpu.adapter;
        eprintln!(
            "measuring the conv kernels on {} ({}, {})",
            a.name, a.backend, a.driver
        );
    }
    let cache = crate::autotune::default_cache_dir();
    let report = crate::autotune::measure_and_store(&engine, cache.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (rows, ms) in &report.timings_ms {
        println!("direct 64->64, {rows:>2} rows an invocation: {ms:8.2} ms");
    }
    for ((in_c, out_c), ms) in &report.winograd_ms {
        let each: Vec<String> = crate::autotune::KERNELS
            .iter()
            .zip(ms)
            .map(|(&t, ms)| format!("{} {ms:.2} ms", crate::autotune::kernel_name(t)))
            .collect();
        println!("3x3 {in_c:>3}->{out_c:<3} {}", each.join(", "));
    }
    println!(
        "chosen: {} (each the fastest, or this adapter's default where within {:.0}% of it)",
        report.describe(),
        crate::autotune::MARGIN * 100.0
    );
    match &cache {
        Some(dir) => println!("stored in {}", dir.join("autotune.json").display()),
        None => println!("not stored: no cache folder (set XDG_CACHE_HOME or HOME)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `batchwise devices`: each adapter with compute shaders, its limits and memory.
pub(super) fn list(json: bool) -> Result<ExitCode> {
    let adapters = gpu::list_adapters();
    if json {
        println!("{}", serde_json::to_string_pretty(&adapters)?);
    } else if adapters.is_empty() {
        println!("no adapter with compute shaders (install a Vulkan driver)");
    } else {
        for a in adapters {
            println!(
                "[{}] {} ({}, {}) {}\n    max buffer {} MiB, max storage binding {} MiB, \
                 workgroup storage {} KiB, {} invocations/workgroup, shader-f16 {}, \
                 timestamps {}",
                a.index,
                a.name,
                a.backend,
                a.device_type,
                a.driver,
                a.max_buffer_size >> 20,
                a.max_storage_buffer_binding_size >> 20,
                a.max_compute_workgroup_storage_size >> 10,
                a.max_compute_invocations_per_workgroup,
                a.shader_f16,
                a.timestamp_query
            );
            println!("    memory: {}", describe_memory(a.memory));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The device's memory as its driver reports it, for people.
fn describe_memory(memory: Option<gpu::DeviceMemory>) -> String {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    match memory {
        None => "not reported by this backend".into(),
        Some(m) => {
            let mut text = format!("{:.1} GiB device-local", gib(m.total_bytes));
            if let (Some(budget), Some(usage)) = (m.budget_bytes, m.usage_bytes) {
                text += &format!(
                    ", budget {:.1} GiB, {:.2} GiB in use (VK_EXT_memory_budget)",
                    gib(budget),
                    gib(usage)
                );
            }
            text
        }
    }
}
