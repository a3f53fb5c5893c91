//! Shapes: per-item shapes of image-IR values, broadcasting, strides.

/// The most dimensions the general tensor kernels take.
pub const MAX_RANK: usize = 8;

/// Row-major strides of `dims`.
pub fn contiguous_strides(dims: &[u32]) -> Vec<u32> {
    let mut s = vec![1u32; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        // Saturating: sizes beyond u32 are refused by `limits`.
        s[k] = s[k + 1].saturating_mul(dims[k + 1]);
    }
    s
}

/// The broadcast shape of two item shapes, or None if they do not broadcast.
pub fn broadcast(a: ItemShape, b: ItemShape) -> Option<ItemShape> {
    let dim = |x: u32, y: u32| match (x, y) {
        _ if x == y => Some(x),
        (1, y) => Some(y),
        (x, 1) => Some(x),
        _ => None,
    };
    Some(ItemShape {
        c: dim(a.c, b.c)?,
        h: dim(a.h, b.h)?,
        w: dim(a.w, b.w)?,
    })
}

/// The numpy broadcast of two shapes, or None when they do not broadcast.
pub fn broadcast_dims(a: &[u32], b: &[u32]) -> Option<Vec<u32>> {
    let rank = a.len().max(b.len());
    let at = |v: &[u32], k: usize| {
        let skip = rank - v.len();
        if k < skip { 1 } else { v[k - skip] }
    };
    (0..rank)
        .map(|k| match (at(a, k), at(b, k)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Strides of `dims` read at the coordinates of the broadcast shape `out` (0 where broadcast).
pub fn broadcast_strides(dims: &[u32], out: &[u32]) -> Vec<u32> {
    let own = contiguous_strides(dims);
    let skip = out.len() - dims.len();
    (0..out.len())
        .map(|k| {
            if k < skip || dims[k - skip] == 1 {
                0
            } else {
                own[k - skip]
            }
        })
        .collect()
}

/// Channels, height and width of one batch item of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemShape {
    pub c: u32,
    pub h: u32,
    pub w: u32,
}

impl ItemShape {
    pub fn elements(&self) -> u64 {
        self.c as u64 * self.h as u64 * self.w as u64
    }
}

/// One axis of a Crop, resolved against the input: the first index, the step and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropAxis {
    pub start: u32,
    pub step: i32,
    pub count: u32,
}

/// Each axis (c, h, w) of a Crop resolved ONNX Slice's way: negative starts and ends count from
/// the end; they clamp to `[0, n]` for a positive step, `[-1, n - 1]` for a negative one; the
/// indices are `start, start + step, ...` before `end`. A step of 0 (or one beyond i32) takes
/// nothing.
pub fn crop_axes(s: ItemShape, starts: [i64; 3], ends: [i64; 3], steps: [i64; 3]) -> [CropAxis; 3] {
    let dims = [s.c, s.h, s.w];
    std::array::from_fn(|a| {
        let (n, step) = (i64::from(dims[a]), steps[a]);
        let from_end = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
        let (start, end) = (from_end(starts[a]), from_end(ends[a]));
        let (start, count) = match step {
            0 => (0, 0),
            k if k > 0 => {
                let (s, e) = (start.clamp(0, n), end.clamp(0, n));
                let span = (e - s).max(0);
                (s, span.div_euclid(k) + i64::from(span % k != 0))
            }
            k => {
                let (s, e) = (start.clamp(0, n - 1), end.clamp(-1, n - 1));
                let span = (s - e).max(0);
                (s, span.div_euclid(-k) + i64::from(span % -k != 0))
            }
        };
        match i32::try_from(step) {
            Ok(step) if count > 0 => CropAxis {
                start: start as u32,
                step,
                count: count as u32,
            },
            _ => CropAxis {
                start: 0,
                step: 1,
                count: 0,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `crop_axes` picks the indices numpy's `x[start:end:step]` does (ONNX Slice's rule).
    #[test]
    fn crop_axes_follow_slice_semantics() {
        let numpy = |n: i64, start: i64, end: i64, step: i64| -> Vec<i64> {
            let fix = |v: i64, lo: i64, hi: i64| (if v < 0 { v + n } else { v }).clamp(lo, hi);
            let (mut i, mut out) = (0, Vec::new());
            if step > 0 {
                let (s, e) = (fix(start, 0, n), fix(end, 0, n));
                i = s;
                while i < e {
                    out.push(i);
                    i += step;
                }
            } else {
                let (s, e) = (fix(start, 0, n - 1), fix(end, -1, n - 1));
                i += s;
                while i > e {
                    out.push(i);
                    i += step;
                }
            }
            out
        };
        let n = 7u32;
        for start in [-9i64, -3, -1, 0, 2, 6, 7, 9, i64::MIN, i64::MAX] {
            for end in [-9i64, -1, 0, 3, 7, 9, i64::MIN, i64::MAX] {
                for step in [-3i64, -2, -1, 1, 2, 3] {
                    let s = ItemShape { c: 1, h: 1, w: n };
                    let a = crop_axes(s, [0, 0, start], [1, 1, end], [1, 1, step])[2];
                    let got: Vec<i64> = (0..a.count)
                        .map(|k| i64::from(a.start) + i64::from(k) * i64::from(a.step))
                        .collect();
                    let want = numpy(i64::from(n), start, end, step);
                    assert_eq!(got, want, "[{start}:{end}:{step}]");
                }
            }
        }
    }
}
