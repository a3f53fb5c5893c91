//! `batchwise check`: each built-in model against onnxruntime's float32 output on a committed image
//! (`tests/fixtures/`, written by `tests/reference/make_reference.py`), on this adapter, so a new
//! GPU or driver is known to compute the same functions before its figures are trusted. The
//! references and the float32 tolerances are the tests' (`tests/upscale.rs`,
//! `tests/fixed_input_models.rs`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::builtin::{self, BuiltinModel};
use crate::engine::{BatchRunner, Engine};
use crate::kernels::Precision;
use crate::upscale::TiledUpscaler;

/// How an output is compared with its reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Peak signal-to-noise ratio in dB, for images and masks in [0, 1]: at least the threshold.
    PsnrDb,
    /// The largest |difference| over every output value (logits, features): at most the
    /// threshold.
    MaxAbsDiff,
    /// Faces decoded from both outputs (regressors and logits) as the app decodes them (score at
    /// least 0.5, non-max suppression at IoU 0.3), matched one to one: the largest distance, in
    /// pixels of the 128 px input, between a box corner or keypoint and its reference's; at most
    /// the threshold. A face that only one side finds counts as the input's whole width. The raw
    /// outputs are the wrong scale to compare in float16: logits reach +-430 (their sigmoid is 0
    /// or 1 either way) where float16 steps by 0.25.
    FacePixels,
}

impl Measure {
    fn passes(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::PsnrDb => value >= threshold,
            Self::MaxAbsDiff | Self::FacePixels => value <= threshold,
        }
    }
}

/// One built-in's reference: the committed input image and onnxruntime's outputs, one file per
/// model output (raw little-endian float32), and the tolerance in float32 and in float16.
///
/// Float32 as in the tests: 60 dB on images and masks (measured 130-144 dB), 1e-3 on vectors
/// (measured 5e-6 to 3.4e-4). Float16 rounds every activation to 11 significant bits: 45 dB on
/// images (measured 49-68 dB on lavapipe), and on vectors about 3x lavapipe's float16 figure, in
/// the output's own unit (logits, features). Faces: 0.01 px in float32 (measured
/// 8e-6), 0.25 px in float16 (measured 0.03 px on lavapipe).
struct Reference {
    model: &'static str,
    input: &'static str,
    outputs: &'static [&'static str],
    measure: Measure,
    limits: Limits,
}

#[derive(Clone, Copy)]
struct Limits {
    f32: f64,
    f16: f64,
}

const IMAGE_LIMITS: Limits = Limits {
    f32: 60.0,
    f16: 45.0,
};

impl Reference {
    fn threshold(&self, precision: Precision) -> f64 {
        match precision {
            Precision::F32 => self.limits.f32,
            Precision::F16 => self.limits.f16,
        }
    }
}

