//! NCNN import: a `.param` text graph and its `.bin` weights (float32 or float16-flagged), lowered
//! to the same [`Model`] as ONNX files. This is the format Upscayl and the ncnn upscalers ship.
//!
//! Layers: Input, Split, Convolution, ConvolutionDepthWise, Deconvolution (with their fused
//! activations), ReLU / LeakyReLU, PReLU, PixelShuffle, Interp (nearest, whole factors), BinaryOp
//! and Eltwise (add, sub, mul, div of two blobs). Anything else is refused with the layer's name and
//! type.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::model::Activation;
use crate::model::BinaryOp;
use crate::model::Conv2dSpec;
use crate::model::ConvTranspose2dSpec;
use crate::model::DepthToSpaceSpec;
use crate::model::UnaryOp;
use crate::model::{Layer, LayerOp, Model, ValueId};

const MAGIC: u32 = 7767517;
const SUPPORTED: &str = "Input, Split, Convolution, ConvolutionDepthWise, Deconvolution, ReLU \
     (LeakyReLU with a slope), PReLU, Sigmoid, Concat, Pooling (max, average, global average), \
     Padding, PixelShuffle, Interp (nearest), BinaryOp, Eltwise";

/// One `key=value` of a layer line; array values (negative keys) hold their numbers.
#[derive(Debug, Clone)]
enum ParamValue {
    Number(f64),
    Array(Vec<f64>),
}

struct LayerLine {
    kind: String,
    name: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    params: HashMap<i32, ParamValue>,
}

impl LayerLine {
    fn int(&self, key: i32, default: i64) -> i64 {
        match self.params.get(&key) {
            Some(ParamValue::Number(v)) => *v as i64,
            _ => default,
        }
    }
    fn float(&self, key: i32, default: f32) -> f32 {
        match self.params.get(&key) {
            Some(ParamValue::Number(v)) => *v as f32,
            _ => default,
        }
    }
    fn array(&self, key: i32) -> Vec<f32> {
        match self.params.get(&key) {
            Some(ParamValue::Array(v)) => v.iter().map(|&x| x as f32).collect(),
            _ => Vec::new(),
        }
    }
}

fn parse_param(text: &str) -> Result<Vec<LayerLine>> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let magic: u32 = lines
        .next()
        .and_then(|l| l.parse().ok())
        .context("the first line is not ncnn's magic number 7767517")?;
    if magic != MAGIC {
        bail!("the first line is {magic}, not ncnn's magic number 7767517");
    }
    lines
        .next()
        .context("the layer and blob counts are missing")?;
    let mut layers = Vec::new();
    for (i, line) in lines.enumerate() {
        let mut f = line.split_whitespace();
        let mut next = |what: &str| {
            f.next()
                .with_context(|| format!("layer line {}: {what} is missing", i + 1))
        };
        let kind = next("the type")?.to_owned();
        let name = next("the name")?.to_owned();
        let n_in: usize = next("the input count")?.parse().context("input count")?;
        let n_out: usize = next("the output count")?.parse().context("output count")?;
        let inputs = (0..n_in)
            .map(|_| next("an input").map(str::to_owned))
            .collect::<Result<_>>()?;
        let outputs = (0..n_out)
            .map(|_| next("an output").map(str::to_owned))
            .collect::<Result<_>>()?;
        let mut params = HashMap::new();
        for kv in f {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("layer {name}: {kv:?} is not key=value"))?;
            let k: i32 = k
                .parse()
                .with_context(|| format!("layer {name}: key {k:?}"))?;
            let bad = || anyhow!("layer {name}: value {v:?} of key {k}");
            if k <= -23300 {
                let mut items = v.split(',');
                let count: usize = items.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
                let values: Vec<f64> = items
                    .map(|x| x.parse().map_err(|_| bad()))
                    .collect::<Result<_>>()?;
                if values.len() != count {
                    return Err(bad());
                }
                params.insert(-(k + 23300), ParamValue::Array(values));
            } else {
                params.insert(k, ParamValue::Number(v.parse().map_err(|_| bad())?));
            }
        }
        layers.push(LayerLine {
            kind,
            name,
            inputs,
            outputs,
            params,
        });
    }
    Ok(layers)
}

