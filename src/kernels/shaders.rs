//! Every shader the engine compiles, embedded at build time from `shaders/`.

/// Every shader the engine compiles, by file name, embedded at build time from `shaders/`.
pub const SHADERS: &[(&str, &str)] = &[
    ("binary.wgsl", include_str!("../../shaders/binary.wgsl")),
    (
        "copy_channels.wgsl",
        include_str!("../../shaders/copy_channels.wgsl"),
    ),
    ("unary.wgsl", include_str!("../../shaders/unary.wgsl")),
    ("pad.wgsl", include_str!("../../shaders/pad.wgsl")),
    (
        "edge_clamp.wgsl",
        include_str!("../../shaders/edge_clamp.wgsl"),
    ),
    (
        "copy_block.wgsl",
        include_str!("../../shaders/copy_block.wgsl"),
    ),
    (
        "nchw_to_nhwc.wgsl",
        include_str!("../../shaders/nchw_to_nhwc.wgsl"),
    ),
    ("pool2d.wgsl", include_str!("../../shaders/pool2d.wgsl")),
    ("pool2x2.wgsl", include_str!("../../shaders/pool2x2.wgsl")),
    (
        "resize_filter.wgsl",
        include_str!("../../shaders/resize_filter.wgsl"),
    ),
    ("resize2x.wgsl", include_str!("../../shaders/resize2x.wgsl")),
    (
        "depthwise_conv2d.wgsl",
        include_str!("../../shaders/depthwise_conv2d.wgsl"),
    ),
    (
        "across_channels.wgsl",
        include_str!("../../shaders/across_channels.wgsl"),
    ),
    (
        "global_avg_pool.wgsl",
        include_str!("../../shaders/global_avg_pool.wgsl"),
    ),
    (
        "space_to_depth.wgsl",
        include_str!("../../shaders/space_to_depth.wgsl"),
    ),
    (
        "depth_to_space.wgsl",
        include_str!("../../shaders/depth_to_space.wgsl"),
    ),
    (
        "resize_nearest.wgsl",
        include_str!("../../shaders/resize_nearest.wgsl"),
    ),
    ("conv2d.wgsl", include_str!("../../shaders/conv2d.wgsl")),
    (
        "conv_transpose2d.wgsl",
        include_str!("../../shaders/conv_transpose2d.wgsl"),
    ),
    ("pack.wgsl", include_str!("../../shaders/pack.wgsl")),
    ("nd_copy.wgsl", include_str!("../../shaders/nd_copy.wgsl")),
    (
        "nd_binary.wgsl",
        include_str!("../../shaders/nd_binary.wgsl"),
    ),
    ("reduce.wgsl", include_str!("../../shaders/reduce.wgsl")),
    ("softmax.wgsl", include_str!("../../shaders/softmax.wgsl")),
    ("matmul.wgsl", include_str!("../../shaders/matmul.wgsl")),
    ("gemm.wgsl", include_str!("../../shaders/gemm.wgsl")),
    ("gemv.wgsl", include_str!("../../shaders/gemv.wgsl")),
    (
        "normalize.wgsl",
        include_str!("../../shaders/normalize.wgsl"),
    ),
    ("unpack.wgsl", include_str!("../../shaders/unpack.wgsl")),
];
