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
    /// Why it is skipped before it is read (a system file, not an image, an existing output).
    pub skip: Option<String>,
}

/// Files operating systems leave in folders, never images.
const SYSTEM_FILES: &[&str] = &["thumbs.db", ".ds_store", "desktop.ini", "ehthumbs.db"];

/// Lists a job's files: files as given (always tried), folders recursively, sorted, each file once.
/// Folder entries that are system files or have no image extension are listed as skipped with the
/// reason.
pub fn list_inputs(inputs: &[PathBuf]) -> Vec<Listed> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(input)
                .follow_links(true)
                .into_iter()
                .filter_map(std::result::Result::ok)
                .filter(|e| e.file_type().is_file())
                .map(walkdir::DirEntry::into_path)
                .collect();
            found.sort();
            out.extend(found.into_iter().map(|path| {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_ascii_lowercase())
                    .unwrap_or_default();
                let skip = if SYSTEM_FILES.contains(&name.as_str()) || name.starts_with("._") {
                    Some("a system file, not an image".to_owned())
                } else if !is_image_name(&path) {
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
                    rel: path.strip_prefix(input).unwrap_or(&path).to_path_buf(),
                    path,
                    skip,
                }
            }));
        } else {
            out.push(Listed {
                rel: input.file_name().map_or(input.clone(), PathBuf::from),
                path: input.clone(),
                skip: None,
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|l| seen.insert(l.path.canonicalize().unwrap_or_else(|_| l.path.clone())));
    out
}

/// Whether `rel` belongs to shard `index` of `count`: a hash of the path under its folder, so
/// machines that mount the inputs in different places agree on the split.
pub fn in_shard(rel: &Path, index: u32, count: u32) -> bool {
    // FNV-1a over the path with `/` separators.
    let text = rel.to_string_lossy().replace('\\', "/");
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    hash % count as u64 == index as u64
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
