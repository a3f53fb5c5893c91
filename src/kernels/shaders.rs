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

/// `source` with its storage binding `name` (an `array<act>`, or `array<u32>`: packed pixels)
/// declared an array of `element` instead: `vec4<act>` (4 values an element), or `vec4<u64>` (8
/// on a CPU adapter, `kernels::eight`). Panics where `source` declares no such binding: a shader
/// and the generator that rewrites it out of step.
pub fn redeclared(source: &str, name: &str, element: &str) -> String {
    for access in ["read", "read_write"] {
        for from in ["act", "u32"] {
            let declared = format!("var<storage, {access}> {name}: array<{from}>;");
            if source.contains(&declared) {
                let to = format!("var<storage, {access}> {name}: array<{element}>;");
                return source.replace(&declared, &to);
            }
        }
    }
    panic!("the shader declares no storage array `{name}`");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_is_redeclared_with_its_access() {
        let source = "@group(0) @binding(3) var<storage, read> src: array<act>;\n\
                      @group(0) @binding(4) var<storage, read_write> dst: array<act>;\n\
                      @group(0) @binding(5) var<storage, read> pixels: array<u32>;\n";
        let wide = redeclared(source, "dst", "vec4<u64>");
        assert!(wide.contains("var<storage, read_write> dst: array<vec4<u64>>;"));
        assert!(wide.contains("var<storage, read> src: array<act>;"));
        let wide = redeclared(&wide, "src", "vec4<act>");
        assert!(wide.contains("var<storage, read> src: array<vec4<act>>;"));
        let wide = redeclared(&wide, "pixels", "vec4<u32>");
        assert!(wide.contains("var<storage, read> pixels: array<vec4<u32>>;"));
    }

    #[test]
    #[should_panic(expected = "no storage array `skip`")]
    fn a_binding_the_shader_lacks_is_a_fault() {
        redeclared("var<storage, read> src: array<act>;", "skip", "vec4<act>");
    }
}
