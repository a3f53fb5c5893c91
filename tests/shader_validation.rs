//! Every shader in `shaders/` parses and validates with naga, and the engine compiles all of them.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it did not expect"
)]

use std::collections::BTreeSet;

mod common;

#[test]
fn every_shader_parses_and_validates() {
    let dir = common::repo().join("shaders");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
        // A file of functions alone (unary.wgsl, which generated kernels include) has no entry
        // point; every kernel has `main`.
        assert!(
            module.entry_points.is_empty() || module.entry_points.iter().any(|e| e.name == "main"),
            "{} has no `main` entry point",
            path.display()
        );
        count += 1;
    }
    assert!(count >= 4, "found only {count} shaders");
}

/// Validates `source`, and where its stores branch on the params (gemm.wgsl's and conv2d.wgsl's
/// kernels, the Winograd output transforms) the same with those branches compiled in
/// (`gemm::Epilogue`), none of them left.
fn validate(name: &str, source: &str) {
    validate_source(name, source);
    if source.contains("p.residual") {
        let epilogue = batchwise::kernels::gemm::Epilogue {
            whole: true,
            residual: 1,
            activation: 3,
        };
        let fixed = epilogue.apply(source);
        for branch in ["p.first", "p.last", "p.residual", "p.activation"] {
            assert!(
                !fixed.contains(branch),
                "{name}: {branch} left in:\n{fixed}"
            );
        }
        validate_source(&format!("{name} (epilogue compiled in)"), &fixed);
    }
}

fn validate_source(name: &str, source: &str) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        // 64-bit integers: the kernels moving 8 values a load (`kernels::eight`).
        naga::valid::Capabilities::SHADER_FLOAT16 | naga::valid::Capabilities::SHADER_INT64,
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
}

/// The unrolled conv2d variants are generated from conv2d.wgsl: each shape the engine may build
/// validates too.
#[test]
fn generated_conv2d_variants_validate() {
    use batchwise::kernels::conv2d::Variant;
    for (k_h, stride_h, dil_h, rows) in [
        (3, 1, 1, 16),
        (1, 1, 1, 16),
        (5, 2, 1, 16),
        (3, 1, 2, 8),
        (7, 1, 1, 4),
        (3, 1, 17, 0),
    ] {
        let v = Variant {
            k_h,
            stride_h,
            dil_h,
            rows,
            narrow: None,
            winograd: None,
        };
        validate(&format!("{v:?}"), &v.source());
        let half = batchwise::kernels::float16_source(&v.source()).expect("conv2d is over act");
        validate(&format!("{v:?} float16"), &half);
    }
}

/// The Winograd kernels are generated (the fused ones from conv2d.wgsl's declarations, the split
/// one's products from gemm.wgsl's): each tile validates, in float32 and float16.
#[test]
fn generated_winograd_variants_validate() {
    use batchwise::kernels::gemm::{self, BLOCKING};
    use batchwise::kernels::winograd::{Tile, variant};
    use batchwise::kernels::winograd_sources::{input_source, output_source, products_source};
    for tile in Tile::FUSED {
        let v = variant(tile);
        validate(&format!("{v:?}"), &v.source());
        let half = batchwise::kernels::float16_source(&v.source()).expect("conv2d is over act");
        validate(&format!("{v:?} float16"), &half);
    }
    for tile in Tile::SPLIT {
        for (what, source) in [
            ("input", input_source(tile, false)),
            ("input upsampled", input_source(tile, true)),
            ("output", output_source(tile)),
            ("products", products_source(BLOCKING, 1)),
        ] {
            validate(&format!("{tile:?} {what}"), &source);
            let half = batchwise::kernels::float16_source(&source).expect("over act");
            validate(&format!("{tile:?} {what} float16"), &half);
        }
    }
    // 8 q a load: float32 only (a CPU adapter's), each blocking the products take.
    for blocking in [BLOCKING, gemm::blocking_for(16), gemm::blocking_for(24)] {
        validate(
            &format!("products {blocking:?} 8 a load"),
            &products_source(blocking, 8),
        );
    }
}

