//! WGSL compute kernels: one file per op in `shaders/`, its host side, and its CPU reference here.
//!
//! Each host module holds the `#[repr(C)]` mirror of its shader's `Params`, the weight packing the
//! shader expects, a CPU reference used by the tests, and a `prepare` that binds buffers into a
//! [`Step`] ready to record.

pub mod across_channels;
pub mod binary;
pub mod conv2d;
pub mod conv2d_narrow;
pub mod conv2d_operands;
pub mod conv2d_rows;
pub mod conv2d_variant;
pub mod conv_transpose2d;
pub mod copy_block;
pub mod copy_channels;
pub mod depth_to_space;
pub mod depthwise_conv2d;
mod depthwise_planes;
mod depthwise_source;
pub mod edge_clamp;
pub mod eight;
pub mod elementwise;
pub mod gemm;
mod gemm_blocking;
mod gemm_epilogue;
mod gemm_layout;
pub mod gemm_program;
mod gemm_shifted;
mod gemm_source;
mod gemm_wide;
pub mod gemv;
pub mod global_avg_pool;
pub mod linear;
pub mod matmul;
pub mod nchw_to_nhwc;
pub mod nd_binary;
pub mod nd_copy;
pub mod normalize;
pub mod pack;
pub mod pad;
pub mod pool2d;
pub mod reduce;
pub mod resize2x;
pub mod resize_filter;
pub mod resize_nearest;
pub(crate) mod row_loads;
mod shaders;
pub mod softmax;
pub mod space_to_depth;
pub mod unary;
pub mod unpack;
pub mod winograd;
pub mod winograd_gemm;
pub mod winograd_sources;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::gpu::{Gpu, TrackedBuffer};
use crate::model::{Activation, MAX_RANK};

pub use shaders::SHADERS;

/// The element type of activations on the GPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// float16 storage and arithmetic (needs the adapter's SHADER_F16); weights stay float32
    /// and are converted where they are used.
    F16,
}

impl Precision {
    /// Bytes per activation element.
    pub fn bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }
}

/// The float16 variant of a shader written over the `act` element type, or None for a shader
/// that has none.
pub fn float16_source(source: &str) -> Option<String> {
    const ALIAS: &str = "alias act = f32;";
    source
        .contains(ALIAS)
        .then(|| format!("enable f16;\n{}", source.replace(ALIAS, "alias act = f16;")))
}

pub(crate) fn shader(name: &str) -> &'static str {
    SHADERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, src)| *src)
        .expect("every kernel's shader is listed in SHADERS")
}

/// A gemm pipeline's blocking, weight binding, workgroup size, whether it is wide, and the
/// epilogue compiled in (None: read from its params).
type GemmKey = (
    gemm::Blocking,
    gemm::Weights,
    u32,
    gemm::Width,
    Option<gemm::Epilogue>,
);

/// Bind group and pipeline layouts by weight binding and extra bindings.
type GemmProgramLayouts =
    Mutex<HashMap<(gemm::Weights, u32), (wgpu::BindGroupLayout, wgpu::PipelineLayout)>>;

/// A conv2d pipeline's variant, fused upsample factors, in-place layout, workgroup rows and
/// epilogue compiled in (None: read from its params).
type Conv2dKey = (conv2d::Variant, [u32; 2], bool, u32, Option<gemm::Epilogue>);

