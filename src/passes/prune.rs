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

#[cfg(test)]
mod tests {
    use super::super::cpu::model;
    use super::super::tests::{conv, conv_layer};

    /// Layers that feed no output go; the rest keep their value ids.
    #[test]
    fn prune_drops_dead_branches() {
        let m = model(
            3,
            vec![
                conv_layer(&conv(3, 4, 1), 0, 1, 12),
                conv_layer(&conv(3, 2, 1), 0, 2, 13),
            ],
            1,
        );
        let pruned = super::apply(m);
        assert_eq!(pruned.layers.len(), 1);
        assert_eq!(pruned.layers[0].output, 1);
    }
}
