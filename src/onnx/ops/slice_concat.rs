//! Concat, Split and Slice.

use anyhow::{Context as _, Result, bail};

use crate::model::{CopySpec, LayerOp, TensorOp};
use crate::onnx::lowering::{
    Dim, FreeVal, HostTensor, Lowering, Val, axis, input, numel, plain_layer, strides_i64,
};
use crate::onnx::proto::NodeProto;
use crate::onnx::{attr, attr_int, attr_ints, node_name};

/// Slice's starts, ends, axes and steps.
type SliceParams = (Vec<i64>, Vec<i64>, Option<Vec<i64>>, Option<Vec<i64>>);

impl Lowering<'_> {
    /// ONNX Concat.
    pub(crate) fn lower_concat(&mut self, node: &NodeProto) -> Result<()> {
        if node.input.iter().any(|n| self.free_val(n).is_some()) {
            let v = self.concat_free(node)?;
            self.set(node, 0, v);
            return Ok(());
        }
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
        if let Some(x) = self.free_val(input(node, 0)?) {
            return self.split_free(node, &x);
        }
        let dims = self.dims_of(input(node, 0)?)?;
        if dims.is_empty() {
            bail!("cannot split a scalar");
        }
        let a = axis(attr_int(node, "axis", 0), dims.len())?;
        let parts = node.output.len();
        let given = match self.constant(node, 1, "the split sizes")? {
            Some(t) => Some(t.ints()),
            None => attr_ints(node, "split"),
        };
        let sizes: Vec<u32> = match given {
            Some(s) => s
                .iter()
                .map(|&x| u32::try_from(x))
                .collect::<std::result::Result<_, _>>()
                .with_context(|| format!("split sizes {s:?} are not sizes"))?,
            None => {
                let n = u32::try_from(attr_int(node, "num_outputs", parts as i64))
                    .ok()
                    .filter(|&n| n > 0 && n as usize == parts)
                    .with_context(|| format!("cannot split into {parts} outputs"))?;
                let each = dims[a].div_ceil(n);
                (0..n)
                    .map(|k| each.min(dims[a].saturating_sub(k.saturating_mul(each))))
                    .collect()
            }
        };
        let total: u64 = sizes.iter().map(|&n| u64::from(n)).sum();
        if sizes.len() != parts || total != u64::from(dims[a]) {
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
        let (starts, ends, axes, steps) = self.slice_params(node)?;
        if let Some(x) = self.free_val(input(node, 0)?) {
            let v = self.slice_free(node, &x, &starts, &ends, (axes, steps))?;
            self.set(node, 0, v);
            return Ok(());
        }
        let dims = self.dims_of(input(node, 0)?)?;
        let rank = dims.len();
        let axes: Vec<usize> = match axes {
            Some(a) => a.iter().map(|&x| axis(x, rank)).collect::<Result<_>>()?,
            None => (0..starts.len()).collect(),
        };
        let steps = steps.unwrap_or_else(|| vec![1; axes.len()]);
        if steps.len() != axes.len() || starts.len() != axes.len() || ends.len() != axes.len() {
            bail!(
                "Slice has {} starts, {} ends and {} steps for {} axes",
                starts.len(),
                ends.len(),
                steps.len(),
                axes.len()
            );
        }
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

    /// Concat with free dims: of images on channels (one copy per input) or on height or width;
    /// of values stored flat ([`Self::reshape_free`]) with equal dims after axis 1, on axis 1 as
    /// whole blocks per item.
    fn concat_free(&mut self, node: &NodeProto) -> Result<Val> {
        let xs = node
            .input
            .iter()
            .filter(|n| !n.is_empty())
            .map(|n| self.free_input(n))
            .collect::<Result<Vec<_>>>()?;
        let first = xs.first().context("has no inputs")?;
        let rank = first.dims.len();
        let a = axis(attr(node, "axis").context("has no axis")?.i, rank)?;
        let flat = xs.iter().all(|x| x.flat);
        let sum: Option<u32> = xs
            .iter()
            .map(|x| x.dims.get(a).and_then(|d| d.fixed()))
            .sum();
        let mut dims = first.dims.clone();
        dims[a] = sum.map_or(Dim::Free, Dim::Fixed);
        let inputs = xs.iter().map(|x| x.id).collect();
        if flat && a == 1 && xs.iter().all(|x| x.dims[2..] == first.dims[2..]) {
            let c = xs.iter().map(|x| x.c).sum();
            let layer = plain_layer(node_name(node), LayerOp::Concat, inputs);
            return Ok(self.push_free(
                layer,
                FreeVal {
                    id: 0,
                    dims,
                    c,
                    flat,
                },
            ));
        }
        for x in &xs {
            x.channels()?;
        }
        let (op, c) = match a {
            1 => (LayerOp::Concat, xs.iter().map(|x| x.c).sum()),
            2 | 3 => (LayerOp::ConcatAxis(a), first.c),
            _ => bail!("Concat on axis {a} (the batch) is not supported with a free batch"),
        };
        let layer = plain_layer(node_name(node), op, inputs);
        let out = FreeVal {
            id: 0,
            dims,
            c,
            flat: false,
        };
        Ok(self.push_free(layer, out))
    }

    /// Split with free dims: of channels (their sizes given, or equal parts), or of height or
    /// width by given sizes, as crops.
    fn split_free(&mut self, node: &NodeProto, x: &FreeVal) -> Result<()> {
        let total = x.channels()?;
        let a = axis(attr_int(node, "axis", 0), 4)?;
        let given: Option<Vec<i64>> = match self.constant(node, 1, "the split sizes")? {
            Some(t) => Some(t.ints()),
            None => attr_ints(node, "split"),
        };
        let parts = node.output.len();
        let sizes: Vec<i64> = match (a, given) {
            (0, _) => bail!("Split on axis 0 (the batch) is not supported with a free batch"),
            (_, Some(s)) => s,
            (1, None) => {
                let n = u32::try_from(parts).unwrap_or(0);
                if n == 0 || n > total {
                    bail!("{total} channels do not split into {parts} parts");
                }
                // Opset 18: parts of ceil(total / parts), the last one smaller.
                if !total.is_multiple_of(n) && attr(node, "num_outputs").is_none() {
                    bail!("{total} channels do not split into {parts} equal parts");
                }
                let chunk = total.div_ceil(n);
                (0..n)
                    .map(|i| i64::from(chunk.min(total - (i * chunk).min(total))))
                    .collect()
            }
            _ => bail!("an equal Split of height or width needs explicit sizes"),
        };
        // Each a size (so their sum and the running start fit in i64).
        if sizes.len() != parts || sizes.iter().any(|&n| u32::try_from(n).is_err()) {
            bail!("split sizes {sizes:?} do not fit {parts} outputs");
        }
        if a == 1 && sizes.iter().sum::<i64>() != i64::from(total) {
            bail!("split sizes {sizes:?} do not cover {total} channels");
        }
        let mut start = 0i64;
        for (k, &len) in sizes.iter().enumerate() {
            let out_name = node.output.get(k).cloned().unwrap_or_default();
            let mut dims = x.dims.clone();
            let (op, c) = if a == 1 {
                let count = u32::try_from(len).unwrap_or(0);
                dims[1] = Dim::Fixed(count);
                let start = u32::try_from(start).unwrap_or(0);
                (LayerOp::SliceChannels { start, count }, count)
            } else {
                let (mut s3, mut e3) = ([0i64; 3], [i64::MAX; 3]);
                s3[a - 1] = start;
                e3[a - 1] = start + len;
                dims[a] = u32::try_from(len).map_or(Dim::Free, Dim::Fixed);
                let steps = [1; 3];
                let op = LayerOp::Crop {
                    starts: s3,
                    ends: e3,
                    steps,
                };
                (op, x.c)
            };
            start += len;
            let name = format!("{} -> {out_name}", node_name(node));
            let layer = plain_layer(name, op, vec![x.id]);
            let out = FreeVal {
                id: 0,
                dims,
                c,
                flat: false,
            };
            let v = self.push_free(layer, out);
            self.set(node, k, v);
        }
        Ok(())
    }

    /// Slice's starts, ends, axes and steps: inputs from opset 10, attributes before.
    fn slice_params(&self, node: &NodeProto) -> Result<SliceParams> {
        if self.opset >= 10 {
            let c = |i: usize, w: &str| -> Result<Option<Vec<i64>>> {
                Ok(self.constant(node, i, w)?.map(|t| t.ints()))
            };
            Ok((
                c(1, "starts")?.context("has no starts")?,
                c(2, "ends")?.context("has no ends")?,
                c(3, "axes")?,
                c(4, "steps")?,
            ))
        } else {
            Ok((
                attr_ints(node, "starts").context("has no starts")?,
                attr_ints(node, "ends").context("has no ends")?,
                attr_ints(node, "axes"),
                None,
            ))
        }
    }

    /// Slice of an image of free size: a crop of channels, height and width, any step.
    fn slice_free(
        &mut self,
        node: &NodeProto,
        x: &FreeVal,
        starts: &[i64],
        ends: &[i64],
        (axes, steps): (Option<Vec<i64>>, Option<Vec<i64>>),
    ) -> Result<Val> {
        x.channels()?;
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if steps.len() != starts.len() || ends.len() != starts.len() || axes.len() != starts.len() {
            bail!(
                "Slice has {} starts, {} ends, {} axes and {} steps",
                starts.len(),
                ends.len(),
                axes.len(),
                steps.len()
            );
        }
        if let Some(k) = steps.iter().find(|&&k| k == 0 || i32::try_from(k).is_err()) {
            bail!("Slice step {k} is not valid (a step is a non-zero 32-bit integer)");
        }
        let (mut s3, mut e3, mut k3) = ([0i64; 3], [i64::MAX; 3], [1i64; 3]);
        for (((&a, &b), &e), &k) in axes.iter().zip(starts).zip(ends).zip(&steps) {
            let a = axis(a, 4)?;
            if a == 0 {
                bail!("Slice on axis 0 (the batch) is not supported with a free batch");
            }
            s3[a - 1] = b;
            e3[a - 1] = e;
            k3[a - 1] = k;
        }
        // The crop's size is known where the input's is.
        let mut dims = x.dims.clone();
        for (a, axis_crop) in (1..4).zip(0..3) {
            if let Some(n) = x.dims[a].fixed() {
                let probe = crate::model::ItemShape { c: n, h: n, w: n };
                let count = crate::model::crop_axes(probe, s3, e3, k3)[axis_crop].count;
                dims[a] = Dim::Fixed(count);
            } else if (s3[axis_crop], e3[axis_crop], k3[axis_crop]) != (0, i64::MAX, 1) {
                dims[a] = Dim::Free;
            }
        }
        let c = dims[1].fixed().unwrap_or(x.c);
        let op = LayerOp::Crop {
            starts: s3,
            ends: e3,
            steps: k3,
        };
        let layer = plain_layer(node_name(node), op, vec![x.id]);
        let out = FreeVal {
            id: 0,
            dims,
            c,
            flat: false,
        };
        Ok(self.push_free(layer, out))
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
            .all(|n| matches!(self.get(n).ok(), Some(Val::Const(_))))
        {
            // Host concat.
            let outer: usize = first[..a].iter().map(|&d| d as usize).product();
            let mut data = Vec::new();
            for o in 0..outer {
                for (n, d) in names.iter().zip(&all_dims) {
                    let Some(Val::Const(t)) = self.get(n).ok() else {
                        unreachable!("checked")
                    };
                    let block: usize = d[a..].iter().map(|&x| x as usize).product();
                    data.extend_from_slice(&t.data[o * block..(o + 1) * block]);
                }
            }
            let int = names
                .iter()
                .all(|n| matches!(self.get(n).ok(), Some(Val::Const(t)) if t.int));
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
