//! What a gemm or conv2d kernel does with its sums, compiled into the kernel: whether it starts
//! from the bias and finishes in one pass, the residual and the activation.
//!
//! The stores of gemm.wgsl's and conv2d.wgsl's kernels and of the split Winograd's output
//! transform branch on `p.first`, `p.last`, `p.residual` and `p.activation`. Mesa 22's
//! llvmpipe cannot tell such a branch is the same in every lane, so it runs both sides under a
//! mask: at every store the read of `dst` (after the first chunk) and the two reads of the
//! residual run their loops over the lanes with no lane active, and every activation is computed.
//! With these fixed when the kernel is built, the compiler drops what is never taken
//! (BENCHMARKS.md, "The stores' branches compiled in").

/// The stores' behaviour a gemm or conv2d kernel has compiled in (part of its pipeline's key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epilogue {
    /// Every dispatch covers all input channels: it starts from the bias, never reads `dst`,
    /// and adds the residual and applies the activation (`p.first` and `p.last` both 1).
    pub whole: bool,
    /// `p.residual`: 0 none, 1 added before the activation, 2 after.
    pub residual: u32,
    /// `p.activation` (`Activation::encode`).
    pub activation: u32,
}

impl Epilogue {
    /// The epilogue of a layer whose dispatches are `whole` (one pass each), with `residual`
    /// and `activation`; None (the kernel reads them from its params, shared by every layer of
    /// its blocking) where `BATCHWISE_GEMM_EPILOGUE=uniform` (to measure).
    pub fn compiled(whole: bool, residual: u32, activation: u32) -> Option<Self> {
        let uniform = std::env::var("BATCHWISE_GEMM_EPILOGUE").is_ok_and(|v| v == "uniform");
        (!uniform).then_some(Self {
            whole,
            residual,
            activation,
        })
    }

    /// `source` (a gemm, conv2d or Winograd output kernel's WGSL) with this epilogue's branches
    /// fixed.
    pub fn apply(self, source: &str) -> String {
        let mut w = source
            .replace(
                "if p.residual == 1u {",
                &format!("if {} {{", self.residual == 1),
            )
            .replace(
                "if p.residual == 2u {",
                &format!("if {} {{", self.residual == 2),
            )
            .replace(
                "switch p.activation {",
                &format!("switch {}u {{", self.activation),
            )
            .replace(
                "if p.activation == 3u {",
                &format!("if {} {{", self.activation == 3),
            );
        if self.whole {
            w = w
                .replace("p.first != 0u", "true")
                .replace("if p.first == 0u {", "if false {")
                .replace("if p.last != 0u {", "if true {");
        }
        w
    }
}

/// `source` with `epilogue` applied where there is one.
pub fn specialize(source: String, epilogue: Option<Epilogue>) -> String {
    match epilogue {
        Some(e) => e.apply(&source),
        None => source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::{Blocking, Weights};

    /// Every branch the epilogue fixes is spelled in each gemm source as `apply` expects, so a
    /// change to the sources cannot silently leave a kernel branching on its params.
    #[test]
    fn every_branch_is_fixed_in_every_source() {
        let b = Blocking {
            oc_block: 8,
            pix: 8,
            inputs: 0,
        };
        let e = Epilogue {
            whole: true,
            residual: 1,
            activation: 2,
        };
        let sources = [
            b.source_with(Weights::Storage),
            b.source_wide(Weights::Storage, 64),
            b.source_wide8(Weights::Storage, 64),
            b.source_shifted(Weights::Storage, 8, 3),
        ];
        for s in sources {
            for branch in ["p.residual", "p.activation", "p.first", "p.last"] {
                assert!(s.contains(branch), "the source branches on {branch}");
            }
            let fixed = e.apply(&s);
            for branch in ["p.residual", "p.activation", "p.first", "p.last"] {
                assert!(!fixed.contains(branch), "{branch} left in:\n{fixed}");
            }
            assert!(fixed.contains("switch 2u {"));
        }
    }
}
