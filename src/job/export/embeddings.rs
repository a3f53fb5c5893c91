//! `embeddings.npy` (one float32 row per image) and `embeddings.json` (which row is which input).

use std::path::{Path, PathBuf};

use super::{Exporter, json_bytes, write_bytes};
use crate::job::ItemResult;

pub struct Embeddings;

impl Exporter for Embeddings {
    fn path(&self, dir: &Path) -> PathBuf {
        dir.join("embeddings.npy")
    }

    fn write(&self, path: &Path, rows: &[(&Path, &ItemResult)]) -> Result<(), String> {
        let vectors: Vec<(&Path, &Vec<f32>)> = rows
            .iter()
            .filter_map(|(input, r)| match r {
                ItemResult::Embedding(v) => Some((*input, v)),
                _ => None,
            })
            .collect();
        let dim = vectors.first().map_or(0, |(_, v)| v.len());
        let matrix: Vec<Vec<f32>> = vectors.iter().map(|(_, v)| (*v).clone()).collect();
        write_bytes(path, &crate::analyze::npy_bytes(&matrix, dim))?;
        let index: Vec<serde_json::Value> = vectors
            .iter()
            .enumerate()
            .map(|(row, (input, _))| serde_json::json!({ "row": row, "input": input.to_string_lossy() }))
            .collect();
        write_bytes(
            &path.with_extension("json"),
            &json_bytes(&serde_json::json!({ "dim": dim, "rows": index })),
        )
    }
}
