//! How gemm.wgsl's x, output and residual lie in their buffers (`Layout`), and how many q a
//! load or store of them moves (`Width`).

use super::gemm::Blocking;

/// How x, the output and the residual lie in their buffers, in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// q per item: pixels of a 1x1 convolution, rows of A of a matrix product.
    pub q_count: u32,
    pub in_cs: u32,
    pub in_qs: u32,
    pub in_item: u32,
    pub out_cs: u32,
    pub out_qs: u32,
    pub out_item: u32,
    /// The residual: laid out as the output but with `skip_c` channels (at most `out_c`; the
    /// channels past them read 0: a fused channel Pad) of `skip_item` elements an item.
    pub skip_c: u32,
    pub skip_item: u32,
}

impl Layout {
    /// Whether x and out can be read and written 4 q at a time: q contiguous, and every item,
    /// channel row and item's q a multiple of 4 (no vec4 straddles two rows or items).
    /// `BATCHWISE_GEMM_WIDE=off` keeps one value a load (to measure).
    pub fn wide(&self) -> bool {
        let off = std::env::var("BATCHWISE_GEMM_WIDE").is_ok_and(|v| v == "off");
        !off && self.in_qs == 1
            && self.out_qs == 1
            && [
                self.q_count,
                self.in_cs,
                self.out_cs,
                self.in_item,
                self.out_item,
                self.skip_item,
            ]
            .iter()
            .all(|v| v.is_multiple_of(4))
    }

    /// How many q a load or store of x and out moves: 8 (`vec4<u64>`) where `eight` (the
    /// kernels' [`super::Kernels::eight_a_load`]), the layout is [`Self::wide`] in multiples of
    /// 8 and the block's q are too; else 4 where [`Self::wide`]; else 1.
    pub fn width(&self, eight: bool, blocking: Blocking) -> Width {
        if !self.wide() {
            return Width::One;
        }
        let eights = [
            self.q_count,
            self.in_cs,
            self.out_cs,
            self.in_item,
            self.out_item,
            self.skip_item,
            blocking.pix,
        ]
        .iter()
        .all(|v| v.is_multiple_of(8));
        if eight && eights {
            Width::Eight
        } else {
            Width::Four
        }
    }

    /// NCHW in and out (and the residual): channel planes of `pixels` each.
    pub fn planes(in_c: u32, out_c: u32, pixels: u32) -> Self {
        Self {
            q_count: pixels,
            in_cs: pixels,
            in_qs: 1,
            in_item: in_c * pixels,
            out_cs: pixels,
            out_qs: 1,
            out_item: out_c * pixels,
            skip_c: out_c,
            skip_item: out_c * pixels,
        }
    }

    /// This layout with a residual of `channels` planes an item (fewer than the output's: the
    /// rest read 0), laid out as the output's first `channels`.
    pub fn with_skip_channels(self, channels: u32) -> Self {
        Self {
            skip_c: channels,
            skip_item: channels * self.out_cs,
            ..self
        }
    }
}

/// How many q of x and out one load or store moves (`Layout::width`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    /// One value a load: any strides.
    One,
    /// A `vec4`: q contiguous, every row and item a multiple of 4.
    Four,
    /// A `vec4<u64>` holding 8 values: the same in multiples of 8, on a CPU adapter.
    Eight,
    /// x read 8 values a `vec4<u64>` from channel planes of `P` values, `P mod 8` the field,
    /// out written one value a store (`gemm_shifted.rs`): a CPU adapter, items folded.
    Shifted(u32),
}
