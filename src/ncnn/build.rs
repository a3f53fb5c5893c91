//! The builder: parsed layer lines, in file order, become IR layers over numbered values. It owns
//! the layers, each value's channel count and the blob-name -> value map; the lowering of each
//! layer type is a function here (graph plumbing, Sigmoid, Concat, BinaryOp), in `conv.rs`
//! (convolutions and activations) or in `spatial.rs` (pooling, padding, resampling).

use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};

use super::param::LayerLine;
use super::weights::WeightReader;
use super::{conv, spatial};
use crate::model::{BinaryOp, Layer, LayerOp, Model, UnaryOp, ValueId};

const SUPPORTED: &str = "Input, Split, Convolution, ConvolutionDepthWise, Deconvolution, ReLU \
     (LeakyReLU with a slope), PReLU, Sigmoid, Concat, Pooling (max, average, global average), \
     Padding, PixelShuffle, Interp (nearest), BinaryOp, Eltwise";

/// Lowers one layer line of a known type.
type Lowering = fn(&mut Builder<'_>, &LayerLine) -> Result<()>;

pub(super) struct Builder<'a> {
    /// The `.bin`, read as the layers ask for their weights.
    pub bin: WeightReader<'a>,
    layers: Vec<Layer>,
    /// The channel count of every value; value 0 is the input.
    channels: Vec<u32>,
    blobs: HashMap<String, ValueId>,
    /// Every blob bound so far, in order.
    written: Vec<String>,
    /// How many layers read each blob.
    readers: HashMap<String, usize>,
    input_name: Option<String>,
}

impl<'a> Builder<'a> {
    /// A builder for `lines` (read once to count each blob's readers) over the `.bin` `bin`.
    pub fn new(lines: &[LayerLine], bin: &'a [u8]) -> Self {
        let mut readers: HashMap<String, usize> = HashMap::new();
        for i in lines.iter().flat_map(|l| &l.inputs) {
            *readers.entry(i.clone()).or_default() += 1;
        }
        Self {
            bin: WeightReader::new(bin),
            layers: Vec::new(),
            channels: Vec::new(),
            blobs: HashMap::new(),
            written: Vec::new(),
            readers,
            input_name: None,
        }
    }

    /// Lowers the next layer line; errors name the layer and its type.
    pub fn lower(&mut self, l: &LayerLine) -> Result<()> {
        let lower: Lowering = match l.kind.as_str() {
            "Input" => input,
            "Split" => split,
            "Convolution" | "ConvolutionDepthWise" | "Deconvolution" => conv::convolution,
            "ReLU" | "PReLU" => conv::relu,
            "Sigmoid" => sigmoid,
            "Concat" => concat,
            "Pooling" => spatial::pooling,
            "Padding" => spatial::padding,
            "PixelShuffle" => spatial::pixel_shuffle,
            "Interp" => spatial::interp,
            "BinaryOp" | "Eltwise" => binary,
            other => bail!(
                "layer {} has type {other}, which batchwise does not support yet; supported: \
                 {SUPPORTED}",
                l.name
            ),
        };
        lower(self, l).with_context(|| format!("layer {} ({})", l.name, l.kind))
    }

    /// The value of blob `name`.
    pub fn value(&self, name: &str) -> Result<ValueId> {
        match self.blobs.get(name) {
            Some(&v) => Ok(v),
            None => bail!("reads blob {name}, which no supported layer writes"),
        }
    }

    /// The value of the one blob `l` reads.
    pub fn input_of(&self, l: &LayerLine) -> Result<ValueId> {
        match l.inputs.as_slice() {
            [input] => self.value(input),
            inputs => bail!("reads {} blobs; {} reads one", inputs.len(), l.kind),
        }
    }

    /// The values of every blob `l` reads.
    pub fn inputs_of(&self, l: &LayerLine) -> Result<Vec<ValueId>> {
        l.inputs.iter().map(|i| self.value(i)).collect()
    }

    pub fn channels(&self, v: ValueId) -> u32 {
        self.channels[v]
    }

    /// Whether blob `name` has exactly one reader.
    pub fn sole_reader(&self, name: &str) -> bool {
        self.readers.get(name) == Some(&1)
    }

    /// The last layer, where it writes `v`: an activation after it may fuse into it.
    pub fn last_writing(&mut self, v: ValueId) -> Option<&mut Layer> {
        self.layers.last_mut().filter(|l| l.output == v)
    }

    /// Names `v` blob `name`; a blob is written once.
    pub fn bind(&mut self, name: &str, v: ValueId) -> Result<()> {
        if self.blobs.contains_key(name) {
            bail!("writes blob {name}, which an earlier layer wrote");
        }
        self.blobs.insert(name.to_owned(), v);
        self.written.push(name.to_owned());
        Ok(())
    }