/// The compiled pipelines, built once per device and reused for every batch. Pipelines that take
/// pipeline constants are built on first use, once per set of constants.
pub struct Kernels {
    device: wgpu::Device,
    pub conv_transpose2d: wgpu::ComputePipeline,
    pub pack: wgpu::ComputePipeline,
    pub unpack: wgpu::ComputePipeline,
    pub binary: wgpu::ComputePipeline,
    pub depth_to_space: wgpu::ComputePipeline,
    pub resize_nearest: wgpu::ComputePipeline,
    pub copy_channels: wgpu::ComputePipeline,
    pub global_avg_pool: wgpu::ComputePipeline,
    pub global_avg_pool_plane: wgpu::ComputePipeline,
    pub depthwise_conv2d: wgpu::ComputePipeline,
    pub resize_filter: wgpu::ComputePipeline,
    pub resize_linear: wgpu::ComputePipeline,
    pub pad: wgpu::ComputePipeline,
    pub edge_clamp: wgpu::ComputePipeline,
    pub pool2d: wgpu::ComputePipeline,
    pub pool2x2: wgpu::ComputePipeline,
    pub nchw_to_nhwc: wgpu::ComputePipeline,
    pub copy_block: wgpu::ComputePipeline,
    pub nd_copy: wgpu::ComputePipeline,
    pub nd_binary: wgpu::ComputePipeline,
    pub reduce: wgpu::ComputePipeline,
    pub softmax: wgpu::ComputePipeline,
    pub normalize: wgpu::ComputePipeline,
    pub gemv: wgpu::ComputePipeline,
    pub gemv_items: wgpu::ComputePipeline,
    /// conv2d.wgsl's bind group layouts and pipeline layouts: `src` read-only, and read-write
    /// (`conv2d::bind_group_layout`'s `in_place`).
    conv2d_layouts: [wgpu::BindGroupLayout; 2],
    conv2d_pipeline_layouts: [wgpu::PipelineLayout; 2],
    /// conv2d pipelines by variant.
    /// By variant, fused upsample factors (`[1, 1]`: none) and in-place layout.
    conv2d: Mutex<HashMap<Conv2dKey, wgpu::ComputePipeline>>,
    /// Fused elementwise pipelines by their generated source.
    elementwise: Mutex<HashMap<String, wgpu::ComputePipeline>>,
    /// gemm.wgsl with uniform weight windows (the split Winograd's products).
    pub(crate) gemm_layout: wgpu::BindGroupLayout,
    /// gemm.wgsl with the weights as storage (1x1 convolutions).
    pub(crate) gemm_storage_layout: wgpu::BindGroupLayout,
    gemm_pipeline_layouts: [wgpu::PipelineLayout; 2],
    /// gemm pipelines by register blocking and weight binding.
    gemm: Mutex<HashMap<GemmKey, wgpu::ComputePipeline>>,
    /// gemm.wgsl's bind group and pipeline layouts with storage bindings past its own (the
    /// inputs of a program in its loads, `gemm_program`), by weight binding and their count.
    gemm_program_layouts: GemmProgramLayouts,
    /// Output rows per invocation of the unrolled conv2d: the default, the environment's, or what
    /// autotuning measured on this adapter.
    conv_rows: std::sync::atomic::AtomicU32,
    /// Invocations along y in a conv2d workgroup (`WG_Y`): [`conv2d::group_rows_for`] the adapter.
    conv_group_rows: std::sync::atomic::AtomicU32,
    /// The kernel of each measured 3x3 shape (Winograd or direct): the default, the
    /// environment's, or what autotuning measured on this adapter.
    winograd: Mutex<winograd::Choices>,
    /// Generated kernels that did not compile (a fault of ours: the WGSL a kernel generator
    /// wrote for some shape), with the compiler's error: a runner holding one fails naming it
    /// ([`Kernels::compile_error`]) instead of running what the GPU rejects.
    compile_errors: Mutex<HashMap<wgpu::ComputePipeline, String>>,
    pub precision: Precision,
    /// Memory-bound kernels move 8 float32 values a load or store (`vec4<u64>`, [`eight_a_load`]).
    pub eight_a_load: bool,
    /// A storage load at a per-lane address is a loop over the lanes ([`storage_loads_loop`]).
    pub storage_loads_loop: bool,
}

/// Whether memory-bound kernels load and store 8 float32 values at a time as `vec4<u64>`: on a
/// CPU adapter with 64-bit integers, in float32. llvmpipe (Mesa's lavapipe) runs a load or store
/// whose address differs per lane as a loop over the lanes, one pass per lane and component; a
/// `vec4<u64>` carries 8 values in the 4 components a `vec4<f32>` gives 4 (BENCHMARKS.md,
/// "8 values a load"). A GPU loads a vector in one instruction and keeps `vec4`.
/// `BATCHWISE_EIGHT=off` keeps `vec4` (to measure).
pub fn eight_a_load(gpu: &Gpu, precision: Precision) -> bool {
    let off = std::env::var("BATCHWISE_EIGHT").is_ok_and(|v| v == "off");
    !off && precision == Precision::F32
        && gpu.adapter.device_type == "Cpu"
        && gpu.device.features().contains(wgpu::Features::SHADER_INT64)
}

