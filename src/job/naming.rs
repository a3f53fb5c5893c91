//! Output names: the pattern, sub-folders, collisions and the overwrite policy.

use std::collections::{HashMap, HashSet};
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
    /// Lossless, or lossy at `quality` ([`ExportOptions::webp_lossless`]).
    Webp,
    Tiff,
    /// Each output in its input's format where batchwise writes it, else PNG
    /// ([`OutputFormat::of_input`]).
    Same,
}

impl OutputFormat {
    /// The extension `{ext}` stands for (`Same`: PNG's, the fallback; each output's comes from
    /// its input, [`OutputFormat::of_input`]).
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png | OutputFormat::Same => "png",
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
            OutputFormat::Tiff => "tiff",
        }
    }

    /// The format an input is in, by its extension, where batchwise writes it (PNG, JPEG, WebP,
    /// TIFF); PNG for the others (BMP, GIF, ...).
    pub fn of_input(path: &Path) -> OutputFormat {
        match image::ImageFormat::from_path(path) {
            Ok(image::ImageFormat::Jpeg) => OutputFormat::Jpeg,
            Ok(image::ImageFormat::WebP) => OutputFormat::Webp,
            Ok(image::ImageFormat::Tiff) => OutputFormat::Tiff,
            _ => OutputFormat::Png,
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
    /// JPEG quality, and lossy WebP's, 1 to 100.
    pub quality: u8,
    /// WebP outputs lossless (`quality` unused), else lossy at `quality`.
    pub webp_lossless: bool,
    pub png_compression: super::export::encode::PngCompression,
    /// The output's scale to its input where it is not the model's (`--scale`): the model's
    /// output resampled (Lanczos3). Image-to-image models only.
    pub scale: Option<f32>,
    /// File name pattern: `{stem}`, `{model}`, `{scale}`, `{ext}`.
    pub pattern: String,
    pub overwrite: Overwrite,
    /// A chain's steps each write their result beside the output (`--keep-steps`), named by
    /// [`kept_path`].
    pub keep_steps: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            format: OutputFormat::Png,
            quality: 90,
            webp_lossless: true,
            png_compression: super::export::encode::PngCompression::default(),
            scale: None,
            pattern: "{stem}.{ext}".into(),
            overwrite: Overwrite::Rename,
            keep_steps: false,
        }
    }
}

impl ExportOptions {
    /// The options an output at `path` is written with: `Same` turned into the format its name
    /// was given ([`plan_outputs`] names it after its input's format).
    pub fn for_output(&self, path: &Path) -> ExportOptions {
        let format = match self.format {
            OutputFormat::Same => OutputFormat::of_input(path),
            f => f,
        };
        ExportOptions {
            format,
            ..self.clone()
        }
    }

    /// `{scale}` in names: the output's scale (`--scale`, as short as it reads: `1.5`, `3`), else
    /// the model's.
    pub fn scale_label(&self, model_scale: u32) -> String {
        match self.scale {
            Some(s) => format!("{}", (s * 1000.0).round() / 1000.0),
            None => model_scale.to_string(),
        }
    }
}

/// Where a chain's step labelled `label` writes its result beside the output `output`
/// (`--keep-steps`): the output's name with the label before its extension, `photo.png` ->
/// `photo.enhance-low-light.png`, in the same folder and format.
pub fn kept_path(output: &Path, label: &str) -> PathBuf {
    let stem = output
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    let name = match output.extension() {
        Some(ext) => format!("{stem}.{label}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{label}"),
    };
    output.with_file_name(name)
}

/// The placeholders a name pattern may hold.
pub const PLACEHOLDERS: &[&str] = &["{stem}", "{model}", "{scale}", "{ext}"];

