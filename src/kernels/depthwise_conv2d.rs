//! Depthwise convolution (`shaders/depthwise_conv2d.wgsl`): a register-blocked entry point
//! generated per kernel shape, `rows x cols` output pixels of one channel an invocation.
//!
//! Each input value of the invocation's patch is loaded once and added into every output pixel
//! whose taps read it; the channel's taps are loaded once. Every accumulator and input value is a
//! named variable (private arrays indexed in loops stay in memory on llvmpipe). Shapes whose patch
//! does not fit (a large dilation) run the shader's own one-pixel `main`. This module chooses the
//! variant for a layer and its map and runs it; `depthwise_source` writes its WGSL.

pub use super::depthwise_planes::Planes;
use super::{Bind, Step};
use crate::model::{Conv2dSpec, Residual};

/// Output rows x columns an invocation: the fastest measured on lavapipe (BENCHMARKS.md,
/// "Kernels").
pub const PIXELS: (u32, u32) = (4, 4);
/// Invocations per workgroup along x. Keep in sync with the generated `@workgroup_size`.
pub const WORKGROUP_X: u32 = 16;
/// The most input rows or columns one invocation keeps in registers.
const MAX_SPAN: u32 = 24;
/// The most taps the unrolled kernel takes (a 7x7 kernel).
const MAX_TAPS: u32 = 49;

/// Mirror of `Params` in shaders/depthwise_conv2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DepthwiseParams {
    pub channels: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub k_h: u32,
    pub k_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub dil_h: u32,
    pub dil_w: u32,
    pub activation: u32,
    pub alpha: f32,
    pub beta: f32,
    /// Channels of one item the generated kernel's x dimension covers (see [`Variant::groups`]).
    pub channels_per_z: u32,
    pub _pad: [u32; 3],
}

impl DepthwiseParams {
    /// The record for an `in_h x in_w` input and its `out_h x out_w` output.
    pub(crate) fn new(s: &Conv2dSpec, [in_h, in_w, out_h, out_w]: [u32; 4]) -> Self {
        let (activation, alpha, beta) = s.activation.encode();
        Self {
            channels: s.out_c,
            in_h,
            in_w,
            out_h,
            out_w,
            k_h: s.k_h,
            k_w: s.k_w,
            stride_h: s.stride[0],
            stride_w: s.stride[1],
            pad_top: s.pads[0],
            pad_left: s.pads[1],
            dil_h: s.dilation[0],
            dil_w: s.dilation[1],
            activation,
            alpha,
            beta,
            channels_per_z: 1,
            _pad: [0; 3],
        }
    }
}

