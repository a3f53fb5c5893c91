//! The models folder: a user's `.onnx` files and NCNN `.param` + `.bin` pairs, listed by
//! `batchwise models` and the app's model choice, and picked by name (`-m NAME`).
//!
//! The folder is `--models-dir`, else `$BATCHWISE_MODELS_DIR`, else `batchwise/models` in the
//! user's data folder (`~/.local/share` on Linux, `~/Library/Application Support` on macOS,
//! `%APPDATA%` on Windows). Its files are not searched in sub-folders. A model's name is its
//! file name without the extension; a built-in of the same name wins (the listing says so), and
//! two files of the same name are refused by name (pick either by its path).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde::Serialize;

use crate::builtin::{BUILTINS, InputOverrides, ModelChoice};

/// The environment variable that names the models folder when `--models-dir` does not.
pub const ENV_VAR: &str = "BATCHWISE_MODELS_DIR";

/// `batchwise/models` in the user's data folder; None where the system names none.
pub fn default_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("batchwise").join("models"))
}

/// The models folder a command uses, and whether the user named it (a folder the user named
/// must exist; the default one need not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelsDir {
    pub path: PathBuf,
    pub named: bool,
}

impl ModelsDir {
    /// `flag`, else [`ENV_VAR`] (clap reads both into `flag`), else [`default_dir`].
    pub fn choose(flag: Option<PathBuf>) -> Option<Self> {
        match flag {
            Some(path) => Some(Self { path, named: true }),
            None => default_dir().map(|path| Self { path, named: false }),
        }
    }

    /// The folder's model files, or an empty list for a default folder that is not there yet.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        if !self.named && !self.path.exists() {
            return Ok(Vec::new());
        }
        list(&self.path)
    }
}

/// How a model file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Onnx,
    Ncnn,
}

/// One model file of the folder, before it is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The file name without its extension: what `-m` takes.
    pub name: String,
    /// The `.onnx` file, or the `.param` file of an NCNN pair (or the lone `.bin`).
    pub path: PathBuf,
    pub kind: Kind,
    /// Why it cannot be read at all (half of an NCNN pair missing).
    pub problem: Option<String>,
    /// Why picking it by name does not give this file (a built-in of that name, another file
    /// of that name).
    pub clash: Option<String>,
}

/// The model files in `dir` (not in its sub-folders), by name: `.onnx` files and `.param` +
/// `.bin` pairs; half of a pair is listed with what is missing. Other files are not models and
/// are left out.
pub fn list(dir: &Path) -> Result<Vec<Entry>> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| anyhow!("cannot read the models folder {}: {e}", dir.display()))?;
    let mut files: HashMap<(String, String), PathBuf> = HashMap::new();
    for entry in read.flatten() {
        let path = entry.path();
        let (Some(stem), Some(ext)) = (path.file_stem(), path.extension()) else {
            continue;
        };
        let (stem, ext) = (
            stem.to_string_lossy().into_owned(),
            ext.to_string_lossy().to_ascii_lowercase(),
        );
        if stem.starts_with('.') || !path.is_file() {
            continue;
        }
        if ["onnx", "param", "bin"].contains(&ext.as_str()) {
            files.insert((stem, ext), path);
        }
    }
    let has = |stem: &str, ext: &str| files.contains_key(&(stem.to_owned(), ext.to_owned()));
    let mut entries: Vec<Entry> = files
        .iter()
        .filter_map(|((stem, ext), path)| {
            let (kind, problem) = match ext.as_str() {
                "onnx" => (Kind::Onnx, None),
                "param" => (
                    Kind::Ncnn,
                    (!has(stem, "bin")).then(|| format!("no {stem}.bin beside it (its weights)")),
                ),
                // A .bin beside its .param is listed once, as the .param.
                _ if has(stem, "param") => return None,
                _ => (
                    Kind::Ncnn,
                    Some(format!("no {stem}.param beside it (the network)")),
                ),
            };
            Some(Entry {
                name: stem.clone(),
                path: path.clone(),
                kind,
                problem,
                clash: None,
            })
        })
        .collect();
    entries.sort_by(|a, b| (&a.name, &a.path).cmp(&(&b.name, &b.path)));
    mark_clashes(&mut entries);
    Ok(entries)
}

/// Notes each name a built-in has, or that more than one file has.
fn mark_clashes(entries: &mut [Entry]) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for e in entries.iter() {
        *count.entry(e.name.clone()).or_default() += 1;
    }
    for e in entries.iter_mut() {
        e.clash = if BUILTINS.iter().any(|b| b.id == e.name) {
            Some(format!(
                "the built-in model {} has this name and is what -m {} picks; pick this file by its path",
                e.name, e.name
            ))
        } else if count[&e.name] > 1 {
            Some(format!(
                "{} files are named {}; pick one by its path",
                count[&e.name], e.name
            ))
        } else {
            None
        };
    }
}

