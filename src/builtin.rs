//! The built-in models, embedded in the binary from `assets/models/` (see MODELS.md there).

use std::sync::Arc;

use anyhow::{Result, anyhow};

use crate::kernels::pack::PixelMapping;
use crate::model::{ItemShape, Model};

/// What a model does with an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Image in, image `scale` times larger out.
    Upscale,
    /// Image in, the same size image out.
    Enhance,
    /// Image in, ImageNet class scores out.
    Classify,
    /// Image in, a feature vector out.
    Embed,
    /// Image in, a foreground probability mask out.
    Segment,
    /// Image in, face boxes out.
    DetectFaces,
    /// A user model whose outputs are not images: each output kept as it is (`.npy`).
    Tensors,
}

/// ImageNet class names of `classify`, index = class.
pub fn imagenet_labels() -> Vec<String> {
    serde_json::from_str(include_str!("../assets/models/imagenet_labels.json"))
        .expect("the embedded label list is valid JSON")
}

/// EfficientNet-Lite's input: `(v - 127) / 128` for 8-bit `v`.
const EFFICIENTNET_INPUT: PixelMapping = PixelMapping {
    scale: [1.0 / 128.0; 3],
    offset: [-127.0 / 128.0; 3],
    bgr: false,
};

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
    /// The graph outputs to read, the main one first; empty: the file's only output.
    pub outputs: &'static [&'static str],
    /// Fixed input edge length in pixels (the image is cropped and resized to it); 0: any size, in
    /// tiles.
    pub input_size: u32,
    pub file: &'static str,
    onnx: &'static [u8],
}

/// waifu2x upconv_7 has no padding: 7 px of context per side give exactly twice the tile.
const WAIFU2X: ImageModelSpec = ImageModelSpec {
    scale: 2,
    context: 7,
    input_map: PixelMapping::UNIT,
};

