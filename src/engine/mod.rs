//! The engine: a model's weights on the GPU, and [`BatchRunner`]s that run N tiles per submit.
//!
//! - [`memory`]: what a batch will hold on the GPU, known before anything is allocated (the one
//!   per-item formula Auto batch, the tile chooser and the allocator use).
//! - [`steps`]: the op -> kernel table: each layer of the model IR bound to its kernel launches.
//! - [`runner`]: [`BatchRunner`], everything one batch size and tile size needs, allocated once;
//!   pixel batches and float batches are submitted and collected through their own types.
//! - [`shared`]: activation buffers shared by runners whose batches never overlap (a chain's
//!   steps run step by step).
//!
//! A batch is recorded as one command encoder and one submit: pack (8-bit pixels -> float tensor),
//! every layer, unpack (float -> 8-bit), and the copy to the read-back buffer.

pub mod memory;
pub mod placement;
pub mod runner;
pub mod shared;
mod steps;

use std::sync::Arc;

use anyhow::{Result, bail};

pub use memory::{MemoryPlan, activation_bytes, item_bytes, plan};
pub use runner::{BatchRunner, StepTime, SubmittedFloats, SubmittedPixels};

use crate::gpu::{AdapterChoice, Gpu, TrackedBuffer};
use crate::kernels::conv_transpose2d::ConvTranspose2dLayer;
use crate::kernels::conv2d::Conv2dLayer;
use crate::kernels::{Kernels, Precision, linear};
use crate::model::{AcrossChannels, LayerOp, Model, TensorOp};

/// The GPU could not allocate or run what a batch needs; a smaller batch may fit.
#[derive(Debug)]
pub struct OutOfMemory(pub String);

impl std::fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OutOfMemory {}

/// Whether `e` is (or wraps) an [`OutOfMemory`].
pub fn is_out_of_memory(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<OutOfMemory>().is_some())
}

/// Fault injection for tests of the out-of-memory paths: with `BATCHWISE_FAIL_BATCHES_ABOVE=N`
/// allocating a batch runner of more than N items fails as if the GPU were out of memory, with
/// `BATCHWISE_FAIL_RUNS_ABOVE=N` running a batch of more than N items does.
pub(crate) fn injected_out_of_memory(var: &str, items: u32) -> Option<OutOfMemory> {
    let limit: u32 = std::env::var(var).ok()?.parse().ok()?;
    (items > limit).then(|| {
        OutOfMemory(format!(
            "out of memory for a batch of {items} (injected by {var}={limit})"
        ))
    })
}

/// A device with its compiled pipelines.
pub struct Engine {
    pub gpu: Arc<Gpu>,
    kernels: Kernels,
    /// The float16 pipelines, compiled on first use.
    kernels_f16: std::sync::OnceLock<Kernels>,
}

pub(crate) enum GpuLayer {
    Conv2d(Conv2dLayer),
    ConvTranspose2d(ConvTranspose2dLayer),
    /// A MatMul by a constant B over dense rows (`kernels::linear`): gemm.wgsl's packed matrix.
    Linear(crate::kernels::gemm::GemmLayer),
    /// The constant operand of a BinaryConst or a tensor op; a norm's scales and shifts.
    Constant(TrackedBuffer),
    /// Ops without weights: everything they need is in the model's layer.
    Plain,
}

/// A model whose weights live on the GPU.
pub struct GpuModel {
    pub model: Arc<Model>,
    /// The element type of its activations.
    pub precision: Precision,
    pub(crate) layers: Vec<GpuLayer>,
    /// Bytes of the uploaded (packed) weights.
    pub weight_bytes: u64,
}

