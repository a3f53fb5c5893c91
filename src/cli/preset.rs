//! Presets: `run`'s flags in a TOML file, keyed by their long names (`batch-size = "auto"`,
//! `tile-size = 256`, `mask-only = true`, `model = ["a", "b"]` for a list). Everything comes from
//! the clap definition of `run` ([`super::RunArgs`]): a key is a flag's long name, a value is
//! checked by that flag's own parser, and a preset is applied by handing its flags to clap before
//! the command line's, leaving out those the command line gives itself (by clap's
//! `value_source`). The app writes the same files and its "Copy as command" line through
//! [`Preset`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _};
use toml::de::{DeTable, DeValue};

use super::{Cli, RunArgs};

/// `run`'s flags by long name, with their values, in order: a preset file, or the flags of a
/// command line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preset {
    pub entries: Vec<(String, toml::Value)>,
}

/// Keys a preset may not hold: clap's own flags, and a preset inside a preset.
const NOT_IN_PRESETS: &[&str] = &["preset", "help", "version"];

impl Preset {
    /// Adds a flag (`value`: a string, a number, a list of them, or `true` for a switch).
    pub fn push(&mut self, flag: &str, value: impl Into<toml::Value>) {
        self.entries.push((flag.to_owned(), value.into()));
    }

    /// The value of `flag`, if the preset has it.
    pub fn get(&self, flag: &str) -> Option<&toml::Value> {
        self.entries.iter().find(|(k, _)| k == flag).map(|(_, v)| v)
    }

    /// The preset as a TOML file, one `flag = value` line each.
    pub fn to_toml(&self) -> String {
        let mut text = String::from("# batchwise preset: `batchwise run --preset FILE`\n");
        for (key, value) in &self.entries {
            text += &format!("{key} = {value}\n");
        }
        text
    }

    /// The flags as command-line arguments: `--flag value` (`--flag=value` where the value
    /// begins with `-`), `--flag` for a switch that is on, nothing for one that is off; a list
    /// is one value, comma-separated.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (key, value) in &self.entries {
            match (value, flag_text(value)) {
                (toml::Value::Boolean(true), _) => args.push(format!("--{key}")),
                (_, Some(text)) if text.starts_with('-') => args.push(format!("--{key}={text}")),
                (_, Some(text)) => args.extend([format!("--{key}"), text]),
                _ => {}
            }
        }
        args
    }

    /// The `batchwise run` line of these flags and `inputs`, quoted for a POSIX shell.
    pub fn command_line(&self, inputs: &[PathBuf]) -> String {
        let quote = |s: &str| {
            shlex::try_quote(s).map_or_else(|_| format!("'{}'", s.replace('\0', "")), Into::into)
        };
        let mut line = String::from("batchwise run");
        for arg in self.to_args() {
            line += " ";
            line += &quote(&arg);
        }
        let inputs: Vec<String> = inputs
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if inputs.iter().any(|i| i.starts_with('-')) {
            line += " --";
        }
        for input in &inputs {
            line += " ";
            line += &quote(input);
        }
        line
    }

    /// Reads a preset file, every key and value checked against `run`'s flags.
    pub fn read(file: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the preset {}", file.display()))?;
        Self::parse(&text, file)
    }

    /// Parses a preset's text (`file` names it in errors: `FILE:LINE: key: what is wrong`).
    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let doc = DeTable::parse(text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let run = run_command(false);
        let mut preset = Self::default();
        for (key, value) in doc.get_ref() {
            let line = text[..key.span().start.min(text.len())]
                .matches('\n')
                .count()
                + 1;
            let name = key.get_ref().replace('_', "-");
            let at = format!("{}:{line}: {}", file.display(), key.get_ref());
            let arg = run
                .get_arguments()
                .find(|a| a.get_long() == Some(&name))
                .filter(|_| !NOT_IN_PRESETS.contains(&name.as_str()))
                .ok_or_else(|| anyhow!("{at}: unknown key; the keys are {}", keys(&run)))?;
            let value = to_value(value.get_ref()).ok_or_else(|| {
                anyhow!("{at}: takes a text, a number, true or false, or a list of texts")
            })?;
            let switch = !arg.get_action().takes_values();
            match (&value, switch) {
                (toml::Value::Boolean(_), false) => bail!("{at}: takes a value, not true or false"),
                (toml::Value::Boolean(_), true) => {}
                (_, true) => bail!("{at}: takes true or false"),
                _ => {}
            }
            let entry = Self {
                entries: vec![(name.clone(), value.clone())],
            };
            if let Err(e) = run_command(true).try_get_matches_from(entry.to_args()) {
                bail!("{at}: {}", clap_reason(&e));
            }
            preset.entries.push((name, value));
        }
        Ok(preset)
    }

    /// `run`'s arguments as the flags give them, `run`'s defaults for the rest; `--output .`
    /// where the preset names no output folder (the app keeps its own then).
    pub fn run_args(&self) -> Result<RunArgs> {
        let mut argv = self.to_args();
        if self.get("output").is_none() {
            argv.extend(["--output".to_owned(), ".".to_owned()]);
        }
        let matches = run_command(true)
            .try_get_matches_from(argv)
            .map_err(|e| anyhow!(clap_reason(&e)))?;
        RunArgs::from_arg_matches(&matches).map_err(|e| anyhow!(clap_reason(&e)))
    }
}

