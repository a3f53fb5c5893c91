//! Temporary output files, and the record that lets a later run clean up after a dead one.
//!
//! Every output is written to a temporary file beside it and renamed into place
//! ([`super::write_atomic_then`]). A `kill -9` or a power cut can leave such a file behind. To
//! remove those — and never a user's file — each process that writes temporary files in a folder
//! first writes their names into a *run record* in that folder, `.batchwise-run-NONCE.lock`, and
//! holds an exclusive lock on it (`File::try_lock`: `flock` on Unix, `LockFileEx` on Windows) for
//! as long as any of them exists. The operating system frees the lock when the process dies,
//! however it dies. A later run ([`remove_stale`]) opens each record it finds: one it can lock
//! belongs to a dead run, and exactly the files it names are removed, then the record. A file
//! that no record names is never touched, whatever its name.
//!
//! NONCE is random per process (16 hex digits); a record is removed by its own process as soon as
//! the last temporary file it names is gone, so a finished run leaves nothing.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

const RECORD_PREFIX: &str = ".batchwise-run-";
const RECORD_SUFFIX: &str = ".lock";
const TEMP_SUFFIX: &str = ".partial";
/// A record longer than this is not read (a real one names the files of one run in one folder).
const RECORD_MAX_BYTES: u64 = 64 << 20;

/// This process's records, by folder: the locked file and how many of its temporary files exist.
static RECORDS: Mutex<Option<HashMap<PathBuf, Record>>> = Mutex::new(None);

struct Record {
    file: File,
    path: PathBuf,
    live: usize,
}

fn nonce() -> u64 {
    static NONCE: OnceLock<u64> = OnceLock::new();
    *NONCE.get_or_init(|| {
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    })
}

/// The name of this process's run record in any folder.
fn record_name() -> String {
    format!("{RECORD_PREFIX}{:016x}{RECORD_SUFFIX}", nonce())
}

/// A temporary file for the output named `name`: its name recorded (and synced) in this process's
/// locked run record in `dir` before the file is made. Dropping it removes the file if it was not
/// renamed, and the record once no temporary file of this process is left in `dir`.
pub struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    pub fn new(dir: &Path, name: &str) -> Result<Self, String> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let temp_name = format!(".{name}.batchwise-{:016x}-{n}{TEMP_SUFFIX}", nonce());
        let cannot = |e: std::io::Error| format!("cannot write in {}: {e}", dir.display());
        let mut records = RECORDS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let records = records.get_or_insert_with(HashMap::new);
        let record = match records.entry(dir.to_path_buf()) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let path = dir.join(record_name());
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(cannot)?;
                file.lock().map_err(cannot)?;
                v.insert(Record {
                    file,
                    path,
                    live: 0,
                })
            }
        };
        let mut line = temp_name.clone().into_bytes();
        line.push(b'\n');
        record
            .file
            .write_all(&line)
            .and_then(|()| record.file.sync_data())
            .map_err(cannot)?;
        record.live += 1;
        Ok(TempFile {
            dir: dir.to_path_buf(),
            path: dir.join(temp_name),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let mut records = RECORDS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(records) = records.as_mut() else {
            return;
        };
        let Some(record) = records.get_mut(&self.dir) else {
            return;
        };
        record.live -= 1;
        if record.live == 0 {
            let record = records
                .remove(&self.dir)
                .expect("the record was just found");
            let _ = std::fs::remove_file(&record.path);
            drop(record.file);
        }
    }
}

/// Removes what dead runs left under `dir` (a `kill -9` or a power cut mid-write): the files
/// named in each run record whose lock is free, then the record. Records of running processes
/// (this one included) and every file no record names are kept.
pub fn remove_stale(dir: &Path) {
    let ours = record_name();
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        let name = entry.file_name().to_string_lossy();
        let is_record = name.starts_with(RECORD_PREFIX) && name.ends_with(RECORD_SUFFIX);
        if !is_record || name == ours || !entry.file_type().is_file() {
            continue;
        }
        let Ok(mut file) = OpenOptions::new().read(true).write(true).open(entry.path()) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // its run is still going
        }
        let mut text = String::new();
        if std::io::Read::by_ref(&mut file)
            .take(RECORD_MAX_BYTES)
            .read_to_string(&mut text)
            .is_err()
        {
            continue;
        }
        let folder = entry.path().parent().unwrap_or(dir);
        for temp in text.lines().filter(|l| is_temp_name(l)) {
            let path = folder.join(temp);
            if path.symlink_metadata().is_ok_and(|m| m.is_file()) {
                let _ = std::fs::remove_file(path);
            }
        }
        drop(file);
        let _ = std::fs::remove_file(entry.path());
    }
}

/// Whether a record's line is a plain temporary-file name (no folder part), as [`TempFile`] makes.
fn is_temp_name(line: &str) -> bool {
    line.starts_with('.')
        && line.ends_with(TEMP_SUFFIX)
        && line.contains(".batchwise-")
        && !line.contains(['/', '\\'])
        && line != "."
        && line != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_temporary_file_is_recorded_while_it_exists_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let a = TempFile::new(dir.path(), "a.png").unwrap();
        let b = TempFile::new(dir.path(), "b.png").unwrap();
        std::fs::write(a.path(), b"a").unwrap();
        let record = std::fs::read_to_string(dir.path().join(record_name())).unwrap();
        let a_name = a.path().file_name().unwrap().to_str().unwrap();
        let b_name = b.path().file_name().unwrap().to_str().unwrap();
        assert_eq!(record, format!("{a_name}\n{b_name}\n"));
        // This process's own record is not stale.
        remove_stale(dir.path());
        assert!(a.path().exists());
        drop(a);
        assert_eq!(names(dir.path()), [record_name()]);
        drop(b);
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[test]
    fn only_files_a_dead_run_recorded_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = ".batchwise-run-00000000000000aa.lock";
        let alive = ".batchwise-run-00000000000000bb.lock";
        let dead_temp = ".x.png.batchwise-00000000000000aa-0.partial";
        let alive_temp = ".y.png.batchwise-00000000000000bb-0.partial";
        // Names a record could hold but that are not temporary files this program makes, and
        // files of our format that no record names: all a user's.
        let users = [
            "x.png",
            ".z.png.batchwise-00000000000000aa-9.partial",
            ".x.png.4194305.partial",
        ];
        let record = format!("{dead_temp}\nx.png\n../outside.partial\n");
        std::fs::write(dir.path().join(dead), record).unwrap();
        std::fs::write(dir.path().join(alive), format!("{alive_temp}\n")).unwrap();
        for name in users.iter().chain([&dead_temp, &alive_temp]) {
            std::fs::write(dir.path().join(name), b"data").unwrap();
        }
        // A running process holds its record's lock (another open file description here).
        let held = File::open(dir.path().join(alive)).unwrap();
        held.lock().unwrap();
        remove_stale(dir.path());
        let mut want: Vec<String> = users
            .iter()
            .chain([&alive, &alive_temp])
            .map(ToString::to_string)
            .collect();
        want.sort();
        assert_eq!(names(dir.path()), want);
        drop(held);
        remove_stale(dir.path());
        let mut want: Vec<String> = users.iter().map(ToString::to_string).collect();
        want.sort();
        assert_eq!(names(dir.path()), want);
    }
}