const fn image(model: &'static str, output: &'static [&'static str]) -> Reference {
    Reference {
        model,
        input: "photo-60x44.png",
        outputs: output,
        measure: Measure::PsnrDb,
        limits: IMAGE_LIMITS,
    }
}

const REFERENCES: &[Reference] = &[
    image("upscale-photo-2x", &["photo-60x44.upscale-photo-2x.f32"]),
    image(
        "upscale-photo-2x-denoise0",
        &["photo-60x44.upscale-photo-2x-denoise0.f32"],
    ),
    image(
        "upscale-photo-2x-denoise1",
        &["photo-60x44.upscale-photo-2x-denoise1.f32"],
    ),
    image(
        "upscale-photo-2x-denoise2",
        &["photo-60x44.upscale-photo-2x-denoise2.f32"],
    ),
    image(
        "upscale-photo-2x-denoise3",
        &["photo-60x44.upscale-photo-2x-denoise3.f32"],
    ),
    image("upscale-anime-4x", &["photo-60x44.upscale-anime-4x.f32"]),
    image("upscale-anime-2x", &["photo-60x44.upscale-anime-2x.f32"]),
    image("enhance-low-light", &["photo-60x44.enhance-low-light.f32"]),
    Reference {
        model: "classify",
        input: "photo-224.png",
        outputs: &["photo-224.efficientnet.logits.f32"],
        measure: Measure::MaxAbsDiff,
        limits: Limits {
            f32: 1e-3,
            f16: 0.25,
        },
    },
    Reference {
        model: "embed",
        input: "photo-224.png",
        outputs: &["photo-224.efficientnet.feat.f32"],
        measure: Measure::MaxAbsDiff,
        limits: Limits {
            f32: 1e-3,
            f16: 0.1,
        },
    },
    Reference {
        model: "remove-background",
        input: "photo-256.png",
        outputs: &["photo-256.remove-background.f32"],
        measure: Measure::PsnrDb,
        limits: IMAGE_LIMITS,
    },
    Reference {
        model: "detect-faces",
        input: "photo-128-faces.png",
        outputs: &[
            "photo-128-faces.detect-faces.regressors.f32",
            "photo-128-faces.detect-faces.logits.f32",
        ],
        measure: Measure::FacePixels,
        limits: Limits {
            f32: 0.01,
            f16: 0.25,
        },
    },
];

/// Tiles of 24 px in batches of 4: the 60x44 image is cut into 6 tiles, so seams and a partial
/// batch are part of the check.
const TILE: u32 = 24;
const BATCH: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    /// Ran, and the output is outside the tolerance.
    Failed,
    /// The engine does not run this model at this precision (say, float16 on an adapter without
    /// SHADER_F16): nothing was compared.
    Refused,
    /// The run or the reference could not be read: nothing was compared.
    Error,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckRow {
    pub model: String,
    pub status: Status,
    pub input: String,
    pub references: Vec<String>,
    pub measure: Measure,
    /// The measured value (dB or |difference|); None when nothing was compared.
    pub value: Option<f64>,
    pub threshold: f64,
    pub seconds: f64,
    /// Why the row is refused or an error.
    pub error: Option<String>,
}

impl CheckRow {
    /// One line for people: the model, its status, the figure against its limit, the time.
    pub fn describe(&self) -> String {
        let figure = match (self.measure, self.value) {
            (_, None) => "-".to_owned(),
            (Measure::PsnrDb, Some(v)) => format!("PSNR {v:.1} dB (>= {} dB)", self.threshold),
            (Measure::MaxAbsDiff, Some(v)) => {
                format!("max |diff| {v:.1e} (<= {:e})", self.threshold)
            }
            (Measure::FacePixels, Some(v)) => {
                format!("faces within {v:.2e} px (<= {} px)", self.threshold)
            }
        };
        let status = format!("{:?}", self.status).to_lowercase();
        let why = self
            .error
            .as_deref()
            .map_or(String::new(), |e| format!(": {e}"));
        format!(
            "{:<26} {status:<7} {figure}, {:.1} s{why}",
            self.model, self.seconds
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub device: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub precision: Precision,
    /// No row failed or erred (refused rows do not count against it).
    pub passed: bool,
    pub rows: Vec<CheckRow>,
}

/// The built-ins with a committed reference, in the order `check` runs them.
pub fn models() -> impl Iterator<Item = &'static str> {
    REFERENCES.iter().map(|r| r.model)
}

/// The fixture files `model`'s check reads: its input image, then its reference outputs.
pub fn files(model: &str) -> impl Iterator<Item = &'static str> {
    REFERENCES
        .iter()
        .filter(move |r| r.model == model)
        .flat_map(|r| std::iter::once(r.input).chain(r.outputs.iter().copied()))
}

/// Checks `ids` (every built-in with a reference when empty) against the references in
/// `fixtures`, calling `progress` after each model.
pub fn run(
    engine: &Engine,
    ids: &[String],
    fixtures: &Path,
    precision: Precision,
    mut progress: impl FnMut(&CheckRow),
) -> Result<CheckReport> {
    if !fixtures.is_dir() {
        bail!(
            "{} is not a folder of reference outputs (the repository's tests/fixtures; \
             `--fixtures DIR` names another)",
            fixtures.display()
        );
    }
    let mut chosen = Vec::new();
    for id in ids {
        builtin::find(id)?;
        let r = REFERENCES.iter().find(|r| r.model == id).with_context(|| {
            let known: Vec<_> = models().collect();
            format!(
                "{id} has no reference output; checked: {}",
                known.join(", ")
            )
        })?;
        chosen.push(r);
    }
    if chosen.is_empty() {
        chosen = REFERENCES.iter().collect();
    }
    let mut rows = Vec::new();
    for r in chosen {
        let row = check_one(engine, r, fixtures, precision);
        progress(&row);
        rows.push(row);
    }
    let a = &engine.gpu.adapter;
    Ok(CheckReport {
        device: a.name.clone(),
        backend: a.backend.clone(),
        device_type: a.device_type.clone(),
        driver: a.driver.clone(),
        precision,
        passed: rows
            .iter()
            .all(|r| matches!(r.status, Status::Passed | Status::Refused)),
        rows,
    })
}

fn check_one(engine: &Engine, r: &Reference, fixtures: &Path, precision: Precision) -> CheckRow {
    let start = Instant::now();
    let threshold = r.threshold(precision);
    let (status, value, error) = match outputs(engine, r, fixtures, precision) {
        Err(Failure::Refused(e)) => (Status::Refused, None, Some(format!("{e:#}"))),
        Err(Failure::Error(e)) => (Status::Error, None, Some(format!("{e:#}"))),
        Ok((got, _)) if got.iter().flatten().any(|v| !v.is_finite()) => {
            let bad = got.iter().flatten().filter(|v| !v.is_finite()).count();
            let why = format!("{bad} output values are NaN or infinite");
            (Status::Failed, None, Some(why))
        }
        Ok((got, expected)) => match compare(r.measure, &got, &expected) {
            Ok(v) if r.measure.passes(v, threshold) => (Status::Passed, Some(v), None),
            Ok(v) => (Status::Failed, Some(v), None),
            Err(e) => (Status::Error, None, Some(format!("{e:#}"))),
        },
    };
    CheckRow {
        model: r.model.to_owned(),
        status,
        input: r.input.to_owned(),
        references: r.outputs.iter().map(|s| (*s).to_owned()).collect(),
        measure: r.measure,
        value,
        threshold,
        seconds: start.elapsed().as_secs_f64(),
        error,
    }
}

/// Every output of a model (or every reference), each flattened.
type Outputs = Vec<Vec<f32>>;

enum Failure {
    /// The engine would not load the model at this precision.
    Refused(anyhow::Error),
    Error(anyhow::Error),
}

/// The model's outputs on the reference input, and the references, each output flattened.
fn outputs(
    engine: &Engine,
    r: &Reference,
    fixtures: &Path,
    precision: Precision,
) -> Result<(Outputs, Outputs), Failure> {
    let b: &BuiltinModel = builtin::find(r.model).map_err(Failure::Error)?;
    let expected = r
        .outputs
        .iter()
        .map(|f| read_f32(&fixtures.join(f)))
        .collect::<Result<Vec<_>>>()
        .map_err(Failure::Error)?;
    let photo = image::open(fixtures.join(r.input))
        .with_context(|| format!("reading {}", fixtures.join(r.input).display()))
        .map_err(Failure::Error)?
        .to_rgba8();
    let ir = b.load().map_err(Failure::Error)?;
    let model = engine.load_with(ir, precision).map_err(Failure::Refused)?;
    let got = if b.input_size == 0 {
        let up = TiledUpscaler::new(engine, &model, b.spec, BATCH, Some(TILE));
        up.and_then(|up| up.upscale_f32(&photo)).map(|o| vec![o])
    } else if photo.dimensions() != (b.input_size, b.input_size) {
        Err(anyhow::anyhow!(
            "{} is {}x{}, not the model's {}x{} input",
            r.input,
            photo.width(),
            photo.height(),
            b.input_size,
            b.input_size
        ))
    } else {
        let side = b.input_size;
        let pixels: Vec<u32> = photo
            .pixels()
            .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 255]))
            .collect();
        BatchRunner::new(engine, &model, 1, side, side, &b.spec.input_map)
            .and_then(|runner| runner.run_f32_all(&pixels, 1))
            .map(|mut all| {
                all.truncate(r.outputs.len());
                all
            })
    };
    Ok((got.map_err(Failure::Error)?, expected))
}

