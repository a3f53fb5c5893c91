//! `--models-dir` and `batchwise models`: the built-ins, then the models folder's files with
//! their measured scale or why they cannot run ([`crate::models_dir`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::builtin::{BUILTINS, InputOverrides, ModelChoice};
use crate::models_dir::{self, FolderModel, ModelsDir};

/// The models folder on the command line.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ModelsDirArg {
    /// Folder of your models (`.onnx` files, NCNN `.param` + `.bin` pairs), picked with
    /// `-m NAME` and listed by `batchwise models` [default: batchwise/models in the user's data
    /// folder, e.g. ~/.local/share/batchwise/models]
    #[arg(long, env = models_dir::ENV_VAR, value_name = "DIR", help_heading = "Model")]
    pub models_dir: Option<PathBuf>,
}

impl ModelsDirArg {
    pub fn dir(&self) -> Option<ModelsDir> {
        ModelsDir::choose(self.models_dir.clone())
    }

    /// What `-m` names: a built-in, a file, or a model of the folder by name, or a chain of them.
    pub fn resolve(&self, name: &str, overrides: &InputOverrides) -> Result<ModelChoice> {
        let dir = self.dir();
        crate::chain::resolve_with(name, |step| {
            models_dir::resolve(step, dir.as_ref(), overrides)
        })
    }
}

/// `batchwise models`: every built-in, then every model of the folder (a bad file is listed
/// with its error, never stopping the list).
pub fn list(json: bool, arg: &ModelsDirArg) -> Result<ExitCode> {
    let dir = arg.dir();
    let folder = match &dir {
        Some(dir) => models_dir::load_all(dir.entries()?, &InputOverrides::default()),
        None => Vec::new(),
    };
    if json {
        let builtins = BUILTINS.iter().map(|m| {
            serde_json::json!({
                "id": m.id,
                "source": "builtin",
                "description": m.description,
                "scale": m.spec.scale,
                "file": m.file,
            })
        });
        let list: Vec<_> = builtins.chain(folder.iter().map(folder_json)).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in BUILTINS {
        println!("{:<20} {}", m.id, m.description);
    }
    match &dir {
        None => println!("\nno models folder: this system names no data folder; use --models-dir"),
        Some(dir) if folder.is_empty() => println!(
            "\nmodels folder {}: no models{} (put .onnx files or .param + .bin pairs in it)",
            dir.path.display(),
            if dir.path.exists() { "" } else { " yet" }
        ),
        Some(dir) => {
            println!("\nmodels folder {}:", dir.path.display());
            for m in &folder {
                print_folder_model(m);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_folder_model(m: &FolderModel) {
    let kind = match m.entry.kind {
        models_dir::Kind::Onnx => "onnx",
        models_dir::Kind::Ncnn => "ncnn",
    };
    let scale = m.loaded.as_ref().map_or("-".to_owned(), describe_scale);
    println!(
        "{:<20} {kind:<5} {scale:<4} {}",
        m.entry.name,
        m.entry.path.display()
    );
    if let Err(e) = &m.loaded {
        println!("    error: {e}");
    }
    if let Some(clash) = &m.entry.clash {
        println!("    name: {clash}");
    }
}

/// An image model's scale (`2x`), or `npy` for a model whose outputs are kept as tensors.
fn describe_scale(choice: &crate::builtin::ModelChoice) -> String {
    match choice.task {
        crate::builtin::Task::Tensors => "npy".to_owned(),
        _ => format!("{}x", choice.spec.scale),
    }
}

fn folder_json(m: &FolderModel) -> serde_json::Value {
    serde_json::json!({
        "id": m.entry.name,
        "source": "folder",
        "path": m.entry.path.to_string_lossy(),
        "kind": m.entry.kind,
        // An image model's scale; null for a model whose outputs are kept as tensors.
        "scale": m.loaded.as_ref().ok().filter(|c| c.task != crate::builtin::Task::Tensors).map(|c| c.spec.scale),
        "tensors": m.loaded.as_ref().is_ok_and(|c| c.task == crate::builtin::Task::Tensors),
        "error": m.loaded.as_ref().err(),
        "clash": m.entry.clash,
    })
}
