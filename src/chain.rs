//! Chains: several image-to-image models composed into one [`Model`], so that a job runs the whole
//! chain on each batch in one submit and every intermediate image stays in GPU buffers (pooled by
//! the engine's liveness reuse like any other activation). A chain may end in a fixed-input model
//! (classify, embed, detect-faces, remove-background): the steps before it are composed
//! ([`prefix`]) and the job hands their whole output images to that model (`job/chained.rs`).
//!
//! Between two steps the first one's output is brought to what a written and re-read image would
//! be, as float: back to 0..=255 through the inverse of the step's input mapping, clamped (an
//! image holds no value outside that range), then through the next step's input mapping
//! (range and channel order). The chain's output is mapped back to the first step's convention,
//! which the job's unpack inverts. Scales multiply; the context a step needs is carried back
//! through the steps before it (a step after a 2x upscale that needs 8 px needs 4 px before it).

use std::sync::Arc;

use anyhow::{Result, bail};

use crate::builtin::{ImageModelSpec, InputOverrides, ModelChoice, Task};
use crate::kernels::pack::PixelMapping;
use crate::model::{BinaryOp, EdgeClampSpec, ItemShape, Layer, LayerOp, Model, UnaryOp, ValueId};

/// The separator of steps in a model argument: `-m enhance-low-light,upscale-photo-2x`.
pub const SEPARATOR: char = ',';

/// A built-in id or a user's model file (see [`crate::builtin::resolve`]), or several joined by
/// [`SEPARATOR`] composed into one chain; `overrides` apply to each user file. A file whose name
/// holds the separator is taken as that file.
pub fn resolve(name: &str, overrides: &InputOverrides) -> Result<ModelChoice> {
    resolve_with(name, |step| crate::builtin::resolve(step, overrides))
}

/// As [`resolve`], each step (or the one model) found by `step`.
pub fn resolve_with(name: &str, step: impl Fn(&str) -> Result<ModelChoice>) -> Result<ModelChoice> {
    if !name.contains(SEPARATOR) || std::path::Path::new(name).exists() {
        return step(name);
    }
    let steps = name
        .split(SEPARATOR)
        .map(|name| step(name.trim()))
        .collect::<Result<Vec<_>>>()?;
    compose(steps)
}

/// One model running `steps` in order, each on the previous one's output.
pub fn compose(steps: Vec<ModelChoice>) -> Result<ModelChoice> {
    compose_keeping(steps, false, Tiling::Tiles)
}

/// The chain `choice` with each step's output but the last one's kept (`--keep-steps`): an
/// extra output of the model per step, an RGB image in 0..=255 as the step alone would write it
/// (its own output mapping; the runner's unpack clamps and rounds), with its scale in
/// [`Model::image_outputs`].
pub fn keep_steps(choice: &ModelChoice) -> Result<ModelChoice> {
    if choice.steps.len() < 2 {
        bail!(
            "--keep-steps keeps the steps of a chain (-m a,b); {} is one model",
            choice.id
        );
    }
    if choice.input_size > 0 {
        bail!(
            "--keep-steps keeps the images of a chain of image-to-image steps; {} ends in a \
             model that takes whole images of a fixed size (run its steps before that one with \
             --keep-steps, then that model on the output)",
            choice.id
        );
    }
    compose_keeping(choice.steps.clone(), true, choice.tiling)
}

/// What names each kept step's output (`--keep-steps`): the step's built-in id or its file's
/// stem, with `-N` (its place in the chain, from 1) where two kept steps share a name. Every
/// step but the last, in order; empty for one model.
pub fn step_labels(choice: &ModelChoice) -> Vec<String> {
    let Some((_, kept)) = choice.steps.split_last() else {
        return Vec::new();
    };
    let name = |s: &ModelChoice| {
        std::path::Path::new(&s.id)
            .file_stem()
            .map_or_else(|| s.id.clone(), |n| n.to_string_lossy().into_owned())
    };
    let names: Vec<String> = kept.iter().map(name).collect();
    names
        .iter()
        .enumerate()
        .map(|(k, n)| match names.iter().filter(|m| *m == n).count() {
            1 => n.clone(),
            _ => format!("{n}-{}", k + 1),
        })
        .collect()
}

