//! Rewrites of an imported model, shared by every importer: each pass is a small module that
//! takes the model and returns it rewritten, and [`run`] applies them in one order whatever
//! the model was imported from (ONNX or NCNN).
//!
//! Importers emit plain layers (a convolution, then its BatchNormalization as a per-channel
//! scale and shift, then its activation, a strided ConvTranspose as it is); the passes make
//! them fast:
//!
//! 1. [`reshape_copies`]: a Reshape (a contiguous copy) next to general copies goes: they read
//!    its input, or write its output.
//! 2. [`normalize_channels`]: a layer norm over the channels written out op by op (NAFNet's)
//!    runs as one layer; [`normalize_rows`]: so does one over a fixed-shape tensor's last axis
//!    (LayerNorm as exported before opset 17), with its scale and shift.
//! 3. [`fold_affine`]: per-channel scale and shift constants after a convolution (BatchNorm)
//!    fold into its weights and bias, and before a 1x1 convolution into its weights and bias.
//! 4. [`fuse_activation`]: ReLU / LeakyReLU / Clip / PRelu after a convolution run inside it.
//! 5. [`conv_transpose_phases`]: a strided ConvTranspose becomes one dense convolution over
//!    every output phase, then DepthToSpace.
//! 6. [`patch_conv`]: a convolution over non-overlapping patches (kernel = stride) becomes a
//!    SpaceToDepth and a 1x1 convolution (on gemm).
//! 7. [`conv_before_resize`]: a 1x1 convolution without activation after a bilinear or nearest
//!    Resize runs before it, on the small input (the two commute).
//! 8. [`pool_of_sum`]: a GlobalAveragePool of a sum pools each term (a Resize that keeps the
//!    mean from its input) and adds the two pooled values.
//! 9. [`fuse_residual`]: an Add after a convolution runs inside it (with the channel Pad
//!    of its other operand where the convolution is a 1x1; a depthwise one only its own input).
//! 10. [`fuse_elementwise`]: trees of elementwise layers run as one generated kernel.
//! 11. [`fuse_pad`]: a Pad that appends zero channels, read by an elementwise layer, is read
//!     through it (0 past the input's channels) instead of stored.
//! 12. [`fuse_slice`]: a channel slice (a Split's half) read by an elementwise layer is read in
//!     place from its input's channels instead of copied.
//! 13. [`concat_alias`]: a Concat of one input is that input.
//! 14. [`upsample_phases`]: a convolution over a nearest upsample by whole factors becomes one
//!     dense convolution of the small input over every output phase, then DepthToSpace.
//! 15. [`fuse_upsample`]: a nearest upsample by whole factors read only by convolutions (those
//!     `upsample_phases` left) runs inside them (each reads the small input at `(y / f, x / f)`).
//! 16. [`fuse_conv_input`]: an elementwise layer read only by a 1x1 convolution is computed by
//!     the convolution's kernel as it loads its input (squeeze-and-excitation's scales, a
//!     SimpleGate's product of a map's halves).
//! 17. [`fuse_norm_conv`]: a norm over the channels read only by a 1x1 convolution is computed
//!     by the convolution's kernel (each pixel's sums in a loop of its own, each value
//!     normalized as it is loaded for the product).
//! 18. [`fuse_gate`]: a SimpleGate (the product of a map's two halves) after a depthwise
//!     convolution runs inside it (an invocation computes both halves, stores their product).
//! 19. [`fuse_linear_bias`]: a constant added to the rows of a product by a constant matrix
//!     (a Linear layer's bias) becomes the product's bias.
//! 20. [`prune`]: layers that feed no output are dropped.

pub mod concat_alias;
pub mod conv_before_resize;
pub mod conv_transpose_phases;
pub mod fold_affine;
pub mod fuse_activation;
pub mod fuse_conv_input;
pub mod fuse_elementwise;
pub mod fuse_gate;
pub mod fuse_linear_bias;
pub mod fuse_norm_conv;
pub mod fuse_pad;
pub mod fuse_residual;
pub mod fuse_slice;
pub mod fuse_upsample;
pub mod normalize_channels;
pub mod normalize_rows;
pub mod patch_conv;
pub mod pool_of_sum;
pub mod prune;
pub mod reshape_copies;
pub mod upsample_phases;