/// Whether `driver` (the adapter's driver and its info) is Mesa's llvmpipe before 23: there a
/// storage load or store whose address differs per lane is a loop over the lanes with a branch a
/// value, and a uniform load at such an address straight-line code. The kernels that trade more
/// loads or address arithmetic for fewer passes of that loop (gemm over 7x7 maps,
/// `gemm::Width::Shifted`; depthwise taps in a uniform buffer) take it there only: on Mesa
/// 25.0's lavapipe the shifted gemm made classify 1.2x slower (BENCHMARKS.md, "Fused channel
/// Pads, wide data movement, 7x7 maps and CPU resizing"). An unknown CPU driver counts as not.
pub fn storage_loads_loop(device_type: &str, driver: &str) -> bool {
    let major = driver
        .split("Mesa ")
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    device_type == "Cpu" && major.is_some_and(|m| m < 23)
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Self {
        Self::with_precision(gpu, Precision::F32)
    }

    /// The pipelines for activations of `precision`. For float16, the shaders written over `act`
    /// are compiled as their float16 variants; the others stay float32 and a float16 runner
    /// refuses the ops they run (see [`Precision`] and `engine::float16_supported`).
    pub fn with_precision(gpu: &Gpu, precision: Precision) -> Self {
        let compile_at = |label: &str, name: &str, entry: &str| {
            let src = shader(name);
            match (precision, float16_source(src)) {
                (Precision::F16, Some(half)) => gpu.compute_pipeline_at(label, &half, entry),
                _ => gpu.compute_pipeline_at(label, src, entry),
            }
        };
        let compile = |label: &str, name: &str| compile_at(label, name, "main");
        let device = &gpu.device;
        let conv2d_layouts =
            [false, true].map(|in_place| conv2d::bind_group_layout(device, in_place));
        let pipeline_layout = |label, layout| {
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(layout)],
                immediate_size: 0,
            })
        };
        let conv2d_pipeline_layouts = [
            pipeline_layout("conv2d", &conv2d_layouts[0]),
            pipeline_layout("conv2d in place", &conv2d_layouts[1]),
        ];
        let gemm_layout = gemm::bind_group_layout(device, gemm::Weights::Uniform, 0);
        let gemm_storage_layout = gemm::bind_group_layout(device, gemm::Weights::Storage, 0);
        let gemm_pipeline_layouts = [
            pipeline_layout("gemm", &gemm_layout),
            pipeline_layout("gemm storage", &gemm_storage_layout),
        ];
        Self {
            device: device.clone(),
            conv_transpose2d: compile("conv_transpose2d", "conv_transpose2d.wgsl"),
            pack: compile("pack", "pack.wgsl"),
            unpack: compile("unpack", "unpack.wgsl"),
            binary: compile("binary", "binary.wgsl"),
            depth_to_space: compile("depth_to_space", "depth_to_space.wgsl"),
            resize_nearest: compile("resize_nearest", "resize_nearest.wgsl"),
            copy_channels: compile("copy_channels", "copy_channels.wgsl"),
            global_avg_pool: compile("global_avg_pool", "global_avg_pool.wgsl"),
            global_avg_pool_plane: compile_at(
                "global_avg_pool_plane",
                "global_avg_pool.wgsl",
                "plane",
            ),
            depthwise_conv2d: compile("depthwise_conv2d", "depthwise_conv2d.wgsl"),
            resize_filter: compile("resize_filter", "resize_filter.wgsl"),
            resize_linear: compile_at("resize_linear", "resize_filter.wgsl", "linear"),
            pad: compile("pad", "pad.wgsl"),
            edge_clamp: compile("edge_clamp", "edge_clamp.wgsl"),
            pool2d: compile("pool2d", "pool2d.wgsl"),
            pool2x2: compile("pool2x2", "pool2x2.wgsl"),
            nchw_to_nhwc: compile("nchw_to_nhwc", "nchw_to_nhwc.wgsl"),
            copy_block: compile("copy_block", "copy_block.wgsl"),
            nd_copy: compile("nd_copy", "nd_copy.wgsl"),
            nd_binary: compile("nd_binary", "nd_binary.wgsl"),
            reduce: compile("reduce", "reduce.wgsl"),
            softmax: compile("softmax", "softmax.wgsl"),
            normalize: compile("normalize", "normalize.wgsl"),
            gemv: compile("gemv", "gemv.wgsl"),
            gemv_items: compile_at("gemv_items", "gemv.wgsl", "items"),
            conv2d_layouts,
            conv2d_pipeline_layouts,
            conv2d: Mutex::new(HashMap::new()),
            elementwise: Mutex::new(HashMap::new()),
            gemm_layout,
            gemm_storage_layout,
            gemm_pipeline_layouts,
            gemm: Mutex::new(HashMap::new()),
            compile_errors: Mutex::new(HashMap::new()),
            gemm_program_layouts: Mutex::new(HashMap::new()),
            conv_rows: conv2d::rows_from_env()
                .unwrap_or_else(|| conv2d::default_unrolled_rows(&gpu.adapter.device_type))
                .into(),
            conv_group_rows: conv2d::group_rows_for(gpu).into(),
            winograd: Mutex::new(winograd::Choices::defaults_for(&gpu.adapter.device_type)),
            precision,
            eight_a_load: eight_a_load(gpu, precision),
            storage_loads_loop: storage_loads_loop(&gpu.adapter.device_type, &gpu.adapter.driver),
        }
    }

    pub fn conv_rows(&self) -> u32 {
        self.conv_rows.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the rows per invocation of convolutions prepared from now on.
    pub fn set_conv_rows(&self, rows: u32) {
        self.conv_rows
            .store(rows.clamp(1, 32), std::sync::atomic::Ordering::Relaxed);
    }

    /// Invocations along y in a conv2d workgroup.
    pub fn conv_group_rows(&self) -> u32 {
        self.conv_group_rows
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the invocations along y of conv2d workgroups prepared from now on (1, 2 or 4).
    pub fn set_conv_group_rows(&self, rows: u32) {
        self.conv_group_rows
            .store(rows.clamp(1, 4), std::sync::atomic::Ordering::Relaxed);
    }

    /// The Winograd tile a convolution runs on, or None for the direct kernels.
    pub fn winograd_for(&self, spec: &crate::model::Conv2dSpec) -> Option<winograd::Tile> {
        self.winograd
            .lock()
            .expect("winograd choices lock")
            .choose(spec)
    }

    /// The Winograd choices of convolutions uploaded from now on.
    pub fn winograd_choices(&self) -> winograd::Choices {
        self.winograd.lock().expect("winograd choices lock").clone()
    }

    /// Sets the Winograd choices of convolutions uploaded from now on (the environment's
    /// `BATCHWISE_WINOGRAD` still wins).
    pub fn set_winograd_choices(&self, choices: winograd::Choices) {
        *self.winograd.lock().expect("winograd choices lock") = choices;
    }

    /// The conv2d pipeline for a variant (kernel height, vertical stride, dilation, rows).
    pub fn conv2d(&self, variant: conv2d::Variant) -> wgpu::ComputePipeline {
        self.conv2d_with(variant, [1, 1], false, None)
    }

    /// conv2d.wgsl's bind group layout; `in_place`: `src` and `skip` read-write (one buffer bound
    /// as input and output).
    pub(crate) fn conv2d_layout(&self, in_place: bool) -> &wgpu::BindGroupLayout {
        &self.conv2d_layouts[usize::from(in_place)]
    }

    /// The conv2d pipeline for a variant reading its input upsampled by `factor` (nearest: a
    /// fused Resize; `[1, 1]`: none), for `conv2d_layout(in_place)`, with `epilogue` compiled in.
    pub fn conv2d_with(
        &self,
        variant: conv2d::Variant,
        factor: [u32; 2],
        in_place: bool,
        epilogue: Option<gemm::Epilogue>,
    ) -> wgpu::ComputePipeline {
        let group_rows = self.conv_group_rows();
        cached(
            &self.conv2d,
            (variant, factor, in_place, group_rows, epilogue),
            || {
                let mut source = std::env::var("BATCHWISE_EXPERIMENT_CONV2D")
                    .ok()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_else(|| variant.source());
                if in_place {
                    source = source.replace("var<storage, read> ", "var<storage, read_write> ");
                }
                let source = gemm_epilogue::specialize(source, epilogue);
                let constants = [
                    ("K_H", variant.k_h as f64),
                    ("STRIDE_H", variant.stride_h as f64),
                    ("DIL_H", variant.dil_h as f64),
                    ("UP_H", factor[0] as f64),
                    ("UP_W", factor[1] as f64),
                    ("WG_Y", group_rows as f64),
                ];
                self.pipeline(
                    "conv2d",
                    Some(&self.conv2d_pipeline_layouts[usize::from(in_place)]),
                    source,
                    &constants,
                )
            },
        )
    }

    /// The gemm pipeline for a register blocking, with uniform weight windows.
    pub fn gemm(&self, blocking: gemm::Blocking) -> wgpu::ComputePipeline {
        self.gemm_with(blocking, gemm::Weights::Uniform)
    }

    /// The gemm pipeline for a register blocking and weight binding.
    pub fn gemm_with(
        &self,
        blocking: gemm::Blocking,
        weights: gemm::Weights,
    ) -> wgpu::ComputePipeline {
        let key = (blocking, weights, gemm::WORKGROUP_X, gemm::Width::One, None);
        self.gemm_keyed(key)
    }

    /// The gemm pipeline of `key`: blocking, weight binding, `group` invocations a workgroup,
    /// width and epilogue.
    pub(crate) fn gemm_keyed(&self, key: GemmKey) -> wgpu::ComputePipeline {
        let (blocking, weights, group, width, epilogue) = key;
        let layout = self.gemm_pipeline_layout(weights);
        cached(&self.gemm, key, || {
            let source = match width {
                gemm::Width::One => blocking.source_grouped(weights, group),
                gemm::Width::Four => blocking.source_wide(weights, group),
                gemm::Width::Eight => blocking.source_wide8(weights, group),
                gemm::Width::Shifted(shift) => blocking.source_shifted(weights, group, shift),
            };
            let source = gemm_epilogue::specialize(source, epilogue);
            self.pipeline("gemm", Some(layout), source, &[])
        })
    }

    /// Compiles `source` (float32 WGSL, made float16 for a float16 runner) with `constants`; a
    /// layout of None is the shader's own.
    fn pipeline(
        &self,
        label: &str,
        layout: Option<&wgpu::PipelineLayout>,
        source: String,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        let start = std::time::Instant::now();
        let source = match self.precision {
            Precision::F16 => float16_source(&source).unwrap_or(source),
            Precision::F32 => source,
        };
        let bytes = source.len();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout,
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            let message = format!("the {label} kernel did not compile: {e}");
            log::error!("{message}");
            self.compile_errors
                .lock()
                .expect("compile errors lock")
                .insert(pipeline.clone(), message);
        }
        // A generated kernel's compile time is part of a job's start (`RUST_LOG=debug` shows it;
        // BENCHMARKS.md, "Kernel compile time on lavapipe").
        log::debug!(
            "compiled {label} ({bytes} bytes of WGSL) in {:.0} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
        pipeline
    }
}

impl Kernels {
    /// Why a kernel of `step` (or of the steps it chains) did not compile, where one did not.
    pub fn compile_error(&self, step: &Step) -> Option<String> {
        step.parts()
            .iter()
            .find_map(|part| self.pipeline_error(&part.pipeline))
    }

    /// Why `pipeline` did not compile, where it did not.
    pub fn pipeline_error(&self, pipeline: &wgpu::ComputePipeline) -> Option<String> {
        let errors = self.compile_errors.lock().expect("compile errors lock");
        errors.get(pipeline).cloned()
    }

    /// The pipeline of a generated elementwise kernel ([`elementwise::source`]), compiled once.
    pub fn elementwise(&self, source: &str) -> wgpu::ComputePipeline {
        self.generated("elementwise", source)
    }

    /// gemm.wgsl's pipeline layout with its weights bound as `weights` says.
    fn gemm_pipeline_layout(&self, weights: gemm::Weights) -> &wgpu::PipelineLayout {
        &self.gemm_pipeline_layouts[usize::from(weights == gemm::Weights::Storage)]
    }

    /// A generated kernel over gemm.wgsl's bindings (its params and weights at dynamic offsets),
    /// cached by source.
    pub fn generated_gemm(&self, label: &str, source: &str) -> wgpu::ComputePipeline {
        // gemm.wgsl as written: the weights in 64 KiB uniform windows.
        let layout = Some(self.gemm_pipeline_layout(gemm::Weights::Uniform));
        cached(&self.elementwise, source.to_owned(), || {
            self.pipeline(label, layout, source.to_owned(), &[])
        })
    }

    /// The pipeline of a generated kernel with its own bind group layout, compiled once per
    /// source.
    pub fn generated(&self, label: &str, source: &str) -> wgpu::ComputePipeline {
        cached(&self.elementwise, source.to_owned(), || {
            self.pipeline(label, None, source.to_owned(), &[])
        })
    }
}

/// The pipeline `cache` holds for `key`, else `build`'s, stored. The lock is not held while it
/// builds, so that threads preparing a model's steps compile different kernels at once (two may
/// build the same one; the first stored wins).
fn cached<K: std::hash::Hash + Eq>(
    cache: &Mutex<HashMap<K, wgpu::ComputePipeline>>,
    key: K,
    build: impl FnOnce() -> wgpu::ComputePipeline,
) -> wgpu::ComputePipeline {
    if let Some(p) = cache.lock().expect("pipeline cache lock").get(&key) {
        return p.clone();
    }
    let pipeline = build();
    let mut cache = cache.lock().expect("pipeline cache lock");
    cache.entry(key).or_insert(pipeline).clone()
}

impl Activation {
    /// The shader's `(activation, alpha, beta)` encoding; PRelu's slopes travel separately.
    pub(crate) fn encode(&self) -> (u32, f32, f32) {
        match self {
            Activation::None => (0, 0.0, 0.0),
            Activation::LeakyRelu { alpha } => (1, *alpha, 0.0),
            Activation::Clip { min, max } => (2, *min, *max),
            Activation::PRelu { .. } => (3, 0.0, 0.0),
            Activation::HardSwish => (4, 0.0, 0.0),
        }
    }
}

/// What every kernel's `prepare` binds with: the device, the compiled pipelines (of the runner's
/// precision) and the step's label (the layer's name, for errors and profiles).
#[derive(Clone, Copy)]
pub struct Bind<'a> {
    pub gpu: &'a Gpu,
    pub kernels: &'a Kernels,
    pub label: &'a str,
}

