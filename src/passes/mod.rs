//! Rewrites of an imported model, shared by every importer: each pass is a small module that
//! takes the model and returns it rewritten, and [`run`] applies them in one order whatever
//! the model was imported from (ONNX or NCNN).
//!
//! Importers emit plain layers (a convolution, then its BatchNormalization as a per-channel
//! scale and shift, then its activation, a strided ConvTranspose as it is); the passes make
//! them fast:
//!
//! 1. [`fold_affine`]: per-channel scale and shift constants after a convolution (BatchNorm)
//!    fold into its weights and bias.
//! 2. [`fuse_activation`]: ReLU / LeakyReLU / Clip / PRelu after a convolution run inside it.
//! 3. [`conv_transpose_phases`]: a strided ConvTranspose becomes one dense convolution over
//!    every output phase, then DepthToSpace.
//! 4. [`fuse_residual`]: an Add after a dense convolution runs inside it.
//! 5. [`prune`]: layers that feed no output are dropped.

pub mod conv_transpose_phases;
pub mod fold_affine;
pub mod fuse_activation;
pub mod fuse_residual;
pub mod prune;

use crate::model::Model;

/// What the passes did, for tests and `--verbose` output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassCounts {
    pub folded_affine: usize,
    pub fused_activations: usize,
    pub phase_rewrites: usize,
    pub fused_residuals: usize,
}

/// Every pass, in order.
pub fn run(mut model: Model) -> (Model, PassCounts) {
    model = prune::apply(model);
    let (model, folded_affine) = fold_affine::apply(model);
    let (model, fused_activations) = fuse_activation::apply(model);
    let (model, phase_rewrites) = conv_transpose_phases::apply(model);
    let (model, fused_residuals) = fuse_residual::apply(model);
    let model = prune::apply(model);
    (
        model,
        PassCounts {
            folded_affine,
            fused_activations,
            phase_rewrites,
            fused_residuals,
        },
    )
}