/// The narrow conv2d variants (at most 8 output channels) validate, in float32 and float16: the
/// engine's choices and the blockings the benchmark measures.
#[test]
fn generated_narrow_conv2d_variants_validate() {
    use batchwise::kernels::conv2d_narrow::{variant, variant_with};
    use batchwise::model::{Activation, Conv2dSpec};
    let spec = |out_c, k_h, k_w, stride, dilation| Conv2dSpec {
        in_c: 16,
        out_c,
        k_h,
        k_w,
        stride,
        pads: [1; 4],
        dilation,
        groups: 1,
        activation: Activation::None,
    };
    let specs = [
        spec(3, 3, 3, [1, 1], [1, 1]),
        spec(8, 3, 3, [1, 1], [1, 1]),
        spec(1, 1, 1, [1, 1], [1, 1]),
        spec(5, 5, 5, [2, 2], [1, 1]),
        spec(4, 3, 3, [1, 1], [2, 3]),
        spec(2, 7, 7, [1, 1], [1, 1]),
    ];
    for s in &specs {
        let chosen = variant(s).expect("fits the narrow kernel");
        let tried = [(8, 4), (8, 2), (4, 8)].map(|(r, c)| variant_with(s, r, c));
        for v in std::iter::once(chosen).chain(tried.into_iter().flatten()) {
            validate(&format!("{v:?}"), &v.source());
            let half = batchwise::kernels::float16_source(&v.source()).expect("over act");
            validate(&format!("{v:?} float16"), &half);
        }
    }
}

/// The generated depthwise kernels validate, in float32 and float16, with and without their
/// own input as the residual, gated (a SimpleGate fused in); and on rows off the 4-value grid
/// (14 and 10 wide).
#[test]
fn generated_depthwise_variants_validate() {
    use batchwise::kernels::depthwise_conv2d::{self, Variant};
    use batchwise::model::Residual;
    for (k, width, pads) in [(3, 14, [1, 1]), (5, 14, [2, 2]), (3, 10, [0, 1])] {
        let spec = batchwise::model::Conv2dSpec {
            in_c: 8,
            out_c: 8,
            k_h: k,
            k_w: k,
            stride: [1, 1],
            pads: [pads[0], pads[1], pads[0], pads[1]],
            dilation: [1, 1],
            groups: 8,
            activation: batchwise::model::Activation::None,
        };
        let v = depthwise_conv2d::variant(&spec)
            .expect("generated")
            .off_grid_rows([width, width], width, pads);
        assert_eq!(v.rows_off_grid, Some(pads));
        for residual in [None, Some(Residual::AfterActivation)] {
            let v = Variant { residual, ..v };
            validate(&format!("{v:?}"), &v.source());
            let half = batchwise::kernels::float16_source(&v.source()).expect("over act");
            validate(&format!("{v:?} float16"), &half);
        }
    }
    // Whole planes of small maps, a few channels an invocation.
    for (k, stride, side, residual) in [
        (3, 1, 7, Some(Residual::AfterActivation)),
        (5, 1, 7, None),
        (3, 2, 7, None),
    ] {
        let spec = batchwise::model::Conv2dSpec {
            in_c: 8,
            out_c: 8,
            k_h: k,
            k_w: k,
            stride: [stride; 2],
            pads: [k / 2; 4],
            dilation: [1, 1],
            groups: 8,
            activation: batchwise::model::Activation::HardSwish,
        };
        let out = spec.output_hw(side, side).expect("output");
        let v = depthwise_conv2d::variant(&spec)
            .expect("generated")
            .whole_planes(8, [side; 2], [out.0, out.1], [k / 2; 2]);
        assert!(v.planes.is_some(), "{v:?}");
        let v = Variant { residual, ..v };
        validate(&format!("{v:?}"), &v.source());
        let half = batchwise::kernels::float16_source(&v.source()).expect("over act");
        validate(&format!("{v:?} float16"), &half);
    }
    for (k, stride, dilation, rows, cols, wide, store4, eight) in [
        ([3, 3], [1, 1], [1, 1], 4, 4, None, false, false),
        ([3, 3], [2, 2], [1, 1], 4, 8, None, false, false),
        ([5, 5], [1, 1], [2, 1], 8, 4, None, false, false),
        ([1, 7], [1, 2], [1, 1], 2, 8, None, false, false),
        ([3, 3], [1, 1], [1, 1], 2, 8, Some(1), true, false),
        ([3, 3], [2, 2], [1, 1], 4, 4, Some(0), true, false),
        ([5, 5], [1, 1], [1, 3], 4, 8, Some(6), true, false),
        ([3, 3], [2, 2], [1, 1], 2, 8, Some(1), false, false),
        // 8 values a load and store (vec4<u64>, float32 only).
        ([3, 3], [1, 1], [1, 1], 2, 8, Some(1), true, true),
        ([3, 3], [2, 2], [1, 1], 2, 8, Some(1), true, true),
        ([5, 5], [1, 1], [1, 1], 4, 8, Some(2), true, true),
        ([5, 5], [2, 2], [1, 1], 4, 8, Some(2), false, true),
    ] {
        let v = Variant {
            k,
            stride,
            dilation,
            rows,
            cols,
            wide,
            store4,
            load8: eight,
            store8: eight && store4,
            rows_off_grid: None,
            planes: None,
            activation: Some(4),
            uniform_taps: !eight,
            // Stride-1 kernels with their own input as the residual (before the activation
            // where the block has 4 rows, after where 2).
            residual: (stride == [1, 1] && dilation == [1, 1] && k[0] == k[1]).then_some(
                match rows {
                    4 => Residual::BeforeActivation,
                    _ => Residual::AfterActivation,
                },
            ),
            gate: false,
        };
        // Each also gated (a SimpleGate fused in: two halves, no residual).
        let gated = Variant {
            gate: true,
            residual: None,
            ..v
        };
        for v in [v, gated] {
            validate(&format!("{v:?}"), &v.source());
            if !eight {
                let half = batchwise::kernels::float16_source(&v.source()).expect("over act");
                validate(&format!("{v:?} float16"), &half);
            }
        }
    }
}

