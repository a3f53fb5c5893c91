//! Before anything runs: the job's files, their outputs, what is skipped and why, and what a
//! previous run of the same job finished (resume).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};

use super::listing::{Listed, in_shard, list_inputs};
use super::naming::{ExportOptions, Overwrite, check_pattern, plan_outputs};
use super::resume::{Record, settings_key};
use super::{ItemResult, JobSpec};
use crate::builtin::Task;

/// A job's files: inputs, their outputs, and why any is skipped or fails before it is read.
pub(crate) struct Planned {
    pub inputs: Vec<PathBuf>,
    pub outputs: Vec<PathBuf>,
    pub skips: Vec<Option<String>>,
    /// Why an item fails before it is read (the folder walk could not read it).
    pub failures: Vec<Option<String>>,
    /// Finished by the run this one resumes.
    pub resumed: Vec<bool>,
    /// The collected results the manifest holds for them (labels, embeddings, faces).
    pub resumed_results: Vec<Option<ItemResult>>,
    /// What the manifest records for each output (None where the input cannot be stamped).
    pub records: Vec<Option<Record>>,
    /// With `--keep-steps`, each item's files of the chain's kept steps (beside its output,
    /// [`super::naming::kept_path`]) and their records, in the chain's order; else empty.
    pub kept: Vec<Vec<PathBuf>>,
    pub kept_records: Vec<Vec<Option<Record>>>,
}

impl Planned {
    /// Whether item `i` is read at all (not skipped, not failed, not finished before).
    pub fn todo(&self, i: usize) -> bool {
        self.skips[i].is_none() && self.failures[i].is_none() && !self.resumed[i]
    }
}

/// Whether the task's results are collected into files over the whole job (no file per image).
pub(crate) fn collects(spec: &JobSpec) -> bool {
    let task = spec.model.task;
    matches!(task, Task::Classify | Task::Embed | Task::Tensors)
        || (task == Task::DetectFaces && !spec.analysis.annotate)
}

/// A chain's job whose every image to do fits one tile: `spec` with the chain composed for whole
/// images ([`crate::chain::Tiling::WholeImages`]: its steps compute no context beyond the images
/// for the steps after them, as the steps run as separate jobs would not) and that tile pinned, so
/// that every item is one whole image. None for one model, for Auto's tile, and where an image is
/// larger than the tile or its header cannot be read (the chain then runs in tiles).
pub(crate) fn whole_images(spec: &JobSpec, planned: &Planned) -> Result<Option<JobSpec>> {
    let Some(model) = crate::chain::for_whole_images(&spec.model)? else {
        return Ok(None);
    };
    // Only for a tile asked for: Auto's tile depends on the kernels the loaded model runs.
    let Some(tile) = spec.tile_size else {
        return Ok(None);
    };
    let fits = |path: &PathBuf| {
        // Regular files only: a named pipe would block the reader.
        std::fs::metadata(path).is_ok_and(|m| m.is_file())
            && image::image_dimensions(path).is_ok_and(|(w, h)| w <= tile && h <= tile)
    };
    let all = (0..planned.inputs.len())
        .filter(|&i| planned.todo(i))
        .all(|i| fits(&planned.inputs[i]));
    Ok(all.then(|| JobSpec {
        model,
        tile_size: Some(tile),
        ..spec.clone()
    }))
}

