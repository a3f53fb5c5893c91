//! `batchwise run --dry-run`: the job's plan on stdout ([`crate::job::dry_run`]), as lines or
//! one JSON document; nothing is written.

use std::process::ExitCode;

use anyhow::Result;

use crate::engine::Engine;
use crate::job::{self, JobSpec, PlannedAction};

/// Prints what a run of `spec` would do (`json`: one JSON document).
pub fn print(engine: &Engine, spec: &JobSpec, json: bool) -> Result<ExitCode> {
    let plan = job::dry_run(engine, spec)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    println!(
        "{} on {}: batch {}{}, tile {} px, planned GPU memory {:.1} MiB of a {:.1} MiB budget \
         (weights {:.1} MiB + {:.1} MiB per batch item)",
        plan.model,
        plan.adapter,
        plan.batch_size,
        if plan.batch_auto { " (auto)" } else { "" },
        plan.tile_size,
        mib(plan.planned_gpu_bytes),
        mib(plan.memory_budget_bytes),
        mib(plan.weight_bytes),
        mib(plan.bytes_per_item),
    );
    if let Some(line) = chain_line(&plan) {
        println!("{line}");
    }
    for item in &plan.items {
        let (input, output) = (item.input.display(), item.output.display());
        let reason = item.reason.as_deref().unwrap_or_default();
        match item.action {
            PlannedAction::Run => println!("run   {input} -> {output}"),
            PlannedAction::Skip => println!("skip  {input}: {reason}"),
            PlannedAction::Fail => println!("fail  {input}: {reason}"),
            PlannedAction::Done => println!("done  {input} -> {output}: {reason}"),
        }
        if matches!(item.action, PlannedAction::Run | PlannedAction::Done) {
            for kept in &item.kept_steps {
                println!("      and {}", kept.display());
            }
        }
    }
    println!(
        "{} to run, {} skipped, {} failing, {} done already (dry run: nothing was written)",
        plan.to_run, plan.skipped, plan.failed, plan.done
    );
    Ok(ExitCode::SUCCESS)
}

/// What a chain runs, in order: one composed model in tiles, and where its last step takes
/// whole images, how (None for one model).
fn chain_line(plan: &job::DryRun) -> Option<String> {
    let (last, before) = plan.steps.split_last()?;
    let steps = plan.steps.join(" -> ");
    Some(match (plan.last_step_input, plan.image_batch_size) {
        (Some(side), Some(images)) => format!(
            "chain: {steps}: {} composed, in tiles; {last} on each whole processed image, fitted \
             to {side} x {side} px, in batches of at most {images}",
            before.join(" -> ")
        ),
        _ if plan.step_by_step => format!(
            "chain: {steps}, step by step: each step on its own tiles, its images handed to the \
             next in memory at 16 bits (composed, each tile would redo the later steps' context)"
        ),
        _ => format!("chain: {steps}, composed into one model, in tiles"),
    })
}
