//! What the app remembers between runs (eframe persistence), and the job it describes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::builtin::{BUILTINS, ModelChoice};
use crate::gpu::AdapterChoice;
use crate::job::{AUTO_BATCH, AnalysisOptions, ExportOptions, JobSpec, OutputFormat, Overwrite};
use crate::kernels::Precision;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Settings {
    pub model: String,
    pub batch_size: u32,
    /// Batch size Auto: the largest batch that fits the memory budget.
    pub batch_auto: bool,
    /// MiB; 0: the default (half of what the driver offers).
    pub memory_budget_mb: u32,
    /// Tile edge in pixels; 0: Auto.
    pub tile_size: u32,
    pub float16: bool,
    /// Index in the adapter list; None: the best adapter (a discrete GPU first).
    pub adapter: Option<usize>,
    pub output_dir: Option<PathBuf>,
    pub format: OutputFormat,
    pub quality: u8,
    /// WebP outputs lossless (else lossy at `quality`).
    pub webp_lossless: bool,
    pub png_compression: crate::job::export::encode::PngCompression,
    /// The output's scale for image-to-image models; 0: the model's.
    pub scale: f32,
    pub pattern: String,
    pub overwrite: Overwrite,
    pub top_k: usize,
    pub mask_only: bool,
    pub annotate: bool,
    /// A chain writes each step's result beside the output (`--keep-steps`); used only while
    /// the model is a chain.
    pub keep_steps: bool,
    /// How a user model's input is fed ("auto": the file's metadata, else the defaults), as the
    /// CLI's `--input-range`, `--channel-order` and `--input-layout`.
    pub input_range: String,
    pub channel_order: String,
    pub input_layout: String,
    /// The models folder; None: `$BATCHWISE_MODELS_DIR`, else batchwise/models in the user's
    /// data folder.
    pub models_dir: Option<PathBuf>,
    /// The folder of the kernel tuning cache; None: the user's cache folder
    /// (`autotune::default_cache_dir`). Not saved: for tests, which keep it in a folder of their
    /// own.
    #[serde(skip)]
    pub tune_cache: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        let export = ExportOptions::default();
        let analysis = AnalysisOptions::default();
        Self {
            model: BUILTINS[0].id.to_owned(),
            batch_size: 8,
            batch_auto: true,
            memory_budget_mb: 0,
            tile_size: 0,
            float16: false,
            adapter: None,
            output_dir: None,
            format: export.format,
            quality: export.quality,
            webp_lossless: export.webp_lossless,
            png_compression: export.png_compression,
            scale: 0.0,
            pattern: export.pattern,
            overwrite: export.overwrite,
            top_k: analysis.top_k,
            mask_only: analysis.mask_only,
            annotate: analysis.annotate,
            keep_steps: false,
            input_range: "auto".into(),
            channel_order: "auto".into(),
            input_layout: "auto".into(),
            models_dir: None,
            tune_cache: None,
        }
    }
}

impl Settings {
    pub fn adapter_choice(&self) -> AdapterChoice {
        self.adapter
            .map_or(AdapterChoice::Auto, AdapterChoice::Index)
    }

    /// The device commands run on: the chosen adapter and the tuning cache.
    pub fn device(&self) -> super::worker::Device {
        super::worker::Device {
            adapter: self.adapter_choice(),
            tune_cache: (self.tune_cache.clone()).or_else(crate::autotune::default_cache_dir),
        }
    }

    pub fn precision(&self) -> Precision {
        if self.float16 {
            Precision::F16
        } else {
            Precision::F32
        }
    }

    pub fn export(&self) -> ExportOptions {
        ExportOptions {
            format: self.format,
            quality: self.quality,
            webp_lossless: self.webp_lossless,
            png_compression: self.png_compression,
            scale: (self.scale > 0.0).then_some(self.scale),
            pattern: self.pattern.clone(),
            overwrite: self.overwrite,
            keep_steps: self.keep_steps && self.is_chain(),
        }
    }

    /// Whether the model is a chain of steps (`a,b`).
    pub fn is_chain(&self) -> bool {
        self.model.contains(crate::chain::SEPARATOR)
    }

    /// The job these settings describe for `inputs` (found in the folders `roots`).
    pub fn job(
        &self,
        inputs: Vec<PathBuf>,
        roots: Vec<PathBuf>,
        model: ModelChoice,
        output_dir: PathBuf,
    ) -> JobSpec {
        let mut export = self.export();
        // The scale is the output's of image-to-image models; the others write at the input's.
        export.scale = export.scale.filter(|_| model.input_size == 0);
        JobSpec {
            inputs,
            model,
            batch_size: if self.batch_auto {
                AUTO_BATCH
            } else {
                self.batch_size
            },
            tile_size: (self.tile_size > 0).then_some(self.tile_size),
            output_dir,
            precision: self.precision(),
            analysis: AnalysisOptions {
                top_k: self.top_k,
                mask_only: self.mask_only,
                annotate: self.annotate,
            },
            export,
            shard: None,
            memory_budget: (self.memory_budget_mb > 0)
                .then_some((self.memory_budget_mb as u64) << 20),
            roots,
            max_item_bytes: None,
        }
    }
}
