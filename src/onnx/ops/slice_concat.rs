//! Concat, Split and Slice.

// Free sizes: the image lowering.

use anyhow::{Context as _, Result, anyhow, bail};

use crate::model::{Layer, LayerOp};
use crate::onnx::image::ImageLowering;
use crate::onnx::proto::NodeProto;
use crate::onnx::{attr, attr_int, attr_ints, node_name, tensor_to_i64};

impl ImageLowering<'_> {
    pub(crate) fn lower_concat(&mut self, node: &NodeProto) -> Result<()> {
        let flat_inputs: Option<Vec<&Vec<i64>>> = node
            .input
            .iter()
            .map(|n| self.values.get(n).and_then(|v| self.flat.get(v)))
            .collect();
        // A negative axis counts from the end: of [N, C, H, W], or of a reshaped value.
        let rank = flat_inputs
            .as_ref()
            .and_then(|t| t.first())
            .map_or(4, |tail| tail.len() as i64 + 2);
        let axis = attr_int(node, "axis", 1);
        let axis = if axis < 0 { axis + rank } else { axis };
        // Reshaped [1, A_i, ...tail] values with equal tails concatenate on axis 1 as flat
        // blocks: the same copy as channels of [A_i * tail, 1, 1].
        let flat_concat = axis == 1
            && flat_inputs
                .as_ref()
                .is_some_and(|t| t.windows(2).all(|p| p[0] == p[1]));
        let spatial = if axis < 0 { axis + 4 } else { axis };
        if !flat_concat && (spatial == 2 || spatial == 3) {
            let inputs = node
                .input
                .iter()
                .map(|n| self.value_of(n))
                .collect::<Result<Vec<_>>>()?;
            let c = self.channels[inputs[0]];
            self.push_plain(node, LayerOp::ConcatAxis(spatial as usize), inputs, c);
            return Ok(());
        }
        if !flat_concat && axis != 1 && axis != -3 {
            bail!("Concat on axis {axis} is not supported yet (channels, axis 1, are)");
        }
        let inputs = node
            .input
            .iter()
            .map(|n| self.value_of(n))
            .collect::<Result<Vec<_>>>()?;
        let c = inputs.iter().map(|&v| self.channels[v]).sum();
        self.push_plain(node, LayerOp::Concat, inputs, c);
        Ok(())
    }

    pub(crate) fn lower_split(&mut self, node: &NodeProto) -> Result<()> {
        let axis = attr_int(node, "axis", 0);
        let axis = if axis < 0 { axis + 4 } else { axis };
        if axis == 2 || axis == 3 {
            return self.lower_split_spatial(node, axis);
        }
        if axis != 1 {
            bail!("Split on axis {axis} (the batch) is not supported");
        }
        let input = self.value_of(&node.input[0])?;
        let total = self.channels[input];
        let sizes: Vec<u32> = match node.input.get(1).filter(|n| !n.is_empty()) {
            Some(name) => self
                .initializers
                .get(name.as_str())
                .with_context(|| format!("split sizes {name} are not a constant"))
                .and_then(|t| tensor_to_i64(t))?
                .into_iter()
                .map(|v| v as u32)
                .collect(),
            None => match attr_ints(node, "split") {
                Some(v) => v.into_iter().map(|v| v as u32).collect(),
                None => {
                    let parts = node.output.len() as u32;
                    if parts == 0 || parts > total {
                        bail!("{total} channels do not split into {parts} parts");
                    }
                    // Opset 18: parts of ceil(total / parts), the last one smaller.
                    let chunk = total.div_ceil(parts);
                    if !total.is_multiple_of(parts) && attr(node, "num_outputs").is_none() {
                        bail!("{total} channels do not split into {parts} equal parts");
                    }
                    (0..parts)
                        .map(|i| chunk.min(total - (i * chunk).min(total)))
                        .collect()
                }
            },
        };
        if sizes.len() != node.output.len() || sizes.iter().sum::<u32>() != total {
            bail!(
                "split sizes {sizes:?} do not cover {total} channels in {} outputs",
                node.output.len()
            );
        }
        let mut start = 0;
        for (out_name, &count) in node.output.iter().zip(&sizes) {
            let output = self.channels.len();
            self.channels.push(count);
            self.values.insert(out_name.clone(), output);
            self.layers.push(Layer {
                name: format!("{} -> {out_name}", node_name(node)),
                op: LayerOp::SliceChannels { start, count },
                inputs: vec![input],
                output,
                weights: Vec::new(),
                bias: Vec::new(),
            });
            start += count;
        }
        Ok(())
    }

    /// A Split of height or width (`axis` 2 or 3): explicit sizes become crops along that axis.
    fn lower_split_spatial(&mut self, node: &NodeProto, axis: i64) -> Result<()> {
        let input = self.value_of(&node.input[0])?;
        let sizes: Vec<i64> = match node.input.get(1).filter(|n| !n.is_empty()) {
            Some(name) => self
                .initializers
                .get(name.as_str())
                .with_context(|| format!("split sizes {name} are not a constant"))
                .and_then(|t| tensor_to_i64(t))?,
            None => attr_ints(node, "split")
                .ok_or_else(|| anyhow!("an equal Split of height or width needs explicit sizes"))?,
        };
        if sizes.len() != node.output.len() {
            bail!("{} sizes for {} outputs", sizes.len(), node.output.len());
        }
        let mut start = 0i64;
        for (out_name, &len) in node.output.iter().zip(&sizes) {
            let (mut s3, mut e3) = ([0i64; 3], [i64::MAX; 3]);
            s3[axis as usize - 1] = start;
            e3[axis as usize - 1] = start + len;
            start += len;
            let output = self.channels.len();
            self.channels.push(self.channels[input]);
            self.values.insert(out_name.clone(), output);
            self.layers.push(Layer {
                name: format!("{} -> {out_name}", node_name(node)),
                op: LayerOp::Crop {
                    starts: s3,
                    ends: e3,
                    steps: [1; 3],
                },
                inputs: vec![input],
                output,
                weights: Vec::new(),
                bias: Vec::new(),
            });
        }
        Ok(())
    }

    pub(crate) fn lower_slice(&mut self, node: &NodeProto) -> Result<()> {
        let input = self.value_of(&node.input[0])?;
        let ints = |i: usize| -> Result<Option<Vec<i64>>> {
            match node.input.get(i).filter(|n| !n.is_empty()) {
                None => Ok(None),
                Some(n) => self
                    .initializers
                    .get(n.as_str())
                    .with_context(|| format!("{n} is not a constant"))
                    .and_then(|t| tensor_to_i64(t))
                    .map(Some),
            }
        };
        let (starts, ends) = match (ints(1)?, ints(2)?) {
            (Some(s), Some(e)) => (s, e),
            _ => (
                attr_ints(node, "starts").unwrap_or_default(),
                attr_ints(node, "ends").unwrap_or_default(),
            ),
        };
        let axes = ints(3)?
            .or_else(|| attr_ints(node, "axes"))
            .unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = ints(4)?.unwrap_or_else(|| vec![1; starts.len()]);
        if steps.len() != starts.len() {
            bail!("Slice has {} steps for {} axes", steps.len(), starts.len());
        }
        if let Some(k) = steps.iter().find(|&&k| k == 0 || i32::try_from(k).is_err()) {
            bail!("Slice step {k} is not valid (a step is a non-zero 32-bit integer)");
        }
        let (mut s3, mut e3, mut k3) = ([0i64; 3], [i64::MAX; 3], [1i64; 3]);
        for (((&a, &b), &e), &k) in axes.iter().zip(&starts).zip(&ends).zip(&steps) {
            let a = if a < 0 { a + 4 } else { a };
            if !(1..=3).contains(&a) {
                bail!("Slice on axis {a} (the batch) is not supported");
            }
            s3[a as usize - 1] = b;
            e3[a as usize - 1] = e;
            k3[a as usize - 1] = k;
        }
        let c = self.channels[input];
        self.push_plain(
            node,
            LayerOp::Crop {
                starts: s3,
                ends: e3,
                steps: k3,
            },
            vec![input],
            c,
        );
        Ok(())
    }
}