/// Checks a name pattern before any file is named: not empty; known placeholders only; a folder
/// part, if any, made of plain names (sub-folders of the output folder: no `..`, `.`, root or
/// drive, `/` as the separator); a file name that ends with `.{ext}` (or the format's own
/// extension). The error says what is allowed.
pub fn check_pattern(pattern: &str, format: OutputFormat) -> Result<(), String> {
    let shown = format!("--name {pattern:?}");
    let known = PLACEHOLDERS.join(", ");
    if pattern.trim().is_empty() {
        return Err(format!(
            "{shown} is empty; the default is \"{{stem}}.{{ext}}\""
        ));
    }
    let mut rest = pattern;
    while let Some(open) = rest.find(['{', '}']) {
        let after = &rest[open..];
        let Some(close) = after.find('}').filter(|_| after.starts_with('{')) else {
            return Err(format!(
                "{shown} has an unmatched brace; placeholders are {known}"
            ));
        };
        let placeholder = &after[..=close];
        if !PLACEHOLDERS.contains(&placeholder) {
            return Err(format!(
                "{shown}: unknown placeholder {placeholder}; the placeholders are {known}"
            ));
        }
        rest = &after[close + 1..];
    }
    if pattern.contains('\\') || pattern.contains(':') {
        return Err(format!(
            "{shown}: use / between sub-folders (no \\ and no :, which name drives on Windows)"
        ));
    }
    let parts: Vec<&str> = pattern.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(format!(
            "{shown}: a folder part makes sub-folders inside the output folder, so it cannot be \
             absolute or hold empty, . or .. parts (for example \"{{model}}/{{stem}}.{{ext}}\")"
        ));
    }
    let file = parts
        .last()
        .copied()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let ext = format.extension();
    let alias = match format {
        OutputFormat::Jpeg => "jpeg",
        OutputFormat::Tiff => "tif",
        OutputFormat::Png | OutputFormat::Webp | OutputFormat::Same => ext,
    };
    // `--format same` names each output by its own format: `.{ext}` alone.
    let endings = match format {
        OutputFormat::Same => vec![".{ext}".to_owned()],
        _ => vec![".{ext}".to_owned(), format!(".{ext}"), format!(".{alias}")],
    };
    let extended = endings
        .iter()
        .any(|e| file.ends_with(e.as_str()) && file.len() > e.len());
    if !extended {
        let here = match format {
            OutputFormat::Same => "each input's format".to_owned(),
            _ => format!(".{ext}"),
        };
        return Err(format!(
            "{shown}: the file name must end with .{{ext}} (here {here}), for example \
             \"{{stem}}_x{{scale}}.{{ext}}\""
        ));
    }
    Ok(())
}

/// The output name `pattern` gives an input stem (`scale`: what `{scale}` stands for).
pub fn output_name(pattern: &str, stem: &str, model: &str, scale: &str, ext: &str) -> String {
    let model = Path::new(model)
        .file_stem()
        .map_or(model.to_owned(), |s| s.to_string_lossy().into_owned());
    pattern
        .replace("{stem}", stem)
        .replace("{model}", &model)
        .replace("{scale}", scale)
        .replace("{ext}", ext)
}