impl Engine {
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        let gpu = Arc::new(Gpu::new(choice)?);
        let kernels = Kernels::new(&gpu);
        Ok(Self {
            gpu,
            kernels,
            kernels_f16: Default::default(),
        })
    }

    /// The compiled float32 pipelines (and their tunable settings).
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// The pipelines for activations of `precision`.
    pub fn kernels_for(&self, precision: Precision) -> &Kernels {
        match precision {
            Precision::F32 => &self.kernels,
            Precision::F16 => self.kernels_f16.get_or_init(|| {
                let k = Kernels::with_precision(&self.gpu, Precision::F16);
                k.set_conv_rows(self.kernels.conv_rows());
                k
            }),
        }
    }

    /// Uploads a model's weights, for float32 activations.
    pub fn load(&self, model: Arc<Model>) -> Result<GpuModel> {
        self.load_with(model, Precision::F32)
    }

    /// Uploads a model's weights for activations of `precision`; float16 needs the adapter's
    /// SHADER_F16 and kernels for every op of the model.
    pub fn load_with(&self, model: Arc<Model>, precision: Precision) -> Result<GpuModel> {
        if precision == Precision::F16 {
            if !self
                .gpu
                .device
                .features()
                .contains(wgpu::Features::SHADER_F16)
            {
                bail!(
                    "float16 needs the adapter's SHADER_F16, which this one lacks; run in float32"
                );
            }
            if let Some(l) = model.layers.iter().find(|l| !float16_supported(&l.op)) {
                bail!(
                    "float16: layer {} ({}) has no float16 kernel yet; run {} in float32",
                    l.name,
                    l.op.kind(),
                    model.name
                );
            }
        }
        let gpu = &self.gpu;
        let before = gpu.ledger.in_use_bytes();
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        // 3x3 convolutions on Winograd where this adapter's measurements chose it.
        let kernel = |s: &crate::model::Conv2dSpec| {
            self.kernels.winograd_for(s).map_or(
                crate::kernels::conv2d::Kernel::Auto,
                crate::kernels::conv2d::Kernel::Winograd,
            )
        };
        let layers: Vec<GpuLayer> = model
            .layers
            .iter()
            .map(|l| match &l.op {
                LayerOp::Conv2d(s)
                | LayerOp::Conv2dResidual { spec: s, .. }
                | LayerOp::Conv2dUpsampled { spec: s, .. }
                | LayerOp::Conv2dGated(s)
                | LayerOp::Conv2dProgram { spec: s, .. } => {
                    GpuLayer::Conv2d(Conv2dLayer::upload_with(
                        gpu,
                        &l.name,
                        s.clone(),
                        &l.weights,
                        &l.bias,
                        kernel(s),
                    ))
                }
                LayerOp::ConvTranspose2d(s) => GpuLayer::ConvTranspose2d(
                    ConvTranspose2dLayer::upload(gpu, &l.name, s.clone(), &l.weights, &l.bias),
                ),
                // A binary op's constant is read as an activation: float16 in a float16 model.
                LayerOp::BinaryConst { .. } if precision == Precision::F16 => {
                    let mut bytes: Vec<u8> = l
                        .weights
                        .iter()
                        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                        .collect();
                    bytes.resize(bytes.len().next_multiple_of(4), 0);
                    GpuLayer::Constant(gpu.create_buffer_init(
                        &l.name,
                        &bytes,
                        wgpu::BufferUsages::STORAGE,
                    ))
                }
                // A norm's scale and shift, read in f32 at any precision.
                LayerOp::AcrossChannels(AcrossChannels::Normalize { .. })
                    if !l.weights.is_empty() =>
                {
                    let affine: Vec<f32> = l.weights.iter().chain(&l.bias).copied().collect();
                    GpuLayer::Constant(gpu.create_buffer_init(
                        &l.name,
                        bytemuck::cast_slice(&affine),
                        wgpu::BufferUsages::STORAGE,
                    ))
                }
                LayerOp::Tensor(TensorOp::MatMul {
                    spec,
                    constant_b: true,
                }) if linear::rows(spec).is_some() => {
                    GpuLayer::Linear(linear::upload(gpu, &l.name, spec, &l.weights, &l.bias))
                }
                LayerOp::BinaryConst { .. } | LayerOp::Tensor(_) if !l.weights.is_empty() => {
                    GpuLayer::Constant(gpu.create_buffer_init(
                        &l.name,
                        bytemuck::cast_slice(&l.weights),
                        wgpu::BufferUsages::STORAGE,
                    ))
                }
                _ => GpuLayer::Plain,
            })
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!(
                "the GPU ran out of memory loading the weights of {}: {e}",
                model.name
            );
        }
        let weight_bytes = gpu.ledger.in_use_bytes().saturating_sub(before);
        Ok(GpuModel {
            model,
            precision,
            layers,
            weight_bytes,
        })
    }
}

impl GpuModel {
    /// Bytes per item of the split Winograd's scratch (V, M) at these shapes: the largest any
    /// layer needs (the layers share one pair).
    pub fn scratch_bytes(&self, shapes: &[crate::model::ItemShape]) -> [u64; 2] {
        let mut most = [0u64; 2];
        for (g, l) in self.layers.iter().zip(&self.model.layers) {
            if let GpuLayer::Conv2d(c) = g {
                let s = shapes[l.output];
                let e = c.scratch_elements(s.h, s.w);
                for (m, e) in most.iter_mut().zip(e) {
                    *m = (*m).max(e * self.precision.bytes());
                }
            }
        }
        most
    }
}

/// Whether an op has a float16 kernel: every image-IR op but the gather
/// ConvTranspose (strided ones run as a phase convolution, which has one), and none of the general
/// tensor ops yet.
pub fn float16_supported(op: &LayerOp) -> bool {
    !matches!(op, LayerOp::ConvTranspose2d(_) | LayerOp::Tensor(_))
}
