//! The WGSL of the depthwise kernel's generated entry points (`depthwise_conv2d::Variant`):
//! the declarations of `shaders/depthwise_conv2d.wgsl` with a `main` unrolled for the variant's
//! kernel shape and pixel block. Every accumulator, tap and input value is a named variable
//! (private arrays indexed in loops stay in memory on llvmpipe); the patch is loaded one value,
//! 4 or 8 a load (`wide`, `load8`, `rows_off_grid`), each column multiplied into every output
//! whose taps read it as soon as it is loaded.

use super::depthwise_conv2d::{UNIFORM_TAPS, Variant, WORKGROUP_X};
use super::shaders::redeclared;
use crate::model::Residual;

impl Variant {
    /// WGSL: depthwise_conv2d.wgsl's declarations with the unrolled entry point `main`.
    pub fn source(&self) -> String {
        assert!(
            !self.gate
                || (self.planes.is_none() && self.rows_off_grid.is_none())
                    && self.residual.is_none(),
            "a gated variant reads rows one or 4 values a load, without a residual"
        );
        if let Some(planes) = self.planes {
            return super::depthwise_planes::source(self, planes, self.declarations());
        }
        let mut w = self.prologue();
        match (self.wide, self.rows_off_grid) {
            (Some(pad_left), _) => self.wide_loads(&mut w, pad_left),
            (None, Some(pads)) => self.off_grid_loads(&mut w, pads),
            (None, None) => self.scalar_loads(&mut w),
        }
        self.stores(&mut w);
        w
    }

    /// depthwise_conv2d.wgsl's declarations, `src`, `dst` and the taps bound as this variant
    /// reads them.
    fn declarations(&self) -> String {
        let shader = super::shader("depthwise_conv2d.wgsl");
        let head = &shader[..shader
            .find("@compute")
            .expect("depthwise_conv2d.wgsl has an entry point")];
        let mut w = String::from(head);
        if let Some(code) = self.activation {
            w = w.replace("switch p.activation {", &format!("switch {code}u {{"));
        }
        let vec4_loads = self.wide.is_some() || self.rows_off_grid.is_some();
        if self.load8 {
            w = redeclared(&w, "src", "vec4<u64>");
        } else if vec4_loads || self.planes.is_some() {
            w = redeclared(&w, "src", "vec4<act>");
        }
        if self.store8 {
            w = redeclared(&w, "dst", "vec4<u64>");
        } else if self.store4 || self.planes.is_some() {
            w = redeclared(&w, "dst", "vec4<act>");
        } else if self.rows_off_grid.is_some() {
            w = redeclared(&w, "dst", "vec2<act>");
        }
        if self.load8 || self.store8 {
            w.push_str(super::eight::HELPERS);
        }
        if self.uniform_taps {
            w = w.replace(
                WEIGHTS,
                &format!(
                    "var<uniform> weights: array<vec4<f32>, {}>;",
                    UNIFORM_TAPS / 4
                ),
            );
        }
        w
    }

    /// WGSL: tap `at` (an index into the taps) as this variant reads it.
    pub(super) fn tap(&self, at: &str) -> String {
        match self.uniform_taps {
            true => format!("weights[({at}) / 4u][({at}) % 4u]"),
            false => format!("weights[{at}]"),
        }
    }