/// A folder model read: its entry and the model ready to run, or why it cannot run.
#[derive(Clone, Debug)]
pub struct FolderModel {
    pub entry: Entry,
    pub loaded: Result<ModelChoice, String>,
}

/// Reads every model of the folder; a file that cannot run is listed with the reason and never
/// stops the others.
pub fn load_all(entries: Vec<Entry>, overrides: &InputOverrides) -> Vec<FolderModel> {
    entries
        .into_iter()
        .map(|entry| {
            let loaded = match &entry.problem {
                Some(problem) => Err(format!("{}: {problem}", entry.path.display())),
                None => load_file(&entry.path, overrides),
            };
            FolderModel { entry, loaded }
        })
        .collect()
}

/// A user's model file, read with its scale measured ([`crate::builtin::resolve`]); a loader
/// panic (a bug a stranger's file found) is an error naming the file, not a crash.
pub fn load_file(path: &Path, overrides: &InputOverrides) -> Result<ModelChoice, String> {
    let resolve = || crate::builtin::resolve(&path.to_string_lossy(), overrides);
    match std::panic::catch_unwind(resolve) {
        Ok(loaded) => loaded.map_err(|e| format!("{} cannot run: {e:#}", path.display())),
        Err(panic) => Err(format!(
            "{} cannot run: loading it hit an internal error ({})",
            path.display(),
            panic_text(&*panic)
        )),
    }
}

/// What a caught panic says (its message where it has one).
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "an internal error".into())
}

/// What `-m NAME` names: a built-in id, a file's path, or a model of the folder by name (its
/// file name, with or without the extension).
pub fn resolve(
    name: &str,
    dir: Option<&ModelsDir>,
    overrides: &InputOverrides,
) -> Result<ModelChoice> {
    if BUILTINS.iter().any(|b| b.id == name) || Path::new(name).exists() {
        return crate::builtin::resolve(name, overrides);
    }
    let entries = match dir {
        Some(dir) => dir.entries()?,
        None => Vec::new(),
    };
    let found: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.name == name || e.path.file_name().is_some_and(|f| f == name))
        .collect();
    match found.as_slice() {
        [] => {
            let ids: Vec<&str> = BUILTINS.iter().map(|m| m.id).collect();
            let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
            let folder = dir.map_or("no models folder".to_owned(), |d| {
                format!(
                    "models folder {}: {}",
                    d.path.display(),
                    if names.is_empty() {
                        "no models".to_owned()
                    } else {
                        names.join(", ")
                    }
                )
            });
            bail!(
                "there is no built-in model {name:?}, no file of that name and no model of that \
                 name in the models folder; built-ins: {}; {folder}",
                ids.join(", ")
            )
        }
        [one] => {
            if let Some(problem) = &one.problem {
                bail!("{}: {problem}", one.path.display());
            }
            load_file(&one.path, overrides).map_err(|e| anyhow!(e))
        }
        several => {
            let paths: Vec<String> = several
                .iter()
                .map(|e| e.path.display().to_string())
                .collect();
            bail!(
                "{} files in the models folder are named {name}: {}; pick one by its path",
                several.len(),
                paths.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_orphans_and_clashes_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "a.onnx",
            "net.param",
            "net.bin",
            "lonely.param",
            "weights.bin",
            "upscale-photo-2x.onnx",
            "twin.onnx",
            "twin.param",
            "twin.bin",
            "README.md",
            ".hidden.onnx",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.onnx")).unwrap();
        let entries = list(dir.path()).unwrap();
        let summary: Vec<(&str, Kind, bool, bool)> = entries
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.kind,
                    e.problem.is_some(),
                    e.clash.is_some(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a", Kind::Onnx, false, false),
                ("lonely", Kind::Ncnn, true, false),
                ("net", Kind::Ncnn, false, false),
                ("twin", Kind::Onnx, false, true),
                ("twin", Kind::Ncnn, false, true),
                ("upscale-photo-2x", Kind::Onnx, false, true),
                ("weights", Kind::Ncnn, true, false),
            ]
        );
        assert!(entries[1].problem.as_ref().unwrap().contains("lonely.bin"));
        assert!(
            entries[6]
                .problem
                .as_ref()
                .unwrap()
                .contains("weights.param")
        );
        assert!(entries[5].clash.as_ref().unwrap().contains("built-in"));
    }

    #[test]
    fn a_default_folder_that_is_not_there_is_empty_but_a_named_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let default = ModelsDir {
            path: missing.clone(),
            named: false,
        };
        assert!(default.entries().unwrap().is_empty());
        let named = ModelsDir {
            path: missing,
            named: true,
        };
        let e = named.entries().unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
