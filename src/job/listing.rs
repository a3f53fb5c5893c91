//! A job's files: folders walked (sub-paths kept for the outputs), system files and non-images
//! listed as skipped with the reason, shards.

use std::path::{Path, PathBuf};

/// Extensions taken from folders; files named on their own are always tried.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif"];

/// One file of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    pub path: PathBuf,
    /// Its path under the folder it was found in (the output keeps it), or its file name.
    pub rel: PathBuf,
    /// Why it is skipped before it is read (a system file, not an image, not a regular file, an
    /// existing output).
    pub skip: Option<String>,
    /// Why it fails before it is read (a folder that cannot be read, a link to nothing).
    pub error: Option<String>,
}

/// Files operating systems leave in folders, never images.
const SYSTEM_FILES: &[&str] = &["thumbs.db", ".ds_store", "desktop.ini", "ehthumbs.db"];

/// Lists a job's files: files as given (always tried), folders recursively, sorted, each file once.
/// Folder entries that are system files, have no image extension or are not regular files (pipes,
/// sockets, devices: never opened) are listed as skipped with the reason; what the walk cannot
/// read (a folder without permission, a link to nothing) is listed as failed with the reason, and
/// a link that loops back is skipped: nothing found is dropped without a word.
pub fn list_inputs(inputs: &[PathBuf]) -> Vec<Listed> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<Listed> = walkdir::WalkDir::new(input)
                .follow_links(true)
                .into_iter()
                .filter_map(|e| match e {
                    Ok(e) if e.file_type().is_dir() => None,
                    Ok(e) => Some(listed_entry(input, e.path(), Some(e.file_type()))),
                    Err(e) => Some(walk_error(input, &e)),
                })
                .collect();
            found.sort_by(|a, b| a.path.cmp(&b.path));
            out.extend(found);
        } else {
            out.push(Listed {
                rel: input.file_name().map_or(input.clone(), PathBuf::from),
                path: input.clone(),
                skip: None,
                error: None,
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|l| seen.insert(l.path.canonicalize().unwrap_or_else(|_| l.path.clone())));
    out
}

/// A file found in the folder `root`, skipped with the reason if it is not an image to read.
fn listed_entry(root: &Path, path: &Path, kind: Option<std::fs::FileType>) -> Listed {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let skip = if let Some(special) = kind.and_then(special_kind) {
        Some(format!(
            "not a regular file ({special}); batchwise reads only regular files"
        ))
    } else if SYSTEM_FILES.contains(&name.as_str()) || name.starts_with("._") {
        Some("a system file, not an image".to_owned())
    } else if !is_image_name(path) {
        Some(format!(
            "not an image ({}); batchwise reads {}",
            path.extension().map_or("no extension".into(), |e| format!(
                ".{}",
                e.to_string_lossy()
            )),
            IMAGE_EXTENSIONS.join(", ")
        ))
    } else {
        None
    };
    Listed {
        rel: path.strip_prefix(root).unwrap_or(path).to_path_buf(),
        path: path.to_path_buf(),
        skip,
        error: None,
    }
}

/// What a folder walk could not read, as an item: a link that loops back is skipped, anything
/// else (no permission, a link to nothing) fails with the reason.
fn walk_error(root: &Path, e: &walkdir::Error) -> Listed {
    let path = e.path().unwrap_or(root).to_path_buf();
    let mut item = listed_entry(root, &path, None);
    item.skip = None;
    if let Some(ancestor) = e.loop_ancestor() {
        item.skip = Some(format!(
            "a symbolic link that loops back to {}",
            ancestor.display()
        ));
    } else if let Some(why) = dangling_link(&path) {
        item.error = Some(why);
    } else {
        let what = if e.depth() == 0 || path.is_dir() {
            "cannot read the folder"
        } else {
            "cannot read"
        };
        item.error = Some(match e.io_error() {
            Some(io) => format!("{what}: {io}"),
            None => format!("{what}: {e}"),
        });
    }
    item
}

/// Why `path` cannot be followed if it is a symbolic link whose target does not exist.
pub(crate) fn dangling_link(path: &Path) -> Option<String> {
    let link = std::fs::symlink_metadata(path).ok()?;
    if !link.file_type().is_symlink() || std::fs::metadata(path).is_ok() {
        return None;
    }
    let target = std::fs::read_link(path).map_or_else(|_| "?".into(), |t| t.display().to_string());
    Some(format!("a symbolic link to {target}, which does not exist"))
}

/// What a file that is neither a regular file nor a folder is, for people; None for those two
/// (and links, which the walk follows).
pub(crate) fn special_kind(kind: std::fs::FileType) -> Option<&'static str> {
    if kind.is_file() || kind.is_dir() || kind.is_symlink() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if kind.is_fifo() {
            return Some("a named pipe");
        }
        if kind.is_socket() {
            return Some("a socket");
        }
        if kind.is_block_device() || kind.is_char_device() {
            return Some("a device");
        }
    }
    Some("a special file")
}

/// Whether `rel` belongs to shard `index` of `count`: a hash of the path under its folder, so
/// machines that mount the inputs in different places agree on the split.
pub fn in_shard(rel: &Path, index: u32, count: u32) -> bool {
    // FNV-1a over the path with `/` separators.
    let text = rel.to_string_lossy().replace('\\', "/");
    crate::manifest::fnv1a(text.as_bytes(), 0) % count as u64 == index as u64
}

/// The image files of a job, as [`list_inputs`] finds them (what it would skip left out).
pub fn expand_inputs(inputs: &[PathBuf]) -> Vec<PathBuf> {
    list_inputs(inputs)
        .into_iter()
        .filter(|l| l.skip.is_none())
        .map(|l| l.path)
        .collect()
}

pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}