pub static BUILTINS: &[BuiltinModel] = &[
    BuiltinModel {
        id: "upscale-photo-2x",
        description: "2x photo upscale (waifu2x upconv_7 photo)",
        task: Task::Upscale,
        spec: WAIFU2X,
        outputs: &[],
        input_size: 0,
        file: "waifu2x_upconv7_photo_scale2.0x.onnx",
        onnx: include_bytes!("../assets/models/waifu2x_upconv7_photo_scale2.0x.onnx"),
    },
    BuiltinModel {
        id: "upscale-photo-2x-denoise0",
        description: "2x photo upscale with lightest JPEG noise removal (waifu2x upconv_7 photo, noise 0)",
        task: Task::Upscale,
        spec: WAIFU2X,
        outputs: &[],
        input_size: 0,
        file: "waifu2x_upconv7_photo_noise0_scale2.0x.onnx",
        onnx: include_bytes!("../assets/models/waifu2x_upconv7_photo_noise0_scale2.0x.onnx"),
    },
    BuiltinModel {
        id: "upscale-photo-2x-denoise1",
        description: "2x photo upscale with light JPEG noise removal (waifu2x upconv_7 photo, noise 1)",
        task: Task::Upscale,
        spec: WAIFU2X,
        outputs: &[],
        input_size: 0,
        file: "waifu2x_upconv7_photo_noise1_scale2.0x.onnx",
        onnx: include_bytes!("../assets/models/waifu2x_upconv7_photo_noise1_scale2.0x.onnx"),
    },
    BuiltinModel {
        id: "upscale-photo-2x-denoise2",
        description: "2x photo upscale with medium JPEG noise removal (waifu2x upconv_7 photo, noise 2)",
        task: Task::Upscale,
        spec: WAIFU2X,
        outputs: &[],
        input_size: 0,
        file: "waifu2x_upconv7_photo_noise2_scale2.0x.onnx",
        onnx: include_bytes!("../assets/models/waifu2x_upconv7_photo_noise2_scale2.0x.onnx"),
    },
    BuiltinModel {
        id: "upscale-photo-2x-denoise3",
        description: "2x photo upscale with strongest JPEG noise removal (waifu2x upconv_7 photo, noise 3)",
        task: Task::Upscale,
        spec: WAIFU2X,
        outputs: &[],
        input_size: 0,
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
        outputs: &[],
        input_size: 0,
        file: "realesr_animevideov3_x4.onnx",
        onnx: include_bytes!("../assets/models/realesr_animevideov3_x4.onnx"),
    },
    BuiltinModel {
        id: "upscale-anime-2x",
        description: "2x upscale for anime and illustration (Real-ESRGAN animevideov3 x2)",
        task: Task::Upscale,
        // The x4 network (radius 18), then a bicubic 2x downscale whose 4 taps at 4x reach half
        // an input pixel further: 19.
        spec: ImageModelSpec {
            scale: 2,
            context: 19,
            input_map: PixelMapping::UNIT,
        },
        outputs: &[],
        input_size: 0,
        file: "realesr_animevideov3_x2.onnx",
        onnx: include_bytes!("../assets/models/realesr_animevideov3_x2.onnx"),
    },
    BuiltinModel {
        id: "enhance-low-light",
        description: "Brighten dark photos (Zero-DCE light-enhancement curves)",
        task: Task::Enhance,
        // 7 convolutions of 3x3 with padding 1; the curves that follow work pixel by pixel.
        spec: ImageModelSpec {
            scale: 1,
            context: 7,
            input_map: PixelMapping::UNIT,
        },
        outputs: &[],
        input_size: 0,
        file: "zero_dce.onnx",
        onnx: include_bytes!("../assets/models/zero_dce.onnx"),
    },
    BuiltinModel {
        id: "classify",
        description: "ImageNet-1k classification, top-5 labels (EfficientNet-Lite0)",
        task: Task::Classify,
        spec: ImageModelSpec {
            scale: 0,
            context: 0,
            input_map: EFFICIENTNET_INPUT,
        },
        outputs: &["logits"],
        input_size: 224,
        file: "efficientnet_lite0.onnx",
        onnx: EFFICIENTNET,
    },
    BuiltinModel {
        id: "embed",
        description: "1280-d image embedding (EfficientNet-Lite0 features)",
        task: Task::Embed,
        spec: ImageModelSpec {
            scale: 0,
            context: 0,
            input_map: EFFICIENTNET_INPUT,
        },
        outputs: &["feat"],
        input_size: 224,
        file: "efficientnet_lite0.onnx",
        onnx: EFFICIENTNET,
    },
    BuiltinModel {
        id: "remove-background",
        description: "Person / background mask (MediaPipe selfie segmentation)",
        task: Task::Segment,
        spec: ImageModelSpec {
            scale: 0,
            context: 0,
            input_map: PixelMapping::UNIT,
        },
        outputs: &[],
        input_size: 256,
        file: "selfie_segmentation.onnx",
        onnx: include_bytes!("../assets/models/selfie_segmentation.onnx"),
    },
    BuiltinModel {
        id: "detect-faces",
        description: "Face boxes and keypoints (MediaPipe BlazeFace, short range)",
        task: Task::DetectFaces,
        // RGB in [-1, 1].
        spec: ImageModelSpec {
            scale: 0,
            context: 0,
            input_map: PixelMapping {
                scale: [2.0 / 255.0; 3],
                offset: [-1.0; 3],
                bgr: false,
            },
        },
        outputs: &["output0_nhwc", "output1_nhwc"],
        input_size: 128,
        file: "face_detection_short_range.onnx",
        onnx: include_bytes!("../assets/models/face_detection_short_range.onnx"),
    },
];

/// One copy of the EfficientNet file serves `classify` and `embed`.
const EFFICIENTNET: &[u8] = include_bytes!("../assets/models/efficientnet_lite0.onnx");

