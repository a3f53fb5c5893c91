//! Concats done in place: where a convolution writes its output straight into its channels of
//! the concatenation that reads it, and concatenations of consecutive inputs of a larger one are
//! channel slices of its buffer, so no channel is copied twice and most are never copied.
//!
//! The dense-block pattern (each convolution reads the concatenation of everything before it in
//! the block: `cat(x)`, `cat(x, x1)`, `cat(x, x1, x2)`, ...) shares one buffer: the largest
//! concatenation's (its *root*); each smaller one whose inputs are a run of the root's is a slice
//! of it (its first channel and the root's channels per item), read in place by the
//! convolutions that read it; each input a convolution computes is written into its slice of the
//! root (`conv2d::Operands`). What cannot be written in place (another producer, a value read
//! by a layer that takes no slice) is copied once, by the first concatenation of the root's
//! group that holds it; later ones find it there.
//!
//! Slices are read and written by conv2d.wgsl's kernels only (the dense convolutions that are
//! not 1x1: those run on gemm.wgsl) and by the channel copies of other concatenations; a value
//! any other layer reads keeps its own buffer. A model output is never a slice.

use crate::model::{ItemShape, LayerOp, Model, ValueId};

/// Where a value lies in another value's buffer: channels `offset ..` of each item of `root`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    pub root: ValueId,
    pub offset: u32,
}

/// Which values live in another's buffer, and which inputs each channel Concat copies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Per value: its slice of a root's buffer (None: a buffer of its own).
    pub slice: Vec<Option<Slice>>,
    /// Per layer: for a channel Concat, whether it copies each input (the others are in place
    /// already); empty for other layers.
    pub copies: Vec<Vec<bool>>,
}

impl Placement {
    /// The value whose buffer holds `v` (`v` itself unless it is a slice).
    pub fn owner(&self, v: ValueId) -> ValueId {
        self.slice[v].map_or(v, |s| s.root)
    }

    /// `v` as a slice of its root's buffer: the root's channels per item and `v`'s first one;
    /// None where `v` has a buffer of its own.
    pub fn channel_slice(&self, v: ValueId, shapes: &[ItemShape]) -> Option<(u32, u32)> {
        self.slice[v].map(|s| (shapes[s.root].c, s.offset))
    }
}

/// Whether layer `l`'s kernel reads its input `v` through a channel slice: a convolution run by
/// conv2d.wgsl's kernels (dense, not 1x1), reading `v` as its input only (not as a residual).
fn reads_slices(l: &crate::model::Layer, v: ValueId) -> bool {
    let (LayerOp::Conv2d(spec)
    | LayerOp::Conv2dResidual { spec, .. }
    | LayerOp::Conv2dUpsampled { spec, .. }) = &l.op
    else {
        return false;
    };
    l.inputs[0] == v && !l.inputs[1..].contains(&v) && runs_blocked(spec)
}

/// Whether a convolution runs on conv2d.wgsl's kernels, which take channel slices.
fn runs_blocked(spec: &crate::model::Conv2dSpec) -> bool {
    !spec.is_depthwise() && !spec.is_pointwise()
}

/// The in-place layout of `model`'s channel Concats.
pub fn plan(model: &Model, shapes: &[ItemShape]) -> Placement {
    let layers = &model.layers;
    let mut slice: Vec<Option<Slice>> = vec![None; model.value_count];
    let is_output = |v: ValueId| v == model.output || model.extra_outputs.contains(&v);
    let concats: Vec<usize> = (0..layers.len())
        .filter(|&i| matches!(layers[i].op, LayerOp::Concat) && layers[i].inputs.len() > 1)
        .collect();
    // Each concat's root: the one with the most channels whose inputs hold its inputs as a run.
    let channels = |i: usize| shapes[layers[i].output].c;
    let offset_in = |inner: usize, outer: usize| -> Option<u32> {
        let (a, b) = (&layers[inner].inputs, &layers[outer].inputs);
        let at = (0..=b.len().checked_sub(a.len())?).find(|&k| b[k..k + a.len()] == a[..])?;
        Some(b[..at].iter().map(|&v| shapes[v].c).sum())
    };
    let mut root_of: Vec<(usize, u32)> = concats
        .iter()
        .map(|&i| {
            concats
                .iter()
                .filter_map(|&j| offset_in(i, j).map(|o| (j, o)))
                .max_by_key(|&(j, _)| (channels(j), std::cmp::Reverse(j)))
                .unwrap_or((i, 0))
        })
        .collect();
    // A concat is a slice only where every reader takes one; else it is its own root.
    for (k, &i) in concats.iter().enumerate() {
        let out = layers[i].output;
        let (root, offset) = root_of[k];
        let readers_take_it = layers
            .iter()
            .filter(|l| l.inputs.contains(&out))
            .all(|l| reads_slices(l, out));
        let root_is_own = root_of[concats.iter().position(|&j| j == root).unwrap_or(k)].0 == root;
        if root == i || is_output(out) || !readers_take_it || !root_is_own {
            root_of[k] = (i, 0);
            continue;
        }
        slice[out] = Some(Slice {
            root: layers[root].output,
            offset,
        });
    }
    // Inputs written in place: computed by a convolution on conv2d.wgsl's kernels (no residual)
    // or a transpose to NHWC (a detector's heads, flat per item, before their Concat), read by
    // nothing that takes no slice, found once in their root's inputs.
    let roots: Vec<usize> = concats
        .iter()
        .copied()
        .filter(|&i| slice[layers[i].output].is_none())
        .collect();
    for r in roots {
        let root = &layers[r];
        let mut offset = 0;
        for &v in &root.inputs {
            let here = offset;
            offset += shapes[v].c;
            let produced_by_conv = model.producer(v).is_some_and(|p| match &layers[p].op {
                LayerOp::Conv2d(s) | LayerOp::Conv2dUpsampled { spec: s, .. } => runs_blocked(s),
                LayerOp::ToNhwc => shapes[v].h == 1 && shapes[v].w == 1,
                _ => false,
            });
            let once = root.inputs.iter().filter(|&&u| u == v).count() == 1;
            let readers_take_it = layers
                .iter()
                .filter(|l| l.inputs.contains(&v))
                .all(|l| matches!(l.op, LayerOp::Concat) || reads_slices(l, v));
            if produced_by_conv && once && readers_take_it && !is_output(v) && slice[v].is_none() {
                slice[v] = Some(Slice {
                    root: root.output,
                    offset: here,
                });
            }
        }
    }
    let copies = copies(model, shapes, &slice);
    Placement { slice, copies }
}

/// Per layer, the inputs each channel Concat copies: those not in place in its buffer already
/// (written there by their convolution, or copied by an earlier concat of the same root).
fn copies(model: &Model, shapes: &[ItemShape], slice: &[Option<Slice>]) -> Vec<Vec<bool>> {
    let mut done: Vec<(ValueId, u32, ValueId)> = Vec::new();
    model
        .layers
        .iter()
        .map(|l| {
            if !matches!(l.op, LayerOp::Concat) {
                return Vec::new();
            }
            let (root, mut offset) = slice[l.output].map_or((l.output, 0), |s| (s.root, s.offset));
            l.inputs
                .iter()
                .map(|&v| {
                    let at = (root, offset, v);
                    offset += shapes[v].c;
                    let in_place = slice[v] == Some(Slice { root, offset: at.1 });
                    let copy = !in_place && !done.contains(&at);
                    done.push(at);
                    copy
                })
                .collect()
        })
        .collect()
}