/// The generated entry point's shape: kernel, stride, dilation and output block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    pub k: [u32; 2],
    pub stride: [u32; 2],
    pub dilation: [u32; 2],
    pub rows: u32,
    pub cols: u32,
    /// `Some(pad_left)`: rows read 4 values a load (`vec4`), the left padding compiled in; only
    /// where [`Variant::wide_for`] allows it.
    pub wide: Option<u32>,
    /// Outputs written 4 a store (with `wide`, where the output rows allow it too).
    pub store4: bool,
    /// With `wide`, rows read 8 values a load where two vec4s of a row's patch are read
    /// (`vec4<u64>`, `kernels::eight`; a CPU adapter, float32).
    pub load8: bool,
    /// With `store4`, outputs written 8 a store (`vec4<u64>`).
    pub store8: bool,
    /// `Some([pad_top, pad_left])`: whole rows of a map whose width is 2 mod 4 (14 px) read 4
    /// values a load (`vec4`) from the 4-value grid: the planes on the grid (a multiple of 4
    /// values), a block of whole rows, an even number of them, so that each patch row starts
    /// 0 or 2 values past the grid, known when the kernel is built ([`Self::off_grid_rows`]);
    /// outputs written 2 a store (`vec2`). At stride 2 the input rows are a multiple of 4 wide
    /// (28 px onto 14).
    pub rows_off_grid: Option<[u32; 2]>,
    /// `Some(planes)`: the whole output planes of a few channels an invocation, read and written
    /// 4 values a load and store (`kernels::depthwise_planes`): small maps whose rows are read
    /// one value a load otherwise (7 x 7: rows off the 4-value grid; 12 x 12: 6x6 blocks).
    pub planes: Option<Planes>,
    /// The fused activation's code (`Activation::encode`), compiled into the kernel: where the
    /// kernel switches on it as a uniform, Mesa 22's lavapipe spends most of each dispatch in
    /// its own code rather than the kernel's (`perf`), the more the larger the kernel: whole
    /// planes of 1152 channels of 7 x 7 took 48-55 ms against 0.55, the other kernels 1.2-1.7x
    /// as long. None: switched on at run time (`BATCHWISE_DEPTHWISE_ACTIVATION=uniform`, to
    /// measure).
    pub activation: Option<u32>,
    /// The taps read from a 64 KiB uniform buffer ([`UNIFORM_TAPS`] floats at most) instead of
    /// storage: on llvmpipe a uniform load whose address differs per lane is straight-line code,
    /// a storage load a loop over the lanes with a branch a value.
    pub uniform_taps: bool,
    /// The layer's own input added at each output pixel, before or after the activation (a
    /// fused `x + act(dw(x))`): a stride-1 kernel whose output is its input's size
    /// ([`preserves_size`]), each value taken from the patch the invocation loaded.
    pub residual: Option<Residual>,
    /// The output's two halves multiplied (NAFNet's SimpleGate fused in,
    /// `LayerOp::Conv2dGated`): of the layer's `2c` channels only `c` are stored, channel `k`
    /// the product of the activated channels `k` and `k + c`. An invocation computes both
    /// from their own planes and taps (the loads of one patch column from both planes, then
    /// their products). Not with whole planes or rows off the grid (those keep their layouts
    /// for one channel), nor with a residual.
    pub gate: bool,
}

/// Whether `spec` maps each input pixel to the output pixel at the same place (stride 1, no
/// dilation, an odd kernel padded by half of it on every side): its input can be its residual.
pub fn preserves_size(spec: &Conv2dSpec) -> bool {
    let half = |k: u32| k % 2 == 1 && spec.pads == [k / 2, k / 2, k / 2, k / 2];
    spec.is_depthwise()
        && spec.stride == [1, 1]
        && spec.dilation == [1, 1]
        && spec.k_h == spec.k_w
        && half(spec.k_h)
}

/// The most taps (channels x kernel) the uniform binding holds: 64 KiB of floats.
pub const UNIFORM_TAPS: u32 = 16384;

/// The engine's variant for a depthwise shape, or None where its patch does not fit (the
/// shader's one-pixel `main` runs it).
pub fn variant(spec: &Conv2dSpec) -> Option<Variant> {
    variant_with(spec, PIXELS.0, PIXELS.1)
}

/// As [`variant`], with `rows x cols` output pixels an invocation.
pub fn variant_with(spec: &Conv2dSpec, rows: u32, cols: u32) -> Option<Variant> {
    let v = Variant {
        k: [spec.k_h, spec.k_w],
        stride: spec.stride,
        dilation: spec.dilation,
        rows,
        cols,
        wide: None,
        store4: false,
        load8: false,
        store8: false,
        rows_off_grid: None,
        planes: None,
        activation: match std::env::var("BATCHWISE_DEPTHWISE_ACTIVATION").as_deref() {
            Ok("uniform") => None,
            _ => Some(spec.activation.encode().0),
        },
        uniform_taps: false,
        residual: None,
        gate: false,
    };
    v.fits().then_some(v)
}

impl Variant {
    /// Input rows and columns an invocation reads.
    pub(super) fn span(&self) -> [u32; 2] {
        let span =
            |n: u32, i: usize| (n - 1) * self.stride[i] + (self.k[i] - 1) * self.dilation[i] + 1;
        [span(self.rows, 0), span(self.cols, 1)]
    }

