//! The outputs of a user model whose outputs are not images (a classifier's logits, a
//! detector's raw maps): each output stacked over the job's images into `OUT/<output>.npy`
//! (float32, shape `[images, ...the output's shape]`), and `OUT/tensors.json` naming each
//! output's file and shape and each row's input.

use std::path::{Path, PathBuf};

use super::{json_bytes, write_bytes};
use crate::builtin::TensorOutput;
use crate::job::ItemResult;

pub struct Tensors {
    pub outputs: Vec<TensorOutput>,
}

/// An output's file name: its name with anything but letters, digits, `-`, `_` and `.` made
/// `_` (an ONNX name may hold `/` or `:`), then `.npy`.
pub fn file_name(output: &str) -> String {
    let safe: String = output
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    format!("{}.npy", safe.trim_start_matches('.'))
}

impl super::Exporter for Tensors {
    fn path(&self, dir: &Path) -> PathBuf {
        dir.join("tensors.json")
    }

    fn write(&self, path: &Path, rows: &[(&Path, &ItemResult)]) -> Result<(), String> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut index = Vec::new();
        for (k, output) in self.outputs.iter().enumerate() {
            let values: Vec<&[f32]> = rows
                .iter()
                .map(|(_, r)| match r {
                    ItemResult::Tensors(outs) => outs.get(k).map_or(&[][..], Vec::as_slice),
                    _ => &[][..],
                })
                .collect();
            let elements: usize = output.shape.iter().product();
            if let Some(((input, _), v)) =
                rows.iter().zip(&values).find(|(_, v)| v.len() != elements)
            {
                return Err(format!(
                    "{}: output {} gave {} values, not the {elements} of its shape {:?}",
                    input.display(),
                    output.name,
                    v.len(),
                    output.shape
                ));
            }
            let mut shape = vec![rows.len()];
            shape.extend(&output.shape);
            let file = file_name(&output.name);
            let data: Vec<f32> = values.concat();
            write_bytes(&dir.join(&file), &crate::analyze::npy_shaped(&data, &shape))?;
            index.push(serde_json::json!({
                "name": output.name,
                "file": file,
                "shape": shape,
            }));
        }
        let items: Vec<serde_json::Value> = rows
            .iter()
            .enumerate()
            .map(|(row, (input, _))| {
                serde_json::json!({ "input": input.to_string_lossy(), "row": row })
            })
            .collect();
        let json = serde_json::json!({ "outputs": index, "items": items });
        write_bytes(path, &json_bytes(&json))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn output_names_become_plain_file_names() {
        assert_eq!(super::file_name("logits"), "logits.npy");
        assert_eq!(super::file_name("/model/head:0"), "_model_head_0.npy");
        assert_eq!(super::file_name("..x"), "x.npy");
    }
}
