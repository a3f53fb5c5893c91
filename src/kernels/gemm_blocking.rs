//! gemm.wgsl's register block (`Blocking`: output channels x q an invocation) and the choice of
//! it per layer: by output count, `BATCHWISE_GEMM_BLOCKING` to measure another, the input
//! channels compiled in where that pays.

use super::gemm::{MAX_OC_BLOCK, WINDOW_BYTES};

/// The register block one invocation computes: `oc_block` output channels of `pix` consecutive q.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Blocking {
    pub oc_block: u32,
    pub pix: u32,
    /// The input channels compiled in, the loop over them unrolled, and one channel block a
    /// dispatch, so that every weight is read at a constant offset ([`Blocking::unrolled`]); 0:
    /// a loop over them, and a dispatch of as many blocks as a window holds.
    pub inputs: u32,
}

/// The split Winograd products' blocking, and the widest of the 1x1 convolutions': the fastest
/// measured on lavapipe (BENCHMARKS.md, "Kernels").
pub const BLOCKING: Blocking = Blocking {
    oc_block: 32,
    pix: 8,
    inputs: 0,
};

/// The 1x1 convolutions' blocking for `out_c` output channels: `BATCHWISE_GEMM_BLOCKING`'s
/// where set, else [`products_blocking`]'s.
pub fn blocking_for(out_c: u32) -> Blocking {
    blocking_from_env().unwrap_or_else(|| products_blocking(out_c))
}

/// The blocking for `out_c` output channels (the split Winograd's products always take it): 4,
/// 8 or 16 channels (the fewest that hold them) x 16 q for at most 16 (a 32-channel block would
/// be half empty; a 1x1 to 3 or 4 channels, the last of a model, runs 4), else 8 q of the block of 16 to 32 channels (a multiple of 4) that
/// pads `out_c` least, the widest of equals: 32 for 64, 96 or 320 channels, 24 for 24 or 144,
/// 20 for 40, 28 for 112 (a 32-channel block computed 8 of 24 channels for nothing;
/// BENCHMARKS.md, "Depthwise and few-input-channel 1x1" and "1x1 convolutions to few channels").
pub fn products_blocking(out_c: u32) -> Blocking {
    if out_c <= 16 {
        return Blocking {
            oc_block: [4, 8, 16].into_iter().find(|&b| out_c <= b).unwrap_or(16),
            pix: 16,
            inputs: 0,
        };
    }
    let oc_block = (4..=8)
        .rev()
        .map(|v| 4 * v)
        .min_by_key(|&b| out_c.div_ceil(b) * b)
        .unwrap_or(BLOCKING.oc_block);
    Blocking {
        oc_block,
        pix: 8,
        inputs: 0,
    }
}

/// `BATCHWISE_GEMM_BLOCKING=OCxPIX`: every 1x1 convolution's register block (see
/// [`parse_blocking`]) instead of [`products_blocking`]'s, to measure one on an adapter (the
/// gemm blockings were chosen on lavapipe; on a GPU a smaller block gives a small map's product
/// more invocations: `benches/gpu/run.sh`'s "gemm blockings" step). Said once on stderr when
/// it is not a blocking.
pub fn blocking_from_env() -> Option<Blocking> {
    static CHOICE: std::sync::OnceLock<Option<Blocking>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        let value = std::env::var("BATCHWISE_GEMM_BLOCKING").ok()?;
        let blocking = parse_blocking(&value);
        if blocking.is_none() {
            eprintln!(
                "BATCHWISE_GEMM_BLOCKING={value} is not CHANNELSxQ (each a multiple of 4, at \
                 most {MAX_OC_BLOCK} channels and 32 q): the default blockings are used"
            );
        }
        blocking
    })
}

/// A register block written `OCxPIX`: output channels x q an invocation, each a multiple of 4
/// (the kernels load and store 4 at a time), at most [`MAX_OC_BLOCK`] channels and 32 q.
pub fn parse_blocking(text: &str) -> Option<Blocking> {
    let (oc, pix) = text.trim().split_once('x')?;
    let (oc_block, pix): (u32, u32) = (oc.parse().ok()?, pix.parse().ok()?);
    let fits = |v: u32, most: u32| v > 0 && v.is_multiple_of(4) && v <= most;
    (fits(oc_block, MAX_OC_BLOCK) && fits(pix, 32)).then_some(Blocking {
        oc_block,
        pix,
        inputs: 0,
    })
}

/// The most multiply-adds (inputs x channels x q) an unrolled kernel's invocation spells out:
/// 32 inputs onto a block of 32 channels of 8 q.
const MAX_UNROLLED: u32 = 8192;

/// The fewest q an item (pixels: 48 x 48) for which the unrolled kernel runs: each costs
/// lavapipe 50-130 ms to build at every start (Mesa caches the machine code, not its NIR
/// passes), which a small map's 10% (a few tenths of a millisecond a batch) does not repay
/// (BENCHMARKS.md, "Weights at constant offsets"); else the loop, over one block a dispatch
/// as the weights are packed.
pub(super) const UNROLL_MIN_Q: u32 = 2048;

impl Blocking {
    /// This blocking with `in_c` input channels compiled in ([`Blocking::inputs`]) where the
    /// weights are read from uniform windows (`uniform`), uniform loads in a loop are gathers
    /// lane by lane (`lane_loops`: `kernels::storage_loads_loop`, Mesa 22's llvmpipe), one
    /// window holds a block's `in_c` channels and the unrolled code stays short
    /// ([`MAX_UNROLLED`]): llvmpipe loads a weight at a constant offset outside control flow
    /// once for all lanes (on Mesa 25's the loop is faster: BENCHMARKS.md, "Weights at constant
    /// offsets"). `BATCHWISE_GEMM_UNROLL=off` keeps the loop (to measure).
    pub fn unrolled(self, in_c: u32, uniform: bool, lane_loops: bool) -> Self {
        let off = std::env::var("BATCHWISE_GEMM_UNROLL").is_ok_and(|v| v == "off");
        let window = WINDOW_BYTES as u32 / 4;
        let fits =
            in_c * self.oc_block <= window && in_c * self.oc_block * self.pix <= MAX_UNROLLED;
        let inputs = if !off && uniform && lane_loops && fits {
            in_c
        } else {
            0
        };
        Self { inputs, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_is_channels_by_q_each_a_multiple_of_4() {
        let b = |oc_block, pix| Blocking {
            oc_block,
            pix,
            inputs: 0,
        };
        assert_eq!(parse_blocking("8x4"), Some(b(8, 4)));
        assert_eq!(parse_blocking(" 64x32 "), Some(b(64, 32)));
        for bad in [
            "", "8", "8x", "x4", "6x4", "8x6", "0x4", "68x4", "8x36", "8x4x2", "-8x4",
        ] {
            assert_eq!(parse_blocking(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_products_block_pads_the_output_channels_least() {
        let oc = |n| products_blocking(n).oc_block;
        assert_eq!((oc(3), oc(8), oc(16)), (4, 8, 16));
        assert_eq!((oc(64), oc(96), oc(320)), (32, 32, 32));
        assert_eq!((oc(24), oc(144), oc(40), oc(112)), (24, 24, 20, 28));
        assert_eq!(products_blocking(3).pix, 16);
        assert_eq!(products_blocking(64).pix, 8);
    }
}