    /// Channels of one item an x row of invocations covers for an output `out_w` wide: enough
    /// that the column blocks of those channels fill whole workgroups (a 7 px wide map has 2
    /// column blocks, so one channel would leave 14 of a workgroup's 16 lanes idle).
    pub fn channels_per_z(&self, out_w: u32) -> u32 {
        if self.planes.is_some() {
            return 1;
        }
        let blocks = out_w.div_ceil(self.cols).max(1);
        WORKGROUP_X / gcd(blocks, WORKGROUP_X)
    }

    /// Workgroups along x and y for an `out_h x out_w` output of `channels`, and along z per
    /// item: x covers the column blocks of [`Self::channels_per_z`] channels, z those slices.
    /// With [`Self::planes`], x covers the item's groups of channels, z the items.
    pub fn groups(&self, out_h: u32, out_w: u32, channels: u32) -> ([u32; 2], u32) {
        if let Some(planes) = self.planes {
            let groups = channels / planes.channels;
            return ([groups.div_ceil(WORKGROUP_X), 1], 1);
        }
        let per_z = self.channels_per_z(out_w);
        let lanes = out_w.div_ceil(self.cols) * per_z;
        (
            [lanes.div_ceil(WORKGROUP_X), out_h.div_ceil(self.rows)],
            channels.div_ceil(per_z),
        )
    }

    /// The block of output pixels an invocation computes for this map, then [`Self::wide_for`]:
    /// where rows can be read and written 4 values a load, on a CPU adapter at stride 1 8x16
    /// (1.5-2x the blocks below there for 3x3 to 7x7: the taps and the patch's overlap are
    /// loaded once for 128 outputs), where that patch fits; else 2x8 for kernels of up to 3 rows
    /// and 4x8 for taller ones (two loads of 4 cover a row of 8 outputs' 3x3 patch), 2x8 too for
    /// a 3x3 stride 2 whose input rows can be read 4 a load onto 9 or more columns; else maps of
    /// at most 16 rows or columns are cut into equal blocks of at most 8 (a 7x7 map is one block,
    /// 14x14 four: no lane computes pixels past the map, and the taps are loaded once for 49
    /// outputs, not 16); else 4x4. Measured on lavapipe (BENCHMARKS.md, "Depthwise and
    /// few-input-channel 1x1", its stride 2 part, and "Depthwise blocks of 8x16 on a CPU").
    /// `adapter`: whether it is a CPU, and whether rows may be read and written 8 values a load
    /// ([`Self::wide_for`]). `BATCHWISE_DEPTHWISE_BIG=off` keeps a CPU's blocks as a GPU's.
    pub fn for_map(
        self,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        pad_left: u32,
        adapter: [bool; 2],
    ) -> Self {
        let [cpu, eight] = adapter;
        let wide = in_w.is_multiple_of(4) && out_w.is_multiple_of(4) && out_w > 16;
        // A 3x3 stride 2 onto a width not a multiple of 4 (28 px onto 14) still reads its input 4
        // columns a load in 2x8 blocks (a block starts on input column 16 b) and writes one value
        // a store (measured on 14 px; maps of at most 8 keep one block).
        let onto_narrow = self.k[0] <= 3
            && self.stride[1] == 2
            && in_w.is_multiple_of(4)
            && !out_w.is_multiple_of(4)
            && out_w > 8;
        let big = cpu
            && wide
            && self.stride == [1, 1]
            && !std::env::var("BATCHWISE_DEPTHWISE_BIG").is_ok_and(|v| v == "off");
        let even = |n: u32| n.div_ceil(n.div_ceil(8));
        let (rows, cols) = match (wide || onto_narrow, self.k[0] <= 3) {
            (true, true) => (2, 8),
            (true, false) => (4, 8),
            (false, _) if out_h <= 16 && out_w <= 16 => (even(out_h), even(out_w)),
            (false, _) => PIXELS,
        };
        let blocks = [big.then_some((8, 16)), Some((rows, cols))];
        let blocked = blocks
            .into_iter()
            .flatten()
            .map(|(rows, cols)| Self { rows, cols, ..self })
            .find(Variant::fits)
            .unwrap_or(self);
        blocked.wide_for(in_w, out_w, pad_left, eight)
    }

