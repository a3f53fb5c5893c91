//! Matrix products: Gemm.

use anyhow::{Context as _, Result, bail};

use crate::model::{Activation, BinaryOp, Conv2dSpec, LayerOp, MatMulSpec, TensorOp, UnaryOp};
use crate::onnx::lowering::{Dim, FreeVal, Lowering, Val, input, plain_layer};
use crate::onnx::proto::NodeProto;
use crate::onnx::{attr_float, attr_int, node_name};

impl Lowering<'_> {
    /// ONNX MatMul.
    pub(crate) fn lower_matmul(&mut self, node: &NodeProto) -> Result<()> {
        let v = self.matmul(node)?;
        self.set(node, 0, v);
        Ok(())
    }

    /// ONNX Gemm.
    pub(crate) fn lower_gemm(&mut self, node: &NodeProto) -> Result<()> {
        let v = self.gemm(node)?;
        self.set(node, 0, v);
        Ok(())
    }

    fn matmul(&mut self, node: &NodeProto) -> Result<Val> {
        let (a, b) = (
            input(node, 0)?.to_owned(),
            node.input.get(1).context("has no B")?.clone(),
        );
        let (mut da, mut db) = (self.dims_of(&a)?, self.dims_of(&b)?);
        // numpy: a vector operand gains a unit axis, dropped from the result.
        let (va, vb) = (da.len() == 1, db.len() == 1);
        if va {
            da.insert(0, 1);
        }
        if vb {
            db.push(1);
        }
        let spec = MatMulSpec::matmul(&da, &db)
            .with_context(|| format!("cannot multiply {da:?} by {db:?}"))?;
        let mut out = spec.batch.clone();
        if !va {
            out.push(spec.m);
        }
        if !vb {
            out.push(spec.n);
        }
        let (av, _) = self.gpu(&a)?;
        let (inputs, constant_b, weights) = match self.get(&b)?.clone() {
            Val::Const(t) => (vec![av], true, t.data.iter().map(|&x| x as f32).collect()),
            Val::Gpu(bv, _) => (vec![av, bv], false, Vec::new()),
            Val::Free(_) => bail!("multiplies a tensor of fixed dims by one of free dims"),
        };
        let id = self.push(
            node_name(node),
            LayerOp::Tensor(TensorOp::MatMul { spec, constant_b }),
            inputs,
            out.clone(),
            weights,
        );
        Ok(Val::Gpu(id, out))
    }

    fn gemm(&mut self, node: &NodeProto) -> Result<Val> {
        if let Some(x) = self.free_val(input(node, 0)?) {
            return self.gemm_free(node, &x);
        }
        let (a, b) = (
            input(node, 0)?.to_owned(),
            node.input.get(1).context("has no B")?.clone(),
        );
        let (da, db) = (self.dims_of(&a)?, self.dims_of(&b)?);
        if da.len() != 2 || db.len() != 2 {
            bail!("Gemm takes matrices, not {da:?} and {db:?}");
        }
        let (ta, tb) = (
            attr_int(node, "transA", 0) == 1,
            attr_int(node, "transB", 0) == 1,
        );
        let (m, k) = if ta { (da[1], da[0]) } else { (da[0], da[1]) };
        let (kb, n) = if tb { (db[1], db[0]) } else { (db[0], db[1]) };
        if k != kb {
            bail!("cannot multiply {da:?} by {db:?} (transA {ta}, transB {tb})");
        }
        let spec = MatMulSpec {
            batch: Vec::new(),
            a_batch: Vec::new(),
            b_batch: Vec::new(),
            m,
            k,
            n,
            a_row: if ta { 1 } else { k },
            a_col: if ta { m } else { 1 },
            b_row: if tb { 1 } else { n },
            b_col: if tb { k } else { 1 },
            alpha: attr_float(node, "alpha", 1.0),
        };
        let (av, _) = self.gpu(&a)?;
        let (inputs, constant_b, weights) = match self.get(&b)?.clone() {
            Val::Const(t) => (vec![av], true, t.data.iter().map(|&x| x as f32).collect()),
            Val::Gpu(bv, _) => (vec![av, bv], false, Vec::new()),
            Val::Free(_) => bail!("multiplies a tensor of fixed dims by one of free dims"),
        };
        let out = vec![m, n];
        let id = self.push(
            format!("{} (product)", node_name(node)),
            LayerOp::Tensor(TensorOp::MatMul { spec, constant_b }),
            inputs,
            out.clone(),
            weights,
        );
        let product = Val::Gpu(id, out);
        let Some(c) = node.input.get(2).filter(|c| !c.is_empty()).cloned() else {
            return Ok(product);
        };
        let beta = attr_float(node, "beta", 1.0) as f64;
        let pname = format!("{} (product)", node_name(node));
        self.vals.insert(pname.clone(), product);
        let c_name = match self.get(&c)?.clone() {
            Val::Const(mut t) => {
                t.data.iter_mut().for_each(|x| *x *= beta);
                let n = format!("{} (C)", node_name(node));
                self.vals.insert(n.clone(), Val::Const(t));
                n
            }
            Val::Free(_) => bail!("C has free dims and the product fixed ones"),
            Val::Gpu(..) if beta == 1.0 => c,
            Val::Gpu(..) => {
                let scaled = self.unary(
                    node,
                    &c,
                    UnaryOp::Affine {
                        scale: beta as f32,
                        offset: 0.0,
                    },
                )?;
                let n = format!("{} (beta C)", node_name(node));
                self.vals.insert(n.clone(), scaled);
                n
            }
        };
        self.binary(node, &pname, &c_name, BinaryOp::Add)
    }

    /// Gemm of `[N, K]` (stored as `[N, K, 1, 1]`) with free N: a 1x1 convolution, B and C
    /// constant.
    fn gemm_free(&mut self, node: &NodeProto, x: &FreeVal) -> Result<Val> {
        if attr_int(node, "transA", 0) != 0 {
            bail!("Gemm with transA=1 is not supported with a free batch");
        }
        let b = self.constant_f32(node, 1, "B")?.context("has no B")?;
        let k = x.c as usize;
        let &[d0, d1] = &b.dims[..] else {
            bail!("B has shape {:?}, not 2-D", b.dims);
        };
        let (d0, d1) = (d0 as usize, d1 as usize);
        let trans_b = attr_int(node, "transB", 0) != 0;
        let (m, bk) = if trans_b { (d0, d1) } else { (d1, d0) };
        if bk != k {
            bail!("B of shape {:?} does not take {k} inputs", b.dims);
        }
        let alpha = attr_float(node, "alpha", 1.0);
        let beta = attr_float(node, "beta", 1.0);
        let mut weights = vec![0.0f32; m * k];
        for o in 0..m {
            for i in 0..k {
                let v = if trans_b {
                    b.data[o * k + i]
                } else {
                    b.data[i * m + o]
                };
                weights[o * k + i] = alpha * v;
            }
        }
        let bias: Vec<f32> = match self.constant(node, 2, "C")? {
            Some(c) => match c.data.len() {
                1 => vec![beta * c.data[0] as f32; m],
                n if n == m => c.data.iter().map(|&v| beta * v as f32).collect(),
                n => bail!("C has {n} values for {m} outputs"),
            },
            None => Vec::new(),
        };
        let out_c = u32::try_from(m)?;
        let spec = Conv2dSpec {
            in_c: x.c,
            out_c,
            k_h: 1,
            k_w: 1,
            stride: [1, 1],
            pads: [0; 4],
            dilation: [1, 1],
            groups: 1,
            activation: Activation::None,
        };
        let mut layer = plain_layer(node_name(node), LayerOp::Conv2d(spec), vec![x.id]);
        layer.weights = weights;
        layer.bias = bias;
        let out = FreeVal {
            id: 0,
            dims: vec![Dim::Free, Dim::Fixed(out_c)],
            c: out_c,
            flat: x.flat,
        };
        Ok(self.push_free(layer, out))
    }
}
