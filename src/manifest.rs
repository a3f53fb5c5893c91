//! The resume manifest: one JSON line per finished output in `OUT/batchwise-manifest.jsonl`,
//! appended (and synced to disk) just before the output, itself synced, is renamed into place.
//! Rerunning the same job (same settings) after a crash, `kill -9` or a power cut reuses every
//! output the manifest lists whose input is unchanged (its absolute path, size and modification
//! time) and whose file is still the one written (its size and a hash of its first and last
//! 64 KiB), and writes the rest to the paths an uninterrupted run would have used.
//!
//! Outputs are recorded relative to the output folder, so a rerun from another working directory
//! resolves them inside `OUT`; an entry whose output would resolve outside it is ignored.
//! Classifiers, embedders and face detectors, whose results go to one file written at the end,
//! record each image's result in its line instead, so a resumed run rebuilds that file whole.

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "batchwise-manifest.jsonl";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The input, as an absolute path.
    #[serde(with = "stored_path")]
    pub input: PathBuf,
    /// The output, relative to the output folder (plain names only: no `..`, no root).
    #[serde(with = "stored_path")]
    pub output: PathBuf,
    /// The input's size and modification time (nanoseconds since 1970), to notice a changed input.
    pub input_bytes: u64,
    pub input_modified_ns: u64,
    /// The output file's size and [`fingerprint`] hash when it was written (0 for results that
    /// write no file of their own).
    pub output_bytes: u64,
    pub output_hash: u64,
    /// The job settings that made the output (model, precision, format, ...).
    pub settings: String,
    /// What a classifier, embedder or face detector gave this input, for the collected files
    /// (`labels.csv`, `embeddings.npy`, `faces.json`) that are written once at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// A chain's kept step this output is (`--keep-steps`), by its label; None: the job's
    /// output itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// Paths as JSON: a string where the path is Unicode, else (Unix) its bytes, so that a file name