use crate::model::Model;

/// What the passes did, for tests and `--verbose` output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassCounts {
    /// Reshapes between general copies dropped.
    pub reshape_copies: usize,
    /// Layer norms over the channels written out op by op, run as one layer.
    pub channel_norms: usize,
    /// Layer norms over a fixed-shape tensor's last axis written out op by op, run as one.
    pub row_norms: usize,
    pub folded_affine: usize,
    pub fused_activations: usize,
    pub phase_rewrites: usize,
    /// Convolutions over non-overlapping patches run as SpaceToDepth and a 1x1.
    pub patch_convs: usize,
    /// 1x1 convolutions moved before the Resize they read.
    pub convs_before_resize: usize,
    /// GlobalAveragePools of a sum that pool its terms instead.
    pub pooled_sums: usize,
    pub fused_residuals: usize,
    /// Elementwise layers folded into the tree of the layer that reads them.
    pub fused_elementwise: usize,
    /// Channel Pads read through by the elementwise layer after them.
    pub fused_pads: usize,
    /// Channel slices read in place by the elementwise layer after them.
    pub fused_slices: usize,
    /// Concats of one input replaced by it.
    pub aliased_concats: usize,
    /// Convolutions over a nearest upsample computed as phases of the small input.
    pub upsample_phases: usize,
    /// Nearest upsamples fused into the convolutions that read them.
    pub fused_upsamples: usize,
    /// Elementwise layers computed by the 1x1 convolution that reads them.
    pub fused_conv_inputs: usize,
    /// Norms over the channels computed by the 1x1 convolution that reads them.
    pub fused_norms: usize,
    /// SimpleGates computed by the depthwise convolution before them.
    pub fused_gates: usize,
    /// Constants added to a Linear layer's rows run as its bias.
    pub fused_linear_biases: usize,
}

/// Every pass, in order.
pub fn run(mut model: Model) -> (Model, PassCounts) {
    model = prune::apply(model);
    let (model, reshape_copies) = reshape_copies::apply(model);
    let (model, channel_norms) = normalize_channels::apply(model);
    let (model, row_norms) = normalize_rows::apply(model);
    let (model, folded_affine) = fold_affine::apply(model);
    let (model, fused_activations) = fuse_activation::apply(model);
    let (model, phase_rewrites) = conv_transpose_phases::apply(model);
    let (model, patch_convs) = patch_conv::apply(model);
    let (model, convs_before_resize) = conv_before_resize::apply(model);
    let (model, pooled_sums) = pool_of_sum::apply(model);
    let (model, fused_residuals) = fuse_residual::apply(model);
    let (model, fused_elementwise) = fuse_elementwise::apply(model);
    let (model, fused_pads) = fuse_pad::apply(model);
    let (model, fused_slices) = fuse_slice::apply(model);
    let (model, aliased_concats) = concat_alias::apply(model);
    let (model, upsample_phases) = upsample_phases::apply(model);
    let (model, fused_upsamples) = fuse_upsample::apply(model);
    let (model, fused_conv_inputs) = fuse_conv_input::apply(model);
    let (model, fused_norms) = fuse_norm_conv::apply(model);
    let (model, fused_gates) = fuse_gate::apply(model);
    let (model, fused_linear_biases) = fuse_linear_bias::apply(model);
    let model = prune::apply(model);
    (
        model,
        PassCounts {
            reshape_copies,
            channel_norms,
            row_norms,
            folded_affine,
            fused_activations,
            phase_rewrites,
            patch_convs,
            convs_before_resize,
            pooled_sums,
            fused_residuals,
            fused_elementwise,
            fused_pads,
            fused_slices,
            aliased_concats,
            upsample_phases,
            fused_upsamples,
            fused_conv_inputs,
            fused_norms,
            fused_gates,
            fused_linear_biases,
        },
    )
}

#[cfg(test)]
pub(crate) mod cpu;

#[cfg(test)]
mod tests {
    use super::cpu::{layer_of, max_diff, model, random, run};
    use crate::model::{
        Activation, BinaryOp, Conv2dSpec, ConvTranspose2dSpec, ItemShape, LayerOp, UnaryOp,
    };

