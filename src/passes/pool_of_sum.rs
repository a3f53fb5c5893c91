//! A GlobalAveragePool of a sum pools each term instead, then adds the two pooled values:
//! `mean(a + b) == mean(a) + mean(b)`. The sum of two full-size maps is then never stored nor
//! read back; an Add of one value a channel takes its place. A term made by a Resize that keeps
//! the mean is pooled from the Resize's input: a nearest Resize by whole factors repeats each
//! pixel the same number of times, and a linear one with half-pixel coordinates by whole factors
//! gives each input pixel weights that sum to the factor along each axis (the edges clamped),
//! so the pool reads the small map (remove-background's decoder: `mean(x + resize(y))`, the
//! Add of two 128 px maps and its pool, becomes pools of x and of the 64 px y).
//!
//! Safe where the sum has that one reader and is no model output, and both terms are laid out
//! as the sum (no broadcast) at every shape the model takes (its fixed shapes, or a few input
//! sizes); a linear Resize to a size is taken only where the model's shapes are fixed (at
//! another input size its factors need not be whole).

use crate::model::{BinaryOp, Coords, Filter, ItemShape, Layer, LayerOp, Model, Target, ValueId};

/// Returns the model and how many pools of a sum now pool its terms.
/// `BATCHWISE_POOL_OF_SUM=off` splits none (to measure).
pub fn apply(mut model: Model) -> (Model, usize) {
    if std::env::var("BATCHWISE_POOL_OF_SUM").is_ok_and(|v| v == "off") {
        return (model, 0);
    }
    let shapes = super::fuse_conv_input::probe_shapes(&model);
    let mut split = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let Some(add) = sum_before(&model, &shapes, i) else {
            i += 1;
            continue;
        };
        // add(a, b) -> s ... pool(s) -> y becomes pool(a') -> pa, pool(b') -> pb ... add(pa,
        // pb) -> y, where a' is a or the input of the Resize that made it.
        let terms: Vec<ValueId> = model.layers[add].inputs.clone();
        let name = model.layers[i].name.clone();
        let mut pooled = Vec::new();
        let mut pools = Vec::new();
        for (k, &t) in terms.iter().enumerate() {
            let v = model.value_count;
            model.value_count += 1;
            let source = mean_source(&model, &shapes, t);
            pools.push(Layer {
                name: format!("{name} (term {k})"),
                op: LayerOp::GlobalAvgPool,
                inputs: vec![source],
                output: v,
                weights: Vec::new(),
                bias: Vec::new(),
            });
            pooled.push(v);
        }
        let pool = &mut model.layers[i];
        pool.op = LayerOp::Binary(BinaryOp::Add);
        pool.inputs = pooled;
        model.layers.splice(add..=add, pools);
        split += 1;
        i += 2;
    }
    (model, split)
}

/// For the GlobalAveragePool at layer `i`: the index of the Add it pools, if its terms can be
/// pooled instead.
fn sum_before(model: &Model, shapes: &[Vec<ItemShape>], i: usize) -> Option<usize> {
    let pool = &model.layers[i];
    let (LayerOp::GlobalAvgPool, &[s]) = (&pool.op, pool.inputs.as_slice()) else {
        return None;
    };
    let add = model.producer(s)?;
    let sum = &model.layers[add];
    let (LayerOp::Binary(BinaryOp::Add), &[a, b]) = (&sum.op, sum.inputs.as_slice()) else {
        return None;
    };
    let laid_out = |v: ValueId| shapes.iter().all(|at| at[v] == at[s]);
    let takes = !shapes.is_empty()
        && model.readers(s) == 1
        && s != model.output
        && laid_out(a)
        && laid_out(b);
    takes.then_some(add)
}

