//! Which files in the watched folders are complete and waiting: images that changed, once their
//! size and modification time have held still for the settle time and (where the system reports
//! it: inotify on Linux) the program writing them has closed them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use notify::EventKind;
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};

/// A file seen changing, not yet handed to a job.
struct Pending {
    /// Its size and modification time at the last look; None: not looked at since it changed.
    seen: Option<(u64, Option<SystemTime>)>,
    /// When `seen` was taken (or the file last changed).
    since: Instant,
    /// Opened, and not closed since (inotify reports both; other systems neither).
    open: bool,
}

pub struct Arrivals {
    folders: Vec<PathBuf>,
    output: PathBuf,
    settle: Duration,
    pending: HashMap<PathBuf, Pending>,
}

impl Arrivals {
    /// `folders` and `output` as absolute, canonical paths (as the watcher reports them).
    pub fn new(folders: Vec<PathBuf>, output: PathBuf, settle: Duration) -> Self {
        Self {
            folders,
            output,
            settle,
            pending: HashMap::new(),
        }
    }

    /// An image in a watched folder, not in the output folder, not a hidden or temporary file
    /// (`.name.partial`, rsync's `.name.XXXXXX`, macOS's `._name`).
    pub fn wanted(&self, path: &Path) -> bool {
        let hidden = path
            .file_name()
            .is_none_or(|n| n.to_string_lossy().starts_with('.'));
        !hidden
            && crate::job::is_image_name(path)
            && !path.starts_with(&self.output)
            && self.folders.iter().any(|f| path.starts_with(f))
    }

    /// The file changed (or appeared): it waits until it holds still again.
    pub fn changed(&mut self, path: &Path) {
        if !self.wanted(path) {
            return;
        }
        let p = self.pending.entry(path.to_path_buf()).or_insert(Pending {
            seen: None,
            since: Instant::now(),
            open: false,
        });
        p.seen = None;
        p.since = Instant::now();
    }

    /// Every image under `dir` (a folder that appeared whole, or the start and a rescan).
    pub fn scan(&mut self, dir: &Path) {
        for entry in walkdir::WalkDir::new(dir)
            .follow_links(true)
            .into_iter()
            .flatten()
        {
            if entry.file_type().is_file() {
                self.changed(entry.path());
            }
        }
    }

    /// Every watched folder, whole.
    pub fn scan_all(&mut self) {
        for folder in self.folders.clone() {
            self.scan(&folder);
        }
    }

    /// Forgets what is no longer there (a file, or everything under a folder).
    pub fn removed(&mut self, path: &Path) {
        self.pending.retain(|p, _| !p.starts_with(path));
    }

    /// Applies one event from the watcher.
    pub fn apply(&mut self, kind: EventKind, paths: &[PathBuf]) {
        match kind {
            EventKind::Access(AccessKind::Open(_)) => {
                // Only a file already waiting: this program's own reads open files too.
                for p in paths {
                    if let Some(pending) = self.pending.get_mut(p) {
                        pending.open = true;
                    }
                }
            }
            EventKind::Access(AccessKind::Close(mode)) => {
                for p in paths {
                    if let Some(pending) = self.pending.get_mut(p) {
                        pending.open = false;
                    }
                    if mode == AccessMode::Write {
                        self.changed(p);
                    }
                }
            }
            EventKind::Access(_) => {}
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                for p in paths {
                    self.removed(p);
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) if paths.len() == 2 => {
                self.removed(&paths[0]);
                self.appeared(&paths[1]);
            }
            _ => {
                for p in paths {
                    self.appeared(p);
                }
            }
        }
    }

    /// A file that changed, or a folder that appeared with whatever is inside it.
    fn appeared(&mut self, path: &Path) {
        if path.is_dir() {
            if !path.starts_with(&self.output) {
                self.scan(path);
            }
        } else {
            self.changed(path);
        }
    }

    /// The files that have held still for the settle time and are closed, sorted; they leave
    /// the waiting list (a later change brings one back). Files that are gone are forgotten.
    pub fn take_ready(&mut self) -> Vec<PathBuf> {
        let now = Instant::now();
        let mut ready = Vec::new();
        self.pending.retain(|path, p| {
            let Ok(meta) = std::fs::metadata(path) else {
                return false;
            };
            if p.open {
                return true;
            }
            let stamp = (meta.len(), meta.modified().ok());
            if p.seen != Some(stamp) {
                p.seen = Some(stamp);
                p.since = now;
                return true;
            }
            if now.duration_since(p.since) < self.settle {
                return true;
            }
            ready.push(path.clone());
            false
        });
        ready.sort();
        ready
    }

    /// How many files wait.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_ready_once_it_holds_still_and_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let out = root.join("out");
        let mut arrivals = Arrivals::new(vec![root.clone()], out.clone(), Duration::ZERO);
        let a = root.join("a.png");
        std::fs::write(&a, b"half").unwrap();
        arrivals.apply(
            EventKind::Create(notify::event::CreateKind::File),
            std::slice::from_ref(&a),
        );
        arrivals.apply(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            std::slice::from_ref(&a),
        );
        // Open: not ready however long it holds still.
        assert!(arrivals.take_ready().is_empty());
        assert!(arrivals.take_ready().is_empty());
        std::fs::write(&a, b"half and the rest").unwrap();
        arrivals.apply(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            std::slice::from_ref(&a),
        );
        // The first look stamps it; the next one, with the stamp unchanged, takes it.
        assert!(arrivals.take_ready().is_empty());
        assert_eq!(arrivals.take_ready(), std::slice::from_ref(&a));
        assert_eq!(arrivals.waiting(), 0);
        // This program's own read of it (open, close) does not bring it back.
        arrivals.apply(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            std::slice::from_ref(&a),
        );
        arrivals.apply(
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            std::slice::from_ref(&a),
        );
        assert_eq!(arrivals.waiting(), 0);
        // Not wanted: outputs, hidden temporary files, non-images, files elsewhere.
        for p in [
            out.join("a.png"),
            root.join(".a.png.partial"),
            root.join("notes.txt"),
            PathBuf::from("/elsewhere/b.png"),
        ] {
            arrivals.changed(&p);
        }
        assert_eq!(arrivals.waiting(), 0);
        // A file that goes away is forgotten.
        arrivals.changed(&a);
        std::fs::remove_file(&a).unwrap();
        assert!(arrivals.take_ready().is_empty());
        assert_eq!(arrivals.waiting(), 0);
    }
}