    /// This variant for a layer `spec` on an `in_h x in_w` map onto `out_h x out_w`: its block
    /// ([`Self::for_map`]), then rows off the grid or whole planes where the map takes them.
    pub fn for_layer(self, spec: &Conv2dSpec, sizes: [u32; 4], adapter: [bool; 2]) -> Self {
        let [in_h, in_w, out_h, out_w] = sizes;
        let pads = [spec.pads[0], spec.pads[1]];
        self.for_map(in_w, out_h, out_w, pads[1], adapter)
            .off_grid_rows([in_h, in_w], out_w, pads)
            .whole_planes(spec.out_c, [in_h, in_w], [out_h, out_w], pads)
    }

    /// This variant with [`Variant::rows_off_grid`] where the map takes it, without dilation:
    /// at stride 1 an `in_h x in_w` input of rows 2 mod 4 wide and planes a multiple of 4, the
    /// output as wide as the input; at stride 2 an input of rows a multiple of 4 wide (every row
    /// on the grid) onto rows half as wide and 2 mod 4 (28 px onto 14: a block of 2x8 would
    /// leave 2 of its second block's columns idle and store one value a store); a block of 2
    /// whole rows that fits; else as it is. `pads`: top and left.
    /// `BATCHWISE_DEPTHWISE_OFF_GRID=off` keeps it as it is (to measure).
    pub fn off_grid_rows(self, [in_h, in_w]: [u32; 2], out_w: u32, pads: [u32; 2]) -> Self {
        let off = std::env::var("BATCHWISE_DEPTHWISE_OFF_GRID").is_ok_and(|v| v == "off");
        let stride_1 = self.stride == [1, 1]
            && in_w % 4 == 2
            && (in_h * in_w).is_multiple_of(4)
            && out_w == in_w
            && self.wide.is_none();
        let stride_2 = self.stride == [2, 2] && in_w.is_multiple_of(4) && in_w == 2 * out_w;
        let takes = !off
            && !self.gate
            && self.dilation == [1, 1]
            && out_w % 4 == 2
            && (stride_1 || stride_2);
        let whole_rows = Self {
            rows: 2,
            cols: out_w,
            wide: None,
            rows_off_grid: Some(pads),
            store4: false,
            load8: false,
            store8: false,
            ..self
        };
        // A whole row of 28 values and its padding: 8 vec4s a row, past `MAX_SPAN`.
        let [span_h, span_w] = whole_rows.span();
        let fits = span_h <= MAX_SPAN && span_w <= 2 * MAX_SPAN;
        match takes && fits {
            true => whole_rows,
            false => self,
        }
    }

    /// This variant over whole planes ([`Variant::planes`]) where the map takes them: no
    /// dilation, rows not read 4 values a load already (`wide`, `rows_off_grid`), and a map of
    /// `channels` that [`Planes::for_map`] takes; else as it is.
    /// `BATCHWISE_DEPTHWISE_PLANES=off` keeps it as it is (to measure).
    pub fn whole_planes(
        self,
        channels: u32,
        input: [u32; 2],
        output: [u32; 2],
        pads: [u32; 2],
    ) -> Self {
        let off = std::env::var("BATCHWISE_DEPTHWISE_PLANES").is_ok_and(|v| v == "off");
        let takes = !off
            && !self.gate
            && self.dilation == [1, 1]
            && self.wide.is_none()
            && self.rows_off_grid.is_none();
        match takes
            .then(|| Planes::for_map(channels, input, output, pads))
            .flatten()
        {
            Some(planes) => Self {
                rows: output[0],
                cols: output[1],
                planes: Some(planes),
                store4: false,
                load8: false,
                store8: false,
                ..self
            },
            None => self,
        }
    }