    pub(super) fn conv(in_c: u32, out_c: u32, k: u32) -> Conv2dSpec {
        Conv2dSpec {
            in_c,
            out_c,
            k_h: k,
            k_w: k,
            stride: [1, 1],
            pads: [k / 2; 4],
            dilation: [1, 1],
            groups: 1,
            activation: Activation::None,
        }
    }

    pub(super) fn conv_layer(
        spec: &Conv2dSpec,
        input: usize,
        output: usize,
        seed: u64,
    ) -> crate::model::Layer {
        let n = (spec.out_c * spec.in_c / spec.groups * spec.k_h * spec.k_w) as usize;
        let mut l = layer_of(LayerOp::Conv2d(spec.clone()), vec![input], output);
        l.weights = random(n, seed);
        l.bias = random(spec.out_c as usize, seed + 1);
        l
    }

    fn per_channel(
        op: BinaryOp,
        c: u32,
        input: usize,
        output: usize,
        seed: u64,
    ) -> crate::model::Layer {
        let mut l = layer_of(
            LayerOp::BinaryConst {
                op,
                constant: ItemShape { c, h: 1, w: 1 },
                constant_first: false,
            },
            vec![input],
            output,
        );
        l.weights = random(c as usize, seed);
        l
    }

    /// Max difference of the model's output before and after `pass`, on a random 9x7 input.
    fn same_function(before: &crate::model::Model, after: &crate::model::Model) -> f32 {
        let x = random((before.input_channels * 9 * 7) as usize, 99);
        max_diff(&run(before, &x, 9, 7), &run(after, &x, 9, 7))
    }

    /// BatchNorm as the importers emit it (scale, then shift, per channel) folds into the
    /// convolution; the function is the same within float32 rounding of a 3x3x3 sum (1e-5).
    #[test]
    fn fold_affine_folds_scale_and_shift_into_the_convolution() {
        let m = model(
            3,
            vec![
                conv_layer(&conv(3, 4, 3), 0, 1, 1),
                per_channel(BinaryOp::Mul, 4, 1, 2, 3),
                per_channel(BinaryOp::Add, 4, 2, 3, 4),
            ],
            3,
        );
        let (folded, n) = super::fold_affine::apply(m.clone());
        assert_eq!(n, 2);
        assert_eq!(folded.layers.len(), 1);
        assert!(same_function(&m, &folded) < 1e-5);
        // Read twice: the convolution's own output must survive, so nothing folds.
        let mut shared = m.clone();
        shared
            .layers
            .push(layer_of(LayerOp::Binary(BinaryOp::Add), vec![1, 3], 4));
        shared.output = 4;
        shared.value_count = 5;
        assert_eq!(super::fold_affine::apply(shared).1, 0);
    }

    /// A layer norm's scale and shift (per channel) before a 1x1 convolution fold into it: the
    /// same function within float32 rounding of a 4-term sum (1e-5); before a 3x3 convolution
    /// with padding, which reads zeros at the border where the shift would be, they stay.
    #[test]
    fn fold_affine_folds_scale_and_shift_into_a_pointwise_convolution_after_them() {
        let layers = |k| {
            vec![
                per_channel(BinaryOp::Mul, 4, 0, 1, 5),
                per_channel(BinaryOp::Add, 4, 1, 2, 6),
                conv_layer(&conv(4, 6, k), 2, 3, 7),
            ]
        };
        let m = model(4, layers(1), 3);
        let (folded, n) = super::fold_affine::apply(m.clone());
        assert_eq!(n, 2);
        assert_eq!(folded.layers.len(), 1);
        assert!(
            same_function(&m, &folded) < 1e-5,
            "{}",
            same_function(&m, &folded)
        );
        assert_eq!(super::fold_affine::apply(model(4, layers(3), 3)).1, 0);
    }

