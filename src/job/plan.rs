//! Before anything runs: the job's files, their outputs, what is skipped and why, and what a
//! previous run of the same job finished (resume).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};

use super::listing::{in_shard, list_inputs};
use super::naming::{ExportOptions, Overwrite, plan_outputs};
use super::resume::{Record, settings_key};
use super::{ItemResult, JobSpec};
use crate::builtin::Task;

/// A job's files: inputs, their outputs, and why any is skipped before it is read.
pub(crate) struct Planned {
    pub inputs: Vec<PathBuf>,
    pub outputs: Vec<PathBuf>,
    pub skips: Vec<Option<String>>,
    /// Finished by the run this one resumes.
    pub resumed: Vec<bool>,
    /// The collected results the manifest holds for them (labels, embeddings, faces).
    pub resumed_results: Vec<Option<ItemResult>>,
    /// What the manifest records for each output (None where the input cannot be stamped).
    pub records: Vec<Option<Record>>,
}

impl Planned {
    /// Whether item `i` is read at all (not skipped, not finished before).
    pub fn todo(&self, i: usize) -> bool {
        self.skips[i].is_none() && !self.resumed[i]
    }
}

/// Whether the task's results are collected into files over the whole job (no file per image).
pub(crate) fn collects(spec: &JobSpec) -> bool {
    let task = spec.model.task;
    matches!(task, Task::Classify | Task::Embed)
        || (task == Task::DetectFaces && !spec.analysis.annotate)
}

/// Lists the inputs, names the outputs and reads what a previous run of the same job finished.
/// Creates the output folder and the manifest writer.
pub(crate) fn plan(spec: &JobSpec) -> Result<Planned> {
    let mut listed = list_inputs(&spec.inputs);
    for l in &mut listed {
        if let Some(rel) = spec
            .roots
            .iter()
            .find_map(|root| l.path.strip_prefix(root).ok())
            .filter(|rel| rel.components().count() > 1)
        {
            l.rel = rel.to_path_buf();
        }
    }
    if let Some((i, n)) = spec.shard {
        listed.retain(|l| in_shard(&l.rel, i, n));
    }
    if listed.is_empty() {
        return Err(anyhow!("no input images were found"));
    }
    std::fs::create_dir_all(&spec.output_dir).with_context(|| {
        format!(
            "cannot create the output folder {}",
            spec.output_dir.display()
        )
    })?;
    crate::manifest::remove_stale_partials(&spec.output_dir);
    // Resume: what a previous run of the same job finished. Per-image outputs count when their
    // file is there; collected results (labels, embeddings, faces) when the manifest holds them.
    let collects = collects(spec);
    let keeps_result = matches!(
        spec.model.task,
        Task::Classify | Task::Embed | Task::DetectFaces
    );
    let settings = settings_key(spec);
    let previous = crate::manifest::read(&spec.output_dir, &settings);
    let reserved: HashMap<PathBuf, PathBuf> = previous
        .iter()
        .filter(|_| !collects)
        .map(|e| (e.input.clone(), e.output.clone()))
        .collect();
    // Per item: None (not finished), Some(None) (its own file is there), Some(Some(result)).
    let finished: Vec<Option<Option<ItemResult>>> = listed
        .iter()
        .map(|l| {
            let entry = previous.iter().rev().find(|e| e.input == l.path)?;
            let done = if collects {
                crate::manifest::input_unchanged(entry)
            } else {
                crate::manifest::still_done(entry)
            };
            if !done {
                return None;
            }
            match &entry.result {
                Some(r) if keeps_result => serde_json::from_value(r.clone()).ok().map(Some),
                None if !keeps_result => Some(None),
                _ => None,
            }
        })
        .collect();
    let resumed: Vec<bool> = finished.iter().map(Option::is_some).collect();
    let resumed_results = finished.into_iter().map(Option::flatten).collect();
    // Models that collect their results write no file per image: no per-image policy applies.
    let export = if collects {
        ExportOptions {
            overwrite: Overwrite::Rename,
            ..spec.export.clone()
        }
    } else {
        spec.export.clone()
    };
    let outputs = plan_outputs(
        &mut listed,
        &spec.output_dir,
        &export,
        &spec.model.id,
        spec.model.spec.scale,
        &reserved,
    );
    let inputs: Vec<PathBuf> = listed.iter().map(|l| l.path.clone()).collect();
    let skips: Vec<Option<String>> = listed.into_iter().map(|l| l.skip).collect();
    let writer = std::sync::Arc::new(
        crate::manifest::Writer::open(&spec.output_dir).with_context(|| {
            format!(
                "cannot write {} in {}",
                crate::manifest::FILE_NAME,
                spec.output_dir.display()
            )
        })?,
    );
    let records = (0..inputs.len())
        .map(|i| {
            let (input_bytes, input_modified) = crate::manifest::stamp(&inputs[i])?;
            Some(Record {
                writer: writer.clone(),
                entry: crate::manifest::Entry {
                    input: inputs[i].clone(),
                    output: outputs[i].clone(),
                    input_bytes,
                    input_modified,
                    settings: settings.clone(),
                    result: None,
                },
            })
        })
        .collect();
    Ok(Planned {
        inputs,
        outputs,
        skips,
        resumed,
        resumed_results,
        records,
    })
}
