//! Fixed-input models over whole images: `classify`, `embed`, `remove-background`,
//! `detect-faces`. Each image is fitted to the model's square input (crop, stretch or letterbox,
//! as the model was trained), many images go in one batch, and the results are mapped back to
//! the image: labels with scores, an embedding, a mask at the image's size, face boxes in pixels.

use image::{GrayImage, RgbaImage};
use serde::{Deserialize, Serialize};

use crate::builtin::Task;
use crate::faces::{self, Face};

/// How an image becomes the model's square input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// The centre square, resized (classifiers trained on centre crops).
    CenterCrop,
    /// The whole image, squeezed to the square (the segmenter; its mask is stretched back).
    Stretch,
    /// The whole image scaled to fit, padded with black (the face detector: no distortion).
    Letterbox,
}

impl Fit {
    pub fn for_task(task: Task) -> Fit {
        match task {
            Task::Segment | Task::Tensors => Fit::Stretch,
            Task::DetectFaces => Fit::Letterbox,
            _ => Fit::CenterCrop,
        }
    }
}

/// Where the model's input square sits in the image: image pixel = offset + input pixel / scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    pub scale: [f32; 2],
    pub offset: [f32; 2],
}

impl Placement {
    /// A point in the model's input, in [0, 1], as image pixels.
    pub fn to_image(&self, x: f32, y: f32, size: u32) -> [f32; 2] {
        [
            self.offset[0] + x * size as f32 / self.scale[0],
            self.offset[1] + y * size as f32 / self.scale[1],
        ]
    }
}

/// The model's `size` x `size` input for `img`, and where it sits in the image.
pub fn fit(img: &RgbaImage, size: u32, fit: Fit) -> (RgbaImage, Placement) {
    use crate::resize::resize;
    use image::imageops::{FilterType, crop_imm};
    let (w, h) = img.dimensions();
    let filter = FilterType::CatmullRom;
    match fit {
        Fit::CenterCrop => {
            let side = w.min(h);
            let (x, y) = ((w - side) / 2, (h - side) / 2);
            let square = crop_imm(img, x, y, side, side).to_image();
            let s = size as f32 / side as f32;
            (
                resize(&square, size, size, filter),
                Placement {
                    scale: [s, s],
                    offset: [x as f32, y as f32],
                },
            )
        }
        Fit::Stretch => (
            resize(img, size, size, filter),
            Placement {
                scale: [size as f32 / w as f32, size as f32 / h as f32],
                offset: [0.0, 0.0],
            },
        ),
        Fit::Letterbox => {
            let s = size as f32 / w.max(h) as f32;
            let (sw, sh) = (
                ((w as f32 * s).round() as u32).clamp(1, size),
                ((h as f32 * s).round() as u32).clamp(1, size),
            );
            let scaled = resize(img, sw, sh, filter);
            let mut canvas = RgbaImage::from_pixel(size, size, image::Rgba([0, 0, 0, 255]));
            let (px, py) = ((size - sw) / 2, (size - sh) / 2);
            image::imageops::overlay(&mut canvas, &scaled, px as i64, py as i64);
            (
                canvas,
                Placement {
                    scale: [sw as f32 / w as f32, sh as f32 / h as f32],
                    offset: [
                        -(px as f32) * w as f32 / sw as f32,
                        -(py as f32) * h as f32 / sh as f32,
                    ],
                },
            )
        }
    }
}

/// One ImageNet label and its probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub label: String,
    pub score: f32,
}

/// The `k` most probable labels (softmax of the logits).
pub fn top_labels(logits: &[f32], labels: &[String], k: usize) -> Vec<Label> {
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&x| ((x - max) as f64).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    idx.truncate(k);
    idx.into_iter()
        .map(|i| Label {
            label: labels
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {i}")),
            score: (exp[i] / sum) as f32,
        })
        .collect()
}

/// A face in image pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaceBox {
    pub score: f32,
    /// x_min, y_min, x_max, y_max in pixels of the original image.
    #[serde(rename = "box")]
    pub rect: [f32; 4],
    /// Right eye, left eye, nose tip, mouth, right ear, left ear.
    pub keypoints: [[f32; 2]; 6],
}

/// Faces from the detector's raw outputs, mapped into the image.
pub fn face_boxes(
    regressors: &[f32],
    logits: &[f32],
    placement: &Placement,
    size: [u32; 2],
) -> Vec<FaceBox> {
    let clamp = |p: [f32; 2]| {
        [
            p[0].clamp(0.0, size[0] as f32),
            p[1].clamp(0.0, size[1] as f32),
        ]
    };
    faces::decode(regressors, logits, 0.5, 0.3)
        .into_iter()
        .map(|f: Face| {
            let a = clamp(placement.to_image(f.x_min, f.y_min, faces::INPUT_SIZE));
            let b = clamp(placement.to_image(f.x_max, f.y_max, faces::INPUT_SIZE));
            FaceBox {
                score: f.score,
                rect: [a[0], a[1], b[0], b[1]],
                keypoints: f
                    .keypoints
                    .map(|k| placement.to_image(k[0], k[1], faces::INPUT_SIZE)),
            }
        })
        .collect()
}