impl<'a> Bind<'a> {
    pub fn new(gpu: &'a Gpu, kernels: &'a Kernels, label: &'a str) -> Self {
        Self {
            gpu,
            kernels,
            label,
        }
    }
}

/// One op's kernel launches, bound and ready to record for any batch of up to the planned size.
pub struct Step {
    pub label: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    /// Workgroups in x and y.
    groups_xy: [u32; 2],
    /// Workgroups in z for each batch item (z = items * this).
    groups_z_per_item: u32,
    /// One dispatch per entry, each with these dynamic offsets; empty: one dispatch without.
    dynamic_offsets: Vec<Vec<u32>>,
    /// `(units per item, units per workgroup)`: the items are folded into x (x covers items x
    /// units, z is 1) instead of each item taking `groups_z_per_item` workgroups in z.
    folded: Option<(u32, u32)>,
    /// Steps recorded right after this one, as part of it (a kernel of several passes: the
    /// split Winograd's transforms and products).
    then: Vec<Step>,
    /// Keeps the step's uniforms (and any scratch of its own) alive as long as its bind group.
    _buffers: Vec<TrackedBuffer>,
}

impl Step {
    pub(crate) fn with_offsets(
        label: &str,
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        groups_xy: [u32; 2],
        groups_z_per_item: u32,
        dynamic_offsets: Vec<Vec<u32>>,
        buffers: Vec<TrackedBuffer>,
    ) -> Self {
        Self {
            label: label.to_owned(),
            pipeline,
            bind_group,
            groups_xy,
            groups_z_per_item,
            dynamic_offsets,
            folded: None,
            then: Vec::new(),
            _buffers: buffers,
        }
    }

