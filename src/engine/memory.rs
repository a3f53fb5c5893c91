//! What a batch will hold on the GPU, known before anything is allocated: activations after
//! liveness reuse, pixel buffers and read-back copies, per batch item.

use anyhow::Result;

use super::GpuModel;
use super::placement::Placement;
use crate::kernels::Precision;
use crate::kernels::pack::PixelDepth;
use crate::model::{ItemShape, Model};

/// Bytes a batch of `items` needs for activations of `precision`, as the runner allocates them
/// (liveness reuse).
pub fn activation_bytes(
    model: &Model,
    shapes: &[ItemShape],
    items: u32,
    precision: Precision,
) -> u64 {
    plan_buffers(model, shapes, items, precision).iter().sum()
}

/// What a batch will hold on the GPU, known before anything is allocated.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct MemoryPlan {
    /// Weights as the kernels store them (blocked, padded), shared by every batch.
    pub weight_bytes: u64,
    /// Activations (after liveness reuse) plus pixel and read-back buffers, per batch item.
    pub bytes_per_item: u64,
    /// Peak activation bytes of one item alone (the largest set of values alive at once).
    pub activation_bytes_per_item: u64,
    pub items: u32,
}

impl MemoryPlan {
    /// Everything: weights plus `items` items. Uniform parameter records (a few KiB) are not
    /// counted.
    pub fn total_bytes(&self) -> u64 {
        self.weight_bytes + self.bytes_per_item * self.items as u64
    }
}

/// Plans a batch of `items` tiles of `h x w` for `model` whose weights are on the GPU.
pub fn plan(model: &GpuModel, h: u32, w: u32, items: u32) -> Result<MemoryPlan> {
    let item = ItemBytes::of_loaded(model, h, w, PixelDepth::Eight)?;
    Ok(MemoryPlan {
        weight_bytes: model.weight_bytes,
        bytes_per_item: item.total(),
        activation_bytes_per_item: item.activations,
        items,
    })
}

/// What one batch item of `h x w` needs on the GPU, known from the model alone: the one
/// per-item formula behind Auto batch, the memory plan, the tile chooser and the runner's
/// split into lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemBytes {
    /// Activations after liveness reuse.
    pub activations: u64,
    /// Pixels in, and for image outputs pixels out (and a chain's kept steps') plus two
    /// read-back copies (two batches in flight); 4 bytes a pixel each, 8 for 16-bit pixels.
    pub pixels: u64,
    /// The largest single buffer of the item (an activation, its pixels in or out, or a
    /// scratch): a batch is split into lanes so that no buffer exceeds the adapter's binding limit.
    pub largest_buffer: u64,
    /// The split Winograd's scratch (V and M, one pair shared by every layer that runs it;
    /// `Conv2dLayer::scratch_elements`): known once the weights are uploaded with their kernels.
    pub scratch: u64,
}

impl ItemBytes {
    pub fn of(
        model: &Model,
        h: u32,
        w: u32,
        precision: Precision,
        depth: PixelDepth,
    ) -> Result<Self> {
        let shapes = model.shapes(h, w)?;
        Ok(Self::from_shapes(model, &shapes, precision, depth, false))
    }

    /// As [`Self::of`] for a model on the GPU, its layers' scratch included.
    pub fn of_loaded(model: &GpuModel, h: u32, w: u32, depth: PixelDepth) -> Result<Self> {
        let shapes = model.model.shapes(h, w)?;
        let item = Self::from_shapes(&model.model, &shapes, model.precision, depth, false);
        Ok(item.with_scratch(model.scratch_bytes(&shapes)))
    }

    /// With the split Winograd's scratch per item: bytes of V and of M.
    pub fn with_scratch(self, [v, m]: [u64; 2]) -> Self {
        Self {
            scratch: v + m,
            largest_buffer: self.largest_buffer.max(v).max(m),
            ..self
        }
    }

    /// For shapes already inferred; `float_input`: fed floats directly (no pixel buffers).
    pub fn from_shapes(
        model: &Model,
        shapes: &[ItemShape],
        precision: Precision,
        depth: PixelDepth,
        float_input: bool,
    ) -> Self {
        let activations = activation_bytes(model, shapes, 1, precision);
        let out = shapes[model.output];
        let word = 4 * depth.words() as u64;
        let (pixels_in, pixels_out) = if float_input {
            (0, 0)
        } else {
            let image_out = model.unpacks_output(out);
            (
                word * shapes[0].h as u64 * shapes[0].w as u64,
                u64::from(image_out) * word * out.h as u64 * out.w as u64,
            )
        };
        // A chain's kept steps (`--keep-steps`): unpacked and read back as the output is.
        let kept: Vec<u64> = model
            .extra_outputs
            .iter()
            .take(model.image_outputs.len())
            .filter(|_| !float_input && out.c == 3)
            .map(|&v| word * shapes[v].h as u64 * shapes[v].w as u64)
            .collect();
        let largest_out = kept.iter().copied().fold(pixels_out, u64::max);
        let pixels_out = pixels_out + kept.iter().sum::<u64>();
        let largest_value = shapes
            .iter()
            .map(|s| s.elements() * precision.bytes())
            .max()
            .unwrap_or(0);
        Self {
            activations,
            pixels: pixels_in + 3 * pixels_out,
            largest_buffer: largest_value.max(pixels_in).max(largest_out).max(4),
            scratch: 0,
        }
    }

