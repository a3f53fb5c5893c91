//! A Concat of one input is that input: its readers read the input instead and the layer goes
//! (no copy, no buffer). PyTorch exports `torch.cat([x])` so, and dense blocks built in a loop
//! start with one (the block's first convolution reads the concatenation of everything before
//! it: its input alone).
//!
//! A Concat that is a model output stays (the output keeps its own buffer).

use crate::model::{LayerOp, Model};

/// Returns the model and how many Concats were replaced by their input.
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut aliased = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let l = &model.layers[i];
        let single =
            matches!(l.op, LayerOp::Concat | LayerOp::ConcatAxis(_)) && l.inputs.len() == 1;
        let out = l.output;
        if !single || out == model.output || model.extra_outputs.contains(&out) {
            i += 1;
            continue;
        }
        let input = model.layers.remove(i).inputs[0];
        for later in &mut model.layers[i..] {
            for v in &mut later.inputs {
                if *v == out {
                    *v = input;
                }
            }
        }
        aliased += 1;
    }
    (model, aliased)
}