    /// This step followed by `steps`, recorded, counted and timed as one.
    pub(crate) fn then(mut self, steps: Vec<Step>) -> Self {
        self.then.extend(steps);
        self
    }

    /// This step keeping `buffers` alive as long as it.
    pub(crate) fn keeping(mut self, buffers: Vec<TrackedBuffer>) -> Self {
        self._buffers.extend(buffers);
        self
    }

    /// This step with the items folded into x: a batch of n items dispatches
    /// `ceil(n x per_item / per_group)` workgroups in x and one in z.
    pub(crate) fn folding_items(self, per_item: u32, per_group: u32) -> Self {
        Self {
            folded: Some((per_item, per_group)),
            ..self
        }
    }

    /// Workgroups in z each item of a batch takes (0 where the items are folded into x).
    pub(crate) fn z_per_item(&self) -> u32 {
        let own = if self.folded.is_some() {
            0
        } else {
            self.groups_z_per_item
        };
        self.then.iter().map(Step::z_per_item).fold(own, u32::max)
    }

    /// Number of dispatches this step records.
    pub fn dispatches(&self) -> usize {
        self.dynamic_offsets.len().max(1) + self.then.iter().map(Step::dispatches).sum::<usize>()
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, items: u32) {
        self.record_own(pass, items);
        for step in &self.then {
            step.record(pass, items);
        }
    }