    /// This variant reading its `taps` (channels x kernel) from the uniform binding where they
    /// fit it, where storage loads are lane loops (`lane_loops`: `kernels::storage_loads_loop`,
    /// Mesa 22's lavapipe; a GPU serves a uniform load whose address differs across a warp one
    /// address at a time, so it keeps storage). About 10% on lavapipe's depthwise kernels
    /// (BENCHMARKS.md, "Fused channel Pads, wide data movement, 7x7 maps and CPU resizing").
    /// `BATCHWISE_DEPTHWISE_TAPS=storage` keeps them in storage (to measure).
    pub fn taps_for(self, taps: usize, lane_loops: bool) -> Self {
        let storage = std::env::var("BATCHWISE_DEPTHWISE_TAPS").is_ok_and(|v| v == "storage");
        Self {
            uniform_taps: lane_loops && !storage && taps <= UNIFORM_TAPS as usize,
            ..self
        }
    }

    /// Whether the patch of this block fits in registers (as [`variant_with`] checks).
    fn fits(&self) -> bool {
        let [span_h, span_w] = self.span();
        span_h <= MAX_SPAN && span_w <= MAX_SPAN && self.k[0] * self.k[1] <= MAX_TAPS
    }

    /// This variant reading rows 4 values a load (`vec4`) where the input allows it: its width a
    /// multiple of 4 (a row starts on a vec4, none straddles two rows, and a channel's plane
    /// starts on one) and every block's first input column too (`cols x stride` a multiple of
    /// 4); writing 4 outputs a store where the output width and the block's are multiples of 4
    /// as well. On llvmpipe a load whose address differs per lane is a loop over the lanes; a
    /// vec4 takes one pass of it for 4 values. `BATCHWISE_DEPTHWISE_WIDE=off` keeps one value a
    /// load (to measure). With `eight` (`Kernels::eight_a_load`), the same in multiples of 8
    /// reads and writes 8 values a load (`load8`, `store8`).
    pub fn wide_for(self, in_w: u32, out_w: u32, pad_left: u32, eight: bool) -> Self {
        let off = std::env::var("BATCHWISE_DEPTHWISE_WIDE").is_ok_and(|v| v == "off");
        let load = !off && in_w.is_multiple_of(4) && (self.cols * self.stride[1]).is_multiple_of(4);
        let store4 = load && out_w.is_multiple_of(4) && self.cols.is_multiple_of(4);
        let load8 = eight
            && load
            && in_w.is_multiple_of(8)
            && (self.cols * self.stride[1]).is_multiple_of(8);
        Self {
            wide: load.then_some(pad_left),
            store4,
            load8,
            store8: eight && store4 && out_w.is_multiple_of(8) && self.cols.is_multiple_of(8),
            ..self
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The step of a depthwise convolution: the generated kernel `variant`, else the one-pixel `main`.
pub(super) fn step(
    cx: Bind,
    s: &Conv2dSpec,
    variant: Option<Variant>,
    buffers: &[&wgpu::Buffer; 4],
    [in_h, in_w, out_h, out_w]: [u32; 4],
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let mut params = DepthwiseParams::new(s, [in_h, in_w, out_h, out_w]);
    let (pipeline, groups, z) = match variant {
        Some(v) => {
            params.channels_per_z = v.channels_per_z(out_w);
            let out_c = if v.gate { s.out_c / 2 } else { s.out_c };
            let (groups, z) = v.groups(out_h, out_w, out_c);
            let source = v.source();
            (kernels.generated("depthwise_conv2d", &source), groups, z)
        }
        None => (
            kernels.depthwise_conv2d.clone(),
            [out_w.div_ceil(16), out_h.div_ceil(4)],
            s.out_c,
        ),
    };
    super::step(gpu, label, &pipeline, &params, buffers, groups, z)
}