/// Generated fused elementwise kernels validate, in float32 and float16, for every unary op and
/// every binary op, with one to six inputs.
#[test]
fn generated_elementwise_kernels_validate() {
    use batchwise::kernels::elementwise;
    use batchwise::model::{BinaryOp, ElementwiseProgram, ElementwiseStep, Operand, UnaryOp};
    let binaries = BinaryOp::ALL;
    for inputs in 1..=6u32 {
        let mut steps: Vec<ElementwiseStep> = UnaryOp::all()
            .into_iter()
            .enumerate()
            .map(|(k, op)| ElementwiseStep::Unary(op, Operand::Input(k as u32 % inputs)))
            .collect();
        for (k, op) in binaries.into_iter().enumerate() {
            steps.push(ElementwiseStep::Binary(
                op,
                Operand::Step(k as u32),
                Operand::Step(k as u32 + 1),
            ));
        }
        // Flat (every input of the output's shape), and by position with the last input padded
        // with 2 zero channels (a fused channel Pad).
        let flat = ElementwiseProgram::new(steps.clone());
        let mut padded_channels = vec![0; inputs as usize];
        padded_channels[inputs as usize - 1] = 2;
        let padded = ElementwiseProgram {
            steps,
            padded_channels,
            channel_slices: Vec::new(),
        };
        // Planes of 40 pixels (8 values an invocation where asked), of 20 (4) and of 15 (one).
        for h in [8, 4, 3] {
            let shape = batchwise::model::ItemShape { c: 3, h, w: 5 };
            let shapes = vec![shape; inputs as usize];
            let out = batchwise::model::ItemShape { c: 5, ..shape };
            for (kind, program, out) in [("flat", &flat, shape), ("padded", &padded, out)] {
                assert_eq!(elementwise::is_flat(program, &shapes, out), kind == "flat");
                assert_eq!(elementwise::is_vec4(program, &shapes, out), h != 3);
                let eight = elementwise::source(program, &shapes, out, true);
                assert_eq!(eight.contains("vec4<u64>"), h == 8);
                validate(
                    &format!("elementwise {kind} over {inputs}, h {h}, 8"),
                    &eight,
                );
                let source = elementwise::source(program, &shapes, out, false);
                validate(&format!("elementwise {kind} over {inputs}, h {h}"), &source);
                let half = batchwise::kernels::float16_source(&source).expect("written over act");
                validate(
                    &format!("elementwise {kind} over {inputs}, h {h}, float16"),
                    &half,
                );
            }
        }
    }
}