    /// The kernels this step chains (itself first, then what it runs after it, in order), for
    /// timing each on its own (`bench --profile`'s phases).
    pub fn parts(&self) -> Vec<&Step> {
        let mut parts = vec![self];
        parts.extend(self.then.iter().flat_map(Step::parts));
        parts
    }

    /// Dispatches of this step alone, without the steps chained after it.
    pub fn own_dispatches(&self) -> usize {
        self.dynamic_offsets.len().max(1)
    }

    /// Workgroups this step and the steps chained after it dispatch for `items` items (on a GPU,
    /// fewer than its cores run at once leave some idle: `bench --profile` prints them).
    pub fn workgroups(&self, items: u32) -> u64 {
        let (x, z) = self.groups_xz(items);
        let each = u64::from(x) * u64::from(self.groups_xy[1]) * u64::from(z);
        let then: u64 = self.then.iter().map(|s| s.workgroups(items)).sum();
        each * self.own_dispatches() as u64 + then
    }

    /// Workgroups in x and z of each of this step's own dispatches for `items` items.
    fn groups_xz(&self, items: u32) -> (u32, u32) {
        match self.folded {
            Some((per_item, per_group)) => ((items * per_item).div_ceil(per_group).max(1), 1),
            None => (self.groups_xy[0], items * self.groups_z_per_item),
        }
    }

