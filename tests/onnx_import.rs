//! ONNX import: the built-in model loads with the right layers; bad files get clear errors.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod common;

use batchwise::model::Activation;
use batchwise::model::LayerOp;
use batchwise::model::{ElementwiseStep, Operand};
use batchwise::onnx::{self, proto};
use prost::Message as _;

fn waifu2x() -> Vec<u8> {
    std::fs::read(common::repo().join("assets/models/waifu2x_upconv7_photo_scale2.0x.onnx"))
        .unwrap()
}

#[test]
fn waifu2x_loads_with_fused_activations_and_a_free_batch() {
    let model = onnx::load(&waifu2x(), "upscale-photo-2x").unwrap();
    // Six convolutions, then the 4x4 stride-2 ConvTranspose as a dense 3x3 convolution computing
    // the 4 output phases (12 channels) and a DepthToSpace.
    assert_eq!(model.layers.len(), 8);
    assert_eq!(model.opset, 13);
    for layer in &model.layers[..6] {
        let LayerOp::Conv2d(s) = &layer.op else {
            panic!("{} is not a conv", layer.name)
        };
        assert_eq!(s.activation, Activation::LeakyRelu { alpha: 0.1 });
    }
    let LayerOp::Conv2d(phases) = &model.layers[6].op else {
        panic!("the ConvTranspose was not lowered")
    };
    assert_eq!((phases.out_c, phases.k_h, phases.pads), (12, 3, [0; 4]));
    assert!(matches!(model.layers[7].op, LayerOp::DepthToSpace(_)));
    // 7 px of context per side gives exactly twice the tile.
    let shapes = model.shapes(32 + 14, 32 + 14).unwrap();
    let out = shapes[model.output];
    assert_eq!((out.c, out.h, out.w), (3, 64, 64));
    // The phase convolution holds 3x3 taps for 2x2-tap phases: 256 * 12 * 9 weights instead of the
    // ConvTranspose's 256 * 3 * 16.
    assert_eq!(
        model.weight_bytes(),
        4 * (552_483 - 256 * 3 * 16 - 3 + 256 * 12 * 9 + 12)
    );
}