/// The value whose mean is `t`'s: the input of the Resize that made `t` where that Resize keeps
/// the mean at every shape in `shapes`, else `t`.
fn mean_source(model: &Model, shapes: &[Vec<ItemShape>], t: ValueId) -> ValueId {
    let Some(r) = model.producer(t) else {
        return t;
    };
    let resize = &model.layers[r];
    let x = resize.inputs[0];
    let whole = |at: &Vec<ItemShape>| {
        let (from, to) = (at[x], at[t]);
        from.c == to.c
            && to.h.is_multiple_of(from.h)
            && to.w.is_multiple_of(from.w)
            && from.h > 0
            && from.w > 0
    };
    // A Resize to a size or a fit keeps whole factors only at some input sizes: taken where the
    // model's shapes are fixed, or for whole scales.
    let whole_scales = |target: &Target| match target {
        Target::Scale([h, w]) => h.fract() == 0.0 && w.fract() == 0.0,
        Target::Size(_) | Target::Fit { .. } => model.static_shapes.is_some(),
    };
    let keeps_mean = match &resize.op {
        LayerOp::ResizeNearest(_) => true,
        LayerOp::ResizeFilter(spec) => {
            spec.filter == Filter::Linear
                && spec.coords == Coords::HalfPixel
                && whole_scales(&spec.target)
        }
        _ => false,
    };
    match keeps_mean && shapes.iter().all(whole) {
        true => x,
        false => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResizeFilterSpec;
    use crate::passes::cpu::{layer_of, max_diff, model, random, run};

    fn resize(filter: Filter, coords: Coords, scale: f32) -> LayerOp {
        LayerOp::ResizeFilter(ResizeFilterSpec {
            target: Target::Scale([scale, scale]),
            coords,
            filter,
        })
    }

    fn add(inputs: Vec<ValueId>, output: ValueId) -> Layer {
        layer_of(LayerOp::Binary(BinaryOp::Add), inputs, output)
    }

    /// remove-background's decoder: `mean(x + resize(y))` with a linear 2x and a 4x Resize and
    /// a nearest 2x one; a plain sum of two maps. Same function before and after on random
    /// inputs (float32 rounding of sums of up to 4096 values in another order: 1e-5), the pools
    /// reading the small maps, no Add of full-size maps left.
    #[test]
    fn pools_each_term_of_a_sum() {
        for up in [
            resize(Filter::Linear, Coords::HalfPixel, 2.0),
            resize(Filter::Linear, Coords::HalfPixel, 4.0),
            LayerOp::ResizeNearest([2, 2]),
        ] {
            let factor = match &up {
                LayerOp::ResizeFilter(s) => s.scales(1, 1)[0] as u32,
                _ => 2,
            };
            let m = model(
                3,
                vec![
                    layer_of(LayerOp::GlobalAvgPool, vec![0], 1),
                    layer_of(LayerOp::Unary(crate::model::UnaryOp::Abs), vec![0], 2),
                    layer_of(up.clone(), vec![2], 3),
                    layer_of(LayerOp::ResizeNearest([factor, factor]), vec![0], 4),
                    add(vec![4, 3], 5),
                    layer_of(LayerOp::GlobalAvgPool, vec![5], 6),
                    add(vec![6, 1], 7),
                ],
                7,
            );
            let x = random(3 * 6 * 10, 5);
            let before = run(&m, &x, 6, 10);
            let (split, count) = apply(m);
            assert_eq!(count, 1, "{up:?}");
            let shapes = split.shapes(6, 10).expect("shapes");
            for l in &split.layers {
                let s = shapes[l.inputs[0]];
                match l.op {
                    LayerOp::GlobalAvgPool => assert_eq!((s.h, s.w), (6, 10), "{up:?}"),
                    LayerOp::Binary(_) => assert_eq!((s.h, s.w), (1, 1), "{up:?}"),
                    _ => {}
                }
            }
            assert!(max_diff(&before, &run(&split, &x, 6, 10)) < 1e-5, "{up:?}");
        }
    }

    /// A sum read twice, a broadcast term, and a Resize that does not keep the mean (align
    /// corners) keep their layers or their Resize.
    #[test]
    fn others_stay() {
        let pool = |v, out| layer_of(LayerOp::GlobalAvgPool, vec![v], out);
        let read_twice = model(
            2,
            vec![add(vec![0, 0], 1), pool(1, 2), add(vec![1, 1], 3)],
            3,
        );
        assert_eq!(apply(read_twice).1, 0);
        let broadcast = model(2, vec![pool(0, 1), add(vec![0, 1], 2), pool(2, 3)], 3);
        assert_eq!(apply(broadcast).1, 0);
        let corners = resize(Filter::Linear, Coords::AlignCorners, 2.0);
        let m = model(
            2,
            vec![
                layer_of(corners, vec![0], 1),
                layer_of(LayerOp::ResizeNearest([2, 2]), vec![0], 2),
                add(vec![1, 2], 3),
                pool(3, 4),
            ],
            4,
        );
        let x = random(2 * 5 * 5, 9);
        let before = run(&m, &x, 5, 5);
        let (split, count) = apply(m);
        assert_eq!(count, 1);
        // The align-corners Resize is pooled at full size; the nearest one from its input.
        let pooled: Vec<ValueId> = split
            .layers
            .iter()
            .filter(|l| matches!(l.op, LayerOp::GlobalAvgPool))
            .map(|l| l.inputs[0])
            .collect();
        assert_eq!(pooled, [1, 0]);
        assert!(max_diff(&before, &run(&split, &x, 5, 5)) < 1e-5);
    }
}
