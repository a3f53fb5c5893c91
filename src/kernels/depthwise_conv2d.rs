//! Depthwise convolution (`shaders/depthwise_conv2d.wgsl`): a register-blocked entry point
//! generated per kernel shape, `rows x cols` output pixels of one channel an invocation.
//!
//! Each input value of the invocation's patch is loaded once and added into every output pixel
//! whose taps read it; the channel's taps are loaded once. Every accumulator and input value is a
//! named variable (private arrays indexed in loops stay in memory on llvmpipe). Shapes whose patch
//! does not fit (a large dilation) run the shader's own one-pixel `main`.

use crate::model::Conv2dSpec;

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
}

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
    };
    let [span_h, span_w] = v.span();
    (span_h <= MAX_SPAN && span_w <= MAX_SPAN && spec.k_h * spec.k_w <= MAX_TAPS).then_some(v)
}

impl Variant {
    /// Input rows and columns an invocation reads.
    fn span(&self) -> [u32; 2] {
        let span =
            |n: u32, i: usize| (n - 1) * self.stride[i] + (self.k[i] - 1) * self.dilation[i] + 1;
        [span(self.rows, 0), span(self.cols, 1)]
    }

    /// Channels of one item an x row of invocations covers for an output `out_w` wide: enough
    /// that the column blocks of those channels fill whole workgroups (a 7 px wide map has 2
    /// column blocks, so one channel would leave 14 of a workgroup's 16 lanes idle).
    pub fn channels_per_z(&self, out_w: u32) -> u32 {
        let blocks = out_w.div_ceil(self.cols).max(1);
        WORKGROUP_X / gcd(blocks, WORKGROUP_X)
    }

    /// Workgroups along x and y for an `out_h x out_w` output of `channels`, and along z per
    /// item: x covers the column blocks of [`Self::channels_per_z`] channels, z those slices.
    pub fn groups(&self, out_h: u32, out_w: u32, channels: u32) -> ([u32; 2], u32) {
        let per_z = self.channels_per_z(out_w);
        let lanes = out_w.div_ceil(self.cols) * per_z;
        (
            [lanes.div_ceil(WORKGROUP_X), out_h.div_ceil(self.rows)],
            channels.div_ceil(per_z),
        )
    }

    /// WGSL: depthwise_conv2d.wgsl's declarations with the unrolled entry point `main`.
    pub fn source(&self) -> String {
        let shader = super::shader("depthwise_conv2d.wgsl");
        let head = &shader[..shader
            .find("@compute")
            .expect("depthwise_conv2d.wgsl has an entry point")];
        let (rows, cols) = (self.rows, self.cols);
        let ([k_h, k_w], [sh, sw], [dh, dw]) = (self.k, self.stride, self.dilation);
        let [span_h, span_w] = self.span();
        let mut w = String::from(head);
        let mut line = |l: String| {
            w.push_str(&l);
            w.push('\n');
        };
        line(format!(
            "// Unrolled: {rows}x{cols} pixels, kernel {k_h}x{k_w}, stride {sh}x{sw}, dilation {dh}x{dw}."
        ));
        line(format!("@compute @workgroup_size({WORKGROUP_X}, 1, 1)"));
        line("fn main(@builtin(global_invocation_id) gid: vec3<u32>) {".into());
        // x: column block `gid.x % blocks` of channel `gid.x / blocks` of the z slice's
        // `channels_per_z`; z: item `n`, slice `gid.z % slices`.
        line(format!(
            "    let blocks = (p.out_w + {}u) / {cols}u;",
            cols - 1
        ));
        line("    let slices = (p.channels + p.channels_per_z - 1u) / p.channels_per_z;".into());
        line("    let in_slice = gid.x / blocks;".into());
        line("    let c = (gid.z % slices) * p.channels_per_z + in_slice;".into());
        line(format!("    let ox0 = (gid.x % blocks) * {cols}u;"));
        line(format!("    let oy0 = gid.y * {rows}u;"));
        line(
            "    if in_slice >= p.channels_per_z || c >= p.channels || oy0 >= p.out_h { return; }"
                .into(),
        );
        line("    let z = (gid.z / slices) * p.channels + c;".into());
        line("    let plane = z * p.in_h * p.in_w;".into());
        line("    let bias = bias_slope[c];".into());
        for r in 0..rows {
            for x in 0..cols {
                line(format!("    var a{r}_{x} = bias;"));
            }
        }
        line(format!("    let wi = c * {}u;", k_h * k_w));
        for ky in 0..k_h {
            for kx in 0..k_w {
                line(format!(
                    "    let w{ky}_{kx} = weights[wi + {}u];",
                    ky * k_w + kx
                ));
            }
        }
        line(format!("    let ix0 = i32(ox0 * {sw}u) - i32(p.pad_left);"));
        line(format!("    let iy0 = i32(oy0 * {sh}u) - i32(p.pad_top);"));
        line("    let last_row = i32(p.in_h) - 1;".into());
        line("    let last_col = i32(p.in_w) - 1;".into());
        for j in 0..span_h {
            line(format!(
                "    let y{j} = iy0 + {j}; let my{j} = y{j} >= 0 && y{j} <= last_row; \
                 let ry{j} = plane + u32(clamp(y{j}, 0, last_row)) * p.in_w;"
            ));
        }
        for j in 0..span_w {
            let readers = super::conv2d_narrow::column_readers(j, k_w, sw, dw, cols);
            if readers.is_empty() {
                continue;
            }
            line("    {".into());
            line(format!(
                "        let x = ix0 + {j}; let mx = x >= 0 && x <= last_col; \
                 let cx = u32(clamp(x, 0, last_col));"
            ));
            for i in 0..span_h {
                line(format!(
                    "        let c{i} = select(0.0, f32(src[ry{i} + cx]), my{i} && mx);"
                ));
            }
            for &(kx, x) in &readers {
                for ky in 0..k_h {
                    for r in 0..rows {
                        let i = r * sh + ky * dh;
                        line(format!("        a{r}_{x} += c{i} * w{ky}_{kx};"));
                    }
                }
            }
            line("    }".into());
        }
        line("    let out_plane = z * p.out_h * p.out_w;".into());
        for r in 0..rows {
            for x in 0..cols {
                line(format!(
                    "    if oy0 + {r}u < p.out_h && ox0 + {x}u < p.out_w {{ \
                     dst[out_plane + (oy0 + {r}u) * p.out_w + ox0 + {x}u] = act(activate(a{r}_{x}, c)); }}"
                ));
            }
        }
        line("}".into());
        w
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}