    /// ConvNeXt's stem: a norm over 4 channels, a shift and a scale per channel, then a padded
    /// 3x3 and a residual Add both reading the scaled value. Neither convolution can take the constants
    /// (the 3x3 reads padding zeros; the value is read twice), so the norm applies them: the
    /// same function within float32 rounding (1e-5). A constant after a norm that something
    /// else reads stays, and so does a scalar after a norm without scales of its own.
    #[test]
    fn fold_affine_folds_scale_and_shift_into_the_norm_before_them() {
        let norm =
            LayerOp::AcrossChannels(crate::model::AcrossChannels::Normalize { epsilon: 1e-6 });
        let stem = |first: crate::model::Layer| {
            let layers = vec![
                conv_layer(&conv(3, 4, 3), 0, 1, 1),
                layer_of(norm.clone(), vec![1], 2),
                first,
                per_channel(BinaryOp::Mul, 4, 3, 4, 6),
                conv_layer(&conv(4, 4, 3), 4, 5, 7),
                layer_of(LayerOp::Binary(BinaryOp::Add), vec![5, 4], 6),
            ];
            model(3, layers, 6)
        };
        let m = stem(per_channel(BinaryOp::Add, 4, 2, 3, 5));
        let (folded, n) = super::fold_affine::apply(m.clone());
        assert_eq!(n, 2);
        assert_eq!(folded.layers.len(), 4);
        assert_eq!(folded.layers[1].weights.len(), 4, "the norm's scales");
        assert_eq!(folded.layers[1].bias.len(), 4, "the norm's shifts");
        let diff = same_function(&m, &folded);
        assert!(diff < 1e-5, "{diff}");
        // A scalar first stays (the norm's channels unknown), and so the scale after it.
        assert_eq!(
            super::fold_affine::apply(stem(per_channel(BinaryOp::Add, 1, 2, 3, 5))).1,
            0
        );
        let mut shared = stem(per_channel(BinaryOp::Add, 4, 2, 3, 5));
        shared.layers[5].inputs = vec![5, 2];
        assert_eq!(super::fold_affine::apply(shared).1, 0, "a norm read twice");
    }

    /// ReLU, Clip and per-channel PRelu run inside the convolution; an activation after a
    /// convolution that already has one, or after a value read twice, stays a layer.
    #[test]
    fn fuse_activation_fuses_what_the_kernel_runs() {
        let relu = LayerOp::Unary(UnaryOp::LeakyRelu { alpha: 0.1 });
        let m = model(
            3,
            vec![
                conv_layer(&conv(3, 4, 3), 0, 1, 1),
                layer_of(relu.clone(), vec![1], 2),
                conv_layer(&conv(4, 4, 1), 2, 3, 5),
                per_channel(BinaryOp::PRelu, 4, 3, 4, 6),
                layer_of(
                    LayerOp::Unary(UnaryOp::Clip {
                        min: -0.2,
                        max: 0.3,
                    }),
                    vec![4],
                    5,
                ),
            ],
            5,
        );
        let (fused, n) = super::fuse_activation::apply(m.clone());
        assert_eq!(
            n,
            2,
            "{:?}",
            fused.layers.iter().map(|l| l.op.kind()).collect::<Vec<_>>()
        );
        assert_eq!(fused.layers.len(), 3, "the Clip after a fused PRelu stays");
        assert!(same_function(&m, &fused) < 1e-5);
        // A transposed convolution takes ReLU but not per-channel slopes.
        let ct = ConvTranspose2dSpec {
            in_c: 3,
            out_c: 2,
            k_h: 3,
            k_w: 3,
            stride: [2, 2],
            pads: [1; 4],
            dilation: [1, 1],
            output_padding: [1, 1],
            groups: 1,
            activation: Activation::None,
        };
        let mut t = layer_of(LayerOp::ConvTranspose2d(ct), vec![0], 1);
        t.weights = random(3 * 2 * 9, 7);
        let prelu = model(
            3,
            vec![t.clone(), per_channel(BinaryOp::PRelu, 2, 1, 2, 8)],
            2,
        );
        assert_eq!(super::fuse_activation::apply(prelu).1, 0);
        let relu_after = model(3, vec![t, layer_of(relu, vec![1], 2)], 2);
        let (fused, n) = super::fuse_activation::apply(relu_after.clone());
        assert_eq!(n, 1);
        assert!(same_function(&relu_after, &fused) < 1e-5);
    }