/// How a chain's items cover its images, which decides where its steps' context comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tiling {
    /// Tiles of any size: the chain's input carries the context of every step (a step's
    /// context carried back through the steps before it), each step cutting off its own.
    Tiles,
    /// Each item is one whole image: beyond its border every step sees the edge of the step
    /// before's output, so each step pads its own input there and the steps before it compute
    /// no context for it (the chain's context is the first step's alone, its work the same as
    /// the steps run as separate jobs).
    WholeImages,
}

/// [`compose`], keeping every step's output but the last one's as an extra output where `keep`.
fn compose_keeping(steps: Vec<ModelChoice>, keep: bool, tiling: Tiling) -> Result<ModelChoice> {
    let Some(first) = steps.first() else {
        bail!("a chain needs at least one model");
    };
    if steps.len() == 1 {
        return Ok(steps.into_iter().next().expect("one step"));
    }
    let (last, before) = steps.split_last().expect("steps");
    for step in before {
        check_step(step, false)?;
    }
    if last.input_size > 0 {
        return ends_fixed(steps);
    }
    check_step(last, true)?;
    let mut model = first.model.as_ref().clone();
    let mut map = first.spec.input_map;
    let (mut scale, mut context) = (first.spec.scale, first.spec.context);
    // Output pixels the steps so far lost at each border (padding-free convolutions; negative
    // where a step padded its input beyond the tile).
    let mut lost = i64::from(shrink(first)?);
    let (mut kept, mut kept_scales) = (Vec::new(), Vec::new());
    for step in &steps[1..] {
        if keep {
            kept.push(convert(&mut model, map, PixelMapping::IDENTITY, false));
            kept_scales.push(scale);
        }
        let mut input = convert(&mut model, map, step.spec.input_map, true);
        // The context the steps so far needed is used up: cut it off, so that the steps after
        // them run on the context they need and no more. In tiles, the chain's input carries
        // that context (`context` input pixels a side, of which the steps so far needed theirs);
        // on whole images the step pads its own input (a negative cut).
        let used = i64::from(context * scale) - lost;
        let cut = match tiling {
            Tiling::Tiles => used.max(0),
            Tiling::WholeImages => used - i64::from(step.spec.context),
        };
        if step.spec.context > 0 || cut < 0 {
            // Beyond the image's border the step sees the edge of the previous step's output,
            // as it would reading that output as an image, not the previous step's view of
            // the input's replicated edge.
            let spec = EdgeClampSpec {
                scale,
                lost: i32::try_from(lost)?,
                cut: i32::try_from(cut)?,
            };
            input = push(&mut model, input, LayerOp::EdgeClamp(spec), Vec::new());
        } else if cut > 0 {
            input = push(&mut model, input, crop(cut as u32), Vec::new());
        }
        lost += cut;
        append(&mut model, step, input);
        if tiling == Tiling::Tiles {
            // The step needs `context` px of its own input on each side: that many output
            // pixels of the chain so far, which `scale` input pixels each give.
            context += step.spec.context.div_ceil(scale);
        }
        scale *= step.spec.scale;
        lost = lost * i64::from(step.spec.scale) + i64::from(shrink(step)?);
        map = step.spec.input_map;
    }
    let output = convert(&mut model, map, first.spec.input_map, false);
    model.output = output;
    model.extra_outputs = kept;
    model.image_outputs = kept_scales;
    model.output_name = steps.last().expect("steps").model.output_name.clone();
    let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    model.name = ids.join(" + ");
    let id = ids.join(&SEPARATOR.to_string());
    let (model, _) = crate::passes::run(model);
    Ok(ModelChoice {
        id,
        model: Arc::new(model),
        spec: ImageModelSpec {
            scale,
            context,
            input_map: first.spec.input_map,
        },
        task: if scale == 1 {
            Task::Enhance
        } else {
            Task::Upscale
        },
        input_size: 0,
        steps,
        tensor_outputs: Vec::new(),
        tiling,
    })
}

