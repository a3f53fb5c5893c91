//! Constants: the Constant node.

use anyhow::{Context as _, Result, bail};

use crate::onnx::attr;
use crate::onnx::lowering::{
    HostTensor, Lowering, MAX_HOST_ELEMENTS, Val, checked_count, host_tensor,
};
use crate::onnx::proto::NodeProto;

impl Lowering<'_> {
    /// ONNX Constant.
    pub(crate) fn lower_constant(&mut self, node: &NodeProto) -> Result<()> {
        let a = node.attribute.first().context("has no value")?;
        let t = match a.name.as_str() {
            "value" => host_tensor(a.t.as_ref().context("has no tensor")?)?,
            "value_float" => HostTensor::scalar(a.f as f64, false),
            "value_int" => HostTensor::scalar(a.i as f64, true),
            "value_floats" => {
                HostTensor::vector(a.floats.iter().map(|&x| x as f64).collect(), false)
            }
            "value_ints" => HostTensor::vector(a.ints.iter().map(|&x| x as f64).collect(), true),
            other => bail!("Constant's {other} attribute is not supported"),
        };
        self.set(node, 0, Val::Const(t));
        Ok(())
    }

    /// ONNX ConstantOfShape.
    pub(crate) fn lower_constant_of_shape(&mut self, node: &NodeProto) -> Result<()> {
        let shape = self
            .constant(node, 0, "the shape")?
            .context("has no shape")?;
        let value = attr(node, "value")
            .and_then(|a| a.t.as_ref())
            .map(host_tensor)
            .transpose()?;
        let int = value.as_ref().is_some_and(|t| t.int);
        let value = value.and_then(|t| t.data.first().copied()).unwrap_or(0.0);
        let dims: Vec<usize> = shape.ints().iter().map(|&d| d.max(0) as usize).collect();
        let n = checked_count(&dims).with_context(|| {
            format!("a constant of shape {dims:?} is beyond {MAX_HOST_ELEMENTS} elements")
        })?;
        self.set(
            node,
            0,
            Val::Const(HostTensor {
                dims,
                data: vec![value; n],
                int,
            }),
        );
        Ok(())
    }

    /// ONNX Range.
    pub(crate) fn lower_range(&mut self, node: &NodeProto) -> Result<()> {
        let s = |i| -> Result<f64> {
            Ok(self
                .constant(node, i, "Range's bounds")?
                .context("has no bound")?
                .data[0])
        };
        let (start, limit, delta) = (s(0)?, s(1)?, s(2)?);
        let int = self
            .constant(node, 0, "Range's start")?
            .is_some_and(|t| t.int);
        let n = ((limit - start) / delta).ceil().max(0.0);
        if !n.is_finite() || n > MAX_HOST_ELEMENTS as f64 {
            bail!(
                "a Range from {start} to {limit} by {delta} is not a list of at most {MAX_HOST_ELEMENTS} values"
            );
        }
        let n = n as usize;
        let data = (0..n).map(|i| start + i as f64 * delta).collect();
        self.set(node, 0, Val::Const(HostTensor::vector(data, int)));
        Ok(())
    }
}