impl BuiltinModel {
    pub fn load(&self) -> Result<Arc<Model>> {
        match self.outputs {
            [] => crate::onnx::load(self.onnx, self.id),
            outputs => crate::onnx::load_outputs(self.onnx, self.id, outputs),
        }
        .map(Arc::new)
        .map_err(|e| anyhow!("built-in model {}: {e:#}", self.id))
    }

    /// Whether the model maps images to images (upscale, enhance), which `run` writes as files.
    pub fn is_image_to_image(&self) -> bool {
        matches!(self.task, Task::Upscale | Task::Enhance)
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

/// A model ready for a job: a built-in or a user's file, parsed, with how to feed it.
#[derive(Clone, Debug)]
pub struct ModelChoice {
    /// The built-in id, or the file's path.
    pub id: String,
    pub model: Arc<Model>,
    pub spec: ImageModelSpec,
    pub task: Task,
    /// Fixed input edge length (classify, embed, segment, faces); 0: images of any size in tiles.
    pub input_size: u32,
    /// A chain's models, in order ([`crate::chain`]); empty for one model.
    pub steps: Vec<ModelChoice>,
    /// How a chain's steps (those before a fixed-input last step: [`crate::chain::prefix`])
    /// are composed: for tiles, or for items that are whole images.
    pub tiling: crate::chain::Tiling,
    /// [`Task::Tensors`]: the outputs, in the model's order; empty for the others.
    pub tensor_outputs: Vec<TensorOutput>,
}

/// One output of a model whose outputs are not images: its name and its shape for one image.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TensorOutput {
    pub name: String,
    pub shape: Vec<usize>,
}

/// What the app shows about a model before it runs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelInfo {
    /// Weights and biases, counted in values.
    pub parameters: u64,
    /// The input edge the figure below is for: the model's fixed size, or a 128 px tile with its
    /// context (the Auto tile on most GPUs).
    pub side: u32,
    /// GPU bytes one item (image or tile) needs beside the weights, in float32.
    pub bytes_per_item: u64,
    /// Run on tiles and takes means over whole maps ([`Model::means_over_the_map`]): tiles change
    /// its output.
    pub tiles_change_output: bool,
}

impl ModelChoice {
    pub fn info(&self) -> Result<ModelInfo> {
        let m = &self.model;
        let parameters = m
            .layers
            .iter()
            .map(|l| (l.weights.len() + l.bias.len()) as u64)
            .sum();
        let side = match (self.input_size, &m.static_shapes) {
            (0, Some(shapes)) => shapes[0].h,
            (0, None) => 128 + 2 * self.spec.context,
            (n, _) => n,
        };
        let (activations, io) =
            crate::engine::item_bytes(m, side, side, crate::kernels::Precision::F32)?;
        Ok(ModelInfo {
            parameters,
            side,
            bytes_per_item: activations + io,
            tiles_change_output: self.input_size == 0 && m.means_over_the_map(),
        })
    }
}

/// How a user model's input is fed; None keeps what the file's metadata or the defaults say.
#[derive(Clone, Debug, Default)]
pub struct InputOverrides {
    /// "0-1", "0-255" or "-1-1".
    pub range: Option<String>,
    /// "rgb" or "bgr".
    pub channel_order: Option<String>,
    /// "nchw" or "nhwc".
    pub layout: Option<String>,
    /// Pixels of context per tile side.
    pub context: Option<u32>,
}

/// Context given to user models whose receptive field cannot be read off their shape.
pub const DEFAULT_USER_CONTEXT: u32 = 16;

impl BuiltinModel {
    pub fn choice(&self) -> Result<ModelChoice> {
        Ok(ModelChoice {
            id: self.id.to_owned(),
            model: self.load()?,
            spec: self.spec,
            task: self.task,
            input_size: self.input_size,
            steps: Vec::new(),
            tensor_outputs: Vec::new(),
            tiling: crate::chain::Tiling::Tiles,
        })
    }
}