/// The unrolled gemm blockings are generated from gemm.wgsl: the engine's and the ones the kernel
/// benchmark measures validate, in float32 and float16, reading one q a load and 4 (wide).
#[test]
fn generated_gemm_blockings_validate() {
    use batchwise::kernels::gemm::{BLOCKING, Blocking};
    for b in [
        BLOCKING,
        Blocking {
            oc_block: 16,
            pix: 16,
            inputs: 0,
        },
        Blocking {
            oc_block: 64,
            pix: 4,
            inputs: 0,
        },
        Blocking {
            oc_block: 4,
            pix: 16,
            inputs: 0,
        },
        Blocking {
            oc_block: 8,
            pix: 16,
            inputs: 0,
        },
        // The smallest blocks `BATCHWISE_GEMM_BLOCKING` measures on a GPU.
        Blocking {
            oc_block: 8,
            pix: 4,
            inputs: 0,
        },
        Blocking {
            oc_block: 4,
            pix: 4,
            inputs: 0,
        },
        // The input channels compiled in, the loop unrolled.
        Blocking {
            oc_block: 24,
            pix: 8,
            inputs: 5,
        },
    ] {
        validate(&format!("{b:?}"), &b.source());
        let storage = b.source_with(batchwise::kernels::gemm::Weights::Storage);
        validate(&format!("{b:?} storage"), &storage);
        let grouped = b.source_grouped(batchwise::kernels::gemm::Weights::Storage, 8);
        validate(&format!("{b:?} storage, workgroups of 8"), &grouped);
        let wide = b.source_wide(batchwise::kernels::gemm::Weights::Storage, 64);
        validate(&format!("{b:?} storage, wide"), &wide);
        if b.pix % 8 == 0 {
            let eight = b.source_wide8(batchwise::kernels::gemm::Weights::Uniform, 64);
            validate(&format!("{b:?} 8 q a load"), &eight);
        }
        let half = batchwise::kernels::float16_source(&wide).expect("over act");
        validate(&format!("{b:?} storage, wide, float16"), &half);
        let half = batchwise::kernels::float16_source(&b.source()).expect("gemm is over act");
        validate(&format!("{b:?} float16"), &half);
    }
}

/// gemm with an elementwise program in its loads (`gemm_program`) validates, in float32 and
/// float16: one q a load, 4 and 8; items folded (an invocation's q in one item or two) or not;
/// the loop and the unrolled input channels; inputs laid out as x and one value a channel or an
/// item; every binary op and a unary op on the scalar and the vector path.
#[test]
fn gemm_program_kernels_validate() {
    use ElementwiseStep::{Binary, Unary};
    use Operand::{Input, Step};
    use batchwise::kernels::gemm::{BLOCKING, Blocking, Weights, Width};
    use batchwise::kernels::gemm_program::{Prologue, Source, source};
    use batchwise::model::{BinaryOp, ElementwiseProgram, ElementwiseStep, Operand, UnaryOp};
    let unrolled = Blocking {
        oc_block: 16,
        pix: 8,
        inputs: 3,
    };
    for op in BinaryOp::ALL {
        let program = ElementwiseProgram::new(vec![
            Unary(UnaryOp::Sigmoid, Input(0)),
            Binary(op, Input(1), Step(0)),
            Unary(UnaryOp::Tanh, Step(1)),
            Binary(BinaryOp::Add, Step(2), Input(2)),
        ]);
        let sources = vec![
            Source::Point { per_channel: true },
            Source::Whole,
            Source::Point { per_channel: false },
        ];
        let norms = [
            (false, false, None),
            (true, false, Some(1e-5)),
            (true, true, None),
        ];
        for (folded, straddles, normalize) in norms {
            let prologue = Prologue {
                program: program.clone(),
                sources: sources.clone(),
                starts: vec![0, 8, 0],
                channels: 8,
                normalize,
                folded,
                straddles,
            };
            for (b, width) in [
                (BLOCKING, Width::One),
                (BLOCKING, Width::Four),
                (BLOCKING, Width::Eight),
                (unrolled, Width::Eight),
            ] {
                let what = format!(
                    "{op:?} folded {folded} straddles {straddles} norm {normalize:?} {b:?} {width:?}"
                );
                let wgsl = source(b, Weights::Storage, 64, width, &prologue);
                validate(&what, &wgsl);
                if width != Width::Eight {
                    let half = batchwise::kernels::float16_source(&wgsl).expect("over act");
                    validate(&format!("{what} float16"), &half);
                }
            }
        }
    }
    // A norm alone: a program of no steps.
    let prologue = Prologue {
        program: ElementwiseProgram::new(Vec::new()),
        sources: vec![Source::Whole],
        starts: vec![0],
        channels: 16,
        normalize: Some(0.0),
        folded: true,
        straddles: true,
    };
    for width in [Width::One, Width::Four, Width::Eight] {
        let wgsl = source(BLOCKING, Weights::Uniform, 8, width, &prologue);
        validate(&format!("a norm {width:?}"), &wgsl);
    }
}

