//! Nearest, bilinear and bicubic resize (`shaders/resize_filter.wgsl`) with ONNX's coordinate modes;
//! bilinear runs its entry point `linear` (a column of [`LINEAR_ROWS`] outputs an invocation,
//! each input row read once), an upsampling by 2 with half_pixel coordinates `resize2x.rs`.

use super::{Bind, Step};
use crate::model::{Coords, Filter, NearestMode, ResizeFilterSpec};

impl NearestMode {}

/// Output rows an invocation of resize_filter.wgsl's `linear` computes (its `ROWS`).
pub const LINEAR_ROWS: u32 = 8;

/// Mirror of `Params` in shaders/resize_filter.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ResizeFilterParams {
    pub in_h: u32,
    pub in_w: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub coords: u32,
    pub cubic: u32,
    pub scale_h: f32,
    pub scale_w: f32,
    pub cubic_a: f32,
    pub nearest_mode: u32,
    pub exclude_outside: u32,
    pub _pad: u32,
}

fn source_unclamped(o: u32, in_len: u32, out_len: u32, scale: f32, coords: Coords) -> f64 {
    let (o, i, s) = (o as f64, in_len as f64, scale as f64);
    // ONNX measures the resized length as in * scale, before rounding to whole pixels.
    let resized = (in_len as f32 * scale) as f64;
    let x = match coords {
        Coords::HalfPixel => (o + 0.5) / s - 0.5,
        Coords::HalfPixelSymmetric => {
            let adjustment = out_len as f64 / resized;
            i / 2.0 * (1.0 - adjustment) + (o + 0.5) / s - 0.5
        }
        Coords::PytorchHalfPixel if resized > 1.0 => (o + 0.5) / s - 0.5,
        Coords::AlignCorners if resized > 1.0 => o * (i - 1.0) / (resized - 1.0),
        Coords::Asymmetric => o / s,
        _ => 0.0,
    };
    let _ = i;
    x
}

/// The shader's f32 source coordinate, before clamping.
fn source_f32(o: u32, in_len: u32, out_len: u32, scale: f32, coords: Coords) -> f32 {
    let resized = in_len as f32 * scale;
    let o = o as f32;
    match coords {
        Coords::HalfPixel => (o + 0.5) / scale - 0.5,
        Coords::HalfPixelSymmetric => {
            let adjustment = out_len as f32 / resized;
            in_len as f32 / 2.0 * (1.0 - adjustment) + (o + 0.5) / scale - 0.5
        }
        Coords::PytorchHalfPixel if resized > 1.0 => (o + 0.5) / scale - 0.5,
        Coords::AlignCorners if resized > 1.0 => o * (in_len - 1) as f32 / (resized - 1.0),
        Coords::Asymmetric => o / scale,
        _ => 0.0,
    }
}

fn source(o: u32, in_len: u32, out_len: u32, scale: f32, coords: Coords) -> f64 {
    source_unclamped(o, in_len, out_len, scale, coords).clamp(0.0, in_len as f64 - 1.0)
}

fn cubic_weights(t: f64, a: f64) -> [f64; 4] {
    let (t1, t2, t3) = (t + 1.0, 1.0 - t, 2.0 - t);
    [
        ((a * t1 - 5.0 * a) * t1 + 8.0 * a) * t1 - 4.0 * a,
        ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0,
        ((a + 2.0) * t2 - (a + 3.0)) * t2 * t2 + 1.0,
        ((a * t3 - 5.0 * a) * t3 + 8.0 * a) * t3 - 4.0 * a,
    ]
}

