//! The resume manifest: one JSON line per finished output in `OUT/batchwise-manifest.jsonl`,
//! appended just before the output is renamed into place. Rerunning the same job (same settings)
//! after a crash or `kill -9` reuses every output the manifest lists whose file exists and whose
//! input has not changed, and writes the rest to the paths an uninterrupted run would have used.
//! Classifiers, embedders and face detectors, whose results go to one file written at the end,
//! record each image's result in its line instead, so a resumed run rebuilds that file whole.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "batchwise-manifest.jsonl";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub input: PathBuf,
    pub output: PathBuf,
    /// The input's size and modification time (seconds), to notice a changed input.
    pub input_bytes: u64,
    pub input_modified: u64,
    /// The job settings that made the output (model, precision, format, ...).
    pub settings: String,
    /// What a classifier, embedder or face detector gave this input, for the collected files
    /// (`labels.csv`, `embeddings.npy`, `faces.json`) that are written once at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// An input file's size and modification time, as the manifest records them.
pub fn stamp(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    let modified = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some((m.len(), modified))
}

/// The entries of the manifest in `dir` made with `settings`; lines that do not parse (a line
/// cut by a crash) are ignored.
pub fn read(dir: &Path, settings: &str) -> Vec<Entry> {
    let Ok(text) = std::fs::read_to_string(dir.join(FILE_NAME)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .filter(|e| e.settings == settings)
        .collect()
}

/// Whether `entry` still describes a finished output: the file exists and the input is unchanged.
pub fn still_done(entry: &Entry) -> bool {
    entry.output.is_file() && input_unchanged(entry)
}

/// Whether the entry's input file is the one it was made from (same size and modification time).
pub fn input_unchanged(entry: &Entry) -> bool {
    stamp(&entry.input) == Some((entry.input_bytes, entry.input_modified))
}

/// Appends entries to the manifest of one output folder, from any thread.
pub struct Writer {
    file: Mutex<std::fs::File>,
}

impl Writer {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(FILE_NAME))?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Records `entry` as one line, flushed to the file before returning.
    pub fn append(&self, entry: &Entry) -> Result<(), String> {
        let mut line = serde_json::to_string(entry).expect("entries serialise");
        line.push('\n');
        let mut f = self
            .file
            .lock()
            .map_err(|_| "the manifest lock".to_owned())?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.flush())
            .map_err(|e| format!("cannot record the output in {FILE_NAME}: {e}"))
    }
}

/// Removes temporary files (`.name.PID.partial`) that processes which no longer run left in
/// `dir` (a `kill -9` mid-write). Where running processes cannot be told (no `/proc`), nothing is
/// removed.
pub fn remove_stale_partials(dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(std::result::Result::ok)
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".partial"))
        else {
            continue;
        };
        let Some(pid) = rest.rsplit('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
