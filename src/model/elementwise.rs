//! A fused tree of elementwise ops (`LayerOp::Elementwise`), made by
//! `passes::fuse_elementwise` and run by `kernels::elementwise`.

use super::{BinaryOp, ItemShape, UnaryOp};

/// Where a step of an [`ElementwiseProgram`] reads an operand: the layer's input `k`, or the
/// result of an earlier step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Input(u32),
    Step(u32),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ElementwiseStep {
    Unary(UnaryOp, Operand),
    Binary(BinaryOp, Operand, Operand),
}

/// A chain (a tree) of elementwise ops run as one kernel: every step is computed per output
/// element, each input read at that element's broadcast position; the last step is the output.
#[derive(Clone, Debug, PartialEq)]
pub struct ElementwiseProgram {
    pub steps: Vec<ElementwiseStep>,
    /// Per input, zero channels after its own (a channel Pad fused in by `passes::fuse_pad`):
    /// the input reads as `[C + padded, H, W]`, 0 past its channels. Missing entries are 0.
    pub padded_channels: Vec<u32>,
    /// Per input, the channels the program reads, `(start, count)` (a channel slice fused in by
    /// `passes::fuse_slice`, a Split's half): the input is stored with more channels. Missing
    /// entries, and a count of 0, read every channel.
    pub channel_slices: Vec<(u32, u32)>,
}

impl ElementwiseProgram {
    /// The most inputs a program reads (storage bindings: these, the output and headroom stay
    /// within the 8 every adapter offers).
    pub const MAX_INPUTS: usize = 6;

    /// A program of `steps` over inputs read as they are.
    pub fn new(steps: Vec<ElementwiseStep>) -> Self {
        Self {
            steps,
            padded_channels: Vec::new(),
            channel_slices: Vec::new(),
        }
    }

    /// The zero channels after input `k`'s own.
    pub fn padded(&self, k: usize) -> u32 {
        self.padded_channels.get(k).copied().unwrap_or(0)
    }

    /// The channels of input `k` the program reads, `(start, count)`, where it reads a slice.
    pub fn slice(&self, k: usize) -> Option<(u32, u32)> {
        self.channel_slices.get(k).copied().filter(|&(_, n)| n > 0)
    }

    /// Whether every input is read as it is stored (none padded, none sliced).
    pub fn reads_as_stored(&self) -> bool {
        self.padded_channels.iter().all(|&c| c == 0)
            && self.channel_slices.iter().all(|&(_, n)| n == 0)
    }

    /// Input `k` of shape `s` as the program reads it (its padded channels added, or its slice).
    pub fn read_shape(&self, k: usize, s: ItemShape) -> ItemShape {
        let c = match self.slice(k) {
            Some((_, count)) => count,
            None => s.c + self.padded(k),
        };
        ItemShape { c, ..s }
    }

    /// The output's shape for inputs stored as `inputs`: theirs as read, broadcast; None where
    /// they do not broadcast, or a slice lies past its input's channels or is not read as the
    /// output's shape (what the kernel takes).
    pub fn output_shape(&self, inputs: &[ItemShape]) -> Option<ItemShape> {
        let read = |k: usize| self.read_shape(k, inputs[k]);
        let out = (1..inputs.len()).try_fold(read(0), |out, k| super::broadcast(out, read(k)))?;
        let sliced = |k: usize, (start, count): (u32, u32)| {
            start
                .checked_add(count)
                .is_some_and(|end| end <= inputs[k].c)
                && read(k) == out
        };
        (0..inputs.len())
            .all(|k| self.slice(k).is_none_or(|s| sliced(k, s)))
            .then_some(out)
    }

    /// CPU reference: the output for one element, given each input's value there (a program
    /// of no steps: its first input's).
    pub fn apply(&self, inputs: &[f32]) -> f32 {
        let mut results: Vec<f32> = Vec::with_capacity(self.steps.len());
        let read = |o: Operand, results: &[f32]| match o {
            Operand::Input(k) => inputs[k as usize],
            Operand::Step(s) => results[s as usize],
        };
        for step in &self.steps {
            let v = match *step {
                ElementwiseStep::Unary(op, a) => op.apply(read(a, &results)),
                ElementwiseStep::Binary(op, a, b) => op.apply(read(a, &results), read(b, &results)),
            };
            results.push(v);
        }
        results.last().copied().unwrap_or(inputs[0])
    }
}