/// CPU reference in f64 over `planes` planes of `h x w`.
pub fn reference(spec: &ResizeFilterSpec, input: &[f32], planes: u32, h: u32, w: u32) -> Vec<f32> {
    let (oh, ow) = spec.output_hw(h, w);
    let [sh, sw] = spec.scales(h, w);
    let mut out = Vec::with_capacity((planes * oh * ow) as usize);
    for p in 0..planes {
        let at = |y: usize, x: usize| input[(p as usize * h as usize + y) * w as usize + x] as f64;
        if let Filter::Nearest(mode) = spec.filter {
            // In f32 as the shader (and onnxruntime) computes it: rounding a coordinate that lands
            // on a pixel boundary depends on it.
            for oy in 0..oh {
                let y = mode.index(source_f32(oy, h, oh, sh, spec.coords) as f64, h);
                for ox in 0..ow {
                    let x = mode.index(source_f32(ox, w, ow, sw, spec.coords) as f64, w);
                    out.push(at(y, x) as f32);
                }
            }
            continue;
        }
        if let Filter::Cubic { a, exclude_outside } = spec.filter {
            let clampi = |v: i64, n: u32| v.clamp(0, n as i64 - 1) as usize;
            // Taps outside the image: weight 0, the rest renormalised (exclude_outside).
            let weights = |x: f64, n: u32| {
                let mut wts = cubic_weights(x - x.floor(), a as f64);
                if exclude_outside {
                    for (k, wk) in wts.iter_mut().enumerate() {
                        let at = x.floor() as i64 + k as i64 - 1;
                        if at < 0 || at >= n as i64 {
                            *wk = 0.0;
                        }
                    }
                    let sum: f64 = wts.iter().sum();
                    wts.iter_mut().for_each(|wk| *wk /= sum);
                }
                wts
            };
            for oy in 0..oh {
                let y = source_unclamped(oy, h, oh, sh, spec.coords);
                let wy = weights(y, h);
                for ox in 0..ow {
                    let x = source_unclamped(ox, w, ow, sw, spec.coords);
                    let wx = weights(x, w);
                    let mut sum = 0.0;
                    for (j, wyj) in wy.iter().enumerate() {
                        let iy = clampi(y.floor() as i64 + j as i64 - 1, h);
                        let row: f64 = wx
                            .iter()
                            .enumerate()
                            .map(|(i, wxi)| {
                                wxi * at(iy, clampi(x.floor() as i64 + i as i64 - 1, w))
                            })
                            .sum();
                        sum += wyj * row;
                    }
                    out.push(sum as f32);
                }
            }
            continue;
        }
        for oy in 0..oh {
            let y = source(oy, h, oh, sh, spec.coords);
            let (y0, fy) = (y.floor() as usize, y - y.floor());
            let y1 = (y0 + 1).min(h as usize - 1);
            for ox in 0..ow {
                let x = source(ox, w, ow, sw, spec.coords);
                let (x0, fx) = (x.floor() as usize, x - x.floor());
                let x1 = (x0 + 1).min(w as usize - 1);
                let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                out.push((top * (1.0 - fy) + bottom * fy) as f32);
            }
        }
    }
    out
}

pub fn prepare(
    cx: Bind,
    spec: &ResizeFilterSpec,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    channels: u32,
    h: u32,
    w: u32,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    if super::resize2x::applies(spec, h, w) {
        return super::resize2x::prepare(Bind::new(gpu, kernels, label), src, dst, channels, h, w);
    }
    let (out_h, out_w) = spec.output_hw(h, w);
    let (pipeline, rows) = match spec.filter {
        Filter::Linear => (&kernels.resize_linear, LINEAR_ROWS),
        _ => (&kernels.resize_filter, 1),
    };
    let [scale_h, scale_w] = spec.scales(h, w);
    let params = ResizeFilterParams {
        in_h: h,
        in_w: w,
        out_h,
        out_w,
        coords: spec.coords as u32,
        cubic: match spec.filter {
            Filter::Linear => 0,
            Filter::Cubic { .. } => 1,
            Filter::Nearest(_) => 2,
        },
        scale_h,
        scale_w,
        cubic_a: match spec.filter {
            Filter::Cubic { a, .. } => a,
            _ => 0.0,
        },
        nearest_mode: match spec.filter {
            Filter::Nearest(m) => m as u32,
            _ => 0,
        },
        exclude_outside: matches!(
            spec.filter,
            Filter::Cubic {
                exclude_outside: true,
                ..
            }
        ) as u32,
        _pad: 0,
    };
    super::step(
        gpu,
        label,
        pipeline,
        &params,
        &[src, dst],
        [out_w.div_ceil(16), out_h.div_ceil(4 * rows)],
        channels,
    )
}
