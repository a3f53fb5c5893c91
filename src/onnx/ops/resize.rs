//! Resizing: Resize and Upsample.

use anyhow::{Context as _, Result, bail};

use crate::model::LayerOp;
use crate::onnx::lowering::{FreeVal, HostTensor, Lowering, Val, input, plain_layer};
use crate::onnx::node_name;
use crate::onnx::proto::NodeProto;
use crate::onnx::{attr, attr_float, attr_int, attr_ints};

/// A Resize's constant inputs by index (roi, scales, sizes; index 0, the data, is never one).
type Constants = [Option<HostTensor>; 4];

impl Lowering<'_> {
    /// Resize or Upsample: the nearest kernel for whole factors with floor-like modes, else the
    /// filter kernel. With free sizes, of an image; with fixed dims, of `[N, C, H, W]` (each
    /// plane resized), the output dims worked out here.
    pub(crate) fn lower_resize(&mut self, node: &NodeProto) -> Result<()> {
        let mut constants: Constants = Default::default();
        for (i, slot) in constants.iter_mut().enumerate().skip(1) {
            if let Some(Val::Const(t)) = node.input.get(i).and_then(|n| self.get(n).ok()) {
                *slot = Some(t.clone());
            }
        }
        let mode = attr(node, "mode").map_or("nearest".into(), |a| {
            String::from_utf8_lossy(&a.s).into_owned()
        });
        let op = if mode == "linear" || mode == "bilinear" || mode == "cubic" {
            LayerOp::ResizeFilter(resize_filter_spec(node, &constants)?)
        } else {
            // Whole factors with floor-like modes: the plain nearest kernel; any other nearest
            // resize: the filter kernel with the exact ONNX rounding.
            match resize_scale(node, &constants) {
                Ok(scale) => LayerOp::ResizeNearest(scale),
                Err(_) => LayerOp::ResizeFilter(resize_filter_spec(node, &constants)?),
            }
        };
        let output_hw = |h: u32, w: u32| match &op {
            LayerOp::ResizeNearest([sh, sw]) => (h * sh, w * sw),
            LayerOp::ResizeFilter(spec) => spec.output_hw(h, w),
            _ => unreachable!("resize ops"),
        };
        let name = input(node, 0)?;
        let v = if let Some(x) = self.free_val(name) {
            let c = x.channels()?;
            let hw = x.hw().map(|(h, w)| output_hw(h, w));
            let layer = plain_layer(node_name(node), op, vec![x.id]);
            self.push_free(layer, FreeVal::image(c, hw))
        } else {
            let dims = self.dims_of(name)?;
            let [n, c, h, w] = dims[..] else {
                bail!("Resize takes [N, C, H, W], not {dims:?}");
            };
            let (oh, ow) = output_hw(h, w);
            if oh == 0 || ow == 0 {
                bail!("resizes {dims:?} to nothing");
            }
            let (v, _) = self.gpu(name)?;
            let out = vec![n, c, oh, ow];
            let id = self.push(node_name(node), op, vec![v], out.clone(), Vec::new());
            Val::Gpu(id, out)
        };
        self.set(node, 0, v);
        Ok(())
    }
}

