//! Drops layers whose outputs never reach the model's outputs (a second head, say). Value ids
//! stay as they are.

use crate::model::Model;

pub fn apply(mut model: Model) -> Model {
    let mut needed = vec![false; model.value_count];
    needed[model.output] = true;
    for &v in &model.extra_outputs {
        needed[v] = true;
    }
    let mut keep = vec![false; model.layers.len()];
    for (i, layer) in model.layers.iter().enumerate().rev() {
        if needed[layer.output] {
            keep[i] = true;
            for &v in &layer.inputs {
                needed[v] = true;
            }
        }
    }
    let mut k = keep.into_iter();
    model.layers.retain(|_| k.next().unwrap_or(false));
    model
}