fn mapping(range: &str, order: &str) -> Result<PixelMapping> {
    let (scale, offset) = match range {
        "0-1" => (1.0 / 255.0, 0.0),
        "0-255" => (1.0, 0.0),
        "-1-1" => (2.0 / 255.0, -1.0),
        other => anyhow::bail!("input range {other:?} is not one of 0-1, 0-255, -1-1"),
    };
    let bgr = match order {
        "rgb" => false,
        "bgr" => true,
        other => anyhow::bail!("channel order {other:?} is not rgb or bgr"),
    };
    Ok(PixelMapping {
        scale: [scale; 3],
        offset: [offset; 3],
        bgr,
    })
}

/// A built-in by id, or a user's `.onnx` file or NCNN `.param` file (with its `.bin`) by path.
///
/// For a file, the input conventions come from its metadata (`batchwise.input_range`,
/// `batchwise.channel_order`, `batchwise.layout`, `batchwise.context`) where present, else the
/// defaults (0-1, rgb, nchw), and `overrides` beat both. The scale factor is found by running the
/// model's shapes on two input sizes, not from its name; a network that shrinks its input (no
/// padding) gets exactly the context it eats, others [`DEFAULT_USER_CONTEXT`].
pub fn resolve(name: &str, overrides: &InputOverrides) -> Result<ModelChoice> {
    if let Some(b) = BUILTINS.iter().find(|m| m.id == name) {
        return b.choice();
    }
    let path = std::path::Path::new(name);
    if !path.exists() {
        let ids: Vec<_> = BUILTINS.iter().map(|m| m.id).collect();
        anyhow::bail!(
            "there is no built-in model {name:?} and no file of that name; built-ins: {}",
            ids.join(", ")
        );
    }
    let is_ncnn = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("param"));
    // What an ONNX file declares: the input size it fixes, its outputs.
    let mut declared = Ok(crate::onnx::Declared::default());
    let (model, metadata) = if is_ncnn {
        let model = crate::ncnn::load(path).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
        (model, Default::default())
    } else {
        let bytes =
            std::fs::read(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
        declared = crate::onnx::declared(&bytes);
        let file_size = declared.as_ref().ok().and_then(|d| d.input_size);
        match crate::onnx::load_with_metadata(&bytes, name) {
            // A model whose output is no image (a classifier's) keeps the input size its file
            // fixes, if it fixes one: its outputs are then kept as tensors. It runs as lowered
            // with a free size (every pass applies) where its shapes hold at that size, else
            // with every shape bound.
            Ok((m, meta)) if m.static_shapes.is_none() => match measure_scale(&m) {
                Err(_) if tensor_shapes(&m, file_size).is_some() => (m, meta),
                Err(_) => crate::onnx::load_at_size(&bytes, name, None).unwrap_or((m, meta)),
                Ok(_) => (m, meta),
            },
            // A fixed-size model: lowered as an image at its size (channels-last inputs too).
            Ok(_) => crate::onnx::load_at_size(&bytes, name, None)
                .map_err(|e| anyhow!("{}: {e:#}", path.display()))?,
            // What the translator cannot take with a free size (shape arithmetic, reshapes of
            // any rank) runs with every shape fixed at one tile size.
            Err(first) => crate::onnx::load_at_size(
                &bytes,
                name,
                Some((STATIC_USER_SIDE, STATIC_USER_SIDE)),
            )
            .map_err(|e| {
                anyhow!(
                    "{}: {first:#} (and with every shape fixed at {STATIC_USER_SIDE}x{STATIC_USER_SIDE}: {e:#})",
                    path.display()
                )
            })?,
        }
    };
    let meta = |key: &str| metadata.get(key).map(|v| v.to_ascii_lowercase());
    let layout = overrides
        .layout
        .clone()
        .or_else(|| meta("batchwise.layout"));
    let found = if model.nhwc_input { "nhwc" } else { "nchw" };
    if let Some(layout) = layout
        && layout != found
    {
        anyhow::bail!(
            "{}: the input layout is {layout} by {}, but the graph's input is {found}",
            path.display(),
            if overrides.layout.is_some() {
                "--input-layout"
            } else {
                "its metadata"
            }
        );
    }
    let range = overrides
        .range
        .clone()
        .or_else(|| meta("batchwise.input_range"))
        .unwrap_or_else(|| "0-1".into());
    let order = overrides
        .channel_order
        .clone()
        .or_else(|| meta("batchwise.channel_order"))
        .unwrap_or_else(|| "rgb".into());
    let input_map = mapping(&range, &order).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    // A grey or RGBA map beside other outputs (a detector's) is not an image to write: every
    // output is kept, as tensors.
    let lone_image = |(_, _, c): (u32, u32, u32)| match c != 3 && !model.extra_outputs.is_empty() {
        true => Err(anyhow!("its {c}-channel map comes with other outputs")),
        false => Ok(()),
    };
    if let Some(shapes) = model.static_shapes.clone()
        && !is_ncnn
        && let Err(not_image) = fixed_scale(&model, &shapes).and_then(lone_image)
    {
        return tensor_choice(path, name, model, &shapes, declared, input_map, &not_image);
    }
    let file_size = declared.as_ref().ok().and_then(|d| d.input_size);
    if let Some((shapes, not_image)) = tensor_shapes(&model, file_size) {
        return tensor_choice(path, name, model, &shapes, declared, input_map, &not_image);
    }
    let (scale, shrink, channels) = match &model.static_shapes {
        Some(shapes) => fixed_scale(&model, shapes),
        None => measure_scale(&model),
    }
    .map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    if model.input_channels != 3 {
        anyhow::bail!(
            "{}: the model takes {} input channels; batchwise feeds it RGB images (3 channels)",
            path.display(),
            model.input_channels
        );
    }
    // Grey (1 channel) and RGBA (4) outputs are unpacked to pixels as RGB ones are.
    let mut model = model;
    model.image_output = true;
    model.output_channels = channels;
    let meta_context = meta("batchwise.context").and_then(|v| v.parse().ok());
    let context = overrides.context.or(meta_context).unwrap_or(if shrink > 0 {
        shrink.div_ceil(scale)
    } else {
        DEFAULT_USER_CONTEXT
    });
    Ok(ModelChoice {
        id: name.to_owned(),
        model: Arc::new(model),
        task: if scale == 1 {
            Task::Enhance
        } else {
            Task::Upscale
        },
        input_size: 0,
        steps: Vec::new(),
        spec: ImageModelSpec {
            scale,
            context,
            input_map,
        },
        tensor_outputs: Vec::new(),
        tiling: crate::chain::Tiling::Tiles,
    })
}