/// The measure over every output: the lowest PSNR, or the largest |difference|.
fn compare(measure: Measure, got: &[Vec<f32>], expected: &[Vec<f32>]) -> Result<f64> {
    if got.len() != expected.len() {
        bail!("{} outputs, {} references", got.len(), expected.len());
    }
    if measure == Measure::FacePixels {
        return face_pixels(got, expected);
    }
    let mut worst: Option<f64> = None;
    for (g, e) in got.iter().zip(expected) {
        if g.len() != e.len() {
            bail!(
                "an output of {} values against a reference of {}",
                g.len(),
                e.len()
            );
        }
        let v = match measure {
            Measure::PsnrDb => psnr(g, e),
            Measure::MaxAbsDiff => f64::from(max_abs_diff(g, e)),
            Measure::FacePixels => unreachable!("compared above"),
        };
        worst = Some(match (worst, measure) {
            (None, _) => v,
            (Some(w), Measure::PsnrDb) => w.min(v),
            (Some(w), _) => w.max(v),
        });
    }
    worst.context("no output to compare")
}

/// [`Measure::FacePixels`] over (regressors, logits) and their references.
fn face_pixels(got: &[Vec<f32>], expected: &[Vec<f32>]) -> Result<f64> {
    let [regs, logits] = got else {
        bail!("{} outputs, not regressors and logits", got.len());
    };
    let [eregs, elogits] = expected else {
        bail!("{} references, not regressors and logits", expected.len());
    };
    let anchors = crate::faces::anchors().len();
    if logits.len() != anchors || regs.len() != anchors * crate::faces::VALUES_PER_ANCHOR {
        bail!(
            "{} regressors and {} logits, not {anchors} anchors' worth",
            regs.len(),
            logits.len()
        );
    }
    let found = crate::faces::decode(regs, logits, 0.5, 0.3);
    let reference = crate::faces::decode(eregs, elogits, 0.5, 0.3);
    if reference.is_empty() {
        bail!("the reference finds no face: nothing to compare");
    }
    let side = f64::from(crate::faces::INPUT_SIZE);
    let mut worst = 0.0f64;
    let mut unmatched = found.len().abs_diff(reference.len());
    for r in &reference {
        let Some(f) = found.iter().max_by(|a, b| a.iou(r).total_cmp(&b.iou(r))) else {
            continue;
        };
        if f.iou(r) < 0.5 {
            unmatched += 1;
            continue;
        }
        let points = |x: &crate::faces::Face| {
            let mut p = vec![x.x_min, x.y_min, x.x_max, x.y_max];
            p.extend(x.keypoints.iter().flatten());
            p
        };
        for (a, b) in points(f).iter().zip(points(r)) {
            worst = worst.max(f64::from((a - b).abs()) * side);
        }
    }
    Ok(if unmatched > 0 { side } else { worst })
}