/// Output paths, one per listed file: the pattern's name under the output folder, in the
/// sub-folder the input was found in (and the pattern's own sub-folders). Two inputs never share
/// an output (`_2`, `_3`, ...), an existing file is skipped, replaced or renamed around as
/// `export.overwrite` says (skipping marks the item), and an output is never an input of the job
/// nor the manifest (a folder of the manifest's name fails the item's write). `reserved` holds the outputs a previous run of the job wrote (by the input's
/// [`crate::manifest::input_key`]): they keep their paths. `kept`: the labels of a chain's kept
/// steps (`--keep-steps`), whose files ([`kept_path`]) are held to the same rules as the output.
pub fn plan_outputs(
    listed: &mut [Listed],
    output_dir: &Path,
    export: &ExportOptions,
    model: &str,
    scale: u32,
    reserved: &HashMap<PathBuf, PathBuf>,
    kept: &[String],
) -> Vec<PathBuf> {
    // Every input, as the file it is, so that no output replaces one.
    let inputs: HashSet<PathBuf> = listed
        .iter()
        .filter_map(|l| l.path.canonicalize().ok())
        .collect();
    let is_input = |p: &Path| p.exists() && p.canonicalize().is_ok_and(|p| inputs.contains(&p));
    let manifest = output_dir.join(crate::manifest::FILE_NAME);
    // Outputs a previous run of this job recorded keep their paths.
    let mut used: HashSet<PathBuf> = reserved.values().cloned().collect();
    let reserved_kept: Vec<PathBuf> = (used.iter())
        .flat_map(|out| kept.iter().map(|label| kept_path(out, label)))
        .collect();
    used.extend(reserved_kept);
    listed
        .iter_mut()
        .map(|item| {
            if let Some(out) = reserved
                .get(&crate::manifest::input_key(&item.path))
                .filter(|out| !is_input(out))
            {
                return out.clone();
            }
            let stem = item
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            let ext = match export.format {
                OutputFormat::Same => OutputFormat::of_input(&item.path).extension(),
                f => f.extension(),
            };
            let name = output_name(
                &export.pattern,
                &stem,
                model,
                &export.scale_label(scale),
                ext,
            );
            let base = output_dir
                .join(item.rel.parent().unwrap_or(Path::new("")))
                .join(&name);
            let dir = base.parent().unwrap_or(output_dir).to_path_buf();
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
                // The output and, with `--keep-steps`, every step's file beside it.
                let mut files = std::iter::once(path.clone())
                    .chain(kept.iter().map(|label| kept_path(&path, label)));
                let taken = files.any(|path| {
                    used.contains(&path)
                        || path == manifest
                        || is_input(&path)
                        || (export.overwrite == Overwrite::Rename && path.exists())
                });
                if !taken {
                    let existing = std::iter::once(path.clone())
                        .chain(kept.iter().map(|label| kept_path(&path, label)))
                        .find(|p| p.exists());
                    if export.overwrite == Overwrite::Skip
                        && let Some(existing) = existing
                        && item.skip.is_none()
                        && item.error.is_none()
                    {
                        item.skip = Some(format!(
                            "{} exists (overwrite policy: skip)",
                            existing.display()
                        ));
                    }
                    used.extend(kept.iter().map(|label| kept_path(&path, label)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_checked_with_what_is_allowed() {
        let png = OutputFormat::Png;
        for good in [
            "{stem}.{ext}",
            "{stem}_{model}_x{scale}.{ext}",
            "{model}/{stem}.{ext}",
            "{stem}.png",
            "{stem}.PNG",
        ] {
            assert_eq!(check_pattern(good, png), Ok(()), "{good}");
        }
        assert_eq!(check_pattern("{stem}.jpeg", OutputFormat::Jpeg), Ok(()));
        for (bad, says) in [
            ("", "empty"),
            ("  ", "empty"),
            (".", "sub-folders"),
            ("/", "sub-folders"),
            ("../{stem}.{ext}", "cannot be"),
            ("/abs/{stem}.{ext}", "cannot be"),
            ("a//{stem}.{ext}", "cannot be"),
            ("{stem}", "must end with .{ext}"),
            ("{stem}.jpg", "must end with .{ext}"),
            (".{ext}", "must end with .{ext}"),
            ("{unknown}.{ext}", "unknown placeholder {unknown}"),
            ("{stem.{ext}", "unknown placeholder"),
            ("}{stem}.{ext}", "unmatched brace"),
            ("{stem}.{ext", "unmatched brace"),
            ("a\\{stem}.{ext}", "use / between"),
            ("C:{stem}.{ext}", "use / between"),
        ] {
            let e = check_pattern(bad, png).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = check_pattern("{x}.{ext}", png).unwrap_err();
        assert!(e.contains("{stem}, {model}, {scale}, {ext}"), "{e}");
    }

    fn listed(path: &Path, rel: &str) -> Listed {
        Listed {
            path: path.to_path_buf(),
            rel: PathBuf::from(rel),
            skip: None,
            error: None,
        }
    }

    /// A pattern's folder part makes sub-folders (not dropped); an output never replaces another
    /// input of the job nor the manifest; two inputs of one name get two outputs.
    #[test]
    fn outputs_keep_the_patterns_folders_and_spare_inputs_and_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("a")).unwrap();
        for f in ["x.png", "x_up.png", "a/x.png"] {
            std::fs::write(d.join(f), b"img").unwrap();
        }
        let mut items = vec![
            listed(&d.join("x.png"), "x.png"),
            listed(&d.join("x_up.png"), "x_up.png"),
            listed(&d.join("a/x.png"), "x.png"),
        ];
        let export = |pattern: &str| ExportOptions {
            pattern: pattern.into(),
            overwrite: Overwrite::Overwrite,
            ..ExportOptions::default()
        };
        let none = HashMap::new();
        let outs = plan_outputs(
            &mut items,
            d,
            &export("{stem}_up.{ext}"),
            "m",
            2,
            &none,
            &[],
        );
        // x.png's output would be x_up.png, an input: it goes beside it.
        assert_eq!(outs[0], d.join("x_up_2.png"));
        assert_eq!(outs[1], d.join("x_up_up.png"));
        assert_eq!(outs[2], d.join("x_up.png").with_file_name("x_up_3.png"));
        let outs = plan_outputs(
            &mut items,
            d,
            &export("{model}/{stem}.{ext}"),
            "m",
            2,
            &none,
            &[],
        );
        assert_eq!(outs[0], d.join("m/x.png"));
        assert_eq!(outs[2], d.join("m/x_2.png"));
    }

    /// A kept step's file goes beside the output, the label before the extension; the output
    /// is renamed so that it and its kept files are all free (a user's file of a kept name is
    /// never replaced), and `--overwrite skip` skips an item when any of its files exists.
    #[test]
    fn kept_steps_are_named_beside_the_output_and_free_with_it() {
        assert_eq!(
            kept_path(Path::new("o/sub/photo_x2.jpg"), "enhance-low-light"),
            Path::new("o/sub/photo_x2.enhance-low-light.jpg")
        );
        let dir = tempfile::tempdir().unwrap();
        let (d, out) = (dir.path(), dir.path().join("out"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("photo.step-a.png"), b"a user's file").unwrap();
        let mut items = vec![listed(&d.join("photo.png"), "photo.png")];
        let none = HashMap::new();
        let kept = ["step-a".to_owned()];
        let rename = ExportOptions::default();
        let outs = plan_outputs(&mut items, &out, &rename, "m", 1, &none, &kept);
        assert_eq!(outs[0], out.join("photo_2.png"));
        let skip = ExportOptions {
            overwrite: Overwrite::Skip,
            ..ExportOptions::default()
        };
        let outs = plan_outputs(&mut items, &out, &skip, "m", 1, &none, &kept);
        assert_eq!(outs[0], out.join("photo.png"));
        let why = items[0].skip.clone().unwrap();
        assert!(why.contains("photo.step-a.png"), "{why}");
    }
}