/// `choice`, a chain, composed for items that are each one whole image
/// ([`Tiling::WholeImages`]), keeping its steps' outputs where it keeps them (`--keep-steps`); for
/// a chain ending in a fixed-input model, its [`prefix`]. None for one model.
pub fn for_whole_images(choice: &ModelChoice) -> Result<Option<ModelChoice>> {
    if choice.steps.len() < 2 || choice.tiling == Tiling::WholeImages {
        return Ok(None);
    }
    if choice.input_size > 0 {
        let tiling = Tiling::WholeImages;
        return Ok(Some(ModelChoice {
            tiling,
            ..choice.clone()
        }));
    }
    let keep = !choice.model.image_outputs.is_empty();
    compose_keeping(choice.steps.clone(), keep, Tiling::WholeImages).map(Some)
}

/// A chain whose last step takes whole images of a fixed size (classify, embed, detect-faces,
/// remove-background, a user's fixed-size model): that model, named and listed as the chain, its
/// steps before it composed into [`prefix`] when the job runs. The last step sees each whole
/// image the steps before it made, fitted to its input as a file would be.
fn ends_fixed(steps: Vec<ModelChoice>) -> Result<ModelChoice> {
    let (last, before) = steps.split_last().expect("steps");
    // The steps before it must compose (checked now, not when the job starts).
    compose(before.to_vec())?;
    let last = last.clone();
    let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    Ok(ModelChoice {
        id: ids.join(&SEPARATOR.to_string()),
        steps,
        ..last
    })
}

/// The image-to-image steps of a chain that ends in a fixed-input model, composed into one
/// model; None for one model and for chains of image-to-image steps alone.
pub fn prefix(choice: &ModelChoice) -> Result<Option<ModelChoice>> {
    match choice.steps.split_last() {
        Some((_, before)) if choice.input_size > 0 && !before.is_empty() => {
            compose_keeping(before.to_vec(), false, choice.tiling).map(Some)
        }
        _ => Ok(None),
    }
}

/// The scale of [`prefix`]'s images against the input (1 where there is none).
pub fn prefix_scale(choice: &ModelChoice) -> u32 {
    if choice.input_size == 0 {
        return 1;
    }
    let before = choice.steps.split_last().map_or(&[][..], |(_, b)| b);
    before.iter().map(|s| s.spec.scale.max(1)).product()
}

/// The scale of the images a job writes for `choice` against its inputs (what `{scale}` in
/// names stands for): an image model's own; for a fixed-input model (a cut-out, an annotated
/// photo), alone or ending a chain, the scale of the image it sees.
pub fn written_scale(choice: &ModelChoice) -> u32 {
    match choice.input_size {
        0 => choice.spec.scale.max(1),
        _ => prefix_scale(choice),
    }
}

/// A chain's steps are image-to-image models of any size with 3 channels in and out; only its
/// `last` step may instead take whole images of a fixed size (see [`ends_fixed`]).
fn check_step(step: &ModelChoice, last: bool) -> Result<()> {
    let m = &step.model;
    if step.input_size != 0 && !last {
        bail!(
            "{} takes whole images of a fixed size; only a chain's last step may (the steps \
             before it upscale or enhance images)",
            step.id
        );
    }
    if !matches!(step.task, Task::Upscale | Task::Enhance) || step.input_size != 0 {
        bail!(
            "{} is not an image-to-image model; a chain's steps upscale or enhance images",
            step.id
        );
    }
    if m.static_shapes.is_some() {
        bail!(
            "{} takes a fixed input size; a chain's steps take images of any size",
            step.id
        );
    }
    if m.input_channels != 3 || m.output_channels != 3 || !m.extra_outputs.is_empty() {
        bail!(
            "{} does not map 3 channels to 3; a chain's steps take and give RGB images",
            step.id
        );
    }
    Ok(())
}