    /// A strided ConvTranspose (with its fused activation) becomes a phase convolution and
    /// DepthToSpace computing the same function.
    #[test]
    fn conv_transpose_phases_computes_the_same_function() {
        let ct = ConvTranspose2dSpec {
            in_c: 3,
            out_c: 2,
            k_h: 4,
            k_w: 4,
            stride: [2, 2],
            pads: [1; 4],
            dilation: [1, 1],
            output_padding: [0, 0],
            groups: 1,
            activation: Activation::LeakyRelu { alpha: 0.2 },
        };
        let mut t = layer_of(LayerOp::ConvTranspose2d(ct), vec![0], 1);
        t.weights = random(3 * 2 * 16, 9);
        t.bias = random(2, 10);
        let m = model(3, vec![t], 1);
        let (rewritten, n) = super::conv_transpose_phases::apply(m.clone());
        assert_eq!(n, 1);
        assert!(matches!(rewritten.layers[0].op, LayerOp::Conv2d(_)));
        assert!(matches!(rewritten.layers[1].op, LayerOp::DepthToSpace(_)));
        assert!(same_function(&m, &rewritten) < 1e-5);
    }

    /// conv -> Add(skip) -> ReLU becomes one residual convolution; the function is the same.
    #[test]
    fn fuse_residual_fuses_the_add_and_the_activation_after_it() {
        let m = model(
            4,
            vec![
                conv_layer(&conv(4, 4, 3), 0, 1, 11),
                layer_of(LayerOp::Binary(BinaryOp::Add), vec![1, 0], 2),
                layer_of(
                    LayerOp::Unary(UnaryOp::LeakyRelu { alpha: 0.0 }),
                    vec![2],
                    3,
                ),
            ],
            3,
        );
        let (fused, n) = super::fuse_residual::apply(m.clone());
        assert_eq!(n, 1);
        assert_eq!(fused.layers.len(), 1);
        assert!(same_function(&m, &fused) < 1e-5);
    }

    /// remove-background's `x + relu(dw(x))`: the Add runs inside the depthwise convolution,
    /// its input read twice (as input and residual); the function is the same. Not where the
    /// output is not the input's size (stride 2), nor where the other operand is another value.
    #[test]
    fn fuse_residual_adds_a_depthwise_convolutions_own_input() {
        let add = |a, b, out| layer_of(LayerOp::Binary(BinaryOp::Add), vec![a, b], out);
        let dw = |stride| Conv2dSpec {
            groups: 5,
            stride: [stride, stride],
            activation: Activation::LeakyRelu { alpha: 0.0 },
            ..conv(5, 5, 3)
        };
        let m = model(5, vec![conv_layer(&dw(1), 0, 1, 31), add(0, 1, 2)], 2);
        let (fused, n) = super::fuse_residual::apply(m.clone());
        assert_eq!(n, 1);
        assert_eq!(fused.layers.len(), 1);
        assert_eq!(fused.layers[0].inputs, [0, 0]);
        assert!(matches!(
            fused.layers[0].op,
            LayerOp::Conv2dResidual {
                residual: crate::model::Residual::AfterActivation,
                ..
            }
        ));
        assert!(same_function(&m, &fused) < 1e-5);
        // (Shapes unchecked: the pass alone.)
        let strided = model(5, vec![conv_layer(&dw(2), 0, 1, 33), add(0, 1, 2)], 2);
        assert_eq!(super::fuse_residual::apply(strided).1, 0);
        let other = model(
            5,
            vec![
                conv_layer(&conv(5, 5, 1), 0, 1, 35),
                conv_layer(&dw(1), 1, 2, 37),
                add(0, 2, 3),
            ],
            3,
        );
        assert_eq!(super::fuse_residual::apply(other).1, 0);
    }

