//! Depthwise convolution over whole planes (`depthwise_conv2d::Variant::planes`): an invocation
//! computes every output pixel of a few consecutive channels of one item.
//!
//! Their planes are consecutive in memory, so together they lie on the 4-value grid even where
//! one plane does not (a 7 x 7 plane is 49 values, 4 of them 196): every value is read 4 a load
//! and written 4 a store, without a bounds check, since the map, its padding and each value's
//! place in its vec4 are known when the kernel is built; taps that fall on the padding are left
//! out. Loads and stores follow the planes in memory order, so that only a few rows are live at
//! a time. On llvmpipe a load is a loop over the lanes (see `depthwise_conv2d`), so a 7 x 7
//! map's 49 one-value loads and 49 stores a channel become 12.25 of each.

use super::depthwise_conv2d::Variant;
use super::depthwise_source::{entry_point, line};
use crate::model::Residual;
use std::collections::HashSet;

/// The most values (channels x plane) an invocation reads or writes.
const MAX_VALUES: u32 = 256;
/// The longest side of a map taken whole.
const MAX_SIDE: u32 = 16;

/// The whole planes an invocation computes, and the map (known when the kernel is built).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Planes {
    /// Consecutive channels an invocation: the fewest whose planes fill whole vec4s, in and out.
    pub channels: u32,
    /// Input rows and columns.
    pub input: [u32; 2],
    /// Output rows and columns.
    pub output: [u32; 2],
    /// Padding on the top and on the left.
    pub pads: [u32; 2],
}

impl Planes {
    /// The planes for a map of `channels` channels, `input` onto `output` rows x columns, or
    /// None where it is too large to take whole or the channels do not split into groups whose
    /// planes fill whole vec4s.
    pub fn for_map(
        channels: u32,
        input: [u32; 2],
        output: [u32; 2],
        pads: [u32; 2],
    ) -> Option<Self> {
        let (plane_in, plane_out) = (input[0] * input[1], output[0] * output[1]);
        let group = [1, 2, 4]
            .into_iter()
            .find(|g| (g * plane_in).is_multiple_of(4) && (g * plane_out).is_multiple_of(4))?;
        let fits = channels.is_multiple_of(group)
            && group * plane_in.max(plane_out) <= MAX_VALUES
            && input.iter().chain(&output).all(|&n| n <= MAX_SIDE);
        fits.then_some(Self {
            channels: group,
            input,
            output,
            pads,
        })
    }
}

/// WGSL: the entry point `main` of `v` over `planes`, after `declarations` (`src` and `dst` as
/// vec4s).
pub(super) fn source(v: &Variant, planes: Planes, declarations: String) -> String {
    let Planes {
        channels: group,
        input: [in_h, in_w],
        output: [out_h, out_w],
        pads: [pad_top, pad_left],
    } = planes;
    let ([k_h, k_w], [sh, sw]) = (v.k, v.stride);
    let mut w = declarations;
    entry_point(
        &mut w,
        &format!(
            "Whole planes: {group} channels of {in_h}x{in_w} onto {out_h}x{out_w} an \
             invocation, kernel {k_h}x{k_w}, stride {sh}x{sw}, padding {pad_top} top {pad_left} left."
        ),
    );
    line(
        &mut w,
        format!("    if gid.x >= p.channels / {group}u {{ return; }}"),
    );
    line(&mut w, format!("    let first = gid.x * {group}u;"));
    // The group's index among the batch's groups: its planes start there.
    line(
        &mut w,
        format!("    let groups = gid.z * (p.channels / {group}u) + gid.x;"),
    );
    line(
        &mut w,
        format!("    let src0 = groups * {}u;", group * in_h * in_w / 4),
    );
    line(
        &mut w,
        format!("    let dst0 = groups * {}u;", group * out_h * out_w / 4),
    );
    let mut loaded = HashSet::new();
    for g in 0..group {
        channel(v, planes, g, &mut loaded, &mut w);
    }
    line(&mut w, "}");
    w
}

/// WGSL: channel `g` of the group: its taps, then each output value in memory order, the vec4s
/// of input it reads loaded before it (those not in `loaded` already), each vec4 of output
/// stored once its 4 values are computed.
fn channel(v: &Variant, planes: Planes, g: u32, loaded: &mut HashSet<u32>, w: &mut String) {
    let Planes {
        input: [in_h, in_w],
        output: [out_h, out_w],
        pads: [pad_top, pad_left],
        ..
    } = planes;
    let ([k_h, k_w], [sh, sw], [dh, dw]) = (v.k, v.stride, v.dilation);
    let (plane_in, plane_out) = (in_h * in_w, out_h * out_w);
    line(
        w,
        format!("    let c{g} = first + {g}u; let b{g} = bias_slope[c{g}];"),
    );
    for ky in 0..k_h {
        for kx in 0..k_w {
            let tap = v.tap(&format!("c{g} * {}u + {}u", k_h * k_w, ky * k_w + kx));
            line(w, format!("    let w{g}_{ky}_{kx} = {tap};"));
        }
    }
    // Input value (iy, ix) of the channel, its vec4 loaded first where it is not yet.
    let mut input = |w: &mut String, iy: u32, ix: u32| {
        let at = g * plane_in + iy * in_w + ix;
        if loaded.insert(at / 4) {
            line(
                w,
                format!("    let q{0} = vec4<f32>(src[src0 + {0}u]);", at / 4),
            );
        }
        format!("q{}[{}]", at / 4, at % 4)
    };
    for r in 0..out_h {
        for x in 0..out_w {
            let mut sum = format!("b{g}");
            for ky in 0..k_h {
                for kx in 0..k_w {
                    let iy = (r * sh + ky * dh)
                        .checked_sub(pad_top)
                        .filter(|&y| y < in_h);
                    let ix = (x * sw + kx * dw)
                        .checked_sub(pad_left)
                        .filter(|&x| x < in_w);
                    if let (Some(iy), Some(ix)) = (iy, ix) {
                        sum += &format!(" + {} * w{g}_{ky}_{kx}", input(w, iy, ix));
                    }
                }
            }
            let value = match v.residual {
                None => format!("activate({sum}, c{g})"),
                Some(Residual::BeforeActivation) => {
                    format!("activate({sum} + {}, c{g})", input(w, r, x))
                }
                Some(Residual::AfterActivation) => {
                    format!("activate({sum}, c{g}) + {}", input(w, r, x))
                }
            };
            let at = g * plane_out + r * out_w + x;
            line(w, format!("    let o{at} = {value};"));
            if at % 4 == 3 {
                let four = (at - 3..=at).map(|o| format!("o{o}")).collect::<Vec<_>>();
                let four = four.join(", ");
                line(
                    w,
                    format!(
                        "    dst[dst0 + {}u] = vec4<act>(vec4<f32>({four}));",
                        at / 4
                    ),
                );
            }
        }
    }
}
