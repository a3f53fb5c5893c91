//! Shapes: per-item shapes of the image lowering, broadcasting, strides.

/// The most dimensions the general tensor kernels take.
pub const MAX_RANK: usize = 8;

/// Row-major strides of `dims`.
pub fn contiguous_strides(dims: &[u32]) -> Vec<u32> {
    let mut s = vec![1u32; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * dims[k + 1];
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

/// Resolved `[start, end)` per axis (c, h, w) of a Crop, ONNX Slice style.
pub fn crop_ranges(s: ItemShape, starts: [i64; 3], ends: [i64; 3]) -> [(u32, u32); 3] {
    let dims = [s.c, s.h, s.w];
    let mut r = [(0, 0); 3];
    for a in 0..3 {
        let n = dims[a] as i64;
        let fix = |v: i64| if v < 0 { v + n } else { v }.clamp(0, n) as u32;
        r[a] = (fix(starts[a]), fix(ends[a]));
    }
    r
}
