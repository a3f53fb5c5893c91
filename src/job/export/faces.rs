//! `faces.json`: each image's size and its faces (box, score, keypoints) in pixels.

use std::path::{Path, PathBuf};

use super::{Exporter, json_bytes, write_bytes};
use crate::job::ItemResult;

pub struct Faces;

impl Exporter for Faces {
    fn path(&self, dir: &Path) -> PathBuf {
        dir.join("faces.json")
    }

    fn write(&self, path: &Path, rows: &[(&Path, &ItemResult)]) -> Result<(), String> {
        let json: Vec<serde_json::Value> = rows
            .iter()
            .filter_map(|(input, r)| match r {
                ItemResult::Faces { size, faces } => Some(serde_json::json!({
                    "input": input.to_string_lossy(),
                    "width": size[0],
                    "height": size[1],
                    "faces": faces,
                })),
                _ => None,
            })
            .collect();
        write_bytes(path, &json_bytes(&serde_json::Value::Array(json)))
    }
}