    /// The declarations, the invocation's channel and block, its accumulators and taps.
    fn prologue(&self) -> String {
        let (rows, cols) = (self.rows, self.cols);
        let ([k_h, k_w], [sh, sw], [dh, dw]) = (self.k, self.stride, self.dilation);
        let mut w = self.declarations();
        entry_point(
            &mut w,
            &format!(
                "Unrolled: {rows}x{cols} pixels, kernel {k_h}x{k_w}, stride {sh}x{sw}, dilation {dh}x{dw}, wide {:?}, 4 a store {}, 8 a load {}, 8 a store {}.",
                self.wide, self.store4, self.load8, self.store8
            ),
        );
        // x: column block `gid.x % blocks` of channel `gid.x / blocks` of the z slice's
        // `channels_per_z`; z: item `n`, slice `gid.z % slices`. Gated, the output's channels
        // are half the layer's: the invocation's channel `c` and `c + half_c`.
        line(
            &mut w,
            format!("    let blocks = (p.out_w + {}u) / {cols}u;", cols - 1),
        );
        let out_c = match self.gate {
            true => "half_c",
            false => "p.channels",
        };
        line(&mut w, "    let half_c = p.channels / 2u;");
        line(
            &mut w,
            format!("    let slices = ({out_c} + p.channels_per_z - 1u) / p.channels_per_z;"),
        );
        line(&mut w, "    let in_slice = gid.x / blocks;");
        line(
            &mut w,
            "    let c = (gid.z % slices) * p.channels_per_z + in_slice;",
        );
        line(&mut w, format!("    let ox0 = (gid.x % blocks) * {cols}u;"));
        line(&mut w, format!("    let oy0 = gid.y * {rows}u;"));
        line(
            &mut w,
            format!(
                "    if in_slice >= p.channels_per_z || c >= {out_c} || oy0 >= p.out_h {{ return; }}"
            ),
        );
        line(&mut w, "    let z = (gid.z / slices) * p.channels + c;");
        // The output's plane: the item's `out_c` channels.
        line(
            &mut w,
            format!("    let zo = (gid.z / slices) * {out_c} + c;"),
        );
        line(&mut w, "    let plane = z * p.in_h * p.in_w;");
        for (h, [acc, taps]) in self.halves() {
            // Half 1 (gated): channel `c + half_c`, its plane `half_c` planes on.
            let channel = ["c", "(c + half_c)"][h];
            line(&mut w, format!("    let bias{h} = bias_slope[{channel}];"));
            for r in 0..rows {
                for x in 0..cols {
                    line(&mut w, format!("    var {acc}{r}_{x} = bias{h};"));
                    if self.residual.is_some() {
                        line(&mut w, format!("    var s{r}_{x} = 0.0;"));
                    }
                }
            }
            line(
                &mut w,
                format!("    let wi{h} = {channel} * {}u;", k_h * k_w),
            );
            for ky in 0..k_h {
                for kx in 0..k_w {
                    let tap = self.tap(&format!("wi{h} + {}u", ky * k_w + kx));
                    line(&mut w, format!("    let {taps}{ky}_{kx} = {tap};"));
                }
            }
        }
        line(&mut w, "    let half_plane = half_c * p.in_h * p.in_w;");
        line(
            &mut w,
            format!("    let iy0 = i32(oy0 * {sh}u) - i32(p.pad_top);"),
        );
        line(&mut w, "    let last_row = i32(p.in_h) - 1;");
        w
    }