// Fixed shapes: static_graph::Lowering.

/// Concat, Split, Slice and Gather: copies of blocks, folded for constants.
///
/// The fixed-shape translator's part: methods of [`Lowering`], which
/// `Lowering::lower_node` (`onnx/static_graph.rs`) calls by op type.
mod fixed_shapes {
    use anyhow::{Context as _, Result, bail};

    use crate::model::{CopySpec, LayerOp, TensorOp};
    use crate::onnx::proto::NodeProto;
    use crate::onnx::static_graph::{HostTensor, Lowering, Val, axis, input, numel, strides_i64};
    use crate::onnx::{attr, attr_int, attr_ints, node_name};

    impl Lowering<'_> {
        /// ONNX Concat.
        pub(crate) fn lower_concat(&mut self, node: &NodeProto) -> Result<()> {
            let v = self.concat(
                node,
                &node.input,
                attr(node, "axis").context("has no axis")?.i,
            )?;
            self.set(node, 0, v);
            Ok(())
        }

        /// ONNX Split.
        pub(crate) fn lower_split(&mut self, node: &NodeProto) -> Result<()> {
            let dims = self.dims_of(input(node, 0)?)?;
            let a = axis(attr_int(node, "axis", 0), dims.len())?;
            let parts = node.output.len();
            let sizes: Vec<u32> = match self.constant(node, 1, "the split sizes")? {
                Some(t) => t.ints().iter().map(|&x| x as u32).collect(),
                None => match attr_ints(node, "split") {
                    Some(s) => s.iter().map(|&x| x as u32).collect(),
                    None => {
                        let n = attr_int(node, "num_outputs", parts as i64) as u32;
                        let each = dims[a].div_ceil(n);
                        (0..n)
                            .map(|k| each.min(dims[a].saturating_sub(k * each)))
                            .collect()
                    }
                },
            };
            if sizes.len() != parts || sizes.iter().sum::<u32>() != dims[a] {
                bail!("split sizes {sizes:?} do not cut {} into {parts}", dims[a]);
            }
            let mut start = 0;
            for (k, &n) in sizes.iter().enumerate() {
                let mut counts = dims.clone();
                counts[a] = n;
                let mut starts = vec![0i64; dims.len()];
                starts[a] = start as i64;
                let v = self.slice(
                    node,
                    input(node, 0)?,
                    &starts,
                    &vec![1; dims.len()],
                    &counts,
                )?;
                self.set(node, k, v);
                start += n;
            }
            Ok(())
        }