    /// Records this step's own dispatches, without the steps chained after it.
    pub fn record_own(&self, pass: &mut wgpu::ComputePass<'_>, items: u32) {
        pass.set_pipeline(&self.pipeline);
        let (x, z) = self.groups_xz(items);
        if self.dynamic_offsets.is_empty() {
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.dispatch_workgroups(x, self.groups_xy[1], z);
        }
        for offsets in &self.dynamic_offsets {
            pass.set_bind_group(0, &self.bind_group, offsets);
            pass.dispatch_workgroups(x, self.groups_xy[1], z);
        }
    }
}

/// Workgroups (x, y) of 256 invocations covering `count` elements, for kernels that index
/// `gid.x + gid.y * num_workgroups.x * 256` (x is capped at the 65535 dispatch limit).
pub(crate) fn flat_groups(count: u32) -> [u32; 2] {
    let groups = count.div_ceil(256).max(1);
    let x = groups.min(65535);
    [x, groups.div_ceil(x)]
}

/// `v` right-aligned in `MAX_RANK` slots, `fill` in front (outer dims of size 1).
pub(crate) fn pad_front<T: Copy>(v: &[T], fill: T) -> [T; MAX_RANK] {
    assert!(v.len() <= MAX_RANK, "at most {MAX_RANK} dimensions");
    let mut out = [fill; MAX_RANK];
    out[MAX_RANK - v.len()..].copy_from_slice(v);
    out
}

/// Builds a [`Step`] from a params struct and the buffers bound after it (bindings 1..).
pub(crate) fn step<P: bytemuck::Pod>(
    gpu: &Gpu,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    params: &P,
    buffers: &[&wgpu::Buffer],
    groups_xy: [u32; 2],
    groups_z_per_item: u32,
) -> Step {
    let params_buf = gpu.create_buffer_init(
        label,
        bytemuck::bytes_of(params),
        wgpu::BufferUsages::UNIFORM,
    );
    let mut all: Vec<&wgpu::Buffer> = vec![&params_buf];
    all.extend_from_slice(buffers);
    let bind_group = gpu.bind_group(label, pipeline, &all);
    Step::with_offsets(
        label,
        pipeline.clone(),
        bind_group,
        groups_xy,
        groups_z_per_item,
        Vec::new(),
        vec![params_buf],
    )
}

#[cfg(test)]
mod adapter_tests {
    /// Mesa before 23 on a CPU adapter only; an unknown driver counts as not.
    #[test]
    fn storage_loads_loop_on_mesa_22_only() {
        use super::storage_loads_loop;
        assert!(storage_loads_loop(
            "Cpu",
            "llvmpipe Mesa 22.3.6 (LLVM 15.0.6)"
        ));
        assert!(!storage_loads_loop(
            "Cpu",
            "llvmpipe Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)"
        ));
        assert!(!storage_loads_loop("Cpu", "SwiftShader driver 5.0.0"));
        assert!(!storage_loads_loop("DiscreteGpu", "NVIDIA 580.159.04"));
    }
}
