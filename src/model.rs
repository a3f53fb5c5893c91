//! The engine's model: a list of layers over numbered values, imported from ONNX.
//!
//! Value 0 is the model input, `[N, C, H, W]` with N and the spatial size free at run time.

use anyhow::{Result, bail};

use crate::kernels::conv_transpose2d::ConvTranspose2dSpec;
use crate::kernels::conv2d::Conv2dSpec;

pub type ValueId = usize;

#[derive(Clone, Debug)]
pub enum LayerOp {
    Conv2d(Conv2dSpec),
    ConvTranspose2d(ConvTranspose2dSpec),
}

#[derive(Clone, Debug)]
pub struct Layer {
    /// The node's name in the source file, for errors and profiles.
    pub name: String,
    pub op: LayerOp,
    pub input: ValueId,
    pub output: ValueId,
    /// Weights in the source layout (OIHW for Conv, IOHW for ConvTranspose).
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub name: String,
    pub input_name: String,
    pub output_name: String,
    pub input_channels: u32,
    pub output_channels: u32,
    pub layers: Vec<Layer>,
    pub output: ValueId,
    pub value_count: usize,
    pub opset: i64,
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

impl Model {
    /// The shape of every value for an input of `h x w`, or an error naming the layer that does not fit.
    pub fn shapes(&self, h: u32, w: u32) -> Result<Vec<ItemShape>> {
        let mut shapes = vec![None; self.value_count];
        shapes[0] = Some(ItemShape {
            c: self.input_channels,
            h,
            w,
        });
        for layer in &self.layers {
            let Some(input) = shapes[layer.input] else {
                bail!("layer {} reads a value before it is computed", layer.name);
            };
            let (c, hw) = match &layer.op {
                LayerOp::Conv2d(s) => (s.out_c, s.output_hw(input.h, input.w)),
                LayerOp::ConvTranspose2d(s) => (s.out_c, s.output_hw(input.h, input.w)),
            };
            let Some((h, w)) = hw else {
                bail!(
                    "layer {} gets an input of {}x{}, too small for its kernel",
                    layer.name,
                    input.w,
                    input.h
                );
            };
            shapes[layer.output] = Some(ItemShape { c, h, w });
        }
        shapes
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.ok_or_else(|| anyhow::anyhow!("value {i} is never computed")))
            .collect()
    }

    /// Bytes of all weights and biases as float32.
    pub fn weight_bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| 4 * (l.weights.len() + l.bias.len()) as u64)
            .sum()
    }

    /// Multiply-adds for one item of `h x w`.
    pub fn macs_per_item(&self, h: u32, w: u32) -> Result<u64> {
        let shapes = self.shapes(h, w)?;
        Ok(self
            .layers
            .iter()
            .map(|l| {
                let s = shapes[l.input];
                match &l.op {
                    LayerOp::Conv2d(spec) => spec.macs(s.h, s.w),
                    LayerOp::ConvTranspose2d(spec) => spec.macs(s.h, s.w),
                }
            })
            .sum())
    }
}
