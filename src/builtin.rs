//! The built-in models, embedded in the binary from `assets/models/` (see MODELS.md there).

use std::sync::Arc;

use anyhow::{Result, anyhow};

use crate::kernels::pack::PixelMapping;
use crate::model::Model;

/// What a model does with an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Image in, image `scale` times larger out.
    Upscale,
}

/// How the tiled image pipeline feeds a model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageModelSpec {
    pub scale: u32,
    /// Pixels of context each tile needs on each side (the model's receptive radius).
    pub context: u32,
    pub input_map: PixelMapping,
}

#[derive(Debug)]
pub struct BuiltinModel {
    pub id: &'static str,
    pub description: &'static str,
    pub task: Task,
    pub spec: ImageModelSpec,
    pub file: &'static str,
    onnx: &'static [u8],
}

/// waifu2x upconv_7 has no padding: 7 px of context per side give exactly twice the tile.
const WAIFU2X: ImageModelSpec = ImageModelSpec {
    scale: 2,
    context: 7,
    input_map: PixelMapping::UNIT,
};

pub const BUILTINS: &[BuiltinModel] = &[
    BuiltinModel {
        id: "upscale-photo-2x",
        description: "2x photo upscale (waifu2x upconv_7 photo)",
        task: Task::Upscale,
        spec: WAIFU2X,
        file: "waifu2x_upconv7_photo_scale2.0x.onnx",
        onnx: include_bytes!("../assets/models/waifu2x_upconv7_photo_scale2.0x.onnx"),
    },
    BuiltinModel {
        id: "upscale-photo-2x-denoise0",
        description: "2x photo upscale with lightest JPEG noise removal (waifu2x upconv_7 photo, noise 0)",
        task: Task::Upscale,
        spec: WAIFU2X,
        file: "waifu2x_upconv7_photo_noise0_scale2.0x.onnx",
        onnx: include_bytes!("../assets/models/waifu2x_upconv7_photo_noise0_scale2.0x.onnx"),
    },
    BuiltinModel {
        id: "upscale-photo-2x-denoise1",
        description: "2x photo upscale with light JPEG noise removal (waifu2x upconv_7 photo, noise 1)",
        task: Task::Upscale,
        spec: WAIFU2X,
        file: "waifu2x_upconv7_photo_noise1_scale2.0x.onnx",
        onnx: include_bytes!("../assets/models/waifu2x_upconv7_photo_noise1_scale2.0x.onnx"),
    },
    BuiltinModel {
        id: "upscale-photo-2x-denoise2",
        description: "2x photo upscale with medium JPEG noise removal (waifu2x upconv_7 photo, noise 2)",
        task: Task::Upscale,
        spec: WAIFU2X,
        file: "waifu2x_upconv7_photo_noise2_scale2.0x.onnx",
        onnx: include_bytes!("../assets/models/waifu2x_upconv7_photo_noise2_scale2.0x.onnx"),
    },
    BuiltinModel {
        id: "upscale-photo-2x-denoise3",
        description: "2x photo upscale with strongest JPEG noise removal (waifu2x upconv_7 photo, noise 3)",
        task: Task::Upscale,
        spec: WAIFU2X,
        file: "waifu2x_upconv7_photo_noise3_scale2.0x.onnx",
        onnx: include_bytes!("../assets/models/waifu2x_upconv7_photo_noise3_scale2.0x.onnx"),
    },
    BuiltinModel {
        id: "upscale-anime-4x",
        description: "4x upscale for anime and illustration (Real-ESRGAN animevideov3)",
        task: Task::Upscale,
        // 18 convolutions of 3x3 with padding 1: a receptive radius of 18 input pixels.
        spec: ImageModelSpec {
            scale: 4,
            context: 18,
            input_map: PixelMapping::UNIT,
        },
        file: "realesr_animevideov3_x4.onnx",
        onnx: include_bytes!("../assets/models/realesr_animevideov3_x4.onnx"),
    },
];

impl BuiltinModel {
    pub fn load(&self) -> Result<Arc<Model>> {
        crate::onnx::load(self.onnx, self.id)
            .map(Arc::new)
            .map_err(|e| anyhow!("built-in model {}: {e:#}", self.id))
    }

    /// Parameter count of the built-in, from its file.
    pub fn onnx_bytes(&self) -> &'static [u8] {
        self.onnx
    }
}

/// Finds a built-in by id, with an error listing the ids.
pub fn find(id: &str) -> Result<&'static BuiltinModel> {
    BUILTINS.iter().find(|m| m.id == id).ok_or_else(|| {
        let ids: Vec<_> = BUILTINS.iter().map(|m| m.id).collect();
        anyhow!(
            "there is no built-in model {id:?}; built-ins: {}",
            ids.join(", ")
        )
    })
}