/// A fixed-size user model whose outputs are not images ([`Task::Tensors`], `not_image` says
/// why not): each image is stretched to its square RGB input, and each output is kept with its
/// name and its shape as the file declares it (`declared`) (without the batch dimension; flat where the declared shape does
/// not hold it).
fn tensor_choice(
    path: &std::path::Path,
    name: &str,
    model: crate::model::Model,
    shapes: &[crate::model::ItemShape],
    declared: Result<crate::onnx::Declared>,
    input_map: PixelMapping,
    not_image: &anyhow::Error,
) -> Result<ModelChoice> {
    let i = shapes[0];
    if i.h != i.w || i.c != 3 {
        anyhow::bail!(
            "{}: {not_image:#}; or, with a square RGB input, models whose outputs are not images \
             (written as .npy)",
            path.display()
        );
    }
    let declared = declared?.outputs;
    let values = std::iter::once(model.output).chain(model.extra_outputs.iter().copied());
    let tensor_outputs = values
        .zip(declared)
        .map(|(v, (output, dims))| {
            let elements = shapes[v].elements() as usize;
            let dims: Vec<usize> = dims.iter().map(|&d| d.max(0) as usize).collect();
            let shape = match dims.split_first() {
                Some((1, rest)) if rest.iter().product::<usize>() == elements => rest.to_vec(),
                _ if dims.iter().product::<usize>() == elements => dims,
                _ => vec![elements],
            };
            TensorOutput {
                name: output,
                shape,
            }
        })
        .collect();
    Ok(ModelChoice {
        id: name.to_owned(),
        model: Arc::new(model),
        task: Task::Tensors,
        input_size: i.h,
        spec: ImageModelSpec {
            scale: 1,
            context: 0,
            input_map,
        },
        tensor_outputs,
        steps: Vec::new(),
        tiling: crate::chain::Tiling::Tiles,
    })
}