        /// ONNX Slice.
        pub(crate) fn lower_slice(&mut self, node: &NodeProto) -> Result<()> {
            let opset = self.opset;
            let dims = self.dims_of(input(node, 0)?)?;
            let rank = dims.len();
            let (starts, ends, axes, steps) = if opset >= 10 {
                let c = |s: &Self, i: usize, w: &str| -> Result<Option<Vec<i64>>> {
                    Ok(s.constant(node, i, w)?.map(|t| t.ints()))
                };
                (
                    c(self, 1, "starts")?.context("has no starts")?,
                    c(self, 2, "ends")?.context("has no ends")?,
                    c(self, 3, "axes")?,
                    c(self, 4, "steps")?,
                )
            } else {
                (
                    attr_ints(node, "starts").context("has no starts")?,
                    attr_ints(node, "ends").context("has no ends")?,
                    attr_ints(node, "axes"),
                    None,
                )
            };
            let axes: Vec<usize> = match axes {
                Some(a) => a.iter().map(|&x| axis(x, rank)).collect::<Result<_>>()?,
                None => (0..starts.len()).collect(),
            };
            let steps = steps.unwrap_or_else(|| vec![1; axes.len()]);
            let mut first = vec![0i64; rank];
            let mut step = vec![1i64; rank];
            let mut counts = dims.clone();
            for (k, &a) in axes.iter().enumerate() {
                let n = dims[a] as i64;
                let s = steps[k];
                if s == 0 {
                    bail!("a Slice step of 0");
                }
                let fix = |v: i64| if v < 0 { v + n } else { v };
                let (b, e) = if s > 0 {
                    (fix(starts[k]).clamp(0, n), fix(ends[k]).clamp(0, n))
                } else {
                    (
                        fix(starts[k]).clamp(-1, n - 1),
                        fix(ends[k]).clamp(-1, n - 1),
                    )
                };
                let count = if s > 0 {
                    ((e - b).max(0) + s - 1) / s
                } else {
                    ((b - e).max(0) + (-s) - 1) / (-s)
                };
                first[a] = b;
                step[a] = s;
                counts[a] = count as u32;
            }
            let v = self.slice(node, input(node, 0)?, &first, &step, &counts)?;
            self.set(node, 0, v);
            Ok(())
        }

