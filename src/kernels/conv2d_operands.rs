//! Where a convolution on conv2d.wgsl's kernels finds its input and output (a channel slice of
//! a Concat done in place: `engine/placement.rs`) and how it reads its input (upsampled: a
//! fused nearest Resize).

/// A value held as a channel slice of a larger one's buffer (a Concat done in place): the larger
/// value's channels per item and the slice's first channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelSlice {
    pub item_c: u32,
    pub offset: u32,
}

/// Where a convolution's input and output lie in their buffers and how it reads its input; the
/// default: each is a whole buffer of its own, read as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operands {
    /// The input read from a channel slice (None: its own buffer).
    pub src: Option<ChannelSlice>,
    /// The output written into a channel slice (None: its own buffer).
    pub dst: Option<ChannelSlice>,
    /// The input read upsampled (nearest) by these factors: a fused Resize (`[1, 1]`: none).
    pub upsample: [u32; 2],
    /// The residual's channels where fewer than the output's (those past them read 0: a fused
    /// channel Pad); only for a 1x1 convolution on gemm.wgsl (`fuse_residual` fuses no other).
    pub skip_c: Option<u32>,
    /// The output's two halves multiplied, half the channels stored (a SimpleGate fused into a
    /// depthwise convolution, `LayerOp::Conv2dGated`); only for the depthwise kernel's
    /// generated variants.
    pub gate: bool,
}

impl Default for Operands {
    fn default() -> Self {
        Self {
            src: None,
            dst: None,
            upsample: [1, 1],
            skip_c: None,
            gate: false,
        }
    }
}