/// resize2x.wgsl writing 8 values a store (`vec4<u64>`) validates too.
#[test]
fn resize2x_eight_validates() {
    let eight = batchwise::kernels::resize2x::source(true);
    assert!(eight.contains("pack8"));
    validate("resize2x, 8 a store", &eight);
}

/// pack.wgsl 4 pixels an invocation (float32 and float16) and 8 (`vec4<u64>`) validates too.
#[test]
fn pack_wide_validates() {
    use batchwise::kernels::pack;
    let four = pack::wide_source(4);
    validate("pack, 4 a load", &four);
    let half = batchwise::kernels::float16_source(&four).expect("over act");
    validate("pack, 4 a load, float16", &half);
    let eight = pack::wide_source(8);
    assert!(eight.contains("pack8"));
    validate("pack, 8 a load", &eight);
}

/// DepthToSpace's kernel 4 columns an invocation (float32, float16, 8 a store) validates for
/// every block it runs.
#[test]
fn depth_to_space_wide_validates() {
    use batchwise::kernels::depth_to_space::wide_source;
    for bh in 1..=4 {
        for bw in [2, 4] {
            let four = wide_source([bh, bw], false);
            validate(&format!("depth_to_space {bh}x{bw}, 4 a load"), &four);
            let half = batchwise::kernels::float16_source(&four).expect("over act");
            validate(&format!("depth_to_space {bh}x{bw}, float16"), &half);
            let eight = wide_source([bh, bw], true);
            validate(&format!("depth_to_space {bh}x{bw}, 8 a store"), &eight);
        }
    }
}

/// GlobalAveragePool's loop 4 and 8 values a load validates (4: float16 too).
#[test]
fn global_avg_pool_wide_validates() {
    use batchwise::kernels::global_avg_pool::wide_source;
    validate("global_avg_pool, 4 a load", &wide_source(4));
    let half = batchwise::kernels::float16_source(&wide_source(4)).expect("over act");
    validate("global_avg_pool, 4 a load, float16", &half);
    validate("global_avg_pool, 8 a load", &wide_source(8));
}

/// The float16 variants (the shaders written over the `act` element type) validate too.
#[test]
fn float16_variants_validate() {
    let mut count = 0;
    for (name, source) in batchwise::kernels::SHADERS {
        if let Some(half) = batchwise::kernels::float16_source(source) {
            validate(&format!("{name} float16"), &half);
            count += 1;
        }
    }
    assert!(count >= 8, "only {count} shaders have float16 variants");
}

#[test]
fn engine_embeds_every_shader_file() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(common::repo().join("shaders"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    let embedded: BTreeSet<String> = batchwise::kernels::SHADERS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(on_disk, embedded);
}

/// The rows kernels of an image's first convolution (`kernels/conv2d_rows.rs`) validate: 3x3 and
/// 5x5 stride 2, 7x7 stride 1, each with vec4 loads and with 8 values a load and store.
#[test]
fn generated_rows_variants_validate() {
    use batchwise::kernels::conv2d::Variant;
    use batchwise::kernels::conv2d_rows::rows_for;
    use batchwise::model::{Activation, Conv2dSpec};
    for (in_c, out_c, k, stride, pad, in_w, out_w) in [
        (3, 16, 3, 2, 1, 48, 24),
        (3, 24, 5, 2, 2, 32, 16),
        (4, 8, 7, 1, 3, 16, 16),
        (1, 5, 3, 2, 0, 36, 16),
    ] {
        let spec = Conv2dSpec {
            in_c,
            out_c,
            k_h: k,
            k_w: k,
            stride: [stride; 2],
            pads: [pad; 4],
            dilation: [1, 1],
            groups: 1,
            activation: Activation::None,
        };
        for eight in [false, true] {
            let v = rows_for(
                Variant::for_spec(&spec, 8),
                &spec,
                [in_w, out_w],
                [1, 1],
                [true, eight],
            )
            .expect("runs on rows");
            validate(&format!("{v:?}"), &v.source());
            if !eight {
                let half = batchwise::kernels::float16_source(&v.source()).expect("over act");
                validate(&format!("{v:?} float16"), &half);
            }
        }
    }
}
