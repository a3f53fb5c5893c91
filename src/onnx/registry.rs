//! One registry of the ONNX ops batchwise reads: for each op type, its family and what the
//! translator takes with a free input size and with every dim fixed, with the limits of each.
//!
//! The translator ([`super::lowering`]) runs with the input's batch, height and width free
//! (image-IR layers) or bound (general tensor ops). This table is what it takes in each mode:
//! the "unsupported op" errors, [`super::lowering::takes`], the fallback from one mode to the
//! other and `docs/ONNX_OPS.md` ([`markdown`]) are derived from it, so they cannot disagree. The
//! translator checks an op here before its match arm runs; the tests check that every op listed
//! here reaches an arm in each mode that claims it.

use std::fmt::Write as _;

/// What an op does, for grouping the table and the docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Conv,
    Activation,
    Elementwise,
    Shape,
    SliceConcat,
    Pad,
    Pool,
    Resize,
    Norm,
    Reduce,
    MatMul,
    Constant,
}

impl Family {
    /// Every family, in the docs' order.
    pub const ALL: [Self; 12] = [
        Self::Conv,
        Self::Activation,
        Self::Elementwise,
        Self::Shape,
        Self::SliceConcat,
        Self::Pad,
        Self::Pool,
        Self::Resize,
        Self::Norm,
        Self::Reduce,
        Self::MatMul,
        Self::Constant,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Conv => "conv",
            Self::Activation => "activation",
            Self::Elementwise => "elementwise",
            Self::Shape => "shape",
            Self::SliceConcat => "slice_concat",
            Self::Pad => "pad",
            Self::Pool => "pool",
            Self::Resize => "resize",
            Self::Norm => "norm",
            Self::Reduce => "reduce",
            Self::MatMul => "matmul",
            Self::Constant => "constant",
        }
    }
}

/// Whether a lowering takes an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takes {
    No,
    /// Every form the ONNX spec allows (for float32 data).
    Yes,
    /// Some forms: the note says which.
    Limited(&'static str),
}

impl Takes {
    pub fn any(self) -> bool {
        self != Self::No
    }

    fn note(self) -> Option<&'static str> {
        match self {
            Self::Limited(note) => Some(note),
            Self::No | Self::Yes => None,
        }
    }
}

/// One ONNX op type.
#[derive(Clone, Copy, Debug)]
pub struct Op {
    pub name: &'static str,
    pub family: Family,
    /// The translator with a free batch, height and width.
    pub free_size: Takes,
    /// The translator with every input dim bound.
    pub fixed_shape: Takes,
}

const fn op(name: &'static str, family: Family, free_size: Takes, fixed_shape: Takes) -> Op {
    Op {
        name,
        family,
        free_size,
        fixed_shape,
    }
}

use Family as F;
use Takes::{Limited, No, Yes};

/// Explicit pads, as the image kernels take them.
const POOL_2D: Takes = Limited("2-D; explicit pads (auto_pad NOTSET or VALID); no Indices output");
const RESIZE: Takes =
    Limited("nearest, linear, cubic; constant scales or sizes; no antialias or tf_crop_and_resize");
const RESIZE_FIXED: Takes = Limited(
    "[N, C, H, W]; nearest, linear, cubic; constant scales or sizes; no antialias or \
     tf_crop_and_resize",
);
const BINARY: Takes = Limited("a constant operand broadcasts over one [C, H, W] item");
const REDUCE: Takes = Limited("constant axes");
const REDUCE_FREE: Takes = Limited("over the channels (axes [1]), keepdims");
const REDUCE_MEAN_FREE: Takes =
    Limited("over the channels (axes [1]) or height and width (axes [2, 3]), keepdims");