fn node(name: &str, op: &str, inputs: &[&str], output: &str) -> proto::NodeProto {
    proto::NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn value(name: &str, dims: &[i64]) -> proto::ValueInfoProto {
    proto::ValueInfoProto {
        name: name.into(),
        r#type: Some(proto::TypeProto {
            tensor_type: Some(proto::TypeProtoTensor {
                elem_type: 1,
                shape: Some(proto::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| proto::Dimension {
                            dim_value: Some(d),
                            dim_param: None,
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

fn tiny_model(nodes: Vec<proto::NodeProto>, output: &str, opset: i64) -> Vec<u8> {
    let w = proto::TensorProto {
        name: "w".into(),
        dims: vec![3, 3, 1, 1],
        data_type: 1,
        float_data: vec![1.0; 9],
        ..Default::default()
    };
    proto::ModelProto {
        ir_version: 8,
        opset_import: vec![proto::OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(proto::GraphProto {
            node: nodes,
            name: "tiny".into(),
            initializer: vec![w],
            input: vec![value("x", &[1, 3, 8, 8])],
            output: vec![value(output, &[1, 3, 8, 8])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn conv_then_relu_fuses() {
    let bytes = tiny_model(
        vec![
            node("c", "Conv", &["x", "w"], "y"),
            node("r", "Relu", &["y"], "z"),
        ],
        "z",
        17,
    );
    let model = onnx::load(&bytes, "tiny").unwrap();
    assert_eq!(model.layers.len(), 1);
    let LayerOp::Conv2d(s) = &model.layers[0].op else {
        panic!()
    };
    assert_eq!(s.activation, Activation::LeakyRelu { alpha: 0.0 });
}

#[test]
fn unsupported_op_names_node_op_and_opset() {
    let bytes = tiny_model(
        vec![
            node("c", "Conv", &["x", "w"], "y"),
            node("attention_17", "LSTM", &["y"], "z"),
        ],
        "z",
        17,
    );
    let err = format!("{:#}", onnx::load(&bytes, "tiny").unwrap_err());
    assert!(err.contains("attention_17"), "{err}");
    assert!(err.contains("LSTM"), "{err}");
    assert!(err.contains("opset 17"), "{err}");
    assert!(err.contains("supported: Conv"), "{err}");
}

#[test]
fn bad_files_get_errors_not_panics() {
    let err = format!(
        "{:#}",
        onnx::load(b"this is not protobuf \xff\xff", "x").unwrap_err()
    );
    assert!(err.contains("not a valid ONNX file"), "{err}");
    let err = format!("{:#}", onnx::load(&[], "x").unwrap_err());
    assert!(err.contains("opset"), "{err}");
    let old = tiny_model(vec![node("c", "Conv", &["x", "w"], "y")], "y", 5);
    let err = format!("{:#}", onnx::load(&old, "x").unwrap_err());
    assert!(err.contains("opset 5"), "{err}");
    // Every prefix of a real model: truncated downloads must fail cleanly.
    let real = waifu2x();
    for cut in [1, 10, 100, 1000, 50_000, real.len() - 1] {
        let _ = onnx::load(&real[..cut], "truncated");
    }
}

#[test]
fn external_data_is_refused_with_a_reason() {
    let mut m = proto::ModelProto::decode(
        &tiny_model(vec![node("c", "Conv", &["x", "w"], "y")], "y", 17)[..],
    )
    .unwrap();
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.float_data.clear();
    w.data_location = 1;
    let err = format!("{:#}", onnx::load(&m.encode_to_vec(), "x").unwrap_err());
    assert!(err.contains("external file"), "{err}");
}

/// Initializers are read as nodes ask for them: one that no node reads is never read (so an
/// element type batchwise does not take is no error there), and a convolution's weights read
/// straight as float32 keep their values from each float type.
#[test]
fn initializers_are_read_as_nodes_read_them() {
    let conv = || tiny_model(vec![node("c", "Conv", &["x", "w"], "y")], "y", 17);
    let mut m = proto::ModelProto::decode(&conv()[..]).unwrap();
    let graph = m.graph.as_mut().unwrap();
    graph.initializer.push(proto::TensorProto {
        name: "unread".into(),
        dims: vec![1],
        // A string: no op of batchwise's reads one.
        data_type: 8,
        ..Default::default()
    });
    let model = onnx::load(&m.encode_to_vec(), "x").expect("an unread initializer is not read");
    assert_eq!(model.layers.len(), 1);
    // The same weights (0.5 ... 4.5) as float32, float16 and float64.
    let values: Vec<f32> = (0..9).map(|i| 0.5 + i as f32 / 2.0).collect();
    let weights_of = |data_type: i32, raw: Vec<u8>| {
        let mut m = proto::ModelProto::decode(&conv()[..]).unwrap();
        let w = &mut m.graph.as_mut().unwrap().initializer[0];
        w.float_data.clear();
        w.data_type = data_type;
        w.raw_data = raw;
        onnx::load(&m.encode_to_vec(), "x").unwrap().layers[0]
            .weights
            .clone()
    };
    let f16 = values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes());
    let f64 = values.iter().flat_map(|&v| f64::from(v).to_le_bytes());
    let f32 = values.iter().flat_map(|&v| v.to_le_bytes());
    assert_eq!(weights_of(1, f32.collect()), values);
    assert_eq!(weights_of(10, f16.collect()), values);
    assert_eq!(weights_of(11, f64.collect()), values);
}

#[test]
fn anime_4x_loads_prelu_depth_to_space_resize_and_add() {
    let bytes =
        std::fs::read(common::repo().join("assets/models/realesr_animevideov3_x4.onnx")).unwrap();
    let model = onnx::load(&bytes, "upscale-anime-4x").unwrap();
    let convs = model
        .layers
        .iter()
        .filter(|l| matches!(l.op, LayerOp::Conv2d(_)))
        .count();
    assert_eq!(convs, 18);
    let prelus = model
        .layers
        .iter()
        .filter(|l| matches!(&l.op, LayerOp::Conv2d(s) if matches!(s.activation, Activation::PRelu { .. })))
        .count();
    assert_eq!(prelus, 17);
    assert_eq!(model.layers.len(), 18 + 3);
    let shapes = model.shapes(20, 30).unwrap();
    let out = shapes[model.output];
    assert_eq!((out.c, out.h, out.w), (3, 80, 120));
}

/// A user's file gets its scale from its shapes, and a network without padding exactly the context
/// it eats; metadata-free files default to RGB in [0, 1].
#[test]
fn user_models_get_measured_scale_and_context() {
    use batchwise::builtin::{InputOverrides, resolve};
    let path = |f: &str| common::repo().join("assets/models").join(f);
    let w = resolve(
        path("waifu2x_upconv7_photo_scale2.0x.onnx")
            .to_str()
            .unwrap(),
        &InputOverrides::default(),
    )
    .unwrap();
    assert_eq!((w.spec.scale, w.spec.context), (2, 7));
    let a = resolve(
        path("realesr_animevideov3_x4.onnx").to_str().unwrap(),
        &InputOverrides {
            range: Some("-1-1".into()),
            channel_order: Some("bgr".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((a.spec.scale, a.spec.context), (4, 16));
    assert!(a.spec.input_map.bgr);
    assert_eq!(a.spec.input_map.offset, [-1.0; 3]);
    let err = resolve(
        path("realesr_animevideov3_x4.onnx").to_str().unwrap(),
        &InputOverrides {
            layout: Some("nhwc".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("nhwc by --input-layout, but the graph's input is nchw"),
        "{err:#}"
    );
}

/// A Conv + BatchNormalization pair is folded into one convolution that computes the same thing:
/// the GPU output of the folded model against the CPU references of the two ops in turn.
#[test]
fn batch_norm_folds_into_the_convolution() {
    use batchwise::engine::BatchRunner;
    use batchwise::kernels::conv2d;
    use batchwise::kernels::pack::{self, PixelMapping};
    use batchwise::model::Conv2dSpec;
    let tensor = |name: &str, dims: Vec<i64>, data: Vec<f32>| proto::TensorProto {
        name: name.into(),
        dims,
        data_type: 1,
        float_data: data,
        ..Default::default()
    };
    let w: Vec<f32> = (0..4 * 3 * 9)
        .map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5)
        .collect();
    let b = vec![0.1, -0.2, 0.3, 0.0];
    let (gamma, beta, mean, var) = (
        vec![1.5, 0.5, -1.0, 2.0],
        vec![0.0, 0.25, -0.5, 1.0],
        vec![0.2, -0.1, 0.0, 0.4],
        vec![1.0, 0.25, 4.0, 0.5],
    );
    let mut conv_node = node("conv", "Conv", &["x", "w", "b"], "y");
    conv_node.attribute.push(proto::AttributeProto {
        name: "pads".into(),
        ints: vec![1, 1, 1, 1],
        r#type: 7,
        ..Default::default()
    });
    let bytes = proto::ModelProto {
        ir_version: 8,
        opset_import: vec![proto::OperatorSetIdProto {
            domain: String::new(),
            version: 15,
        }],
        graph: Some(proto::GraphProto {
            node: vec![
                conv_node,
                node("bn", "BatchNormalization", &["y", "g", "be", "m", "v"], "z"),
            ],
            initializer: vec![
                tensor("w", vec![4, 3, 3, 3], w.clone()),
                tensor("b", vec![4], b.clone()),
                tensor("g", vec![4], gamma.clone()),
                tensor("be", vec![4], beta.clone()),
                tensor("m", vec![4], mean.clone()),
                tensor("v", vec![4], var.clone()),
            ],
            input: vec![value("x", &[1, 3, 8, 8])],
            output: vec![value("z", &[1, 4, 8, 8])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let model = onnx::load(&bytes, "bn").unwrap();
    assert_eq!(model.layers.len(), 1, "BatchNormalization was not folded");

    let engine = common::engine();
    let gpu_model = engine.load(std::sync::Arc::new(model)).unwrap();
    let (h, wd) = (7, 9);
    let pixels: Vec<u32> = (0..h * wd)
        .map(|i: u32| i.wrapping_mul(2_654_435_761) >> 8)
        .collect();
    let runner = BatchRunner::new(&engine, &gpu_model, 1, h, wd, &PixelMapping::UNIT).unwrap();
    let got = runner.run_f32(&pixels, 1).unwrap();

    let spec = Conv2dSpec {
        in_c: 3,
        out_c: 4,
        k_h: 3,
        k_w: 3,
        stride: [1, 1],
        pads: [1; 4],
        dilation: [1, 1],
        groups: 1,
        activation: Activation::None,
    };
    let x = pack::reference(
        &pixels,
        (h * wd) as usize,
        &PixelMapping::UNIT,
        pack::PixelDepth::Eight,
    );
    let y = conv2d::reference(&spec, &x, 1, h, wd, &w, &b);
    let plane = (h * wd) as usize;
    let expected: Vec<f32> = y
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i / plane;
            (v - mean[c]) / (var[c] + 1e-5).sqrt() * gamma[c] + beta[c]
        })
        .collect();
    let worst = common::max_abs_diff(&got, &expected);
    assert!(worst <= 1e-5, "max |diff| {worst}");
}

/// A graph the image lowering cannot take (Softmax over a transposed [1, 4, 6] tensor) but whose
/// input shape is fixed is lowered with every shape fixed; the built-in image models are not.
#[test]
fn fixed_shape_graphs_take_the_static_lowering() {
    let mut m = proto::ModelProto::decode(
        &tiny_model(
            vec![
                node("t", "Transpose", &["x"], "y"),
                node("s", "Softmax", &["y"], "z"),
            ],
            "z",
            17,
        )[..],
    )
    .unwrap();
    let graph = m.graph.as_mut().unwrap();
    graph.initializer.clear();
    let dims = graph.input[0]
        .r#type
        .as_mut()
        .and_then(|t| t.tensor_type.as_mut())
        .and_then(|t| t.shape.as_mut())
        .unwrap();
    dims.dim = [1, 4, 6]
        .iter()
        .map(|&d| proto::Dimension {
            dim_value: Some(d),
            dim_param: None,
        })
        .collect();
    let model = onnx::load(&m.encode_to_vec(), "static").unwrap();
    let shapes = model
        .static_shapes
        .as_ref()
        .expect("lowered with fixed shapes");
    assert_eq!(shapes[model.output].elements(), 24);
    assert!(onnx::load(&waifu2x(), "w").unwrap().static_shapes.is_none());
}

/// A residual Add after a convolution fuses into it (ResNet's conv, add, relu: the ReLU too;
/// conv, relu, add: after the activation), and the fused kernel computes what the graph says:
/// conv2d's CPU reference plus the skip, within 1e-4 + 1e-4 |x| (as the conv kernel test).
#[test]
fn residual_adds_fuse_into_convolutions() {
    use batchwise::kernels::conv2d;
    use batchwise::model::Residual;
    let engine = common::engine();
    let mut rng = common::rng(61);
    let (c, h, w) = (3u32, 9u32, 7u32);
    let weights = common::random_vec(&mut rng, (c * c * 9) as usize, 0.5);
    let bias = common::random_vec(&mut rng, c as usize, 0.5);
    let input = common::random_vec(&mut rng, (2 * c * h * w) as usize, 1.0);
    let conv = |out: &str| {
        let mut n = node("conv", "Conv", &["x", "w", "b"], out);
        n.attribute.push(proto::AttributeProto {
            name: "pads".into(),
            ints: vec![1, 1, 1, 1],
            r#type: 7,
            ..Default::default()
        });
        n
    };
    for (nodes, want_residual, relu) in [
        (
            vec![conv("y"), node("add", "Add", &["y", "x"], "z")],
            Residual::BeforeActivation,
            false,
        ),
        (
            vec![
                conv("y"),
                node("relu", "Relu", &["y"], "r"),
                node("add", "Add", &["x", "r"], "z"),
            ],
            Residual::AfterActivation,
            true,
        ),
        (
            vec![
                conv("y"),
                node("add", "Add", &["y", "x"], "s"),
                node("relu", "Relu", &["s"], "z"),
            ],
            Residual::BeforeActivation,
            true,
        ),
    ] {
        let mut m = proto::ModelProto::decode(&tiny_model(nodes, "z", 17)[..]).unwrap();
        let graph = m.graph.as_mut().unwrap();
        graph.initializer = vec![
            proto::TensorProto {
                name: "w".into(),
                dims: vec![3, 3, 3, 3],
                data_type: 1,
                float_data: weights.clone(),
                ..Default::default()
            },
            proto::TensorProto {
                name: "b".into(),
                dims: vec![3],
                data_type: 1,
                float_data: bias.clone(),
                ..Default::default()
            },
        ];
        let model = onnx::load(&m.encode_to_vec(), "residual").unwrap();
        assert_eq!(model.layers.len(), 1, "{:?}", model.layers);
        let LayerOp::Conv2dResidual { spec, residual } = &model.layers[0].op else {
            panic!("not fused: {:?}", model.layers[0].op)
        };
        assert_eq!(*residual, want_residual);
        let residual = *residual;
        let plain = batchwise::model::Conv2dSpec {
            activation: Activation::None,
            ..spec.clone()
        };
        let conv_out = conv2d::reference(&plain, &input, 2, h, w, &weights, &bias);
        let relu = |v: f32| if relu { v.max(0.0) } else { v };
        let want: Vec<f32> = conv_out
            .iter()
            .zip(&input)
            .map(|(&y, &x)| match want_residual {
                Residual::BeforeActivation => relu(y + x),
                Residual::AfterActivation => relu(y) + x,
            })
            .collect();
        let gpu_model = engine.load(std::sync::Arc::new(model)).unwrap();
        let runner =
            batchwise::engine::BatchRunner::float_input(&engine, &gpu_model, 2, h, w).unwrap();
        let got = runner.run_floats(&input, 2).unwrap().remove(0);
        for (g, e) in got.iter().zip(&want) {
            assert!(
                (g - e).abs() <= 1e-4 + 1e-4 * e.abs(),
                "{residual:?}: {g} vs {e}"
            );
        }
    }
}

/// Constant nodes are constants to the image lowering too: a Conv and an Add of a Constant
/// node's scalar stay on the free-size path, the Add as `x + 0.5`.
#[test]
fn constant_nodes_feed_the_image_lowering() {
    let mut k = node("k", "Constant", &[], "k");
    k.attribute.push(proto::AttributeProto {
        name: "value_float".into(),
        f: 0.5,
        r#type: 1,
        ..Default::default()
    });
    let bytes = tiny_model(
        vec![
            k,
            node("c", "Conv", &["x", "w"], "y"),
            node("a", "Add", &["y", "k"], "z"),
        ],
        "z",
        17,
    );
    let model = onnx::load(&bytes, "constant").unwrap();
    assert!(model.static_shapes.is_none());
    let last = model.layers.last().unwrap();
    assert!(
        matches!(
            last.op,
            LayerOp::Unary(batchwise::model::UnaryOp::Affine {
                scale: 1.0,
                offset: 0.5
            })
        ),
        "{:?}",
        last.op
    );
}

/// A value whose dims are `Some(fixed)` or `None` (free, as `dim_param`).
fn value_dims(name: &str, dims: &[Option<i64>]) -> proto::ValueInfoProto {
    let mut v = value(name, &[]);
    let shape = v
        .r#type
        .as_mut()
        .and_then(|t| t.tensor_type.as_mut())
        .and_then(|t| t.shape.as_mut())
        .unwrap();
    shape.dim = dims
        .iter()
        .map(|&d| proto::Dimension {
            dim_value: d,
            dim_param: d.is_none().then(|| "n".to_owned()),
        })
        .collect();
    v
}

/// A float or int64 constant.
fn constant(name: &str, dims: &[i64], data: &[f32]) -> proto::TensorProto {
    proto::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

fn ints_constant(name: &str, data: &[i64]) -> proto::TensorProto {
    proto::TensorProto {
        name: name.into(),
        dims: vec![data.len() as i64],
        data_type: 7,
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

/// A graph of `nodes` reading `x` of `input` dims and writing `y`.
fn graph_model(
    nodes: Vec<proto::NodeProto>,
    initializer: Vec<proto::TensorProto>,
    input: &[Option<i64>],
) -> Vec<u8> {
    proto::ModelProto {
        ir_version: 8,
        opset_import: vec![proto::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(proto::GraphProto {
            node: nodes,
            name: "g".into(),
            initializer,
            input: vec![value_dims("x", input)],
            output: vec![value_dims("y", &[])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn string_attr(name: &str, s: &str) -> proto::AttributeProto {
    proto::AttributeProto {
        name: name.into(),
        s: s.as_bytes().to_vec(),
        r#type: 3,
        ..Default::default()
    }
}

/// The image lowering takes every activation the unary kernel runs (one translation,
/// `onnx::ops::activation::unary_op`, shared with the static lowering): a free-size Conv -> Elu
/// -> Softplus -> Neg -> Mish -> Abs loads as image layers, and its GPU output at two sizes and a
/// batch of 2 matches the ops' ONNX definitions on random inputs.
#[test]
fn free_size_models_run_every_unary_op() {
    use batchwise::kernels::conv2d;
    use batchwise::model::UnaryOp;
    let mut rng = common::rng(7);
    let c = 3u32;
    let weights = common::random_vec(&mut rng, (c * c * 9) as usize, 0.5);
    let bias = common::random_vec(&mut rng, c as usize, 0.5);
    let mut conv = node("conv", "Conv", &["x", "w", "b"], "c");
    conv.attribute.push(proto::AttributeProto {
        name: "pads".into(),
        ints: vec![1, 1, 1, 1],
        r#type: 7,
        ..Default::default()
    });
    let mut elu = node("elu", "Elu", &["c"], "e");
    elu.attribute.push(proto::AttributeProto {
        name: "alpha".into(),
        f: 0.5,
        r#type: 1,
        ..Default::default()
    });
    let bytes = graph_model(
        vec![
            conv,
            elu,
            node("softplus", "Softplus", &["e"], "s"),
            node("neg", "Neg", &["s"], "n"),
            node("mish", "Mish", &["n"], "m"),
            node("abs", "Abs", &["m"], "y"),
        ],
        vec![
            constant("w", &[3, 3, 3, 3], &weights),
            constant("b", &[3], &bias),
        ],
        &[None, Some(3), None, None],
    );
    let model = onnx::load(&bytes, "unary").unwrap();
    assert!(model.static_shapes.is_none(), "not the image lowering");
    assert!(
        matches!(model.layers[0].op, LayerOp::Conv2d(_)),
        "{:?}",
        model.layers
    );
    // The chain runs as one fused elementwise layer, its steps in order.
    assert_eq!(model.layers.len(), 2, "{:?}", model.layers);
    let LayerOp::Elementwise(program) = &model.layers[1].op else {
        panic!("not fused: {:?}", model.layers[1]);
    };
    let unary: Vec<UnaryOp> = program
        .steps
        .iter()
        .enumerate()
        .map(|(k, step)| match *step {
            ElementwiseStep::Unary(u, Operand::Input(0)) if k == 0 => u,
            ElementwiseStep::Unary(u, Operand::Step(s)) if s as usize + 1 == k => u,
            other => panic!("step {k} is not the chain's: {other:?}"),
        })
        .collect();
    assert_eq!(
        unary,
        [
            UnaryOp::Elu { alpha: 0.5 },
            UnaryOp::Softplus,
            UnaryOp::Neg,
            UnaryOp::Mish,
            UnaryOp::Abs,
        ]
    );
    let LayerOp::Conv2d(spec) = model.layers[0].op.clone() else {
        unreachable!("checked")
    };
    let softplus = |x: f32| (1.0 + x.exp()).ln();
    let f = |x: f32| {
        let e = if x > 0.0 { x } else { 0.5 * (x.exp() - 1.0) };
        let n = -softplus(e);
        (n * softplus(n).tanh()).abs()
    };
    let engine = common::engine();
    let gpu_model = engine.load(std::sync::Arc::new(model)).unwrap();
    for (h, w) in [(5u32, 7u32), (9, 4)] {
        let input = common::random_vec(&mut rng, (2 * c * h * w) as usize, 2.0);
        let want: Vec<f32> = conv2d::reference(&spec, &input, 2, h, w, &weights, &bias)
            .into_iter()
            .map(f)
            .collect();
        let runner =
            batchwise::engine::BatchRunner::float_input(&engine, &gpu_model, 2, h, w).unwrap();
        let got = runner.run_floats(&input, 2).unwrap().remove(0);
        assert_eq!(got.len(), want.len());
        for (g, e) in got.iter().zip(&want) {
            assert!(
                (g - e).abs() <= 1e-4 + 1e-4 * e.abs(),
                "{h}x{w}: {g} vs {e}"
            );
        }
    }
}

/// Gelu's `approximate` is "none" (exact) or "tanh" on both lowerings; anything else is refused
/// with an error naming the value, not run as exact Gelu.
#[test]
fn gelu_approximations_agree_on_both_lowerings() {
    use batchwise::model::UnaryOp;
    let gelu = |approximate: Option<&str>| {
        let mut n = node("gelu", "Gelu", &["x"], "y");
        n.attribute
            .extend(approximate.map(|a| string_attr("approximate", a)));
        n
    };
    // Free size: the image lowering. Fixed [2, 4, 6]: the static one (rank 3 is no image).
    let shapes: [&[Option<i64>]; 2] = [&[None, Some(3), None, None], &[Some(2), Some(4), Some(6)]];
    for (input, fixed) in shapes.into_iter().zip([false, true]) {
        for (approximate, want) in [
            (None, UnaryOp::Gelu),
            (Some("none"), UnaryOp::Gelu),
            (Some("tanh"), UnaryOp::GeluTanh),
        ] {
            let model =
                onnx::load(&graph_model(vec![gelu(approximate)], vec![], input), "gelu").unwrap();
            assert_eq!(model.static_shapes.is_some(), fixed);
            assert_eq!(model.layers.len(), 1);
            assert!(
                matches!(model.layers[0].op, LayerOp::Unary(u) if u == want),
                "{approximate:?}: {:?}",
                model.layers[0].op
            );
        }
        let bytes = graph_model(vec![gelu(Some("sigmoid"))], vec![], input);
        let err = format!("{:#}", onnx::load(&bytes, "gelu").unwrap_err());
        assert!(err.contains("approximate=\"sigmoid\""), "{err}");
        assert!(err.contains("node gelu (Gelu)"), "{err}");
    }
}

/// CPU reference of an edge or reflect pad of a row-major tensor.
fn pad_reference(
    x: &[f32],
    dims: &[usize],
    before: &[usize],
    after: &[usize],
    edge: bool,
) -> Vec<f32> {
    let out: Vec<usize> = (0..dims.len())
        .map(|k| dims[k] + before[k] + after[k])
        .collect();
    let total: usize = out.iter().product();
    (0..total)
        .map(|mut i| {
            let mut src = 0;
            let mut stride = 1;
            for k in (0..dims.len()).rev() {
                let o = (i % out[k]) as i64 - before[k] as i64;
                i /= out[k];
                let n = dims[k] as i64;
                let s = if edge {
                    o.clamp(0, n - 1)
                } else if o < 0 {
                    -o
                } else if o >= n {
                    2 * (n - 1) - o
                } else {
                    o
                };
                src += s as usize * stride;
                stride *= dims[k];
            }
            x[src]
        })
        .collect()
}

/// The static lowering pads in edge and reflect mode (as the image lowering does) on the axes
/// the image pad kernel pads: the last two of a 4-D tensor (batch 2 as one item), the last of a
/// 3-D one. Dropout (inference: the identity) keeps the graphs off the image lowering. Other
/// axes are refused with a reason.
#[test]
fn the_static_lowering_pads_edge_and_reflect() {
    let engine = common::engine();
    let mut rng = common::rng(23);
    let cases: [(&[usize], &[i64], bool); 4] = [
        (&[2, 3, 4, 5], &[0, 0, 1, 2, 0, 0, 2, 1], true),
        (&[2, 3, 4, 5], &[0, 0, 3, 2, 0, 0, 1, 4], false),
        (&[2, 3, 5], &[0, 0, 2, 0, 0, 3], false),
        (&[2, 3, 5], &[0, 0, 4, 0, 0, 1], true),
    ];
    for (dims, pads, edge) in cases {
        let mut pad = node("pad", "Pad", &["x", "pads"], "p");
        pad.attribute
            .push(string_attr("mode", if edge { "edge" } else { "reflect" }));
        let input: Vec<Option<i64>> = dims.iter().map(|&d| Some(d as i64)).collect();
        let bytes = graph_model(
            vec![pad, node("drop", "Dropout", &["p"], "y")],
            vec![ints_constant("pads", pads)],
            &input,
        );
        let model = onnx::load(&bytes, "pad").unwrap();
        let shapes = model.static_shapes.clone().expect("the static lowering");
        assert!(
            model.layers.iter().any(|l| matches!(l.op, LayerOp::Pad(_))),
            "{:?}",
            model.layers
        );
        let x = common::random_vec(&mut rng, dims.iter().product(), 1.0);
        let r = dims.len();
        let before: Vec<usize> = pads[..r].iter().map(|&p| p as usize).collect();
        let after: Vec<usize> = pads[r..].iter().map(|&p| p as usize).collect();
        let want = pad_reference(&x, dims, &before, &after, edge);
        let gpu_model = engine.load(std::sync::Arc::new(model)).unwrap();
        let runner = batchwise::engine::BatchRunner::float_input(
            &engine,
            &gpu_model,
            1,
            shapes[0].h,
            shapes[0].w,
        )
        .unwrap();
        let got = runner.run_floats(&x, 1).unwrap().remove(0);
        assert_eq!(got, want, "{dims:?} padded by {pads:?} (edge {edge})");
    }
    // The channel axis of a 4-D tensor is not an image axis.
    let mut pad = node("pad", "Pad", &["x", "pads"], "p");
    pad.attribute.push(string_attr("mode", "edge"));
    let bytes = graph_model(
        vec![pad, node("drop", "Dropout", &["p"], "y")],
        vec![ints_constant("pads", &[0, 1, 0, 0, 0, 1, 0, 0])],
        &[Some(2), Some(3), Some(4), Some(5)],
    );
    let err = format!("{:#}", onnx::load(&bytes, "pad").unwrap_err());
    assert!(err.contains("pads axis 1"), "{err}");
}

/// An op the registry does not list for a free input size is refused by the image lowering with
/// the registry's text; one it lists only for fixed shapes says so.
#[test]
fn the_image_lowering_refuses_with_the_registry_text() {
    let bytes = graph_model(
        vec![node("soft", "Softmax", &["x"], "y")],
        vec![],
        &[None, Some(3), None, None],
    );
    let err = format!("{:#}", onnx::load(&bytes, "softmax").unwrap_err());
    assert!(err.contains("node soft (Softmax)"), "{err}");
    assert!(
        err.contains("only in a model that fixes its input's channels, height and width"),
        "{err}"
    );
    assert!(err.contains("Slice (any step"), "{err}");
}

/// With a free input size, a reduction over the channels (axes [1], keepdims) lowers as an
/// image layer (`AcrossChannels::Reduce`) and ReduceMean over height and width as
/// GlobalAveragePool; any other axes, or keepdims 0, are refused with the reason.
#[test]
fn free_size_reductions_over_channels_or_the_map_lower_as_image_layers() {
    use batchwise::model::{AcrossChannels, ReduceOp};
    let reduce = |op: &str, axes: &[i64], keep: i64, input: &str, output: &str| {
        let mut n = node(output, op, &[input], output);
        n.attribute.push(proto::AttributeProto {
            name: "axes".into(),
            ints: axes.to_vec(),
            r#type: 7,
            ..Default::default()
        });
        n.attribute.push(proto::AttributeProto {
            name: "keepdims".into(),
            i: keep,
            r#type: 2,
            ..Default::default()
        });
        n
    };
    let free = [None, Some(3), None, None];
    let bytes = graph_model(
        vec![
            reduce("ReduceMax", &[1], 1, "x", "m"),
            node("s", "Sub", &["x", "m"], "d"),
            reduce("ReduceMean", &[-1, -2], 1, "d", "y"),
        ],
        vec![],
        &free,
    );
    let model = onnx::load(&bytes, "reductions").unwrap();
    assert!(model.static_shapes.is_none());
    let ops: Vec<&LayerOp> = model.layers.iter().map(|l| &l.op).collect();
    assert!(
        matches!(
            ops.as_slice(),
            [
                LayerOp::AcrossChannels(AcrossChannels::Reduce(ReduceOp::Max)),
                LayerOp::Binary(_),
                LayerOp::GlobalAvgPool
            ]
        ),
        "{ops:?}"
    );
    for (axes, keep) in [(&[2i64][..], 1), (&[1][..], 0)] {
        let bytes = graph_model(
            vec![reduce("ReduceSum", axes, keep, "x", "y")],
            vec![],
            &free,
        );
        let err = format!("{:#}", onnx::load(&bytes, "reduction").unwrap_err());
        assert!(err.contains("needs fixed input dims"), "{err}");
    }
}

/// BatchNormalization folds into the convolution before it in a fixed-shape model too (the static
/// lowering emits it as general per-channel Mul and Add, which `passes::fold_affine` folds), and
/// the folded model computes conv -> BatchNorm -> Softmax as the CPU references do: within 1e-5
/// (float32 rounding of the folded 27-term sums, then a softmax over 4 values).
#[test]
fn batch_norm_folds_in_fixed_shape_models_too() {
    use batchwise::engine::BatchRunner;
    use batchwise::kernels::conv2d;
    use batchwise::model::TensorOp;
    let w: Vec<f32> = (0..4 * 3 * 9)
        .map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5)
        .collect();
    let b = vec![0.1, -0.2, 0.3, 0.0];
    let (gamma, beta, mean, var) = (
        vec![1.5, 0.5, -1.0, 2.0],
        vec![0.0, 0.25, -0.5, 1.0],
        vec![0.2, -0.1, 0.0, 0.4],
        vec![1.0, 0.25, 4.0, 0.5],
    );
    let conv_node = conv3x3_pad1("c");
    let softmax = softmax_on_channels("z");
    let (h, wd) = (5u32, 6u32);
    let bytes = graph_model(
        vec![
            conv_node,
            node("bn", "BatchNormalization", &["c", "g", "be", "m", "v"], "z"),
            softmax,
        ],
        vec![
            constant("w", &[4, 3, 3, 3], &w),
            constant("b", &[4], &b),
            constant("g", &[4], &gamma),
            constant("be", &[4], &beta),
            constant("m", &[4], &mean),
            constant("v", &[4], &var),
        ],
        &[Some(1), Some(3), Some(h as i64), Some(wd as i64)],
    );
    let model = onnx::load(&bytes, "bn-fixed").unwrap();
    assert!(
        model.static_shapes.is_some(),
        "Softmax takes the static lowering"
    );
    let kinds: Vec<&str> = model.layers.iter().map(|l| l.op.kind()).collect();
    assert_eq!(
        kinds.len(),
        2,
        "BatchNormalization was not folded: {kinds:?}"
    );
    assert!(matches!(model.layers[0].op, LayerOp::Conv2d(_)));
    assert!(matches!(
        model.layers[1].op,
        LayerOp::Tensor(TensorOp::Softmax(_))
    ));

    let engine = common::engine();
    let gpu_model = engine.load(std::sync::Arc::new(model)).unwrap();
    let x = common::random_vec(&mut common::rng(5), (3 * h * wd) as usize, 1.0);
    let runner = BatchRunner::float_input(&engine, &gpu_model, 1, h, wd).unwrap();
    let got = runner.run_floats(&x, 1).unwrap().swap_remove(0);

    let spec = conv3x3_pad1_spec(4);
    let y = conv2d::reference(&spec, &x, 1, h, wd, &w, &b);
    let plane = (h * wd) as usize;
    let z: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i / plane;
            f64::from((v - mean[c]) / (var[c] + 1e-5).sqrt() * gamma[c] + beta[c])
        })
        .collect();
    let expected = softmax_over_channels(&z, 4, plane);
    let worst = common::max_abs_diff(&got, &expected);
    assert!(worst <= 1e-5, "max |diff| {worst}");
}

/// A residual Add (and the ReLU after it) fuses into the convolution in a fixed-shape model too,
/// and computes what the graph says: relu(conv(x) + x), then Softmax, against the CPU references
/// within 1e-5.
#[test]
fn residual_adds_fuse_in_fixed_shape_models_too() {
    use batchwise::engine::BatchRunner;
    use batchwise::kernels::conv2d;
    use batchwise::model::TensorOp;
    let w: Vec<f32> = (0..3 * 3 * 9)
        .map(|i| ((i * 5) % 13) as f32 / 13.0 - 0.5)
        .collect();
    let b = vec![0.1, -0.2, 0.3];
    let conv_node = conv3x3_pad1("c");
    let softmax = softmax_on_channels("r");
    let (h, wd) = (4u32, 7u32);
    let bytes = graph_model(
        vec![
            conv_node,
            node("add", "Add", &["c", "x"], "s"),
            node("relu", "Relu", &["s"], "r"),
            softmax,
        ],
        vec![constant("w", &[3, 3, 3, 3], &w), constant("b", &[3], &b)],
        &[Some(1), Some(3), Some(h as i64), Some(wd as i64)],
    );
    let model = onnx::load(&bytes, "residual-fixed").unwrap();
    assert!(
        model.static_shapes.is_some(),
        "Softmax takes the static lowering"
    );
    let kinds: Vec<&str> = model.layers.iter().map(|l| l.op.kind()).collect();
    assert_eq!(kinds, ["Conv + Add", "a general tensor op"], "{kinds:?}");
    assert!(matches!(
        model.layers[1].op,
        LayerOp::Tensor(TensorOp::Softmax(_))
    ));

    let engine = common::engine();
    let gpu_model = engine.load(std::sync::Arc::new(model)).unwrap();
    let x = common::random_vec(&mut common::rng(6), (3 * h * wd) as usize, 1.0);
    let runner = BatchRunner::float_input(&engine, &gpu_model, 1, h, wd).unwrap();
    let got = runner.run_floats(&x, 1).unwrap().swap_remove(0);

    let spec = conv3x3_pad1_spec(3);
    let conv = conv2d::reference(&spec, &x, 1, h, wd, &w, &b);
    let r: Vec<f64> = conv
        .iter()
        .zip(&x)
        .map(|(&c, &s)| f64::from((c + s).max(0.0)))
        .collect();
    let plane = (h * wd) as usize;
    let expected = softmax_over_channels(&r, 3, plane);
    let worst = common::max_abs_diff(&got, &expected);
    assert!(worst <= 1e-5, "max |diff| {worst}");
}

/// Slice with steps on a free-size model (every other column, the rows backwards) runs on the
/// image lowering and picks what numpy's `x[:, :, ::-1, ::2]` picks, at two input sizes: exact.
#[test]
fn free_size_slices_take_steps() {
    use batchwise::engine::BatchRunner;
    let slice = node("s", "Slice", &["x", "starts", "ends", "axes", "steps"], "y");
    let bytes = graph_model(
        vec![slice],
        vec![
            ints_constant("starts", &[0, -1]),
            ints_constant("ends", &[i64::MAX, i64::MIN]),
            ints_constant("axes", &[3, 2]),
            ints_constant("steps", &[2, -1]),
        ],
        &[None, Some(3), None, None],
    );
    let model = onnx::load(&bytes, "slice-steps").unwrap();
    assert!(model.static_shapes.is_none(), "free sizes");
    let engine = common::engine();
    let gpu_model = engine.load(std::sync::Arc::new(model)).unwrap();
    for (h, w) in [(5u32, 7u32), (4, 10)] {
        let x = common::random_vec(&mut common::rng(h as u64), (2 * 3 * h * w) as usize, 1.0);
        let runner = BatchRunner::float_input(&engine, &gpu_model, 2, h, w).unwrap();
        let got = runner.run_floats(&x, 2).unwrap().swap_remove(0);
        let ow = w.div_ceil(2);
        let mut want = Vec::new();
        for n in 0..2 {
            for c in 0..3 {
                for y in (0..h).rev() {
                    for xx in (0..w).step_by(2) {
                        want.push(x[(((n * 3 + c) * h + y) * w + xx) as usize]);
                    }
                }
            }
        }
        assert_eq!(want.len(), (2 * 3 * h * ow) as usize);
        assert_eq!(got, want, "{h}x{w}");
    }
}

/// Conv `x`, `w`, `b` -> `out`, 3x3 with 1 px of padding.
fn conv3x3_pad1(out: &str) -> proto::NodeProto {
    let mut conv = node("conv", "Conv", &["x", "w", "b"], out);
    conv.attribute.push(proto::AttributeProto {
        name: "pads".into(),
        ints: vec![1, 1, 1, 1],
        r#type: 7,
        ..Default::default()
    });
    conv
}

/// The spec of [`conv3x3_pad1`] from 3 channels to `out_c`.
fn conv3x3_pad1_spec(out_c: u32) -> batchwise::model::Conv2dSpec {
    batchwise::model::Conv2dSpec {
        in_c: 3,
        out_c,
        k_h: 3,
        k_w: 3,
        stride: [1, 1],
        pads: [1; 4],
        dilation: [1, 1],
        groups: 1,
        activation: Activation::None,
    }
}

/// Softmax over the channels of `input`, writing `y`.
fn softmax_on_channels(input: &str) -> proto::NodeProto {
    let mut softmax = node("s", "Softmax", &[input], "y");
    softmax.attribute.push(proto::AttributeProto {
        name: "axis".into(),
        i: 1,
        r#type: 2,
        ..Default::default()
    });
    softmax
}

/// Softmax over the `channels` planes of `plane` values each (f64, the reference's precision).
fn softmax_over_channels(z: &[f64], channels: usize, plane: usize) -> Vec<f32> {
    (0..channels * plane)
        .map(|i| {
            let (c, p) = (i / plane, i % plane);
            let sum: f64 = (0..channels).map(|k| z[k * plane + p].exp()).sum();
            (z[c * plane + p].exp() / sum) as f32
        })
        .collect()
}

/// One translator, two modes: the same graph (Conv -> PRelu -> BatchNormalization -> Resize 2x
/// nearest -> Slice of channels -> Concat with the Slice's input -> Pad -> Clip) lowered with a free size
/// (image layers) and with its free dims bound to 6 x 5 (tensor layers, `load_at_size`) computes
/// the same on lavapipe for a batch of 2 random images. Tolerance 1e-5: the two modes run
/// different kernels (image ops against tensor copies and broadcasts) on the same float32 math.
#[test]
fn free_and_bound_dims_lower_the_same_graph_alike() {
    use batchwise::engine::BatchRunner;
    let mut rng = common::rng(11);
    let c = 3usize;
    let mut resize = node("up", "Resize", &["bn", "", "scales"], "up");
    resize.attribute.push(string_attr("mode", "nearest"));
    let mut concat = node("cat", "Concat", &["up", "sl"], "cat");
    concat.attribute.push(proto::AttributeProto {
        name: "axis".into(),
        i: 1,
        r#type: 2,
        ..Default::default()
    });
    let nodes = vec![
        conv3x3_pad1("conv"),
        node("prelu", "PRelu", &["conv", "slope"], "act"),
        node(
            "bn",
            "BatchNormalization",
            &["act", "g", "be", "m", "v"],
            "bn",
        ),
        resize,
        node(
            "sl",
            "Slice",
            &["up", "starts", "ends", "axes", "steps"],
            "sl",
        ),
        concat,
        node("pad", "Pad", &["cat", "pads"], "padded"),
        node("clip", "Clip", &["padded", "lo", "hi"], "y"),
    ];
    let r = |n: usize, s: f32, rng: &mut _| common::random_vec(rng, n, s);
    let initializers = vec![
        constant("w", &[3, 3, 3, 3], &r(c * c * 9, 0.5, &mut rng)),
        constant("b", &[3], &r(c, 0.5, &mut rng)),
        constant("slope", &[3, 1, 1], &r(c, 0.5, &mut rng)),
        constant("g", &[3], &r(c, 1.0, &mut rng)),
        constant("be", &[3], &r(c, 1.0, &mut rng)),
        constant("m", &[3], &r(c, 1.0, &mut rng)),
        constant("v", &[3], &[0.5, 1.0, 2.0]),
        constant("scales", &[4], &[1.0, 1.0, 2.0, 2.0]),
        ints_constant("starts", &[1]),
        ints_constant("ends", &[3]),
        ints_constant("axes", &[1]),
        ints_constant("steps", &[1]),
        ints_constant("pads", &[0, 0, 1, 2, 0, 0, 0, 1]),
        constant("lo", &[], &[-0.75]),
        constant("hi", &[], &[0.8]),
    ];
    let bytes = graph_model(nodes, initializers, &[None, Some(3), None, None]);
    let free = onnx::load(&bytes, "both").unwrap();
    assert!(free.static_shapes.is_none(), "free sizes");
    let (h, w) = (6u32, 5u32);
    let (bound, _) = onnx::load_at_size(&bytes, "both", Some((h, w))).unwrap();
    let shapes = bound.static_shapes.clone().expect("bound dims");
    let out = shapes[bound.output];
    assert!(
        bound
            .layers
            .iter()
            .any(|l| matches!(l.op, LayerOp::Tensor(_))),
        "the bound lowering runs tensor layers"
    );
    let engine = common::engine();
    let x = common::random_vec(&mut rng, 2 * c * (h * w) as usize, 1.0);
    let mut outs = Vec::new();
    for model in [free, bound] {
        let gpu_model = engine.load(std::sync::Arc::new(model)).unwrap();
        let runner = BatchRunner::float_input(&engine, &gpu_model, 2, h, w).unwrap();
        outs.push(runner.run_floats(&x, 2).unwrap().swap_remove(0));
    }
    // Per image [5, 13, 13]: 3 + 2 channels; height 12 + 1 pad; width 10 + 3 pads.
    assert_eq!((out.c, out.h, out.w), (5, 13, 13));
    assert_eq!(outs[0].len(), 2 * out.elements() as usize);
    assert_eq!(outs[0].len(), outs[1].len());
    let diff = outs[0]
        .iter()
        .zip(&outs[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff <= 1e-5, "free and bound differ by {diff}");
    assert!(outs[0].iter().any(|&v| v != 0.0 && v > -0.75 && v < 0.8));
}

/// Sizes a file asks for are capped before any arithmetic on them: pads of 2^31 (which used to
/// wrap the output size back to the input's), a ConstantOfShape of 2^40 elements, a Range with a
/// step of 0, a Tile to 2^36 elements, a DepthToSpace block of 2^20: each an error naming the node,
/// in both modes where the op has both, and never an allocation of that size.
#[test]
fn sizes_from_the_file_are_capped() {
    let ints = |name: &str, v: &[i64]| proto::AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: 7,
        ..Default::default()
    };
    let w = constant("w", &[3, 3, 3, 3], &[0.1; 81]);
    let mut conv = node("conv", "Conv", &["x", "w"], "y");
    conv.attribute.push(ints("pads", &[1 << 31, 0, 0, 0]));
    let free: &[Option<i64>] = &[None, Some(3), None, None];
    let fixed: &[Option<i64>] = &[Some(1), Some(3), Some(8), Some(8)];
    for dims in [free, fixed] {
        let bytes = graph_model(vec![conv.clone()], vec![w.clone()], dims);
        let err = format!("{:#}", onnx::load(&bytes, "pads").unwrap_err());
        assert!(err.contains("node conv") && err.contains("pads"), "{err}");
    }
    let mut fill = node("fill", "ConstantOfShape", &["shape"], "big");
    fill.attribute.clear();
    let add = node("add", "Add", &["x", "big"], "y");
    let bytes = graph_model(
        vec![fill, add],
        vec![ints_constant("shape", &[1 << 20, 1 << 20])],
        fixed,
    );
    let err = format!("{:#}", onnx::load(&bytes, "fill").unwrap_err());
    assert!(
        err.contains("node fill") && err.contains("elements"),
        "{err}"
    );
    let range = node("range", "Range", &["a", "b", "d"], "r");
    let bytes = graph_model(
        vec![range, node("add", "Add", &["x", "r"], "y")],
        vec![
            constant("a", &[], &[0.0]),
            constant("b", &[], &[10.0]),
            constant("d", &[], &[0.0]),
        ],
        fixed,
    );
    let err = format!("{:#}", onnx::load(&bytes, "range").unwrap_err());
    assert!(err.contains("node range") && err.contains("Range"), "{err}");
    let tile = node("tile", "Tile", &["x", "reps"], "y");
    let bytes = graph_model(
        vec![tile],
        vec![ints_constant("reps", &[1 << 10, 1 << 10, 1 << 10, 1])],
        fixed,
    );
    let err = format!("{:#}", onnx::load(&bytes, "tile").unwrap_err());
    assert!(
        err.contains("node tile") && err.contains("elements"),
        "{err}"
    );
    let mut d2s = node("d2s", "DepthToSpace", &["x"], "y");
    d2s.attribute.push(proto::AttributeProto {
        name: "blocksize".into(),
        i: 1 << 20,
        r#type: 2,
        ..Default::default()
    });
    for dims in [free, fixed] {
        let bytes = graph_model(vec![d2s.clone()], vec![], dims);
        let err = format!("{:#}", onnx::load(&bytes, "d2s").unwrap_err());
        assert!(
            err.contains("node d2s") && err.contains("blocksize"),
            "{err}"
        );
    }
}

/// A model whose values outgrow the limits at the size it is run at (a chain of 8x nearest
/// resizes) gets an error naming the layer from `Model::shapes`, not a wrapped size.
#[test]
fn values_beyond_the_limits_are_an_error_at_run_size() {
    let mut nodes = Vec::new();
    let mut from = "x".to_owned();
    for i in 0..4 {
        let out = if i == 3 {
            "y".to_owned()
        } else {
            format!("up{i}")
        };
        let mut up = node(&format!("up{i}"), "Resize", &[&from, "", "scales"], &out);
        up.attribute.push(string_attr("mode", "nearest"));
        nodes.push(up);
        from = out;
    }
    let bytes = graph_model(
        nodes,
        vec![constant("scales", &[4], &[1.0, 1.0, 8.0, 8.0])],
        &[None, Some(3), None, None],
    );
    let model = onnx::load(&bytes, "grow").unwrap();
    assert!(model.shapes(4, 4).is_ok(), "3 x (4 * 8^4)^2 elements fit");
    let err = format!("{:#}", model.shapes(64, 64).unwrap_err());
    assert!(err.contains("beyond batchwise's limits"), "{err}");
}

/// A scalar constant divided by an image (refused before the one translator) runs with a free
/// size as a broadcast constant first: `2 / (x + 3)` on lavapipe equals the CPU's within 1e-6
/// relative (one float32 division).
#[test]
fn a_constant_divided_by_an_image_runs_with_a_free_size() {
    use batchwise::engine::BatchRunner;
    let nodes = vec![
        node("shift", "Add", &["x", "three"], "s"),
        node("div", "Div", &["two", "s"], "y"),
    ];
    let bytes = graph_model(
        nodes,
        vec![constant("three", &[], &[3.0]), constant("two", &[], &[2.0])],
        &[None, Some(3), None, None],
    );
    let model = onnx::load(&bytes, "div").unwrap();
    assert!(model.static_shapes.is_none(), "free sizes");
    let engine = common::engine();
    let gpu_model = engine.load(std::sync::Arc::new(model)).unwrap();
    let (h, w) = (5u32, 4u32);
    let x = common::random_vec(&mut common::rng(9), (2 * 3 * h * w) as usize, 1.0);
    let runner = BatchRunner::float_input(&engine, &gpu_model, 2, h, w).unwrap();
    let got = runner.run_floats(&x, 2).unwrap().swap_remove(0);
    assert_eq!(got.len(), x.len());
    for (g, v) in got.iter().zip(&x) {
        let want = 2.0 / (v + 3.0);
        assert!((g - want).abs() <= 1e-6 * want.abs(), "{g} vs {want}");
    }
}

/// An attribute declared with another type than ONNX gives it (`pads` as FLOATS, `group` as
/// FLOAT) is an error naming it, where reading the wrong field would take a default silently.
#[test]
fn attributes_of_the_wrong_type_are_errors() {
    let w = constant("w", &[3, 3, 3, 3], &[0.1; 81]);
    let mut pads = node("conv", "Conv", &["x", "w"], "y");
    pads.attribute.push(proto::AttributeProto {
        name: "pads".into(),
        floats: vec![1.0; 4],
        r#type: 6,
        ..Default::default()
    });
    let mut group = node("conv", "Conv", &["x", "w"], "y");
    group.attribute.push(proto::AttributeProto {
        name: "group".into(),
        f: 3.0,
        r#type: 1,
        ..Default::default()
    });
    for (n, want) in [
        (pads, "pads is declared FLOATS"),
        (group, "group is declared FLOAT"),
    ] {
        let bytes = graph_model(vec![n], vec![w.clone()], &[None, Some(3), None, None]);
        let err = format!("{:#}", onnx::load(&bytes, "typed").unwrap_err());
        assert!(err.contains(want) && err.contains("node conv"), "{err}");
    }
}