/// Lists the inputs, names the outputs and reads what a previous run of the same job finished.
/// Creates the output folder, removes what a dead run left there, and opens the manifest writer.
pub(crate) fn plan(spec: &JobSpec) -> Result<Planned> {
    let (mut planned, keys, settings) = survey(spec)?;
    std::fs::create_dir_all(&spec.output_dir).with_context(|| {
        format!(
            "cannot create the output folder {}",
            spec.output_dir.display()
        )
    })?;
    super::export::temp::remove_stale(&spec.output_dir);
    let writer = std::sync::Arc::new(
        crate::manifest::Writer::open(&spec.output_dir).with_context(|| {
            format!(
                "cannot write {} in {}",
                crate::manifest::FILE_NAME,
                spec.output_dir.display()
            )
        })?,
    );
    let (inputs, outputs) = (&planned.inputs, &planned.outputs);
    let (kept, labels) = (&planned.kept, kept_labels(spec)?);
    let record = |i: usize, output: &PathBuf, step: Option<&String>| {
        let (input_bytes, input_modified_ns) = crate::manifest::stamp(&inputs[i])?;
        Some(Record {
            writer: writer.clone(),
            entry: crate::manifest::Entry {
                input: keys[i].clone(),
                output: output.strip_prefix(&spec.output_dir).ok()?.to_path_buf(),
                input_bytes,
                input_modified_ns,
                output_bytes: 0,
                output_hash: 0,
                settings: settings.clone(),
                result: None,
                step: step.cloned(),
            },
        })
    };
    let kept_records = (0..inputs.len())
        .map(|i| {
            let steps = kept[i].iter().zip(&labels);
            steps
                .map(|(path, label)| record(i, path, Some(label)))
                .collect()
        })
        .collect();
    planned.records = (0..inputs.len())
        .map(|i| record(i, &outputs[i], None))
        .collect();
    planned.kept_records = kept_records;
    Ok(planned)
}

/// What [`plan`] finds, touching nothing on disk (no folder created, no manifest opened, no
/// temporary file removed): the inputs, their outputs, skips and failures with the reasons, and
/// what a previous run finished; no records yet. Also each input's manifest key and the job's
/// settings key. `--dry-run` prints it.
pub(crate) fn survey(spec: &JobSpec) -> Result<(Planned, Vec<PathBuf>, String)> {
    check_pattern(&spec.export.pattern, spec.export.format).map_err(|e| anyhow!(e))?;
    check_scale(spec)?;
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
    drop_own_outputs(&mut listed, spec);
    if let Some((i, n)) = spec.shard {
        listed.retain(|l| in_shard(&l.rel, i, n));
    }
    if listed.is_empty() {
        return Err(anyhow!("no input images were found"));
    }
    let settings = settings_key(spec);
    let keys: Vec<PathBuf> = listed
        .iter()
        .map(|l| crate::manifest::input_key(&l.path))
        .collect();
    let labels = kept_labels(spec)?;
    let (reserved, resumed, resumed_results) = resume(spec, &settings, &keys, &labels);
    // Models that collect their results write no file per image: no per-image policy applies.
    let export = if collects(spec) {
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
        crate::chain::written_scale(&spec.model),
        &reserved,
        &labels,
    );
    let kept = outputs
        .iter()
        .map(|out| {
            labels
                .iter()
                .map(|l| super::naming::kept_path(out, l))
                .collect()
        })
        .collect();
    let inputs: Vec<PathBuf> = listed.iter().map(|l| l.path.clone()).collect();
    let failures: Vec<Option<String>> = listed.iter().map(|l| l.error.clone()).collect();
    let skips: Vec<Option<String>> = listed.into_iter().map(|l| l.skip).collect();
    let planned = Planned {
        records: vec![None; inputs.len()],
        kept,
        kept_records: Vec::new(),
        inputs,
        outputs,
        skips,
        failures,
        resumed,
        resumed_results,
    };
    Ok((planned, keys, settings))
}

/// The labels of the chain's kept steps with `--keep-steps` ([`crate::chain::step_labels`]),
/// else none; `--keep-steps` on one model is an error.
fn kept_labels(spec: &JobSpec) -> Result<Vec<String>> {
    if !spec.export.keep_steps {
        return Ok(Vec::new());
    }
    if spec.model.steps.len() < 2 {
        return Err(anyhow!(
            "--keep-steps keeps the steps of a chain (-m a,b); {} is one model",
            spec.model.id
        ));
    }
    if spec.model.input_size > 0 {
        // Refused with the reason where the job composes the chain (`chain::keep_steps`).
        crate::chain::keep_steps(&spec.model)?;
    }
    Ok(crate::chain::step_labels(&spec.model))
}

/// The largest `--scale`.
pub const MAX_SCALE: f32 = 16.0;

/// `--scale` is for image-to-image models (the others write at the input's size), above 0 and
/// at most [`MAX_SCALE`].
fn check_scale(spec: &JobSpec) -> Result<()> {
    let Some(scale) = spec.export.scale else {
        return Ok(());
    };
    if !(scale > 0.0 && scale <= MAX_SCALE) {
        return Err(anyhow!(
            "--scale {scale}: the output's scale is above 0 and at most {MAX_SCALE}"
        ));
    }
    if spec.model.input_size > 0 {
        return Err(anyhow!(
            "--scale {scale}: {} is not an image-to-image model (its outputs are at the input's \
             size); --scale sets the output scale of upscalers and restorers",
            spec.model.id
        ));
    }
    Ok(())
}