/// that is not UTF-8 is recorded exactly and never fails the line.
mod stored_path {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Text(String),
        Bytes { bytes: Vec<u8> },
    }

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        let stored = match path.to_str() {
            Some(text) => Stored::Text(text.to_owned()),
            None => Stored::Bytes { bytes: bytes(path) },
        };
        stored.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(match Stored::deserialize(d)? {
            Stored::Text(text) => PathBuf::from(text),
            Stored::Bytes { bytes } => from_bytes(bytes),
        })
    }

    #[cfg(unix)]
    fn bytes(path: &Path) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt as _;
        path.as_os_str().as_bytes().to_vec()
    }

    #[cfg(unix)]
    fn from_bytes(bytes: Vec<u8>) -> PathBuf {
        use std::os::unix::ffi::OsStringExt as _;
        PathBuf::from(std::ffi::OsString::from_vec(bytes))
    }

    // Elsewhere a path that is not Unicode (an unpaired surrogate on Windows) is recorded lossily:
    // the entry then names no file and that output is simply made again.
    #[cfg(not(unix))]
    fn bytes(path: &Path) -> Vec<u8> {
        path.to_string_lossy().as_bytes().to_vec()
    }

    #[cfg(not(unix))]
    fn from_bytes(bytes: Vec<u8>) -> PathBuf {
        PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// A file's size and modification time (nanoseconds since 1970), as the manifest records an input.
pub fn stamp(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    let modified = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((m.len(), u64::try_from(modified).ok()?))
}

/// The path an input is recorded under: absolute (symbolic links resolved where it exists), so
/// that the same relative name given from another working directory is another input.
pub fn input_key(path: &Path) -> PathBuf {
    path.canonicalize()
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// FNV-1a, 64-bit: a hash that is the same on every platform and Rust release.
pub fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// How much of each end of a file [`fingerprint`] reads.
const FINGERPRINT_SPAN: u64 = 64 << 10;

/// A file's size and a cheap hash of it (its first and last 64 KiB and its size): enough to tell
/// a complete output from one cut short, replaced or zeroed, without reading it whole.
pub fn fingerprint(path: &Path) -> std::io::Result<(u64, u64)> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut head = Vec::new();
    (&mut file).take(FINGERPRINT_SPAN).read_to_end(&mut head)?;
    let mut tail = Vec::new();
    if len > FINGERPRINT_SPAN {
        file.seek(std::io::SeekFrom::Start(len - FINGERPRINT_SPAN))?;
        file.take(FINGERPRINT_SPAN).read_to_end(&mut tail)?;
    }
    Ok((len, fnv1a(&tail, fnv1a(&head, len))))
}

/// The entries of the manifest in `dir` made with `settings` (every entry with None); lines that
/// do not parse (a line cut by a crash, an older format) and entries whose output would resolve
/// outside `dir` are ignored.
pub fn read(dir: &Path, settings: Option<&str>) -> Vec<Entry> {
    let Ok(text) = std::fs::read_to_string(dir.join(FILE_NAME)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .filter(|e| settings.is_none_or(|s| e.settings == s))
        .filter(|e| contained(&e.output))
        .collect()
}

/// Whether `rel` names a file inside the folder it is relative to: plain names only.
pub fn contained(rel: &Path) -> bool {
    rel.components().next().is_some() && rel.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The entry's output file inside the output folder `dir`.
pub fn output_path(dir: &Path, entry: &Entry) -> PathBuf {
    dir.join(&entry.output)
}

/// Whether the entry's output file is the one it recorded: a regular file (not a link) of the
/// recorded size, not empty, with the recorded hash.
pub fn output_intact(dir: &Path, entry: &Entry) -> bool {
    let path = output_path(dir, entry);
    let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
    regular
        && entry.output_bytes > 0
        && fingerprint(&path).is_ok_and(|f| f == (entry.output_bytes, entry.output_hash))
}

/// Whether `entry` still describes a finished output in `dir`: the input is unchanged and the
/// file is intact.
pub fn still_done(dir: &Path, entry: &Entry) -> bool {
    input_unchanged(entry) && output_intact(dir, entry)
}

/// Whether the entry's input file is the one it was made from (same size and modification time).
pub fn input_unchanged(entry: &Entry) -> bool {
    stamp(&entry.input) == Some((entry.input_bytes, entry.input_modified_ns))
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

    /// Records `entry` as one line, on the disk (synced) before returning.
    pub fn append(&self, entry: &Entry) -> Result<(), String> {
        let mut line = serde_json::to_string(entry)
            .map_err(|e| format!("cannot record the output in {FILE_NAME}: {e}"))?;
        line.push('\n');
        let mut f = self
            .file
            .lock()
            .map_err(|_| "the manifest lock".to_owned())?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|e| format!("cannot record the output in {FILE_NAME}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(output: &str) -> Entry {
        Entry {
            input: PathBuf::from("/in/x.png"),
            output: PathBuf::from(output),
            input_bytes: 1,
            input_modified_ns: 2,
            output_bytes: 3,
            output_hash: 4,
            settings: "s".into(),
            result: None,
            step: None,
        }
    }

    #[test]
    fn outputs_outside_the_folder_and_other_settings_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = [
            "x.png",
            "../x.png",
            "/abs/x.png",
            "sub/./y.png",
            "sub/y.png",
        ]
        .iter()
        .map(|o| serde_json::to_string(&entry(o)).unwrap())
        .chain(["{\"input\": \"old format\"}".to_owned()])
        .collect();
        std::fs::write(dir.path().join(FILE_NAME), lines.join("\n")).unwrap();
        let outputs: Vec<PathBuf> = read(dir.path(), Some("s"))
            .into_iter()
            .map(|e| e.output)
            .collect();
        // `sub/./y.png` is `sub/y.png` once parsed into components.
        let want: Vec<PathBuf> = ["x.png", "sub/./y.png", "sub/y.png"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(outputs, want);
        assert!(read(dir.path(), Some("other")).is_empty());
    }

    #[test]
    fn a_zero_byte_or_changed_output_is_not_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        std::fs::write(&path, vec![7u8; 200_000]).unwrap();
        let (bytes, hash) = fingerprint(&path).unwrap();
        let e = Entry {
            output_bytes: bytes,
            output_hash: hash,
            ..entry("x.png")
        };
        assert!(output_intact(dir.path(), &e));
        // The same size, the last byte changed.
        let mut data = vec![7u8; 200_000];
        data[199_999] = 8;
        std::fs::write(&path, &data).unwrap();
        assert!(!output_intact(dir.path(), &e));
        std::fs::write(&path, b"").unwrap();
        let empty = Entry {
            output_bytes: 0,
            output_hash: fingerprint(&path).unwrap().1,
            ..entry("x.png")
        };
        assert!(!output_intact(dir.path(), &empty));
    }

    #[cfg(unix)]
    #[test]
    fn a_name_that_is_not_utf8_is_recorded_exactly() {
        use std::os::unix::ffi::OsStrExt as _;
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
        let e = Entry {
            input: Path::new("/in").join(name),
            ..entry("x.png")
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), e);
    }
}