/// The shapes of a model lowered with a free size at the input size its file fixes
/// (`file_size`), where its output is no image at any size ([`measure_scale`] fails) nor at
/// that one (the error says why not): a classifier's, run at its size with its outputs kept as
/// tensors.
fn tensor_shapes(
    model: &Model,
    file_size: Option<(u32, u32)>,
) -> Option<(Vec<ItemShape>, anyhow::Error)> {
    let (h, w) = file_size?;
    if model.static_shapes.is_some() || measure_scale(model).is_ok() {
        return None;
    }
    let shapes = model.shapes(h, w).ok()?;
    let not_image = fixed_scale(model, &shapes).err()?;
    Some((shapes, not_image))
}

/// The input side at which a user model that needs every shape fixed is lowered: tiles of
/// 128 px plus 16 px of context per side.
pub const STATIC_USER_SIDE: u32 = 160;

/// Output channels an image-to-image model may give: grey, RGB, RGBA.
fn is_image_channels(c: u32) -> bool {
    matches!(c, 1 | 3 | 4)
}

/// The scale factor of a fixed-size image-to-image model (square input and output, 1, 3 or 4
/// channels out, a whole factor), with its output channels; such a model loses no border
/// pixels to padding-free layers.
fn fixed_scale(model: &Model, shapes: &[crate::model::ItemShape]) -> Result<(u32, u32, u32)> {
    let (i, o) = (shapes[0], shapes[model.output]);
    if i.h != i.w || o.h != o.w || !is_image_channels(o.c) || o.h % i.h != 0 {
        anyhow::bail!(
            "the model turns {}x{}x{} into {}x{}x{}; batchwise runs image-to-image models with \
             square tiles and 1, 3 or 4 output channels (grey, RGB, RGBA), scaled by a whole \
             factor",
            i.c,
            i.h,
            i.w,
            o.c,
            o.h,
            o.w
        );
    }
    Ok((o.h / i.h, 0, o.c))
}

/// The scale factor and per-side shrink (output pixels lost at each border) of an image-to-image
/// model, from its output size at two input sizes: out(s) = scale * s - 2 * shrink; with its
/// output channels (1, 3 or 4).
fn measure_scale(model: &Model) -> Result<(u32, u32, u32)> {
    let out = |s: u32| -> Result<(u32, u32, u32)> {
        let shapes = model.shapes(s, s)?;
        let o = shapes[model.output];
        Ok((o.c, o.h, o.w))
    };
    let (c, a, _) = out(64)?;
    let (_, b, bw) = out(96)?;
    if !is_image_channels(c) || b != bw {
        anyhow::bail!(
            "the model gives {c} channels at {b}x{bw} for a 96x96 input; batchwise runs \
             image-to-image models with 1, 3 or 4 output channels (grey, RGB, RGBA), and models \
             with a fixed input size whose outputs are not images (written as .npy)"
        );
    }
    if b <= a || (b - a) % 32 != 0 {
        anyhow::bail!(
            "the output does not grow by a whole factor with the input ({a} at 64, {b} at 96)"
        );
    }
    let scale = (b - a) / 32;
    let lost = (scale * 64).saturating_sub(a);
    Ok((scale, lost.div_ceil(2), c))
}
