//! Face boxes from BlazeFace (`detect-faces`): SSD anchors, box decoding and non-max suppression,
//! as MediaPipe's face detection (short range, 128x128 input) defines them.

use serde::Serialize;

/// Input edge length of the short-range model.
pub const INPUT_SIZE: u32 = 128;
/// Values per anchor in the regression output: box (x, y, w, h) and 6 keypoints (x, y).
pub const VALUES_PER_ANCHOR: usize = 16;

/// A face in the model's input, in [0, 1] coordinates, with its 6 keypoints (eyes, nose, mouth,
/// ears).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Face {
    pub score: f32,
    pub x_min: f32,
    pub y_min: f32,
    pub x_max: f32,
    pub y_max: f32,
    pub keypoints: [[f32; 2]; 6],
}

impl Face {
    pub fn area(&self) -> f32 {
        (self.x_max - self.x_min).max(0.0) * (self.y_max - self.y_min).max(0.0)
    }

    pub fn iou(&self, other: &Face) -> f32 {
        let w = (self.x_max.min(other.x_max) - self.x_min.max(other.x_min)).max(0.0);
        let h = (self.y_max.min(other.y_max) - self.y_min.max(other.y_min)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

/// Anchor centres in [0, 1]: strides 8, 16, 16, 16 with 2 anchors per cell each; layers with the
/// same stride share a grid, giving 16x16x2 + 8x8x6 = 896 anchors for a 128 input.
pub fn anchors() -> Vec<[f32; 2]> {
    let strides = [8u32, 16, 16, 16];
    let mut out = Vec::with_capacity(896);
    let mut layer = 0;
    while layer < strides.len() {
        let stride = strides[layer];
        let mut per_cell = 0;
        while layer < strides.len() && strides[layer] == stride {
            per_cell += 2;
            layer += 1;
        }
        let grid = INPUT_SIZE.div_ceil(stride);
        for y in 0..grid {
            for x in 0..grid {
                for _ in 0..per_cell {
                    out.push([
                        (x as f32 + 0.5) / grid as f32,
                        (y as f32 + 0.5) / grid as f32,
                    ]);
                }
            }
        }
    }
    out
}

/// Decodes one image's raw outputs (`regressors`: 896 x 16, `logits`: 896) into faces scoring at
/// least `min_score`, after non-max suppression at `iou_threshold`.
pub fn decode(regressors: &[f32], logits: &[f32], min_score: f32, iou_threshold: f32) -> Vec<Face> {
    let anchors = anchors();
    let scale = INPUT_SIZE as f32;
    let mut faces: Vec<Face> = anchors
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let score = 1.0 / (1.0 + (-logits[i].clamp(-100.0, 100.0)).exp());
            if score < min_score {
                return None;
            }
            let r = &regressors[i * VALUES_PER_ANCHOR..(i + 1) * VALUES_PER_ANCHOR];
            let (cx, cy) = (r[0] / scale + a[0], r[1] / scale + a[1]);
            let (w, h) = (r[2] / scale, r[3] / scale);
            let mut keypoints = [[0.0; 2]; 6];
            for (k, kp) in keypoints.iter_mut().enumerate() {
                *kp = [r[4 + 2 * k] / scale + a[0], r[5 + 2 * k] / scale + a[1]];
            }
            Some(Face {
                score,
                x_min: cx - w / 2.0,
                y_min: cy - h / 2.0,
                x_max: cx + w / 2.0,
                y_max: cy + h / 2.0,
                keypoints,
            })
        })
        .collect();
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Face> = Vec::new();
    for f in faces {
        if kept.iter().all(|k| k.iou(&f) < iou_threshold) {
            kept.push(f);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_896_anchors_on_two_grids() {
        let a = anchors();
        assert_eq!(a.len(), 896);
        assert_eq!(a[0], [0.5 / 16.0, 0.5 / 16.0]);
        assert_eq!(a[1], a[0]);
        assert_eq!(a[512], [0.5 / 8.0, 0.5 / 8.0]);
        assert_eq!(a[517], a[512]);
        assert_eq!(a[518], [1.5 / 8.0, 0.5 / 8.0]);
    }

    #[test]
    fn suppression_keeps_the_best_of_overlapping_boxes() {
        let mut regs = vec![0.0f32; 896 * 16];
        let mut logits = vec![-10.0f32; 896];
        // Two anchors of the same cell (same centre) with boxes of 20 px: they overlap fully.
        for (i, logit) in [(0, 3.0), (1, 2.0)] {
            regs[i * 16 + 2] = 20.0;
            regs[i * 16 + 3] = 20.0;
            logits[i] = logit;
        }
        let faces = decode(&regs, &logits, 0.5, 0.3);
        assert_eq!(faces.len(), 1);
        assert!((faces[0].score - 1.0 / (1.0 + (-3.0f32).exp())).abs() < 1e-6);
    }
}