    pub fn total(&self) -> u64 {
        self.activations + self.pixels + self.scratch
    }
}

/// Bytes one batch item of `h x w` needs on the GPU: (activations, pixel buffers). See
/// [`ItemBytes`]; the split Winograd's scratch is known once the model is loaded
/// ([`ItemBytes::of_loaded`]).
pub fn item_bytes(model: &Model, h: u32, w: u32, precision: Precision) -> Result<(u64, u64)> {
    let item = ItemBytes::of(model, h, w, precision, PixelDepth::Eight)?;
    Ok((item.activations, item.pixels))
}

/// Assigns each value to a buffer, reusing a buffer once its value is no longer read.
/// Returns the buffer sizes; `assign_values` gives the value -> buffer mapping.
fn plan_buffers(model: &Model, shapes: &[ItemShape], items: u32, precision: Precision) -> Vec<u64> {
    assign_values(model, shapes, items, precision).1
}

/// Each value's buffer (a value that is a slice of a Concat done in place shares its root's:
/// [`Placement`]), the buffers' sizes, and the placement.
pub(crate) fn assign_values(
    model: &Model,
    shapes: &[ItemShape],
    items: u32,
    precision: Precision,
) -> (Vec<usize>, Vec<u64>, Placement) {
    let placement = super::placement::plan(model, shapes);
    let owner = |v: usize| placement.owner(v);
    // At least one element (an empty tensor still needs a bindable buffer), in whole 4 bytes.
    let bytes = |v: usize| {
        (shapes[v].elements().max(1) * precision.bytes() * items as u64).next_multiple_of(4)
    };
    // A root's buffer lives from the first layer that writes any of its slices to the last
    // that reads any of them.
    let mut last_read = vec![0usize; model.value_count];
    for (i, l) in model.layers.iter().enumerate() {
        for &v in &l.inputs {
            last_read[owner(v)] = i;
        }
    }
    let kept = |v: usize| v == model.output || model.extra_outputs.contains(&v);
    let mut sizes: Vec<u64> = vec![bytes(0)];
    let mut free: Vec<usize> = Vec::new();
    let mut buffer_of = vec![usize::MAX; model.value_count];
    buffer_of[0] = 0;
    for (i, l) in model.layers.iter().enumerate() {
        let out = owner(l.output);
        if buffer_of[out] != usize::MAX {
            // Written into a root allocated before.
            buffer_of[l.output] = buffer_of[out];
            free_dead(l, i, &last_read, &buffer_of, &kept, &owner, &mut free);
            continue;
        }
        let need = bytes(out);
        // Best fit among free buffers, growing the largest one if none fits.
        let pick = free
            .iter()
            .enumerate()
            .filter(|(_, b)| sizes[**b] >= need)
            .min_by_key(|(_, b)| sizes[**b])
            .map(|(k, _)| k)
            .or_else(|| {
                free.iter()
                    .enumerate()
                    .max_by_key(|(_, b)| sizes[**b])
                    .map(|(k, _)| k)
            });
        let buf = match pick {
            Some(k) => {
                let b = free.swap_remove(k);
                sizes[b] = sizes[b].max(need);
                b
            }
            None => {
                sizes.push(need);
                sizes.len() - 1
            }
        };
        buffer_of[out] = buf;
        buffer_of[l.output] = buf;
        free_dead(l, i, &last_read, &buffer_of, &kept, &owner, &mut free);
    }
    (buffer_of, sizes, placement)
}

/// Frees the buffers of layer `i`'s inputs that no later layer reads.
fn free_dead(
    l: &crate::model::Layer,
    i: usize,
    last_read: &[usize],
    buffer_of: &[usize],
    kept: &impl Fn(usize) -> bool,
    owner: &impl Fn(usize) -> usize,
    free: &mut Vec<usize>,
) {
    let mut dead: Vec<usize> = l
        .inputs
        .iter()
        .map(|&v| owner(v))
        .filter(|&v| last_read[v] == i && !kept(v))
        .map(|v| buffer_of[v])
        .collect();
    dead.sort_unstable();
    dead.dedup();
    free.extend(dead);
}
