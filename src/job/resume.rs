//! Resume: what the manifest records for each output, and the settings a resumed job must share
//! with the run that wrote it.

use std::path::Path;

use super::JobSpec;

/// What the manifest records for an output once its file is complete.
#[derive(Clone)]
pub(crate) struct Record {
    pub writer: std::sync::Arc<crate::manifest::Writer>,
    pub entry: crate::manifest::Entry,
}

impl Record {
    /// Records the output whose complete file is `written` (the temporary file about to be
    /// renamed into place), with its size and hash.
    pub fn append_written(&self, written: &Path) -> Result<(), String> {
        let (output_bytes, output_hash) = crate::manifest::fingerprint(written)
            .map_err(|e| format!("cannot read back {}: {e}", written.display()))?;
        self.writer.append(&crate::manifest::Entry {
            output_bytes,
            output_hash,
            ..self.entry.clone()
        })
    }
}

/// The settings a resumed job must share with the run that wrote the manifest.
pub(crate) fn settings_key(spec: &JobSpec) -> String {
    format!(
        "model={};precision={:?};format={:?};quality={};name={};mask_only={};annotate={};top_k={}",
        spec.model.id,
        spec.precision,
        spec.export.format,
        spec.export.quality,
        spec.export.pattern,
        spec.analysis.mask_only,
        spec.analysis.annotate,
        spec.analysis.top_k
    ) + &export_key(&spec.export)
        + &model_file_stamp(&spec.model.id)
}

/// The export settings beyond format and quality, where they are not the defaults (so that a
/// manifest written before they existed still resumes).
fn export_key(export: &super::ExportOptions) -> String {
    let default = super::ExportOptions::default();
    let mut key = String::new();
    if let Some(scale) = export.scale {
        key += &format!(";scale={scale}");
    }
    if export.png_compression != default.png_compression {
        key += &format!(";png={:?}", export.png_compression);
    }
    if export.webp_lossless != default.webp_lossless {
        key += ";webp=lossy";
    }
    key
}

/// A user model's file size and modification time, so that a model replaced at the same path
/// does not resume the old one's results; empty for built-ins.
fn model_file_stamp(id: &str) -> String {
    let path = Path::new(id);
    match path
        .is_file()
        .then(|| crate::manifest::stamp(path))
        .flatten()
    {
        Some((bytes, modified)) => format!(";model_file={bytes}@{modified}"),
        None => String::new(),
    }
}
