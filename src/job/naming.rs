//! Output names: the pattern, sub-folders, collisions and the overwrite policy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::listing::Listed;

/// The image format of outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Png,
    /// Lossy, with `quality`; no alpha.
    Jpeg,
    /// Lossless.
    Webp,
    Tiff,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
            OutputFormat::Tiff => "tiff",
        }
    }
}

/// What happens when an output file already exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overwrite {
    /// Leave it; the item is skipped.
    Skip,
    /// Replace it (atomically).
    Overwrite,
    /// Write `name_2.ext` (then `_3`, ...) beside it.
    #[default]
    Rename,
}

/// How outputs are named and written.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub format: OutputFormat,
    /// JPEG quality, 1 to 100.
    pub quality: u8,
    /// File name pattern: `{stem}`, `{model}`, `{scale}`, `{ext}`.
    pub pattern: String,
    pub overwrite: Overwrite,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            format: OutputFormat::Png,
            quality: 90,
            pattern: "{stem}.{ext}".into(),
            overwrite: Overwrite::Rename,
        }
    }
}

/// The output name `pattern` gives an input stem.
pub fn output_name(pattern: &str, stem: &str, model: &str, scale: u32, ext: &str) -> String {
    let model = Path::new(model)
        .file_stem()
        .map_or(model.to_owned(), |s| s.to_string_lossy().into_owned());
    pattern
        .replace("{stem}", stem)
        .replace("{model}", &model)
        .replace("{scale}", &scale.to_string())
        .replace("{ext}", ext)
}

/// Output paths, one per listed file: the pattern's name under the output folder, in the
/// sub-folder the input was found in. Two inputs never share an output (`_2`, `_3`, ...), an
/// existing file is skipped, replaced or renamed around as `export.overwrite` says (skipping
/// marks the item), and an output is never its own input.
pub fn plan_outputs(
    listed: &mut [Listed],
    output_dir: &Path,
    export: &ExportOptions,
    model: &str,
    scale: u32,
    reserved: &HashMap<PathBuf, PathBuf>,
) -> Vec<PathBuf> {
    // Outputs a previous run of this job recorded keep their paths.
    let mut used: std::collections::HashSet<PathBuf> = reserved.values().cloned().collect();
    listed
        .iter_mut()
        .map(|item| {
            if let Some(out) = reserved.get(&item.path) {
                return out.clone();
            }
            let stem = item
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            let dir = output_dir.join(item.rel.parent().unwrap_or(Path::new("")));
            let name = output_name(
                &export.pattern,
                &stem,
                model,
                scale,
                export.format.extension(),
            );
            let base = dir.join(&name);
            let (file_stem, ext) = (
                base.file_stem()
                    .map_or(stem.clone(), |s| s.to_string_lossy().into_owned()),
                base.extension().map(|e| e.to_string_lossy().into_owned()),
            );
            let candidate = |n: u32| {
                let file = match (&ext, n) {
                    (Some(e), 1) => format!("{file_stem}.{e}"),
                    (None, 1) => file_stem.clone(),
                    (Some(e), n) => format!("{file_stem}_{n}.{e}"),
                    (None, n) => format!("{file_stem}_{n}"),
                };
                dir.join(file)
            };
            let mut n = 1;
            loop {
                let path = candidate(n);
                let taken = used.contains(&path)
                    || same_file(&item.path, &path)
                    || (export.overwrite == Overwrite::Rename && path.exists());
                if !taken {
                    if export.overwrite == Overwrite::Skip && path.exists() && item.skip.is_none() {
                        item.skip = Some(format!(
                            "{} exists (overwrite policy: skip)",
                            path.display()
                        ));
                    }
                    used.insert(path.clone());
                    return path;
                }
                n += 1;
            }
        })
        .collect()
}

pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