        /// ONNX Gather.
        pub(crate) fn lower_gather(&mut self, node: &NodeProto) -> Result<()> {
            let dims = self.dims_of(input(node, 0)?)?;
            let a = axis(attr_int(node, "axis", 0), dims.len())?;
            let idx = self
                .constant(node, 1, "the indices")?
                .context("has no indices")?;
            let n = dims[a] as i64;
            let picks: Vec<i64> = idx
                .ints()
                .iter()
                .map(|&i| if i < 0 { i + n } else { i })
                .collect();
            if picks.iter().any(|&i| !(0..n).contains(&i)) {
                bail!("indices {:?} are out of range for {n}", idx.ints());
            }
            let mut out: Vec<u32> = dims[..a].to_vec();
            out.extend(idx.dims.iter().map(|&d| d as u32));
            out.extend(&dims[a + 1..]);
            if let Val::Const(t) = self.get(input(node, 0)?)? {
                let outer = numel(&dims[..a]) as usize;
                let inner = numel(&dims[a + 1..]) as usize;
                let mut data = Vec::new();
                for o in 0..outer {
                    for &p in &picks {
                        let at = (o * n as usize + p as usize) * inner;
                        data.extend_from_slice(&t.data[at..at + inner]);
                    }
                }
                let dims = out.iter().map(|&d| d as usize).collect();
                self.set(node, 0, Val::Const(t.with_dims(dims, data)));
                return Ok(());
            }
            // One copy per index: row `p` of axis a to position k.
            let st = strides_i64(&dims);
            let mut block = dims.clone();
            block[a] = 1;
            let out_blocked: Vec<u32> = {
                let mut b = dims.clone();
                b[a] = picks.len() as u32;
                b
            };
            let os = strides_i64(&out_blocked);
            let copies = picks
                .iter()
                .enumerate()
                .map(|(k, &p)| {
                    (
                        Some(0),
                        CopySpec {
                            dims: block.clone(),
                            src_strides: st.clone(),
                            src_offset: p * st[a],
                            dst_strides: os.clone(),
                            dst_offset: k as i64 * os[a],
                        },
                    )
                })
                .collect();
            let (v, _) = self.gpu(input(node, 0)?)?;
            let id = self.push(
                node_name(node),
                LayerOp::Tensor(TensorOp::Copy(copies)),
                vec![v],
                out.clone(),
                Vec::new(),
            );
            self.set(node, 0, Val::Gpu(id, out));
            Ok(())
        }

