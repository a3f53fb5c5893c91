//! `labels.csv` and `labels.json`: a classifier's top labels per image.

use std::path::{Path, PathBuf};

use super::{Exporter, json_bytes, write_bytes};
use crate::job::ItemResult;

pub struct Labels;

impl Exporter for Labels {
    fn path(&self, dir: &Path) -> PathBuf {
        dir.join("labels.csv")
    }

    fn write(&self, path: &Path, rows: &[(&Path, &ItemResult)]) -> Result<(), String> {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut csv = String::from("input,rank,label,score\n");
        let mut json = Vec::new();
        for (input, result) in rows {
            let ItemResult::Labels(top) = result else {
                continue;
            };
            let input = input.display().to_string();
            for (rank, l) in top.iter().enumerate() {
                csv.push_str(&format!(
                    "{},{},{},{}\n",
                    quote(&input),
                    rank + 1,
                    quote(&l.label),
                    l.score
                ));
            }
            json.push(serde_json::json!({ "input": input, "labels": top }));
        }
        write_bytes(path, csv.as_bytes())?;
        write_bytes(
            &path.with_extension("json"),
            &json_bytes(&serde_json::Value::Array(json)),
        )
    }
}