    /// BlazeFace's blocks, `relu(conv1x1(dw(x)) + pad(x))` and the same with the skip computed
    /// before the 1x1 (a max pool there, a Clip here): the Add, the Pad and the ReLU run inside the 1x1 (its
    /// residual of fewer channels); the function is the same. The Pad stays where the
    /// convolution is not a 1x1, or the padded value has another reader.
    #[test]
    fn fuse_residual_reads_a_channel_pad_through() {
        use super::cpu::channel_pad as pad;
        let relu = LayerOp::Unary(UnaryOp::LeakyRelu { alpha: 0.0 });
        let add = |a, b, out| layer_of(LayerOp::Binary(BinaryOp::Add), vec![a, b], out);
        let dw = Conv2dSpec {
            groups: 4,
            ..conv(4, 4, 3)
        };
        // The max pool's stand-in: a value computed from the block's output before the 1x1.
        let pool = LayerOp::Unary(UnaryOp::Clip {
            min: -0.3,
            max: 0.4,
        });
        let m = model(
            4,
            vec![
                conv_layer(&dw, 0, 1, 21),
                conv_layer(&conv(4, 6, 1), 1, 2, 23),
                layer_of(pad(2), vec![0], 3),
                add(3, 2, 4),
                layer_of(relu.clone(), vec![4], 5),
                layer_of(pool, vec![5], 6),
                conv_layer(&conv(6, 9, 1), 5, 7, 25),
                layer_of(pad(3), vec![6], 8),
                add(7, 8, 9),
            ],
            9,
        );
        let (fused, n) = super::fuse_residual::apply(m.clone());
        assert_eq!(n, 2);
        let ops: Vec<&str> = fused.layers.iter().map(|l| l.op.kind()).collect();
        assert_eq!(
            ops,
            [
                "depthwise Conv",
                "Conv + Add",
                "an elementwise op",
                "Conv + Add"
            ]
        );
        assert_eq!(fused.layers[1].inputs, [1, 0]);
        assert_eq!(fused.layers[3].inputs, [5, 6]);
        let shapes = fused.shapes(9, 7).expect("shapes");
        assert_eq!(shapes[9], ItemShape { c: 9, h: 9, w: 7 });
        assert!(same_function(&m, &fused) < 1e-5);
        // A 3x3 convolution, and a Pad read twice: no fusion through the Pad.
        let three = model(
            4,
            vec![
                conv_layer(&conv(4, 6, 3), 0, 1, 27),
                layer_of(pad(2), vec![0], 2),
                add(2, 1, 3),
            ],
            3,
        );
        assert_eq!(super::fuse_residual::apply(three).1, 0);
        let twice = model(
            4,
            vec![
                conv_layer(&conv(4, 6, 1), 0, 1, 29),
                layer_of(pad(2), vec![0], 2),
                add(2, 1, 3),
                add(3, 2, 4),
            ],
            4,
        );
        assert_eq!(super::fuse_residual::apply(twice).1, 0);
    }

    /// A curve applied twice (x + r * (x * x - x), r a 1x1-per-channel value broadcast over the
    /// image), with a value read by two layers and one read twice by the same layer: the tree
    /// runs as elementwise kernels computing the same function, every value read from outside
    /// becoming an input, and a value two layers read staying a layer's output.
    #[test]
    fn fuse_elementwise_runs_trees_as_one_layer() {
        use crate::model::ElementwiseProgram;
        let bin = |op, a, b, out| layer_of(LayerOp::Binary(op), vec![a, b], out);
        let un = |op, a, out| layer_of(LayerOp::Unary(op), vec![a], out);
        let clip = UnaryOp::Clip { min: 0.0, max: 1.0 };
        let m = model(
            3,
            vec![
                layer_of(LayerOp::GlobalAvgPool, vec![0], 1), // r: 3x1x1
                un(clip, 0, 2),                               // x
                bin(BinaryOp::Mul, 2, 2, 3),                  // x * x
                bin(BinaryOp::Sub, 3, 2, 4),                  // x * x - x (x read by two layers)
                bin(BinaryOp::Mul, 1, 4, 5),                  // r * (..)
                bin(BinaryOp::Add, 2, 5, 6),                  // x + r * (..): the curve once
                bin(BinaryOp::Mul, 6, 6, 7),
                bin(BinaryOp::Sub, 7, 6, 8),
                bin(BinaryOp::Mul, 1, 8, 9),
                bin(BinaryOp::Add, 6, 9, 10), // twice
                un(
                    UnaryOp::Affine {
                        scale: -1.0,
                        offset: 1.0,
                    },
                    10,
                    11,
                ),
            ],
            11,
        );
        let (fused, n) = super::fuse_elementwise::apply(m.clone());
        let ops: Vec<&str> = fused.layers.iter().map(|l| l.op.kind()).collect();
        // x (read by three layers) and the first curve's result (read by three) stay values.
        assert_eq!(
            ops,
            [
                "GlobalAveragePool",
                "an elementwise op",
                "fused elementwise ops",
                "fused elementwise ops"
            ]
        );
        assert_eq!(n, 7);
        let LayerOp::Elementwise(ElementwiseProgram { steps, .. }) = &fused.layers[3].op else {
            unreachable!()
        };
        assert_eq!(steps.len(), 5);
        assert_eq!(fused.layers[3].inputs, [6, 1]);
        assert!(same_function(&m, &fused) < 1e-6);
    }