/// The segmenter's `size` x `size` mask in [0, 1], stretched back to `w` x `h` as 8 bits.
pub fn mask_to_image(mask: &[f32], size: u32, w: u32, h: u32) -> GrayImage {
    let small = GrayImage::from_fn(size, size, |x, y| {
        let v = mask[(y * size + x) as usize].clamp(0.0, 1.0);
        image::Luma([(v * 255.0).round() as u8])
    });
    crate::resize::resize(&small, w, h, image::imageops::FilterType::Triangle)
}

/// Draws each face's box (2 px, green) and keypoints onto `img`.
pub fn annotate(img: &mut RgbaImage, faces: &[FaceBox]) {
    let (w, h) = img.dimensions();
    let mut put = |x: i64, y: i64| {
        if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
            img.put_pixel(x as u32, y as u32, image::Rgba([0, 255, 0, 255]));
        }
    };
    for f in faces {
        let [x0, y0, x1, y1] = f.rect.map(|v| v.round() as i64);
        for t in 0..2 {
            for x in x0..=x1 {
                put(x, y0 + t);
                put(x, y1 - t);
            }
            for y in y0..=y1 {
                put(x0 + t, y);
                put(x1 - t, y);
            }
        }
        for k in f.keypoints {
            let (kx, ky) = (k[0].round() as i64, k[1].round() as i64);
            for d in -1..=1 {
                put(kx + d, ky);
                put(kx, ky + d);
            }
        }
    }
}

/// `rows` vectors of `dim` floats as a NumPy `.npy` file (version 1.0, little-endian float32).
pub fn npy_bytes(rows: &[Vec<f32>], dim: usize) -> Vec<u8> {
    npy_shaped(&rows.concat(), &[rows.len(), dim])
}

/// `data` (row-major) of `shape` as a NumPy `.npy` file (version 1.0, little-endian float32).
pub fn npy_shaped(data: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    // A 1-D shape is written `(n,)`, as NumPy writes it.
    let comma = if shape.len() == 1 { "," } else { "" };
    let header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}{comma}), }}",
        dims.join(", ")
    );
    // Magic, version, header length, then the header padded with spaces to a multiple of 64
    // bytes (newline last).
    let unpadded = 10 + header.len() + 1;
    let pad = unpadded.next_multiple_of(64) - unpadded;
    let header = format!("{header}{}\n", " ".repeat(pad));
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in data {
        out.extend(v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_maps_back_to_the_image() {
        let img = RgbaImage::new(200, 100);
        let (input, p) = fit(&img, 128, Fit::Letterbox);
        assert_eq!(input.dimensions(), (128, 128));
        // The image occupies rows 32..96 of the input: its corners map back to the image's.
        let tl = p.to_image(0.0, 32.0 / 128.0, 128);
        let br = p.to_image(1.0, 96.0 / 128.0, 128);
        assert!((tl[0]).abs() < 1e-3 && (tl[1]).abs() < 1e-3, "{tl:?}");
        assert!(
            (br[0] - 200.0).abs() < 1e-3 && (br[1] - 100.0).abs() < 1e-3,
            "{br:?}"
        );
    }

    #[test]
    fn center_crop_maps_back_to_the_image() {
        let img = RgbaImage::new(300, 200);
        let (_, p) = fit(&img, 224, Fit::CenterCrop);
        assert_eq!(p.to_image(0.0, 0.0, 224), [50.0, 0.0]);
        let br = p.to_image(1.0, 1.0, 224);
        assert!((br[0] - 250.0).abs() < 1e-3 && (br[1] - 200.0).abs() < 1e-3);
    }

    #[test]
    fn npy_header_is_aligned_and_shaped() {
        let bytes = npy_bytes(&[vec![1.0, 2.0], vec![3.0, 4.0]], 2);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 2)"), "{header}");
        assert_eq!(bytes.len(), 10 + header_len + 16);
    }

    #[test]
    fn top_labels_are_sorted_probabilities() {
        let labels: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        let top = top_labels(&[1.0, 3.0, 2.0], &labels, 2);
        assert_eq!(top[0].label, "b");
        assert_eq!(top[1].label, "c");
        assert!(top[0].score > top[1].score && top[0].score < 1.0);
    }
}