    /// The halves an invocation computes (one, or two where gated), each with the prefixes of
    /// its accumulators and its taps.
    fn halves(&self) -> impl Iterator<Item = (usize, [&'static str; 2])> {
        HALVES
            .into_iter()
            .enumerate()
            .take(1 + usize::from(self.gate))
    }

    /// The multiply-adds of input column `j` (its rows' values in `{value}{i}`) into every
    /// accumulator of half `h` ([`Self::halves`]) whose taps read it.
    fn column_products(&self, w: &mut String, j: u32, h: usize, value: &dyn Fn(u32) -> String) {
        let ([k_h, k_w], [sh, sw], [dh, dw]) = (self.k, self.stride, self.dilation);
        let [acc, taps] = HALVES[h];
        // The residual: patch column j is output column j - k_w / 2, row i output row i - k_h / 2.
        if h == 0 && self.residual.is_some() && (k_w / 2..k_w / 2 + self.cols).contains(&j) {
            for r in 0..self.rows {
                let x = j - k_w / 2;
                line(
                    w,
                    format!("        s{r}_{x} = f32({});", value(r + k_h / 2)),
                );
            }
        }
        for (kx, x) in super::conv2d_narrow::column_readers(j, k_w, sw, dw, self.cols) {
            for ky in 0..k_h {
                for r in 0..self.rows {
                    let i = r * sh + ky * dh;
                    line(
                        w,
                        format!("        {acc}{r}_{x} += {} * {taps}{ky}_{kx};", value(i)),
                    );
                }
            }
        }
    }

    /// The patch loaded one value a load, each column's rows then its products.
    fn scalar_loads(&self, w: &mut String) {
        let [span_h, span_w] = self.span();
        let ([_, k_w], [_, sw], [_, dw]) = (self.k, self.stride, self.dilation);
        line(
            w,
            format!("    let ix0 = i32(ox0 * {sw}u) - i32(p.pad_left);"),
        );
        line(w, "    let last_col = i32(p.in_w) - 1;");
        for j in 0..span_h {
            line(
                w,
                format!(
                    "    let y{j} = iy0 + {j}; let my{j} = y{j} >= 0 && y{j} <= last_row; \
                 let ry{j} = plane + u32(clamp(y{j}, 0, last_row)) * p.in_w;"
                ),
            );
        }
        for j in 0..span_w {
            if super::conv2d_narrow::column_readers(j, k_w, sw, dw, self.cols).is_empty() {
                continue;
            }
            line(w, "    {");
            line(
                w,
                format!(
                    "        let x = ix0 + {j}; let mx = x >= 0 && x <= last_col; \
                 let cx = u32(clamp(x, 0, last_col));"
                ),
            );
            for (h, name) in self.halves().map(|(h, _)| (h, ["c", "d"][h])) {
                let at = ["", " + half_plane"][h];
                for i in 0..span_h {
                    line(
                        w,
                        format!(
                            "        let {name}{i} = select(0.0, f32(src[ry{i} + cx{at}]), my{i} && mx);"
                        ),
                    );
                }
                self.column_products(w, j, h, &|i| format!("{name}{i}"));
            }
            line(w, "    }");
        }
    }

    /// The patch loaded 4 columns a load: the vec4s that hold its columns (the block starts on
    /// a multiple of 4 input columns before the padding), each used for the columns it holds.
    fn wide_loads(&self, w: &mut String, pad_left: u32) {
        let [span_h, span_w] = self.span();
        let ([_, k_w], [_, sw], [_, dw]) = (self.k, self.stride, self.dilation);
        let read =
            |j: u32| !super::conv2d_narrow::column_readers(j, k_w, sw, dw, self.cols).is_empty();
        // Column j of the patch is input column ox0 * sw + j - pad_left (`row_loads::plan`).
        line(w, format!("    let q0 = i32(ox0 * {sw}u / 4u);"));
        line(w, "    let last_q = i32(p.in_w / 4u) - 1;");
        line(w, "    let row4 = p.in_w / 4u;");
        line(w, "    let plane4 = plane / 4u;");
        for j in 0..span_h {
            line(
                w,
                format!(
                    "    let y{j} = iy0 + {j}; let my{j} = y{j} >= 0 && y{j} <= last_row; \
                 let ry{j} = plane4 + u32(clamp(y{j}, 0, last_row)) * row4;"
                ),
            );
        }
        for load in super::row_loads::plan(span_w, pad_left, read, self.load8) {
            line(w, "    {");
            line(
                w,
                format!(
                    "        let q = q0 + {}; let mq = q >= 0 && q <= last_q; \
                 let cq = u32(clamp(q, 0, last_q));",
                    load.d
                ),
            );
            for (h, name) in self.halves().map(|(h, _)| (h, ["v", "e"][h])) {
                // Half 1's plane, in vec4s (a multiple of 8 values where read 8 a load).
                let at = ["", " + half_plane / 4u"][h];
                for i in 0..span_h {
                    let (index, inside) = (format!("ry{i} + cq{at}"), format!("my{i} && mq"));
                    let values = load.values(&index, &inside, self.load8, &format!("{name}{i}"));
                    line(w, format!("        {values}"));
                }
                for &(j, _, _) in &load.columns {
                    self.column_products(w, j, h, &|i| load.value(j, &format!("{name}{i}")));
                }
            }
            line(w, "    }");
        }
    }

    /// The patch of whole rows ([`Variant::rows_off_grid`]): each row's vec4s from the grid
    /// point at or before its start (its offset past the grid, 0 or 2 for rows 2 mod 4 wide, from
    /// the parity of its row: the block's first output row is even; 0 for rows a multiple of 4
    /// wide), then each column's products. Column `j` is input column `j - pad_left`; those
    /// past the row read 0.
    fn off_grid_loads(&self, w: &mut String, [pad_top, pad_left]: [u32; 2]) {
        let [span_h, span_w] = self.span();
        let in_w = self.cols * self.stride[1];
        let shift = |i: u32| (in_w % 4) * ((i + pad_top) % 2);
        let loads = (in_w % 4 + in_w).div_ceil(4);
        for i in 0..span_h {
            let shift = shift(i);
            line(
                w,
                format!(
                    "    let y{i} = iy0 + {i}; let my{i} = y{i} >= 0 && y{i} <= last_row; \
                 let b{i} = u32(max(i32(plane) + y{i} * i32(p.in_w) - {shift}, 0)) / 4u;"
                ),
            );
            for q in 0..loads {
                line(
                    w,
                    format!(
                        "    let v{i}_{q} = select(vec4<f32>(0.0), vec4<f32>(src[b{i} + {q}u]), my{i});"
                    ),
                );
            }
        }
        for j in 0..span_w {
            let value = |i: u32| {
                let x = j as i32 - pad_left as i32;
                if x < 0 || x >= in_w as i32 {
                    return "0.0".to_string();
                }
                let e = shift(i) + x as u32;
                format!("v{i}_{}[{}]", e / 4, e % 4)
            };
            line(w, "    {");
            self.column_products(w, j, 0, &value);
            line(w, "    }");
        }
    }

    /// WGSL: output pixel (r, x) of the block, activated, with the residual where there is one,
    /// gated where the variant is.
    fn output(&self, r: u32, x: u32) -> String {
        if self.gate {
            return format!("act(activate(a{r}_{x}, c) * activate(b{r}_{x}, c + half_c))");
        }
        match self.residual {
            None => format!("act(activate(a{r}_{x}, c))"),
            Some(Residual::BeforeActivation) => format!("act(activate(a{r}_{x} + s{r}_{x}, c))"),
            Some(Residual::AfterActivation) => format!("act(activate(a{r}_{x}, c) + s{r}_{x})"),
        }
    }

    /// The activated accumulators stored, one value a store, 2 (`rows_off_grid`), 4 (`store4`)
    /// or 8 (`store8`).
    fn stores(&self, w: &mut String) {
        line(w, "    let out_plane = zo * p.out_h * p.out_w;");
        for r in 0..self.rows {
            if self.store8 {
                for x in (0..self.cols).step_by(8) {
                    let half = |from: u32| {
                        (from..from + 4)
                            .map(|x| self.output(r, x))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    line(
                        w,
                        format!(
                            "    if oy0 + {r}u < p.out_h && ox0 + {x}u < p.out_w {{ \
                         dst[(out_plane + (oy0 + {r}u) * p.out_w + ox0 + {x}u) / 8u] = \
                         pack8(vec4<f32>({}), vec4<f32>({})); }}",
                            half(x),
                            half(x + 4)
                        ),
                    );
                }
                continue;
            }
            if self.store4 {
                for x in (0..self.cols).step_by(4) {
                    let v = (x..x + 4)
                        .map(|x| self.output(r, x))
                        .collect::<Vec<_>>()
                        .join(", ");
                    line(
                        w,
                        format!(
                            "    if oy0 + {r}u < p.out_h && ox0 + {x}u < p.out_w {{ \
                         dst[(out_plane + (oy0 + {r}u) * p.out_w + ox0 + {x}u) / 4u] = vec4<act>({v}); }}"
                        ),
                    );
                }
                continue;
            }
            // Whole rows of an even width: 2 values a store, every row's start even.
            if self.rows_off_grid.is_some() {
                for x in (0..self.cols).step_by(2) {
                    let (a, b) = (self.output(r, x), self.output(r, x + 1));
                    line(
                        w,
                        format!(
                            "    if oy0 + {r}u < p.out_h {{ \
                         dst[(out_plane + (oy0 + {r}u) * p.out_w + {x}u) / 2u] = vec2<act>({a}, {b}); }}"
                        ),
                    );
                }
                continue;
            }
            for x in 0..self.cols {
                line(
                    w,
                    format!(
                        "    if oy0 + {r}u < p.out_h && ox0 + {x}u < p.out_w {{ \
                     dst[out_plane + (oy0 + {r}u) * p.out_w + ox0 + {x}u] = {}; }}",
                        self.output(r, x)
                    ),
                );
            }
        }
        line(w, "}");
    }
}

/// The prefixes of a half's accumulators and taps (half 1: a gated variant's channel `c + half_c`).
const HALVES: [[&str; 2]; 2] = [["a", "w"], ["b", "u"]];
const WEIGHTS: &str = "var<storage, read> weights: array<f32>;";

/// The generated entry point's first lines, after a comment saying what it is.
pub(super) fn entry_point(w: &mut String, comment: &str) {
    line(w, format!("// {comment}"));
    line(w, format!("@compute @workgroup_size({WORKGROUP_X}, 1, 1)"));
    line(
        w,
        "fn main(@builtin(global_invocation_id) gid: vec3<u32>) {",
    );
}

pub(super) fn line(w: &mut String, l: impl AsRef<str>) {
    w.push_str(l.as_ref());
    w.push('\n');
}