        /// Concat of GPU values and constants on `axis`.
        pub(crate) fn concat(
            &mut self,
            node: &NodeProto,
            names: &[String],
            axis_attr: i64,
        ) -> Result<Val> {
            let names: Vec<&String> = names.iter().filter(|n| !n.is_empty()).collect();
            let all_dims: Vec<Vec<u32>> = names
                .iter()
                .map(|n| self.dims_of(n))
                .collect::<Result<_>>()?;
            let first = all_dims.first().context("has no inputs")?.clone();
            let a = axis(axis_attr, first.len())?;
            for d in &all_dims {
                if d.len() != first.len() || (0..d.len()).any(|k| k != a && d[k] != first[k]) {
                    bail!("inputs of {all_dims:?} do not concatenate on axis {a}");
                }
            }
            let mut out = first.clone();
            out[a] = all_dims.iter().map(|d| d[a]).sum();
            if names
                .iter()
                .all(|n| matches!(self.vals.get(*n), Some(Val::Const(_))))
            {
                // Host concat.
                let outer: usize = first[..a].iter().map(|&d| d as usize).product();
                let mut data = Vec::new();
                for o in 0..outer {
                    for (n, d) in names.iter().zip(&all_dims) {
                        let Some(Val::Const(t)) = self.vals.get(*n) else {
                            unreachable!("checked")
                        };
                        let block: usize = d[a..].iter().map(|&x| x as usize).product();
                        data.extend_from_slice(&t.data[o * block..(o + 1) * block]);
                    }
                }
                let int = names
                    .iter()
                    .all(|n| matches!(self.vals.get(*n), Some(Val::Const(t)) if t.int));
                return Ok(Val::Const(HostTensor {
                    dims: out.iter().map(|&d| d as usize).collect(),
                    data,
                    int,
                }));
            }
            let out_strides = strides_i64(&out);
            let mut inputs = Vec::new();
            let mut copies = Vec::new();
            let mut offset = 0u32;
            for (n, d) in names.iter().zip(&all_dims) {
                if numel(d) == 0 {
                    continue;
                }
                let (v, _) = self.gpu(n)?;
                copies.push((
                    Some(inputs.len()),
                    CopySpec {
                        dims: d.clone(),
                        src_strides: strides_i64(d),
                        src_offset: 0,
                        dst_strides: out_strides.clone(),
                        dst_offset: offset as i64 * out_strides[a],
                    },
                ));
                inputs.push(v);
                offset += d[a];
            }
            let id = self.push(
                node_name(node),
                LayerOp::Tensor(TensorOp::Copy(copies)),
                inputs,
                out.clone(),
                Vec::new(),
            );
            Ok(Val::Gpu(id, out))
        }

        /// A block of `input`: per axis a start and step (negative steps walk backwards) and a
        /// count.
        pub(crate) fn slice(
            &mut self,
            node: &NodeProto,
            name: &str,
            starts: &[i64],
            steps: &[i64],
            counts: &[u32],
        ) -> Result<Val> {
            let dims = self.dims_of(name)?;
            let st = strides_i64(&dims);
            let spec = CopySpec {
                dims: counts.to_vec(),
                src_strides: st.iter().zip(steps).map(|(s, k)| s * k).collect(),
                src_offset: starts.iter().zip(&st).map(|(a, s)| a * s).sum(),
                dst_strides: strides_i64(counts),
                dst_offset: 0,
            };
            if let Val::Const(t) = self.get(name)? {
                let mut data = vec![0.0f32; spec.count() as usize];
                let src: Vec<f32> = t.data.iter().map(|&x| x as f32).collect();
                spec.reference(&src, &mut data);
                // Integers beyond f32's exact range are rare in shape arithmetic; keep f64 where
                // the slice is a plain gather of indices.
                let exact: Vec<f64> = (0..data.len())
                    .map(|i| {
                        let (mut rest, mut s) = (i, spec.src_offset);
                        for k in (0..spec.dims.len()).rev() {
                            let n = spec.dims[k] as usize;
                            s += (rest % n) as i64 * spec.src_strides[k];
                            rest /= n;
                        }
                        t.data[s as usize]
                    })
                    .collect();
                return Ok(Val::Const(
                    t.with_dims(counts.iter().map(|&d| d as usize).collect(), exact),
                ));
            }
            if numel(counts) == 0 {
                return Ok(Val::Const(HostTensor {
                    dims: counts.iter().map(|&d| d as usize).collect(),
                    data: Vec::new(),
                    int: false,
                }));
            }
            let (v, _) = self.gpu(name)?;
            Ok(Val::Gpu(
                self.copy(node, v, spec, counts.to_vec()),
                counts.to_vec(),
            ))
        }
    }
}