/// Every ONNX op type batchwise reads (the default domain), grouped by family.
pub const OPS: &[Op] = &[
    // Convolutions.
    op(
        "Conv",
        F::Conv,
        Limited("2-D; explicit pads (auto_pad NOTSET or VALID); at most 256 taps"),
        Limited("1-D and 2-D; auto_pad resolved; at most 256 taps"),
    ),
    op(
        "ConvTranspose",
        F::Conv,
        Limited("2-D; explicit pads; no output_shape"),
        Limited("1-D and 2-D; auto_pad and output_shape resolved"),
    ),
    // Activations: one UnaryOp each (`ops::activation::unary_op`), except PRelu and Clip.
    op("Relu", F::Activation, Yes, Yes),
    op("LeakyRelu", F::Activation, Yes, Yes),
    op("PRelu", F::Activation, Limited("constant slopes"), Yes),
    op(
        "Clip",
        F::Activation,
        Limited("constant bounds"),
        Limited("constant bounds"),
    ),
    op("Sigmoid", F::Activation, Yes, Yes),
    op("Tanh", F::Activation, Yes, Yes),
    op("HardSwish", F::Activation, Yes, Yes),
    op("HardSigmoid", F::Activation, Yes, Yes),
    op(
        "Gelu",
        F::Activation,
        Limited("approximate none or tanh"),
        Limited("approximate none or tanh"),
    ),
    op("Erf", F::Activation, Yes, Yes),
    op("Softplus", F::Activation, Yes, Yes),
    op("Softsign", F::Activation, Yes, Yes),
    op("Elu", F::Activation, Yes, Yes),
    op("Selu", F::Activation, Yes, Yes),
    op("Celu", F::Activation, Yes, Yes),
    op("ThresholdedRelu", F::Activation, Yes, Yes),
    op("Mish", F::Activation, Yes, Yes),
    op("Shrink", F::Activation, Yes, Yes),
    // Elementwise functions (one UnaryOp each) and arithmetic.
    op("Exp", F::Elementwise, Yes, Yes),
    op("Log", F::Elementwise, Yes, Yes),
    op("Sqrt", F::Elementwise, Yes, Yes),
    op("Abs", F::Elementwise, Yes, Yes),
    op("Neg", F::Elementwise, Yes, Yes),
    op("Reciprocal", F::Elementwise, Yes, Yes),
    op("Floor", F::Elementwise, Yes, Yes),
    op("Ceil", F::Elementwise, Yes, Yes),
    op("Round", F::Elementwise, Yes, Yes),
    op("Sign", F::Elementwise, Yes, Yes),
    op("Sin", F::Elementwise, Yes, Yes),
    op("Cos", F::Elementwise, Yes, Yes),
    op("Add", F::Elementwise, BINARY, Yes),
    op("Sub", F::Elementwise, BINARY, Yes),
    op("Mul", F::Elementwise, BINARY, Yes),
    op("Div", F::Elementwise, BINARY, Yes),
    op("Pow", F::Elementwise, BINARY, Yes),
    op("Max", F::Elementwise, BINARY, Yes),
    op("Min", F::Elementwise, BINARY, Yes),
    op("Sum", F::Elementwise, BINARY, Yes),
    op("Mean", F::Elementwise, BINARY, Yes),
    // Shapes and layouts.
    op(
        "Reshape",
        F::Shape,
        Limited("to [N, K], or to [1, ...] of a channels-last or pooled value"),
        Limited("constant shape"),
    ),
    op("Flatten", F::Shape, Limited("axis 1"), Yes),
    op("Squeeze", F::Shape, No, Limited("constant axes")),
    op("Unsqueeze", F::Shape, No, Limited("constant axes")),
    op(
        "Transpose",
        F::Shape,
        Limited("an NHWC input to NCHW, or NCHW to NHWC"),
        Yes,
    ),
    op("Expand", F::Shape, No, Limited("constant shape")),
    op("Tile", F::Shape, No, Limited("constant repeats")),
    op("DepthToSpace", F::Shape, Yes, Limited("rank 4")),
    op(
        "SpaceToDepth",
        F::Shape,
        Limited(
            "mode DCR; rows and columns past a whole block dropped (ONNX asks for whole blocks)",
        ),
        Limited("rank 4"),
    ),
    op("Shape", F::Shape, No, Yes),
    op("Size", F::Shape, No, Yes),
    op(
        "Cast",
        F::Shape,
        No,
        Limited("a computed tensor to a float or integer type"),
    ),
    op(
        "CastLike",
        F::Shape,
        No,
        Limited("a computed tensor to a float or integer type"),
    ),
    op("Identity", F::Shape, Yes, Yes),
    op("Dropout", F::Shape, No, Limited("inference")),
    // Slicing and joining.
    op(
        "Concat",
        F::SliceConcat,
        Limited("channels, height or width"),
        Yes,
    ),
    op(
        "Split",
        F::SliceConcat,
        Limited("channels; height or width by explicit sizes"),
        Limited("constant sizes"),
    ),
    op(
        "Slice",
        F::SliceConcat,
        Limited("any step; not the batch axis; constant starts, ends and steps"),
        Limited("constant starts, ends, axes and steps; any step"),
    ),
    op("Gather", F::SliceConcat, No, Limited("constant indices")),
    // Padding.
    op(
        "Pad",
        F::Pad,
        Limited(
            "constant, edge, reflect; no batch or negative pads; channels in constant \
             mode only",
        ),
        Limited(
            "constant on any axis; edge and reflect on the last two axes (of rank 4 and more, the \
             last of rank 3), not negative",
        ),
    ),
    // Pooling.
    op(
        "MaxPool",
        F::Pool,
        POOL_2D,
        Limited("1-D, 2-D and 3-D; auto_pad resolved; no Indices output"),
    ),
    op(
        "AveragePool",
        F::Pool,
        POOL_2D,
        Limited("1-D, 2-D and 3-D; auto_pad resolved"),
    ),
    op("GlobalAveragePool", F::Pool, Yes, Yes),
    op("GlobalMaxPool", F::Pool, No, Yes),
    // Resizing.
    op("Resize", F::Resize, RESIZE, RESIZE_FIXED),
    op("Upsample", F::Resize, RESIZE, RESIZE_FIXED),
    // Normalisations.
    op(
        "BatchNormalization",
        F::Norm,
        Limited("inference"),
        Limited("inference"),
    ),
    op("InstanceNormalization", F::Norm, No, Yes),
    op("LayerNormalization", F::Norm, No, Yes),
    op("Softmax", F::Norm, No, Yes),
    op("LogSoftmax", F::Norm, No, Yes),
    op("Hardmax", F::Norm, No, Yes),
    // Reductions.
    op("ReduceMean", F::Reduce, REDUCE_MEAN_FREE, REDUCE),
    op("ReduceSum", F::Reduce, REDUCE_FREE, REDUCE),
    op("ReduceMax", F::Reduce, REDUCE_FREE, REDUCE),
    op("ReduceMin", F::Reduce, REDUCE_FREE, REDUCE),
    op("ReduceProd", F::Reduce, REDUCE_FREE, REDUCE),
    op("ReduceL1", F::Reduce, REDUCE_FREE, REDUCE),
    op("ReduceL2", F::Reduce, REDUCE_FREE, REDUCE),
    op("ReduceSumSquare", F::Reduce, REDUCE_FREE, REDUCE),
    op("ReduceLogSum", F::Reduce, REDUCE_FREE, REDUCE),
    op("ReduceLogSumExp", F::Reduce, REDUCE_FREE, REDUCE),
    // Matrix products.
    op("MatMul", F::MatMul, No, Yes),
    op(
        "Gemm",
        F::MatMul,
        Limited("of [N, K]; constant B; transA 0"),
        Yes,
    ),
    // Constants.
    op(
        "Constant",
        F::Constant,
        Limited("tensor, float and int values"),
        Limited("tensor, float and int values"),
    ),
    op(
        "ConstantOfShape",
        F::Constant,
        No,
        Limited("constant shape"),
    ),
    op("Range", F::Constant, No, Limited("constant bounds")),
];