    /// A new value of `c` channels, written by the one output of `l`.
    fn new_value(&mut self, l: &LayerLine, c: u32) -> Result<ValueId> {
        // Checked here, before any layer sizes a buffer by it (the limits check the whole model
        // again at the end).
        let max = crate::model::limits::MAX_CHANNELS;
        if c > max {
            bail!("writes {c} channels; batchwise takes at most {max}");
        }
        let v = self.channels.len();
        self.bind(l.sole_output()?, v)?;
        self.channels.push(c);
        Ok(v)
    }

    /// Appends `op` over `inputs` as layer `l`, writing a new value of `out_c` channels; the
    /// caller sets its weights and bias where it has them.
    pub fn push(
        &mut self,
        l: &LayerLine,
        op: LayerOp,
        inputs: Vec<ValueId>,
        out_c: u32,
    ) -> Result<&mut Layer> {
        let output = self.new_value(l, out_c)?;
        let at = self.layers.len();
        self.layers.push(Layer {
            name: l.name.clone(),
            op,
            inputs,
            output,
            weights: Vec::new(),
            bias: Vec::new(),
        });
        Ok(&mut self.layers[at])
    }

    /// The model, once every layer is lowered: its output is the one blob written and never read.
    pub fn finish(self, name: &str) -> Result<Model> {
        let input_name = self
            .input_name
            .clone()
            .context("the model has no Input layer")?;
        let unread: Vec<&String> = self
            .written
            .iter()
            .filter(|o| !self.readers.contains_key(*o))
            .collect();
        let [output_name] = unread.as_slice() else {
            bail!(
                "the model has {} unread blobs ({unread:?}); batchwise runs models with one output",
                unread.len(),
            );
        };
        let output = self.value(output_name)?;
        self.bin.finish()?;
        Ok(Model {
            name: name.to_owned(),
            input_name,
            output_name: (*output_name).clone(),
            input_channels: self.channels[0],
            output_channels: self.channels[output],
            output,
            extra_outputs: Vec::new(),
            image_outputs: Vec::new(),
            value_count: self.channels.len(),
            layers: self.layers,
            opset: 0,
            static_shapes: None,
            nhwc_input: false,
            image_output: false,
        })
    }
}

/// The model's image input: value 0.
fn input(b: &mut Builder<'_>, l: &LayerLine) -> Result<()> {
    if b.input_name.is_some() {
        bail!("the model has more than one Input; batchwise runs one image input");
    }
    if !b.channels.is_empty() {
        bail!("Input comes after layers that write values");
    }
    let c = l.int(2, 3).max(1);
    let c = u32::try_from(c).with_context(|| format!("{c} channels"))?;
    b.new_value(l, c)?;
    b.input_name = Some(l.sole_output()?.to_owned());
    Ok(())
}

/// Every output names the input's value.
fn split(b: &mut Builder<'_>, l: &LayerLine) -> Result<()> {
    let v = b.input_of(l)?;
    for o in &l.outputs {
        b.bind(o, v)?;
    }
    Ok(())
}

fn sigmoid(b: &mut Builder<'_>, l: &LayerLine) -> Result<()> {
    let input = b.input_of(l)?;
    let c = b.channels(input);
    b.push(l, LayerOp::Unary(UnaryOp::Sigmoid), vec![input], c)?;
    Ok(())
}

fn concat(b: &mut Builder<'_>, l: &LayerLine) -> Result<()> {
    let inputs = b.inputs_of(l)?;
    let Some(&first) = inputs.first() else {
        bail!("Concat reads no blobs");
    };
    // ncnn's axis leaves out the batch: 0 channels, 1 height, 2 width.
    let axis = l.int(0, 0);
    let (op, c) = match axis {
        0 => {
            let sum = inputs
                .iter()
                .try_fold(0u32, |sum, &v| sum.checked_add(b.channels(v)));
            (LayerOp::Concat, sum.context("too many channels")?)
        }
        1 | 2 => (LayerOp::ConcatAxis(axis as usize + 1), b.channels(first)),
        other => bail!("Concat on axis {other} is not supported"),
    };
    b.push(l, op, inputs, c)?;
    Ok(())
}

/// BinaryOp and Eltwise of two blobs.
fn binary(b: &mut Builder<'_>, l: &LayerLine) -> Result<()> {
    let [x, y] = l.inputs.as_slice() else {
        bail!("only two-input {} is supported", l.kind);
    };
    let (x, y) = (b.value(x)?, b.value(y)?);
    let eltwise = l.kind == "Eltwise";
    let op = match (eltwise, l.int(0, if eltwise { 1 } else { 0 })) {
        (false, 0) | (true, 1) => BinaryOp::Add,
        (false, 1) => BinaryOp::Sub,
        (false, 2) | (true, 0) => BinaryOp::Mul,
        (false, 3) => BinaryOp::Div,
        (_, other) => bail!("operation {other} is not supported yet"),
    };
    if eltwise && !l.array(1).iter().all(|&c| c == 1.0) {
        bail!("Eltwise coefficients are not supported yet");
    }
    let c = b.channels(x).max(b.channels(y));
    b.push(l, LayerOp::Binary(op), vec![x, y], c)?;
    Ok(())
}
