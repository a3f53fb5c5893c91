//! A layer norm over the channels written out op by op, as restoration models export it
//! (NAFNet's LayerNorm2d: `mu = mean(x, 1)`, `var = mean((x - mu)^2, 1)`,
//! `(x - mu) / sqrt(var + eps)`), becomes one `AcrossChannels::Normalize` layer: seven layers,
//! two of them reductions and four of them full passes over the map, become one kernel that reads
//! each pixel's channels three times and writes them once. The squaring may be `Pow(d, 2)` or
//! `d * d`, and `x - mu` may be computed once or twice. The per-channel scale and shift after it
//! stay: `fold_affine` folds them into a 1x1 convolution that reads them, or they fuse with the
//! elementwise layers around them.
//!
//! Image-IR models only (the free-size lowering's layers); the layers the norm no longer reads
//! are left to `prune`.

use crate::model::{
    AcrossChannels, BinaryOp, ItemShape, LayerOp, Model, ReduceOp, UnaryOp, ValueId,
};

/// Returns the model and how many norms it found.
pub fn apply(mut model: Model) -> (Model, usize) {
    if model.static_shapes.is_some() {
        return (model, 0);
    }
    let mut found = 0;
    for i in 0..model.layers.len() {
        let Some((x, epsilon)) = norm_of(&model, i) else {
            continue;
        };
        let layer = &mut model.layers[i];
        layer.op = LayerOp::AcrossChannels(AcrossChannels::Normalize { epsilon });
        layer.inputs = vec![x];
        layer.weights.clear();
        found += 1;
    }
    (model, found)
}

/// Where layer `i` is `(x - mu) / sqrt(var + eps)` as above: `x` and `eps`.
fn norm_of(model: &Model, i: usize) -> Option<(ValueId, f32)> {
    let layer = &model.layers[i];
    let (LayerOp::Binary(BinaryOp::Div), &[d, s]) = (&layer.op, layer.inputs.as_slice()) else {
        return None;
    };
    let (x, mu) = centred(model, d)?;
    let [ve] = unary(model, s, |op| op == UnaryOp::Sqrt)?;
    let mut epsilon = None;
    let [var] = unary(model, ve, |op| match op {
        UnaryOp::Affine { scale, offset } if scale == 1.0 && offset >= 0.0 => {
            epsilon = Some(offset);
            true
        }
        _ => false,
    })?;
    let sq = mean_over_channels(model, var)?;
    let squared = &model.layers[model.producer(sq)?];
    let d2 = match (&squared.op, squared.inputs.as_slice()) {
        (LayerOp::Binary(BinaryOp::Mul), &[a, b]) if a == b => a,
        (
            LayerOp::BinaryConst {
                op: BinaryOp::Pow,
                constant: ItemShape { c: 1, h: 1, w: 1 },
                constant_first: false,
            },
            &[a],
        ) if squared.weights == [2.0] => a,
        _ => return None,
    };
    (centred(model, d2)? == (x, mu)).then_some((x, epsilon?))
}

/// Where `d` is `x - mean(x, 1)`: `x` and the mean.
fn centred(model: &Model, d: ValueId) -> Option<(ValueId, ValueId)> {
    let sub = &model.layers[model.producer(d)?];
    let (LayerOp::Binary(BinaryOp::Sub), &[x, mu]) = (&sub.op, sub.inputs.as_slice()) else {
        return None;
    };
    (mean_over_channels(model, mu)? == x).then_some((x, mu))
}

/// Where `v` is the mean over the channels of a value: that value.
fn mean_over_channels(model: &Model, v: ValueId) -> Option<ValueId> {
    let layer = &model.layers[model.producer(v)?];
    match (&layer.op, layer.inputs.as_slice()) {
        (LayerOp::AcrossChannels(AcrossChannels::Reduce(ReduceOp::Mean)), &[x]) => Some(x),
        _ => None,
    }
}