/// Reads weights from the `.bin` in order, as ncnn's ModelBin does.
struct BinReader<'a> {
    data: &'a [u8],
    at: usize,
    name: String,
}

impl BinReader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            bail!(
                "the .bin file ends at byte {} but layer {} needs {n} more bytes from byte {}; \
                 the .param and .bin do not belong together",
                self.data.len(),
                self.name,
                self.at
            );
        };
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// `count` raw float32 values (ncnn type 1).
    fn raw_f32(&mut self, count: usize) -> Result<Vec<f32>> {
        Ok(self
            .take(count * 4)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// `count` values after a 4-byte tag (ncnn type 0): float32, or float16 flagged 0x01306B47.
    fn tagged(&mut self, count: usize) -> Result<Vec<f32>> {
        let tag = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
        match tag {
            0 => self.raw_f32(count),
            0x0130_6B47 => {
                let bytes = self.take(count * 2)?.to_vec();
                self.take((count * 2).next_multiple_of(4) - count * 2)?;
                Ok(bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect())
            }
            0x000D_4B38 => bail!(
                "layer {} has int8 weights, which are not supported",
                self.name
            ),
            other => bail!(
                "layer {} has weights of unknown storage tag {other:#010x} (quantized tables are \
                 not supported)",
                self.name
            ),
        }
    }
}

fn activation(l: &LayerLine) -> Result<Activation> {
    let p = l.array(10);
    Ok(match l.int(9, 0) {
        0 => Activation::None,
        1 => Activation::LeakyRelu { alpha: 0.0 },
        2 => Activation::LeakyRelu {
            alpha: p.first().copied().unwrap_or(0.0),
        },
        3 => Activation::Clip {
            min: p.first().copied().unwrap_or(f32::MIN),
            max: p.get(1).copied().unwrap_or(f32::MAX),
        },
        other => {
            bail!("activation type {other} is not supported yet (none, relu, leaky relu, clip)")
        }
    })
}

/// Pads: left, top, right, bottom with ncnn's defaults (each falls back to the one before).
fn pads(l: &LayerLine) -> Result<[u32; 4]> {
    let left = l.int(4, 0);
    if left < 0 {
        bail!("automatic SAME padding ({left}) is not supported yet");
    }
    let top = l.int(14, left);
    let right = l.int(15, left);
    let bottom = l.int(16, top);
    Ok([top as u32, left as u32, bottom as u32, right as u32])
}

/// Loads `param` and the `.bin` beside it (same stem).
pub fn load(param: &Path) -> Result<Model> {
    let bin = param.with_extension("bin");
    let text = std::fs::read_to_string(param)
        .with_context(|| format!("cannot read {}", param.display()))?;
    let data = std::fs::read(&bin)
        .with_context(|| format!("cannot read the weights {}", bin.display()))?;
    load_bytes(&text, &data, &param.display().to_string())
}

pub fn load_bytes(param: &str, bin: &[u8], name: &str) -> Result<Model> {
    let lines = parse_param(param)?;
    let mut reader = BinReader {
        data: bin,
        at: 0,
        name: String::new(),
    };
    let mut blobs: HashMap<String, ValueId> = HashMap::new();
    let mut channels: Vec<u32> = Vec::new();
    let mut layers: Vec<Layer> = Vec::new();
    let mut input_name = None;
    let mut readers: HashMap<String, usize> = HashMap::new();
    for l in &lines {
        for i in &l.inputs {
            *readers.entry(i.clone()).or_default() += 1;
        }
    }
    for l in &lines {
        reader.name = l.name.clone();
        let fail = |e: anyhow::Error| e.context(format!("layer {} ({})", l.name, l.kind));
        let blob = |n: &String| {
            blobs
                .get(n)
                .copied()
                .ok_or_else(|| fail(anyhow!("reads blob {n}, which no supported layer writes")))
        };
        let push = |layers: &mut Vec<Layer>,
                    channels: &mut Vec<u32>,
                    blobs: &mut HashMap<String, ValueId>,
                    op: LayerOp,
                    inputs: Vec<ValueId>,
                    out_c: u32,
                    weights: Vec<f32>,
                    bias: Vec<f32>| {
            let output = channels.len();
            channels.push(out_c);
            blobs.insert(l.outputs[0].clone(), output);
            layers.push(Layer {
                name: l.name.clone(),
                op,
                inputs,
                output,
                weights,
                bias,
            });
        };
        match l.kind.as_str() {
            "Input" => {
                if input_name.is_some() {
                    bail!("the model has more than one Input; batchwise runs one image input");
                }
                input_name = Some(l.outputs[0].clone());
                blobs.insert(l.outputs[0].clone(), 0);
                channels.push(l.int(2, 3).max(1) as u32);
            }
            "Split" => {
                let v = blob(&l.inputs[0])?;
                for o in &l.outputs {
                    blobs.insert(o.clone(), v);
                }
            }
            "Convolution" | "ConvolutionDepthWise" | "Deconvolution" => {
                let input = blob(&l.inputs[0])?;
                let in_c = channels[input];
                let out_c = l.int(0, 0) as u32;
                let k_w = l.int(1, 0) as u32;
                let k_h = l.int(11, k_w as i64) as u32;
                let dil_w = l.int(2, 1) as u32;
                let dil_h = l.int(12, dil_w as i64) as u32;
                let s_w = l.int(3, 1) as u32;
                let s_h = l.int(13, s_w as i64) as u32;
                let groups = if l.kind == "ConvolutionDepthWise" {
                    l.int(7, 1) as u32
                } else {
                    1
                };
                let size = l.int(6, 0) as usize;
                if out_c == 0
                    || k_w == 0
                    || groups == 0
                    || !in_c.is_multiple_of(groups)
                    || !out_c.is_multiple_of(groups)
                {
                    return Err(fail(anyhow!(
                        "num_output {out_c}, kernel {k_w}, group {groups} do not fit {in_c} input channels"
                    )));
                }
                if size != (out_c * in_c / groups * k_h * k_w) as usize {
                    return Err(fail(anyhow!(
                        "weight_data_size {size} does not match the shape"
                    )));
                }
                if l.int(8, 0) != 0 {
                    return Err(fail(anyhow!(
                        "int8 quantized convolutions are not supported"
                    )));
                }
                let weights = reader.tagged(size).map_err(fail)?;
                let bias = if l.int(5, 0) != 0 {
                    reader.raw_f32(out_c as usize).map_err(fail)?
                } else {
                    Vec::new()
                };
                let pads = pads(l).map_err(fail)?;
                let act = activation(l).map_err(fail)?;
                if l.kind == "Deconvolution" {
                    if l.int(20, 0) != 0 || l.int(21, 0) != 0 {
                        return Err(fail(anyhow!("a fixed output size is not supported")));
                    }
                    let spec = ConvTranspose2dSpec {
                        in_c,
                        out_c,
                        k_h,
                        k_w,
                        stride: [s_h, s_w],
                        pads,
                        dilation: [dil_h, dil_w],
                        output_padding: [l.int(19, 0) as u32, l.int(18, 0) as u32],
                        groups,
                        activation: act,
                    };
                    // ncnn stores [out][in][kh][kw]; ONNX ConvTranspose is [in][out][kh][kw].
                    let (icg, ocg) = ((in_c / groups) as usize, (out_c / groups) as usize);
                    let taps = (k_h * k_w) as usize;
                    let mut w = vec![0.0; weights.len()];
                    for g in 0..groups as usize {
                        for o in 0..ocg {
                            for i in 0..icg {
                                for t in 0..taps {
                                    w[((g * icg + i) * ocg + o) * taps + t] =
                                        weights[((g * ocg + o) * icg + i) * taps + t];
                                }
                            }
                        }
                    }
                    // `passes::conv_transpose_phases` rewrites it where that is faster.
                    push(
                        &mut layers,
                        &mut channels,
                        &mut blobs,
                        LayerOp::ConvTranspose2d(spec),
                        vec![input],
                        out_c,
                        w,
                        bias,
                    );
                } else {
                    let spec = Conv2dSpec {
                        in_c,
                        out_c,
                        k_h,
                        k_w,
                        stride: [s_h, s_w],
                        pads,
                        dilation: [dil_h, dil_w],
                        groups,
                        activation: act,
                    };
                    crate::kernels::conv2d::supported(&spec).map_err(|e| fail(anyhow!("{e}")))?;
                    push(
                        &mut layers,
                        &mut channels,
                        &mut blobs,
                        LayerOp::Conv2d(spec),
                        vec![input],
                        out_c,
                        weights,
                        bias,
                    );
                }
            }
            "ReLU" | "PReLU" => {
                let input = blob(&l.inputs[0])?;
                let act = if l.kind == "ReLU" {
                    Activation::LeakyRelu {
                        alpha: l.float(0, 0.0),
                    }
                } else {
                    let n = l.int(0, 1) as usize;
                    let slopes = reader.raw_f32(n).map_err(fail)?;
                    let c = channels[input] as usize;
                    Activation::PRelu {
                        slopes: if n == 1 { vec![slopes[0]; c] } else { slopes },
                    }
                };
                let sole = readers.get(&l.inputs[0]) == Some(&1);
                let conv = layers.last_mut().filter(|c| c.output == input && sole);
                let Some(Layer {
                    op: LayerOp::Conv2d(spec),
                    ..
                }) = conv
                else {
                    // Not fused: a standalone activation.
                    let c = channels[input];
                    let (op, weights) = match act {
                        Activation::LeakyRelu { alpha } => {
                            (LayerOp::Unary(UnaryOp::LeakyRelu { alpha }), Vec::new())
                        }
                        Activation::PRelu { slopes } if slopes.len() == c as usize => (
                            LayerOp::BinaryConst {
                                op: BinaryOp::PRelu,
                                constant: crate::model::ItemShape { c, h: 1, w: 1 },
                                constant_first: false,
                            },
                            slopes,
                        ),
                        _ => {
                            return Err(fail(anyhow!("{} slopes do not fit {c} channels", l.kind)));
                        }
                    };
                    push(
                        &mut layers,
                        &mut channels,
                        &mut blobs,
                        op,
                        vec![input],
                        c,
                        weights,
                        Vec::new(),
                    );
                    continue;
                };
                if spec.activation != Activation::None {
                    return Err(fail(anyhow!("two activations in a row are not supported")));
                }
                if let Activation::PRelu { slopes } = &act
                    && slopes.len() != spec.out_c as usize
                {
                    return Err(fail(anyhow!(
                        "{} slopes for {} channels",
                        slopes.len(),
                        spec.out_c
                    )));
                }
                spec.activation = act;
                blobs.insert(l.outputs[0].clone(), input);
            }
            "Sigmoid" => {
                let input = blob(&l.inputs[0])?;
                let c = channels[input];
                push(
                    &mut layers,
                    &mut channels,
                    &mut blobs,
                    LayerOp::Unary(UnaryOp::Sigmoid),
                    vec![input],
                    c,
                    Vec::new(),
                    Vec::new(),
                );
            }
            "Concat" => {
                let inputs: Vec<ValueId> = l.inputs.iter().map(blob).collect::<Result<_>>()?;
                // ncnn's axis leaves out the batch: 0 channels, 1 height, 2 width.
                let axis = l.int(0, 0);
                let op = match axis {
                    0 => LayerOp::Concat,
                    1 | 2 => LayerOp::ConcatAxis(axis as usize + 1),
                    other => return Err(fail(anyhow!("Concat on axis {other} is not supported"))),
                };
                let c = if axis == 0 {
                    inputs.iter().map(|&v| channels[v]).sum()
                } else {
                    channels[inputs[0]]
                };
                push(
                    &mut layers,
                    &mut channels,
                    &mut blobs,
                    op,
                    inputs,
                    c,
                    Vec::new(),
                    Vec::new(),
                );
            }
            "Pooling" => {
                let input = blob(&l.inputs[0])?;
                let c = channels[input];
                let average = match l.int(0, 0) {
                    0 => false,
                    1 => true,
                    other => return Err(fail(anyhow!("pooling type {other} is not supported"))),
                };
                if l.int(7, 0) != 0 {
                    return Err(fail(anyhow!("adaptive pooling is not supported yet")));
                }
                let op = if l.int(4, 0) != 0 {
                    if !average {
                        return Err(fail(anyhow!("global max pooling is not supported yet")));
                    }
                    LayerOp::GlobalAvgPool
                } else {
                    let k_w = l.int(1, 0) as u32;
                    let k_h = l.int(11, k_w as i64) as u32;
                    let s_w = l.int(2, 1) as u32;
                    let s_h = l.int(12, s_w as i64) as u32;
                    let left = l.int(3, 0);
                    let right = l.int(14, left);
                    let top = l.int(13, left);
                    let bottom = l.int(15, top);
                    // pad_mode 0: "full" padding, a partial last window (ceil); 1: valid (floor).
                    let ceil_mode = match l.int(5, 0) {
                        0 => true,
                        1 => false,
                        other => {
                            return Err(fail(anyhow!(
                                "pad_mode {other} (automatic SAME padding) is not supported yet"
                            )));
                        }
                    };
                    if [k_w, k_h, s_w, s_h].contains(&0)
                        || [left, right, top, bottom].iter().any(|&p| p < 0)
                    {
                        return Err(fail(anyhow!("kernel, stride or pads out of range")));
                    }
                    LayerOp::Pool2d(crate::model::Pool2dSpec {
                        average,
                        k: [k_h, k_w],
                        stride: [s_h, s_w],
                        pads: [top as u32, left as u32, bottom as u32, right as u32],
                        dilation: [1, 1],
                        ceil_mode,
                        count_include_pad: l.int(6, 0) != 0,
                    })
                };
                push(
                    &mut layers,
                    &mut channels,
                    &mut blobs,
                    op,
                    vec![input],
                    c,
                    Vec::new(),
                    Vec::new(),
                );
            }
            "Padding" => {
                use crate::model::{PadMode, PadSpec};
                let input = blob(&l.inputs[0])?;
                let c = channels[input];
                let p = |k: i32| -> Result<u32> {
                    let v = l.int(k, 0);
                    u32::try_from(v).map_err(|_| fail(anyhow!("negative padding {v}")))
                };
                let mode = match l.int(4, 0) {
                    0 => PadMode::Constant,
                    1 => PadMode::Edge,
                    2 => PadMode::Reflect,
                    other => return Err(fail(anyhow!("padding type {other} is not supported"))),
                };
                if l.int(6, 0) != 0 {
                    return Err(fail(anyhow!(
                        "per-channel pad values are not supported yet"
                    )));
                }
                let spec = PadSpec {
                    channels: [p(7)?, p(8)?],
                    height: [p(0)?, p(1)?],
                    width: [p(2)?, p(3)?],
                    mode,
                    value: l.float(5, 0.0),
                };
                if mode != PadMode::Constant && spec.channels != [0, 0] {
                    return Err(fail(anyhow!(
                        "edge or reflect padding of channels is not supported"
                    )));
                }
                let out_c = c + spec.channels[0] + spec.channels[1];
                push(
                    &mut layers,
                    &mut channels,
                    &mut blobs,
                    LayerOp::Pad(spec),
                    vec![input],
                    out_c,
                    Vec::new(),
                    Vec::new(),
                );
            }
            "PixelShuffle" => {
                let input = blob(&l.inputs[0])?;
                let r = l.int(0, 1) as u32;
                let c = channels[input];
                if r == 0 || !c.is_multiple_of(r * r) {
                    return Err(fail(anyhow!(
                        "upscale factor {r} does not fit {c} channels"
                    )));
                }
                // mode 0 is PyTorch's pixel_shuffle, ONNX DepthToSpace CRD.
                let spec = DepthToSpaceSpec {
                    block: [r, r],
                    crd: l.int(1, 0) == 0,
                    crop: [0, 0],
                };
                push(
                    &mut layers,
                    &mut channels,
                    &mut blobs,
                    LayerOp::DepthToSpace(spec),
                    vec![input],
                    c / (r * r),
                    Vec::new(),
                    Vec::new(),
                );
            }
            "Interp" => {
                let input = blob(&l.inputs[0])?;
                let (hs, ws) = (l.float(1, 1.0), l.float(2, 1.0));
                let whole = |v: f32| (v >= 1.0 && v.fract() == 0.0).then_some(v as u32);
                let (Some(h), Some(w)) = (whole(hs), whole(ws)) else {
                    return Err(fail(anyhow!(
                        "scales {hs} x {ws} are not whole numbers >= 1"
                    )));
                };
                if l.int(0, 0) != 1 || l.int(3, 0) != 0 || l.int(4, 0) != 0 {
                    return Err(fail(anyhow!(
                        "only nearest Interp by scale factors is supported yet"
                    )));
                }
                let c = channels[input];
                push(
                    &mut layers,
                    &mut channels,
                    &mut blobs,
                    LayerOp::ResizeNearest([h, w]),
                    vec![input],
                    c,
                    Vec::new(),
                    Vec::new(),
                );
            }
            "BinaryOp" | "Eltwise" => {
                if l.inputs.len() != 2 {
                    return Err(fail(anyhow!("only two-input {} is supported", l.kind)));
                }
                let (a, b) = (blob(&l.inputs[0])?, blob(&l.inputs[1])?);
                let op = match (
                    l.kind.as_str(),
                    l.int(0, if l.kind == "Eltwise" { 1 } else { 0 }),
                ) {
                    ("BinaryOp", 0) | ("Eltwise", 1) => BinaryOp::Add,
                    ("BinaryOp", 1) => BinaryOp::Sub,
                    ("BinaryOp", 2) | ("Eltwise", 0) => BinaryOp::Mul,
                    ("BinaryOp", 3) => BinaryOp::Div,
                    (_, other) => {
                        return Err(fail(anyhow!("operation {other} is not supported yet")));
                    }
                };
                if l.kind == "Eltwise" && !l.array(1).iter().all(|&c| c == 1.0) {
                    return Err(fail(anyhow!("Eltwise coefficients are not supported yet")));
                }
                let c = channels[a].max(channels[b]);
                push(
                    &mut layers,
                    &mut channels,
                    &mut blobs,
                    LayerOp::Binary(op),
                    vec![a, b],
                    c,
                    Vec::new(),
                    Vec::new(),
                );
            }
            other => bail!(
                "layer {} has type {other}, which batchwise does not support yet; supported: {SUPPORTED}",
                l.name
            ),
        }
    }
    let input_name = input_name.context("the model has no Input layer")?;
    // The output: the one blob written and never read.
    let read: std::collections::HashSet<&String> = lines.iter().flat_map(|l| &l.inputs).collect();
    let outputs: Vec<&String> = lines
        .iter()
        .flat_map(|l| &l.outputs)
        .filter(|o| !read.contains(o))
        .collect();
    let [output_name] = outputs.as_slice() else {
        bail!(
            "the model has {} unread blobs ({:?}); batchwise runs models with one output",
            outputs.len(),
            outputs
        );
    };
    let output = blobs[*output_name];
    if reader.at != bin.len() {
        bail!(
            "the .bin holds {} bytes but the layers read {}; the .param and .bin do not belong together",
            bin.len(),
            reader.at
        );
    }
    let model = Model {
        name: name.to_owned(),
        input_name,
        output_name: output_name.to_string(),
        input_channels: channels[0],
        output_channels: channels[output],
        output,
        extra_outputs: Vec::new(),
        value_count: channels.len(),
        layers,
        opset: 0,
        static_shapes: None,
        nhwc_input: false,
    };
    let (model, _) = crate::passes::run(model);
    Ok(model)
}