/// Raw little-endian float32 values, as `make_reference.py` writes them.
pub fn read_f32(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() % 4 != 0 {
        bail!(
            "{}: {} bytes is not whole float32 values",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Peak signal-to-noise ratio in dB for signals in [0, 1] of the same length.
pub fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.len().max(1) as f64;
    10.0 * (1.0 / mse.max(1e-30)).log10()
}

/// The largest |a - b| over two slices of the same length.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The folder `check` reads by default: the repository's fixtures, relative to the working folder.
pub fn default_fixtures() -> PathBuf {
    PathBuf::from("tests/fixtures")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn references() -> Vec<Vec<f32>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        ["regressors", "logits"]
            .iter()
            .map(|o| read_f32(&dir.join(format!("photo-128-faces.detect-faces.{o}.f32"))).unwrap())
            .collect()
    }

    #[test]
    fn faces_are_compared_in_pixels_and_a_missing_face_fails() {
        let expected = references();
        assert_eq!(face_pixels(&expected, &expected).unwrap(), 0.0);
        let logits = &expected[1];
        // Every scoring anchor's box centre moved right by half a pixel.
        let mut moved = expected.clone();
        for (i, l) in logits.iter().enumerate() {
            if *l > 0.0 {
                moved[0][i * crate::faces::VALUES_PER_ANCHOR] += 0.5;
            }
        }
        let v = face_pixels(&moved, &expected).unwrap();
        assert!((v - 0.5).abs() < 1e-3, "{v}");
        // No face found, or one more than the reference's: the input's whole width.
        let mut none = expected.clone();
        none[1].iter_mut().for_each(|l| *l = -10.0);
        assert_eq!(face_pixels(&none, &expected).unwrap(), 128.0);
        let mut extra = expected.clone();
        let far = (0..logits.len())
            .min_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        extra[1][far] = 10.0;
        assert_eq!(face_pixels(&extra, &expected).unwrap(), 128.0);
        assert!(
            face_pixels(&none, &none).is_err(),
            "no reference face to compare"
        );
    }
}