/// Where `v` is a unary op that `pick` takes: its input.
pub(super) fn unary(
    model: &Model,
    v: ValueId,
    mut pick: impl FnMut(UnaryOp) -> bool,
) -> Option<[ValueId; 1]> {
    let layer = &model.layers[model.producer(v)?];
    match (&layer.op, layer.inputs.as_slice()) {
        (LayerOp::Unary(op), &[x]) if pick(*op) => Some([x]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::cpu::{layer_of, max_diff, model, random, run};

    /// The norm written out on 5 channels (x - mu once, squared by Pow; or twice, by Mul),
    /// then a per-channel scale: one layer, the same function on random inputs within 2e-6 (the
    /// reference sums in f64 where the ops round each step in f32).
    #[test]
    fn a_norm_written_out_becomes_one_layer() {
        let mean = || LayerOp::AcrossChannels(AcrossChannels::Reduce(ReduceOp::Mean));
        let eps = LayerOp::Unary(UnaryOp::Affine {
            scale: 1.0,
            offset: 1e-6,
        });
        let sub = || LayerOp::Binary(BinaryOp::Sub);
        for twice in [false, true] {
            let square = match twice {
                false => {
                    let pow = LayerOp::BinaryConst {
                        op: BinaryOp::Pow,
                        constant: ItemShape { c: 1, h: 1, w: 1 },
                        constant_first: false,
                    };
                    let mut l = layer_of(pow, vec![2], 3);
                    l.weights = vec![2.0];
                    l
                }
                true => layer_of(LayerOp::Binary(BinaryOp::Mul), vec![2, 2], 3),
            };
            let numerator = if twice { 7 } else { 2 };
            let mut scale = layer_of(
                LayerOp::BinaryConst {
                    op: BinaryOp::Mul,
                    constant: ItemShape { c: 5, h: 1, w: 1 },
                    constant_first: false,
                },
                vec![8],
                9,
            );
            scale.weights = vec![0.5, 1.5, -1.0, 2.0, 0.25];
            let mut layers = vec![
                layer_of(mean(), vec![0], 1),
                layer_of(sub(), vec![0, 1], 2),
                square,
                layer_of(mean(), vec![3], 4),
                layer_of(eps.clone(), vec![4], 5),
                layer_of(LayerOp::Unary(UnaryOp::Sqrt), vec![5], 6),
                layer_of(sub(), vec![0, 1], 7),
                layer_of(LayerOp::Binary(BinaryOp::Div), vec![numerator, 6], 8),
                scale,
            ];
            if !twice {
                layers.remove(6);
            }
            let before = model(5, layers, 9);
            let (after, found) = apply(before.clone());
            let after = crate::passes::prune::apply(after);
            assert_eq!(found, 1);
            assert_eq!(after.layers.len(), 2, "{:?}", after.layers);
            let x = random(5 * 6 * 7, 11);
            let (a, b) = (run(&before, &x, 6, 7), run(&after, &x, 6, 7));
            assert!(max_diff(&a, &b) <= 2e-6, "{}", max_diff(&a, &b));
        }
    }

    /// Not a norm: the mean of another value subtracted, or a variance not of `x - mu`.
    #[test]
    fn other_sums_stay() {
        let mean = || LayerOp::AcrossChannels(AcrossChannels::Reduce(ReduceOp::Mean));
        let sub = || LayerOp::Binary(BinaryOp::Sub);
        let eps = LayerOp::Unary(UnaryOp::Affine {
            scale: 1.0,
            offset: 1e-5,
        });
        // The variance of x itself (x * x), not of x - mu.
        let layers = vec![
            layer_of(mean(), vec![0], 1),
            layer_of(sub(), vec![0, 1], 2),
            layer_of(LayerOp::Binary(BinaryOp::Mul), vec![0, 0], 3),
            layer_of(mean(), vec![3], 4),
            layer_of(eps, vec![4], 5),
            layer_of(LayerOp::Unary(UnaryOp::Sqrt), vec![5], 6),
            layer_of(LayerOp::Binary(BinaryOp::Div), vec![2, 6], 7),
        ];
        let (_, found) = apply(model(4, layers, 7));
        assert_eq!(found, 0);
    }
}