/// A linear Resize: its coordinate mode and its scales (input 2) or output sizes (input 3).
fn resize_filter_spec(
    node: &NodeProto,
    constants: &Constants,
) -> Result<crate::model::ResizeFilterSpec> {
    fn place<T: Copy>(values: &[T], axes: &[i64], fill: T) -> Result<[T; 4]> {
        if values.len() != axes.len() || axes.iter().any(|a| !(0..4).contains(a)) {
            bail!("Resize names {} values for axes {axes:?}", values.len());
        }
        let mut out = [fill; 4];
        for (v, &a) in values.iter().zip(axes) {
            out[a as usize] = *v;
        }
        Ok(out)
    }
    use crate::model::{Coords, Filter, ResizeFilterSpec, Target};
    let text = |name: &str, default: &str| {
        attr(node, name).map_or(default.to_owned(), |a| {
            String::from_utf8_lossy(&a.s).into_owned()
        })
    };
    let coords = match text("coordinate_transformation_mode", "half_pixel").as_str() {
        "half_pixel" => Coords::HalfPixel,
        "half_pixel_symmetric" => Coords::HalfPixelSymmetric,
        "pytorch_half_pixel" => Coords::PytorchHalfPixel,
        "align_corners" => Coords::AlignCorners,
        "asymmetric" => Coords::Asymmetric,
        other => bail!("Resize coordinate_transformation_mode={other} is not supported yet"),
    };
    let constant = |i: usize| constants.get(i).and_then(Option::as_ref);
    // Scales and sizes name every axis, or (opset 18) the axes in `axes`: put them in
    // [N, C, H, W] order, unnamed axes unscaled (sizes: -1 for "as the input").
    let axes: Vec<i64> = attr_ints(node, "axes")
        .unwrap_or_else(|| vec![0, 1, 2, 3])
        .iter()
        .map(|&a| if a < 0 { a + 4 } else { a })
        .collect();
    let policy = text("keep_aspect_ratio_policy", "stretch");
    let target = if let Some(sizes) = constant(3) {
        let full = place(&sizes.ints(), &axes, -1)?;
        match full {
            [_, _, h, w] if h > 0 && w > 0 => match policy.as_str() {
                "stretch" => Target::Size([h as u32, w as u32]),
                "not_larger" | "not_smaller" => Target::Fit {
                    size: [h as u32, w as u32],
                    not_smaller: policy == "not_smaller",
                },
                other => bail!("Resize keep_aspect_ratio_policy={other} is not supported"),
            },
            other => bail!("Resize sizes {other:?} must be [N, C, h, w]"),
        }
    } else {
        let scales = constant(2)
            .or_else(|| constant(1).filter(|_| node.op_type == "Upsample"))
            .context("Resize needs constant scales or sizes")?;
        let scales: Vec<f32> = scales.data.iter().map(|&x| x as f32).collect();
        match place(&scales, &axes, 1.0)? {
            [n, c, h, w] if n == 1.0 && c == 1.0 && h > 0.0 && w > 0.0 => Target::Scale([h, w]),
            other => bail!("Resize scales {other:?} must be [1, 1, h, w]"),
        }
    };
    if attr_int(node, "antialias", 0) != 0 {
        bail!("Resize with antialias=1 is not supported yet");
    }
    let filter = if text("mode", "nearest") == "nearest" {
        use crate::model::NearestMode;
        Filter::Nearest(match text("nearest_mode", "round_prefer_floor").as_str() {
            "round_prefer_floor" => NearestMode::RoundPreferFloor,
            "round_prefer_ceil" => NearestMode::RoundPreferCeil,
            "floor" => NearestMode::Floor,
            "ceil" => NearestMode::Ceil,
            other => bail!("Resize nearest_mode={other} is not supported"),
        })
    } else if text("mode", "nearest") == "cubic" {
        Filter::Cubic {
            a: attr_float(node, "cubic_coeff_a", -0.75),
            exclude_outside: attr_int(node, "exclude_outside", 0) != 0,
        }
    } else {
        Filter::Linear
    };
    Ok(ResizeFilterSpec {
        target,
        coords,
        filter,
    })
}

/// Whole-number nearest-neighbour scale factors of a Resize (or Upsample) node.
fn resize_scale(node: &NodeProto, constants: &Constants) -> Result<[u32; 2]> {
    let mode = attr(node, "mode").map_or("nearest".into(), |a| {
        String::from_utf8_lossy(&a.s).into_owned()
    });
    if mode != "nearest" {
        bail!("Resize mode {mode} is not supported yet (nearest, linear and cubic are)");
    }
    if attr(node, "axes").is_some() {
        bail!("Resize with axes goes through the filter kernel");
    }
    let coords = attr(node, "coordinate_transformation_mode").map_or("half_pixel".into(), |a| {
        String::from_utf8_lossy(&a.s).into_owned()
    });
    let nearest = attr(node, "nearest_mode").map_or("round_prefer_floor".into(), |a| {
        String::from_utf8_lossy(&a.s).into_owned()
    });
    // With whole scale factors, these modes all pick source pixel floor(out / scale).
    let exact = match coords.as_str() {
        "asymmetric" => nearest == "floor" || nearest == "round_prefer_floor",
        "half_pixel" | "pytorch_half_pixel" => nearest != "ceil",
        _ => false,
    };
    if !exact {
        bail!(
            "Resize with coordinate_transformation_mode={coords} and nearest_mode={nearest} is not \
             supported yet"
        );
    }
    // Scales are input 2 (opset 11+) or 1 (Upsample, opset 10 Resize); sizes (input 3) are not.
    let (scales_at, scales_name) = node
        .input
        .iter()
        .enumerate()
        .rev()
        .find(|(i, n)| !n.is_empty() && (*i == 1 || *i == 2))
        .filter(|_| node.input.get(3).is_none_or(std::string::String::is_empty))
        .context("Resize by output sizes is not supported yet; export with scales")?;
    let scales: Vec<f32> = constants[scales_at]
        .as_ref()
        .with_context(|| format!("scales {scales_name} are not a constant"))?
        .data
        .iter()
        .map(|&x| x as f32)
        .collect();
    let whole = |v: f32| (v >= 1.0 && v.fract() == 0.0).then_some(v as u32);
    match scales.as_slice() {
        [n, c, h, w] if *n == 1.0 && *c == 1.0 => match (whole(*h), whole(*w)) {
            (Some(h), Some(w)) => Ok([h, w]),
            _ => bail!("Resize scales {h} x {w} are not whole numbers >= 1"),
        },
        other => bail!("Resize scales {other:?} must be [1, 1, h, w]"),
    }
}