/// What [`resume`] finds: reserved outputs, finished items, their collected results.
type Resumed = (
    HashMap<PathBuf, PathBuf>,
    Vec<bool>,
    Vec<Option<ItemResult>>,
);

/// Resume: what a previous run of the same job (`settings`) finished, for the inputs `keys`.
/// Per-image outputs count when their input is unchanged and their file is the one recorded;
/// collected results (labels, embeddings, faces) when the input is unchanged and the manifest
/// holds them. Returns the outputs the previous run named that are still its own (absent, empty,
/// or the file it wrote), which keep their paths; whether each item is finished; and the results.
fn resume(spec: &JobSpec, settings: &str, keys: &[PathBuf], kept: &[String]) -> Resumed {
    let dir = &spec.output_dir;
    let collects = collects(spec);
    let keeps_result = matches!(
        spec.model.task,
        Task::Classify | Task::Embed | Task::DetectFaces | Task::Tensors
    );
    // The latest entry of each input, and of each of its kept steps (`--keep-steps`).
    let (mut latest, mut steps) = (HashMap::new(), HashMap::new());
    for e in crate::manifest::read(dir, Some(settings)) {
        match e.step.clone() {
            None => latest.insert(e.input.clone(), e),
            Some(step) => steps.insert((e.input.clone(), step), e),
        };
    }
    // An item whose kept steps are asked for is finished with every one of them.
    let steps_done = |key: &PathBuf| {
        kept.iter().all(|label| {
            steps
                .get(&(key.clone(), label.clone()))
                .is_some_and(|e| crate::manifest::still_done(dir, e))
        })
    };
    let reserved = latest
        .values()
        .filter(|_| !collects)
        .filter(|e| {
            // Absent, empty (a write a power cut lost) or the very file written: not a user's.
            let path = crate::manifest::output_path(dir, e);
            std::fs::symlink_metadata(&path).map_or(true, |m| m.is_file() && m.len() == 0)
                || crate::manifest::output_intact(dir, e)
        })
        .map(|e| (e.input.clone(), crate::manifest::output_path(dir, e)))
        .collect();
    // Per item: None (not finished), Some(None) (its own file is there), Some(Some(result)).
    let finished: Vec<Option<Option<ItemResult>>> = keys
        .iter()
        .map(|key| {
            let entry = latest.get(key)?;
            let done = if collects {
                crate::manifest::input_unchanged(entry)
            } else {
                crate::manifest::still_done(dir, entry)
            };
            if !done || !steps_done(key) {
                return None;
            }
            match &entry.result {
                Some(r) if keeps_result => serde_json::from_value(r.clone()).ok().map(Some),
                None if !keeps_result => Some(None),
                _ => None,
            }
        })
        .collect();
    let resumed = finished.iter().map(Option::is_some).collect();
    let results = finished.into_iter().map(Option::flatten).collect();
    (reserved, resumed, results)
}

/// Leaves out of the inputs what lies in the output folder and is this program's: the manifest
/// and the outputs it lists (an output folder equal to an input folder), or everything in it
/// when the output folder is inside an input folder; files named on their own stay.
fn drop_own_outputs(listed: &mut Vec<Listed>, spec: &JobSpec) {
    let Ok(out) = spec.output_dir.canonicalize() else {
        return;
    };
    let ours: HashSet<PathBuf> = crate::manifest::read(&spec.output_dir, None)
        .iter()
        .map(|e| out.join(&e.output))
        .chain([out.join(crate::manifest::FILE_NAME)])
        .collect();
    let inside_an_input = spec
        .inputs
        .iter()
        .filter_map(|i| i.canonicalize().ok())
        .any(|i| i.is_dir() && out.starts_with(&i) && out != i);
    listed.retain(|l| {
        let Ok(path) = l.path.canonicalize() else {
            return true;
        };
        spec.inputs.contains(&l.path)
            || !path.starts_with(&out)
            || !(inside_an_input || ours.contains(&path))
    });
}
