//! Writing results: images one file each ([`image`]; PNG and TIFF by rows as they complete,
//! [`stream`]; encoder settings in [`encode`], TIFF files with their ICC profile and EXIF in
//! [`tiff_file`], `--scale` in [`resample`]), and the results a classifier, embedder or face detector collects over a job, each
//! kind behind [`Exporter`] in a file of its own ([`labels`], [`embeddings`], [`faces`]). Every
//! file is written to a temporary file and renamed: never a partial output.

pub mod embeddings;
pub mod encode;
pub mod faces;
pub mod image;
pub mod labels;
pub mod resample;
pub mod stream;
pub mod temp;
pub mod tensors;
pub mod tiff_file;

use std::path::{Path, PathBuf};

use super::ItemResult;

/// Writes the results collected over a job into files of the output folder, whole or not at all.
pub trait Exporter: Send + Sync {
    /// The main file it writes (a second one may sit beside it: `labels.json`), which the
    /// items' reports name as their output.
    fn path(&self, dir: &Path) -> PathBuf;

    /// Writes every result, in input order: `(input, result)`.
    fn write(&self, path: &Path, rows: &[(&Path, &ItemResult)]) -> Result<(), String>;
}

/// The exporter of a model's collected results, if it collects any.
pub fn for_model(model: &crate::builtin::ModelChoice) -> Option<Box<dyn Exporter>> {
    use crate::builtin::Task;
    match model.task {
        Task::Tensors => Some(Box::new(tensors::Tensors {
            outputs: model.tensor_outputs.clone(),
        })),
        Task::Classify => Some(Box::new(labels::Labels)),
        Task::Embed => Some(Box::new(embeddings::Embeddings)),
        Task::DetectFaces => Some(Box::new(faces::Faces)),
        Task::Upscale | Task::Enhance | Task::Segment => None,
    }
}

/// Pretty JSON of a value that always serialises.
pub(crate) fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// Writes `path` through `write` into a temporary file beside it, then renames it: never a partial
/// output file.
pub(crate) fn write_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    write_atomic_then(path, write, |_| Ok(()))
}

/// As [`write_atomic`], calling `before_rename` with the temporary file (the resume manifest's
/// record) between writing it, synced to the disk, and renaming it. The temporary file is a
/// [`temp::TempFile`], its name recorded so that a later run can remove it if this one dies.
pub(crate) fn write_atomic_then(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
    before_rename: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the folder {}: {e}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = temp::TempFile::new(dir, &name)?;
    let tmp = temp.path();
    let sync = |tmp: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let result = write(tmp)
        .and_then(|()| sync(tmp))
        .and_then(|()| before_rename(tmp))
        .and_then(|()| {
            std::fs::rename(tmp, path)
                .map_err(|e| format!("cannot move the output into {}: {e}", path.display()))
        });
    if result.is_ok() {
        // The rename itself reaches the disk with its folder (POSIX); where a folder cannot be
        // opened for that (Windows), the rename is already durable or the OS gives no way.
        if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            log::debug!("cannot sync the folder {}: {e}", dir.display());
        }
    }
    drop(temp); // removes the file where it was not renamed, then its record when it was the last
    result
}

pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_atomic(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    })
}