/// Appends layers that turn `model`'s output (in the convention `from`) into the convention
/// `to`, through 0..=255 and clamped there when `clamp`; returns the converted value.
fn convert(model: &mut Model, from: PixelMapping, to: PixelMapping, clamp: bool) -> ValueId {
    let mut value = model.output;
    let mut push = |model: &mut Model, op: LayerOp, weights: Vec<f32>| {
        value = push(model, value, op, weights);
    };
    if from.bgr != to.bgr {
        push(
            model,
            LayerOp::Crop {
                starts: [-1, 0, 0],
                ends: [i64::MIN, i64::MAX, i64::MAX],
                steps: [-1, 1, 1],
            },
            Vec::new(),
        );
    }
    let back = crate::kernels::unpack::inverse(&from);
    // Channel `c` of the next step's input comes from RGB channel `rgb(c)` of the image.
    let rgb = |c: usize| if to.bgr { 2 - c } else { c };
    // y -> v = y * back.scale + back.offset (0..=255) -> clamp -> v * to.scale + to.offset.
    let v_scale = [0, 1, 2].map(|c| back.scale[rgb(c)]);
    let v_offset = [0, 1, 2].map(|c| back.offset[rgb(c)]);
    let scale = [0, 1, 2].map(|c| v_scale[c] * to.scale[c]);
    let offset = [0, 1, 2].map(|c| v_offset[c] * to.scale[c] + to.offset[c]);
    if clamp {
        // 0 <= y * s + o <= 255 as bounds on y itself (s > 0: mappings are increasing).
        let lo = [0, 1, 2].map(|c| -v_offset[c] / v_scale[c]);
        let hi = [0, 1, 2].map(|c| (255.0 - v_offset[c]) / v_scale[c]);
        if uniform(lo) && uniform(hi) {
            let op = UnaryOp::Clip {
                min: lo[0],
                max: hi[0],
            };
            push(model, LayerOp::Unary(op), Vec::new());
        } else {
            push(model, per_channel(BinaryOp::Max), lo.to_vec());
            push(model, per_channel(BinaryOp::Min), hi.to_vec());
        }
    }
    let identity =
        scale.iter().all(|&s| (s - 1.0).abs() < 1e-7) && offset.iter().all(|&o| o == 0.0);
    if identity {
        return value;
    }
    if uniform(scale) && uniform(offset) {
        let op = UnaryOp::Affine {
            scale: scale[0],
            offset: offset[0],
        };
        push(model, LayerOp::Unary(op), Vec::new());
    } else {
        push(model, per_channel(BinaryOp::Mul), scale.to_vec());
        push(model, per_channel(BinaryOp::Add), offset.to_vec());
    }
    value
}

/// Appends a layer of `op` reading `input`; returns its output.
fn push(model: &mut Model, input: ValueId, op: LayerOp, weights: Vec<f32>) -> ValueId {
    let output = model.value_count;
    model.value_count += 1;
    model.layers.push(Layer {
        name: format!("chain: {}", op.kind()),
        op,
        inputs: vec![input],
        output,
        weights,
        bias: Vec::new(),
    });
    output
}

/// A layer that cuts `px` pixels off each border of every channel.
fn crop(px: u32) -> LayerOp {
    let px = i64::from(px);
    LayerOp::Crop {
        starts: [0, px, px],
        ends: [i64::MAX, -px, -px],
        steps: [1, 1, 1],
    }
}

/// Output pixels a step loses at each border: `out(s) = scale * s - 2 * shrink`.
fn shrink(step: &ModelChoice) -> Result<u32> {
    const SIDE: u32 = 64;
    let out = step.model.shapes(SIDE, SIDE)?[step.model.output];
    Ok((step.spec.scale * SIDE).saturating_sub(out.h) / 2)
}

fn uniform(v: [f32; 3]) -> bool {
    v[0] == v[1] && v[1] == v[2]
}

/// `value op constant` with one constant per channel.
fn per_channel(op: BinaryOp) -> LayerOp {
    LayerOp::BinaryConst {
        op,
        constant: ItemShape { c: 3, h: 1, w: 1 },
        constant_first: false,
    }
}

/// Appends `step`'s layers (named after the step) reading `input` in place of its value 0; sets `model.output` to the
/// step's output.
fn append(model: &mut Model, step: &ModelChoice, input: ValueId) {
    let (id, step) = (&step.id, &step.model);
    let base = model.value_count;
    let map = |v: ValueId| if v == 0 { input } else { base + v };
    model.layers.extend(step.layers.iter().map(|l| Layer {
        name: format!("{id}: {}", l.name),
        op: l.op.clone(),
        inputs: l.inputs.iter().map(|&v| map(v)).collect(),
        output: map(l.output),
        weights: l.weights.clone(),
        bias: l.bias.clone(),
    }));
    model.value_count = base + step.value_count;
    model.output = map(step.output);
    model.output_channels = step.output_channels;
}
