//! 8 float32 values a load or store on a CPU adapter (`Kernels::eight_a_load`): the WGSL that
//! carries them in a `vec4<u64>`, two bit patterns a component (the first value in the low half:
//! the buffers are little-endian wherever a CPU adapter runs).

/// WGSL: `lo8` and `hi8` (the first and last 4 values of a `vec4<u64>`) and `pack8` (8 values
/// into one).
pub const HELPERS: &str = "
fn lo8(x: vec4<u64>) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(u32(x.x & 0xfffffffflu), u32(x.x >> 32u), u32(x.y & 0xfffffffflu), u32(x.y >> 32u)));
}

fn hi8(x: vec4<u64>) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(u32(x.z & 0xfffffffflu), u32(x.z >> 32u), u32(x.w & 0xfffffffflu), u32(x.w >> 32u)));
}

fn pack8(a: vec4<f32>, b: vec4<f32>) -> vec4<u64> {
    let u = bitcast<vec4<u32>>(a);
    let v = bitcast<vec4<u32>>(b);
    return vec4<u64>(u64(u.x) | (u64(u.y) << 32u), u64(u.z) | (u64(u.w) << 32u), u64(v.x) | (u64(v.y) << 32u), u64(v.z) | (u64(v.w) << 32u));
}
";
