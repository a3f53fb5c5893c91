//! Reshapes between general copies cost nothing: a Reshape of a computed tensor is lowered as a
//! contiguous copy (the same values at the same flat positions), and a general copy
//! (`TensorOp::Copy`) reads and writes flat positions whatever the dims. Where such a reshape
//! only feeds general copies, they read its input instead; where it reads the output of a
//! general copy that nothing else reads, that copy writes the reshape's output directly. A pixel
//! shuffle written as Reshape, Transpose, Reshape becomes its one transposing copy, and that
//! copy, where it moves every value as DepthToSpace would, runs as DepthToSpace (its kernel
//! moves 4 columns an invocation; the general copy one value).
//!
//! A reshape that is a model output keeps its own buffer unless the copy before it writes it.
//! `BATCHWISE_RESHAPE_COPIES=off` keeps every reshape (to measure).

use crate::kernels::depth_to_space;
use crate::model::{CopySpec, DepthToSpaceSpec, ItemShape, LayerOp, Model, TensorOp};

/// Returns the model and how many reshapes were dropped.
pub fn apply(mut model: Model) -> (Model, usize) {
    let off = std::env::var("BATCHWISE_RESHAPE_COPIES").is_ok_and(|v| v == "off");
    let Some(shapes) = model.static_shapes.clone().filter(|_| !off) else {
        return (model, 0);
    };
    let numel = |v: usize| shapes[v].c as u64 * shapes[v].h as u64 * shapes[v].w as u64;
    let mut dropped = 0;
    let mut i = 0;
    while i < model.layers.len() {
        let l = &model.layers[i];
        let (input, output) = match l.inputs.as_slice() {
            &[input] if is_reshape(&l.op, numel(input)) && numel(l.output) == numel(input) => {
                (input, l.output)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let kept = output == model.output || model.extra_outputs.contains(&output);
        let readers: Vec<usize> = (0..model.layers.len())
            .filter(|&r| model.layers[r].inputs.contains(&output))
            .collect();
        let copies_read = !readers.is_empty()
            && readers
                .iter()
                .all(|&r| matches!(model.layers[r].op, LayerOp::Tensor(TensorOp::Copy(_))));
        let producer = model.producer(input).filter(|&p| {
            matches!(model.layers[p].op, LayerOp::Tensor(TensorOp::Copy(_)))
                && model.readers(input) == 1
        });
        if let Some(p) = producer {
            model.layers[p].output = output;
        } else if copies_read && !kept {
            for r in readers {
                for v in &mut model.layers[r].inputs {
                    if *v == output {
                        *v = input;
                    }
                }
            }
        } else {
            i += 1;
            continue;
        }
        model.layers.remove(i);
        dropped += 1;
    }
    for l in &mut model.layers {
        let &[input] = l.inputs.as_slice() else {
            continue;
        };
        if let Some(spec) = as_depth_to_space(&l.op, shapes[input], shapes[l.output]) {
            l.op = LayerOp::DepthToSpace(spec);
        }
    }
    (model, dropped)
}

/// The DepthToSpace that moves every value of an item of shape `from` where the general copy
/// `op` does, if one does: checked by running both references on the item's indices (exact
/// in float32 below 2^24; items of at most 2^22 values, to keep the load quick).
fn as_depth_to_space(op: &LayerOp, from: ItemShape, to: ItemShape) -> Option<DepthToSpaceSpec> {
    let LayerOp::Tensor(TensorOp::Copy(parts)) = op else {
        return None;
    };
    let [(Some(0), copy)] = parts.as_slice() else {
        return None;
    };
    let count = from.c as u64 * from.h as u64 * from.w as u64;
    let whole = to.h.is_multiple_of(from.h) && to.w.is_multiple_of(from.w) && count == copy.count();
    if !whole || count > 1 << 22 {
        return None;
    }
    let block = [to.h / from.h, to.w / from.w];
    if block == [1, 1] || from.c != to.c * block[0] * block[1] {
        return None;
    }
    let indices: Vec<f32> = (0..count).map(|i| i as f32).collect();
    let mut copied = vec![-1.0; count as usize];
    copy.reference(&indices, &mut copied);
    [false, true].into_iter().find_map(|crd| {
        let spec = DepthToSpaceSpec {
            block,
            crd,
            crop: [0, 0],
        };
        let moved = depth_to_space::reference(&spec, &indices, 1, from.c, from.h, from.w);
        (moved == copied).then_some(spec)
    })
}

/// Whether `op` copies an item of `count` values to the same flat positions.
fn is_reshape(op: &LayerOp, count: u64) -> bool {
    let LayerOp::Tensor(TensorOp::Copy(parts)) = op else {
        return false;
    };
    matches!(parts.as_slice(), [(Some(0), spec)]
        if spec.count() == count && *spec == CopySpec::contiguous(spec.count() as u32))
}

#[cfg(test)]
mod tests {
    use super::super::cpu::{layer_of, max_diff, model, random};
    use super::*;

    fn copy(spec: CopySpec, input: usize, output: usize) -> crate::model::Layer {
        layer_of(
            LayerOp::Tensor(TensorOp::Copy(vec![(Some(0), spec)])),
            vec![input],
            output,
        )
    }

    /// Runs a model of general copies on one item.
    fn run(m: &Model, input: &[f32]) -> Vec<f32> {
        let shapes = m.static_shapes.as_ref().unwrap();
        let mut values = vec![Vec::new(); m.value_count];
        values[0] = input.to_vec();
        for l in &m.layers {
            let s = shapes[l.output];
            let mut out = vec![0.0; (s.c * s.h * s.w) as usize];
            match &l.op {
                LayerOp::Tensor(TensorOp::Copy(parts)) => {
                    for (from, spec) in parts {
                        spec.reference(&values[l.inputs[from.unwrap()]], &mut out);
                    }
                }
                LayerOp::DepthToSpace(spec) => {
                    let x = shapes[l.inputs[0]];
                    out = depth_to_space::reference(spec, &values[l.inputs[0]], 1, x.c, x.h, x.w);
                }
                other => panic!("not in this test: {}", other.kind()),
            }
            values[l.output] = out;
        }
        values[m.output].clone()
    }

    /// `[C * 4, H, W]` -> `[C, 2, 2, H, W]` -> `[C, H, 2, W, 2]` -> `[C, 2H, 2W]`: the two
    /// reshapes go, the transposing copy reads the input and writes the output; the same
    /// function (a copy: exact).
    #[test]
    fn a_pixel_shuffle_s_reshapes_go() {
        let (c, h, w) = (3u32, 4u32, 5u32);
        let n = c * 4 * h * w;
        // Output [c, h, 2, w, 2] from input [c, 2 (by), 2 (bx), h, w].
        let transpose = CopySpec {
            dims: vec![c, h, 2, w, 2],
            src_strides: vec![
                (4 * h * w) as i64,
                w as i64,
                (2 * h * w) as i64,
                1,
                (h * w) as i64,
            ],
            src_offset: 0,
            dst_strides: vec![(4 * h * w) as i64, (4 * w) as i64, (2 * w) as i64, 2, 1],
            dst_offset: 0,
        };
        let mut m = model(
            4 * c,
            vec![
                copy(CopySpec::contiguous(n), 0, 1),
                copy(transpose, 1, 2),
                copy(CopySpec::contiguous(n), 2, 3),
            ],
            3,
        );
        let item = ItemShape { c: 4 * c, h, w };
        let out = ItemShape {
            c,
            h: 2 * h,
            w: 2 * w,
        };
        let flat = ItemShape { c: n, h: 1, w: 1 };
        m.static_shapes = Some(vec![item, flat, flat, out]);
        let (after, dropped) = apply(m.clone());
        assert_eq!(dropped, 2);
        assert_eq!(after.layers.len(), 1);
        let d2s = DepthToSpaceSpec {
            block: [2, 2],
            crd: true,
            crop: [0, 0],
        };
        assert!(matches!(&after.layers[0].op, LayerOp::DepthToSpace(s) if *s == d2s));
        assert_eq!(
            (after.layers[0].inputs.as_slice(), after.layers[0].output),
            ([0].as_slice(), 3)
        );
        let x = random(n as usize, 5);
        assert_eq!(max_diff(&run(&m, &x), &run(&after, &x)), 0.0);
        // Reshapes next to a layer that is not a general copy stay, and so does a copy of part
        // of the item.
        let mut other = m.clone();
        other.layers[1].op = LayerOp::Concat;
        assert_eq!(apply(other).1, 0);
        let mut partial = m;
        partial.layers[0].op =
            LayerOp::Tensor(TensorOp::Copy(vec![(Some(0), CopySpec::contiguous(n - 1))]));
        let (after, dropped) = apply(partial);
        assert_eq!(
            (dropped, after.layers.len()),
            (1, 2),
            "the last reshape only"
        );
    }
}