/// The command line with `--preset FILE`'s flags added, before the command line's own, for those
/// the command line does not give itself (nor a flag that conflicts with one: `-v` on the
/// command line drops a preset's `quiet`). Unchanged without `--preset`, or when clap will
/// refuse it anyway.
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>> {
    let relaxed = Cli::command().mut_subcommand("run", relax);
    let Ok(matches) = relaxed.try_get_matches_from(&argv) else {
        return Ok(argv);
    };
    let Some(("run", given)) = matches.subcommand() else {
        return Ok(argv);
    };
    let Some(file) = given.get_one::<PathBuf>("preset") else {
        return Ok(argv);
    };
    let preset = Preset::read(file)?;
    let run = run_command(false);
    let explicit = |arg: &clap::Arg| {
        given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine)
    };
    let conflicts = |arg: &clap::Arg| {
        run.get_arguments().filter(|o| explicit(o)).any(|o| {
            run.get_arg_conflicts_with(o)
                .iter()
                .chain(run.get_arg_conflicts_with(arg).iter())
                .any(|c| c.get_id() == arg.get_id() || c.get_id() == o.get_id())
        })
    };
    let mut kept = Preset::default();
    for (key, value) in &preset.entries {
        let Some(arg) = run.get_arguments().find(|a| a.get_long() == Some(key)) else {
            continue;
        };
        if !explicit(arg) && !conflicts(arg) {
            kept.entries.push((key.clone(), value.clone()));
        }
    }
    // `run` is the first argument that is not an option (the top level has none with values).
    let at = argv
        .iter()
        .skip(1)
        .position(|a| a == "run")
        .map_or(argv.len(), |i| i + 2);
    let mut out = argv;
    out.splice(at..at, kept.to_args().into_iter().map(OsString::from));
    Ok(out)
}

/// `run`'s command; `relaxed`: nothing required (a preset's flags checked alone, or a preset that
/// names no output folder).
fn run_command(relaxed: bool) -> clap::Command {
    let run = Cli::command()
        .find_subcommand("run")
        .cloned()
        .unwrap_or_else(|| clap::Command::new("run"))
        .no_binary_name(true);
    if relaxed { relax(run) } else { run }
}

fn relax(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| a.required(false))
}

/// The keys a preset may hold, for an error.
fn keys(run: &clap::Command) -> String {
    let names: Vec<&str> = run
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !NOT_IN_PRESETS.contains(l))
        .collect();
    names.join(", ")
}

/// clap's message without its `error: ` prefix and usage lines.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// A flag's value as one command-line word: a list comma-separated; None for a switch's
/// `true`/`false` and what no flag takes (tables, dates).
fn flag_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Array(items) => {
            let texts: Option<Vec<String>> = items
                .iter()
                .map(|v| flag_text(v).filter(|_| !v.is_array()))
                .collect();
            texts.map(|t| t.join(","))
        }
        toml::Value::Boolean(_) | toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

/// A parsed TOML value a flag can take: a string, a number, a boolean, or a list of strings and
/// numbers.
fn to_value(value: &DeValue<'_>) -> Option<toml::Value> {
    Some(match value {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        DeValue::Integer(n) => {
            toml::Value::Integer(i64::from_str_radix(n.as_str(), n.radix()).ok()?)
        }
        DeValue::Float(f) => toml::Value::Float(f.as_str().parse().ok()?),
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Array(items) => {
            let values: Option<Vec<toml::Value>> = items
                .iter()
                .map(|v| to_value(v.get_ref()).filter(|v| !v.is_array() && !v.is_bool()))
                .collect();
            toml::Value::Array(values?)
        }
        DeValue::Datetime(_) | DeValue::Table(_) => return None,
    })
}