/// The registry's entry for op type `name`.
pub fn get(name: &str) -> Option<&'static Op> {
    OPS.iter().find(|o| o.name == name)
}

/// Whether the translator with a free batch and spatial size takes op type `name`.
pub fn takes_free_size(name: &str) -> bool {
    get(name).is_some_and(|o| o.free_size.any())
}

/// Whether the translator with every input dim bound takes op type `name`.
pub fn takes_fixed_shape(name: &str) -> bool {
    get(name).is_some_and(|o| o.fixed_shape.any())
}

/// "A, B (note), C" over the ops `pick` says a lowering takes.
fn list(pick: impl Fn(&Op) -> Takes) -> String {
    OPS.iter()
        .filter(|o| pick(o).any())
        .map(|o| match pick(o).note() {
            Some(note) => format!("{} ({note})", o.name),
            None => o.name.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ops the translator takes with a free size, with their limits, then those only a fixed input shape
/// allows: the text of its "unsupported op" error.
pub fn free_size_text() -> String {
    let fixed_only: Vec<&str> = OPS
        .iter()
        .filter(|o| !o.free_size.any() && o.fixed_shape.any())
        .map(|o| o.name)
        .collect();
    format!(
        "{}. A model with a fixed input shape may also use {}",
        list(|o| o.free_size),
        fixed_only.join(", ")
    )
}

/// The ops the translator takes with every dim bound, with their limits: the text of its "unsupported op" error.
pub fn fixed_shape_text() -> String {
    list(|o| o.fixed_shape)
}

/// Why a lowering refuses op type `op`, after "uses op {op}, ": what batchwise takes instead.
/// `free_size` picks the lowering: the image one, or the static one.
pub fn unsupported(op: &str, free_size: bool) -> String {
    match (free_size, get(op)) {
        (true, Some(o)) if o.fixed_shape.any() => format!(
            "which batchwise takes only in a model that fixes its input's channels, height and \
             width; supported with a free input size: {}",
            list(|o| o.free_size)
        ),
        (true, _) => format!(
            "which batchwise does not support yet; supported: {}",
            free_size_text()
        ),
        (false, Some(o)) if o.free_size.any() => format!(
            "which batchwise takes only with a free input size, not for tensors of fixed shape; \
             supported for tensors of fixed shape: {}",
            fixed_shape_text()
        ),
        (false, _) => format!(
            "which batchwise does not support yet; supported for tensors of fixed shape: {}",
            fixed_shape_text()
        ),
    }
}

fn cell(t: Takes) -> String {
    match t {
        Takes::No => "no".to_owned(),
        Takes::Yes => "yes".to_owned(),
        Takes::Limited(note) => format!("yes: {note}"),
    }
}

/// `docs/ONNX_OPS.md`: the registry as a table per family.
pub fn markdown() -> String {
    let mut s = String::new();
    let free = OPS.iter().filter(|o| o.free_size.any()).count();
    let fixed = OPS.iter().filter(|o| o.fixed_shape.any()).count();
    s.push_str(
        "<!-- Generated from src/onnx/registry.rs by onnx::registry::markdown(); do not edit. \
         Regenerate: BATCHWISE_WRITE_DOCS=1 cargo test --lib onnx::registry -->\n\n",
    );
    s.push_str("# ONNX ops\n\n");
    let _ = write!(
        s,
        "The ONNX op types (default domain, opsets 7 to 28) batchwise reads: {} in all, {free} \
         with a free input size, {fixed} with every shape fixed.\n\n",
        OPS.len()
    );
    s.push_str(
        "One translator (`src/onnx/lowering.rs`, an op per function in `src/onnx/ops/`) runs in \
         two modes:\n\n\
         - **Free size**: batch, height and width stay free, so one model runs on any image \
         size; ops act per item on `[C, H, W]`.\n\
         - **Fixed shape**: every input dim bound, used when the free size is refused for a \
         graph whose input shape is fixed but perhaps its batch (each item runs the graph with \
         a batch of 1), or at a fixed tile size. Every shape is known: tensors of any rank, ops \
         on any axis, shape arithmetic folded on the host.\n\n\
         \"yes\" is every form the ONNX spec allows for float32 data; a note says what is \
         taken where not everything is. Anything else is refused with an error naming the node, \
         its op and the opset.\n",
    );
    for family in Family::ALL {
        let _ = write!(
            s,
            "\n## {}\n\n| Op | Free size | Fixed shape |\n| --- | --- | --- |\n",
            family.name()
        );
        for o in OPS.iter().filter(|o| o.family == family) {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                o.name,
                cell(o.free_size),
                cell(o.fixed_shape)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::ops::activation::unary_op;
    use crate::onnx::proto::NodeProto;

    fn node(op: &str) -> NodeProto {
        NodeProto {
            op_type: op.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn each_op_is_listed_once_and_taken_somewhere() {
        for (i, o) in OPS.iter().enumerate() {
            assert!(
                OPS[..i].iter().all(|p| p.name != o.name),
                "{} is listed twice",
                o.name
            );
            assert!(
                o.free_size.any() || o.fixed_shape.any(),
                "{} is taken by neither lowering",
                o.name
            );
            for t in [o.free_size, o.fixed_shape] {
                assert!(t.note().is_none_or(|n| !n.is_empty()), "{}", o.name);
            }
        }
    }

    /// Every op with a UnaryOp is listed for both lowerings (they share `unary_op`), and every
    /// activation or elementwise function without arithmetic operands has one.
    #[test]
    fn unary_ops_agree_with_the_registry() {
        for o in OPS {
            let unary = unary_op(&node(o.name)).expect("default attributes");
            if unary.is_some() {
                assert!(o.free_size.any() && o.fixed_shape.any(), "{}", o.name);
            }
            let operands = [
                "PRelu", "Clip", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean",
            ];
            if matches!(o.family, Family::Activation | Family::Elementwise)
                && !operands.contains(&o.name)
            {
                assert!(unary.is_some(), "{} has no UnaryOp", o.name);
            }
        }
    }

    #[test]
    fn error_texts_come_from_the_registry() {
        let free = free_size_text();
        assert!(free.starts_with("Conv (2-D"), "{free}");
        assert!(free.contains("Slice (any step"), "{free}");
        assert!(free.contains("Softplus, "), "{free}");
        assert!(free.contains("may also use"), "{free}");
        let fixed = fixed_shape_text();
        assert!(fixed.contains("Gather (constant indices)"), "{fixed}");
        assert!(fixed.contains("Resize ([N, C, H, W]"), "{fixed}");
        assert!(unsupported("LSTM", true).contains("supported: Conv"));
    }

    /// A one-node graph of `op` reading a fixed `[1, 3, 8, 8]` input.
    fn one_node(op: &str) -> crate::onnx::proto::ModelProto {
        use crate::onnx::proto;
        let value = |name: &str| proto::ValueInfoProto {
            name: name.into(),
            r#type: Some(proto::TypeProto {
                tensor_type: Some(proto::TypeProtoTensor {
                    elem_type: 1,
                    shape: Some(proto::TensorShapeProto {
                        dim: [1, 3, 8, 8]
                            .iter()
                            .map(|&d| proto::Dimension {
                                dim_value: Some(d),
                                dim_param: None,
                            })
                            .collect(),
                    }),
                }),
            }),
        };
        proto::ModelProto {
            ir_version: 8,
            opset_import: vec![proto::OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(proto::GraphProto {
                node: vec![NodeProto {
                    op_type: op.into(),
                    input: vec!["x".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                input: vec![value("x")],
                output: vec![value("y")],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Every op the registry lists for a lowering reaches one of its match arms (the node may
    /// still be refused there, for its missing inputs), and every op it does not list is refused
    /// with the registry's message.
    #[test]
    fn the_translators_take_what_the_registry_lists() {
        for o in OPS.iter().chain([&op("LSTM", F::Conv, No, No)]) {
            let model = one_node(o.name);
            let free = crate::onnx::lowering::lower_free(&model, "registry", &[])
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            let graph = model.graph.as_ref().expect("a graph");
            let fixed = crate::onnx::lowering::lower(
                graph,
                17,
                "registry",
                &graph.input[0],
                vec![1, 3, 8, 8],
                &[],
                false,
            )
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
            for (takes, err, refusal) in [
                (o.free_size, &free, unsupported(o.name, true)),
                (o.fixed_shape, &fixed, unsupported(o.name, false)),
            ] {
                assert!(!err.contains("does not translate"), "{err}");
                assert_eq!(takes.any(), !err.contains(&refusal), "{}: {err}", o.name);
            }
        }
    }

    /// Malformed nodes of every op (no inputs, no outputs, inputs that name nothing or the same
    /// value six times) are errors in both modes, never panics.
    #[test]
    fn malformed_nodes_are_errors_not_panics() {
        let shapes: [&[&str]; 4] = [&[], &["nothing", "", "x"], &["x"; 6], &["", "x"]];
        for o in OPS {
            for (inputs, outputs) in shapes.iter().flat_map(|i| [(*i, 0), (*i, 1), (*i, 3)]) {
                let mut model = one_node(o.name);
                let graph = model.graph.as_mut().expect("a graph");
                graph.node[0].input = inputs.iter().map(|s| (*s).to_owned()).collect();
                graph.node[0].output = ["y", "z", "w"][..outputs]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
                let run = std::panic::catch_unwind(|| {
                    let graph = model.graph.as_ref().expect("a graph");
                    let _ = crate::onnx::lowering::lower_free(&model, "bad", &[]);
                    let dims = vec![1, 3, 8, 8];
                    let _ = crate::onnx::lowering::lower(
                        graph,
                        17,
                        "bad",
                        &graph.input[0],
                        dims,
                        &[],
                        false,
                    );
                });
                assert!(
                    run.is_ok(),
                    "{} with inputs {inputs:?}, {outputs} outputs",
                    o.name
                );
            }
        }
    }

    /// `docs/ONNX_OPS.md` is `markdown()`; `BATCHWISE_WRITE_DOCS=1` rewrites it.
    #[test]
    fn docs_match_the_registry() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ONNX_OPS.md");
        let want = markdown();
        if std::env::var_os("BATCHWISE_WRITE_DOCS").is_some_and(|v| v == "1") {
            std::fs::write(&path, &want).expect("write docs/ONNX_OPS.md");
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/ONNX_OPS.md differs from the registry (src/onnx/registry.rs); regenerate it \
             with: BATCHWISE_WRITE_DOCS=1 cargo test --lib onnx::registry"
        );
    }
}