    /// A tree reads at most MAX_INPUTS values: a sum of eight values is split.
    #[test]
    fn fuse_elementwise_keeps_within_the_input_limit() {
        use crate::model::ElementwiseProgram;
        let mut layers = Vec::new();
        for k in 0..8 {
            let op = UnaryOp::Affine {
                scale: 1.0 + k as f32,
                offset: 0.1,
            };
            layers.push(layer_of(LayerOp::Conv2d(conv(3, 3, 1)), vec![0], 1 + 2 * k));
            layers.last_mut().unwrap().weights = random(9, k as u64);
            layers.push(layer_of(LayerOp::Unary(op), vec![1 + 2 * k], 2 + 2 * k));
        }
        let mut acc = 2;
        for k in 1..8 {
            let out = 100 + k;
            layers.push(layer_of(
                LayerOp::Binary(BinaryOp::Add),
                vec![acc, 2 + 2 * k],
                out,
            ));
            acc = out;
        }
        let m = model(3, layers, acc);
        let (fused, _) = super::fuse_elementwise::apply(m.clone());
        for l in &fused.layers {
            if matches!(l.op, LayerOp::Elementwise(_)) {
                assert!(l.inputs.len() <= ElementwiseProgram::MAX_INPUTS, "{l:?}");
            }
        }
        assert!(fused.layers.len() < m.layers.len());
        assert!(same_function(&m, &fused) < 1e-5);
    }

    /// A Concat of one input goes, its reader reading the input; an output Concat stays.
    #[test]
    fn concat_alias_replaces_a_one_input_concat() {
        let m = model(
            3,
            vec![
                conv_layer(&conv(3, 4, 3), 0, 1, 14),
                layer_of(LayerOp::Concat, vec![1], 2),
                conv_layer(&conv(4, 2, 3), 2, 3, 15),
                layer_of(LayerOp::Concat, vec![3], 4),
            ],
            4,
        );
        let (aliased, n) = super::concat_alias::apply(m.clone());
        assert_eq!(n, 1);
        assert_eq!(aliased.layers.len(), 3);
        assert_eq!(aliased.layers[1].inputs, [1]);
        assert!(same_function(&m, &aliased) < 1e-6);
    }

    /// A nearest upsample read only by dense convolutions runs inside them; one a 1x1
    /// convolution (gemm.wgsl) or another layer reads stays.
    #[test]
    fn fuse_upsample_fuses_into_the_convolutions_that_read_it() {
        let up = |input, output| layer_of(LayerOp::ResizeNearest([2, 3]), vec![input], output);
        let m = model(
            3,
            vec![
                conv_layer(&conv(3, 4, 3), 0, 1, 16),
                up(1, 2),
                conv_layer(&conv(4, 5, 3), 2, 3, 17),
                conv_layer(&conv(4, 5, 3), 2, 4, 18),
                layer_of(LayerOp::Binary(BinaryOp::Add), vec![3, 4], 5),
            ],
            5,
        );
        let (fused, n) = super::fuse_upsample::apply(m.clone());
        assert_eq!(n, 1);
        assert_eq!(fused.layers.len(), 4);
        for l in &fused.layers[1..3] {
            assert!(matches!(
                l.op,
                LayerOp::Conv2dUpsampled { factor: [2, 3], .. }
            ));
            assert_eq!(l.inputs, [1]);
        }
        assert!(same_function(&m, &fused) < 1e-5);
        let pointwise = model(3, vec![up(0, 1), conv_layer(&conv(3, 4, 1), 1, 2, 19)], 2);
        assert_eq!(super::fuse_upsample::apply(pointwise).1, 0);
        let read_elsewhere = model(
            3,
            vec![
                up(0, 1),
                conv_layer(&conv(3, 3, 3), 1, 2, 20),
                layer_of(LayerOp::Binary(BinaryOp::Add), vec![1, 2], 3),
            ],
            3,
        );
        assert_eq!(super::fuse_upsample::apply(read_elsewhere).1, 0);
    }
}
