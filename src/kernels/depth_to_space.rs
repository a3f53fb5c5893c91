//! DepthToSpace (`shaders/depth_to_space.wgsl`): channels to space, DCR or CRD, with a crop.

use super::shaders::redeclared;
use super::{Bind, Step};
use crate::model::DepthToSpaceSpec;

/// Mirror of `Params` in shaders/depth_to_space.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DepthToSpaceParams {
    pub in_c: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub out_c: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub block_h: u32,
    pub block_w: u32,
    pub crd: u32,
    pub _pad: [u32; 3],
}

/// CPU reference on `n` items of `c x h x w`.
pub fn reference(
    spec: &DepthToSpaceSpec,
    input: &[f32],
    n: u32,
    c: u32,
    h: u32,
    w: u32,
) -> Vec<f32> {
    let (oc, oh, ow) = spec.output_chw(c, h, w).expect("valid shape");
    let [bh, bw] = spec.block;
    let mut out = Vec::with_capacity((n * oc * oh * ow) as usize);
    for b in 0..n {
        for ch in 0..oc {
            for y in 0..oh {
                for x in 0..ow {
                    let (by, bx) = (y % bh, x % bw);
                    let ic = if spec.crd {
                        (ch * bh + by) * bw + bx
                    } else {
                        (by * bw + bx) * oc + ch
                    };
                    out.push(input[(((b * c + ic) * h + y / bh) * w + x / bw) as usize]);
                }
            }
        }
    }
    out
}

pub fn prepare(
    cx: Bind,
    spec: &DepthToSpaceSpec,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    c: u32,
    h: u32,
    w: u32,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let (out_c, out_h, out_w) = spec.output_chw(c, h, w).expect("shapes were checked");
    let wide = wide_for(spec, [h, w], [out_h, out_w]);
    let eight = wide && kernels.eight_a_load;
    let pipeline = match wide {
        true => kernels.generated("depth_to_space", &wide_source(spec.block, eight)),
        false => kernels.depth_to_space.clone(),
    };
    let params = DepthToSpaceParams {
        in_c: c,
        in_h: h,
        in_w: w,
        out_c,
        out_h,
        out_w,
        block_h: spec.block[0],
        block_w: spec.block[1],
        crd: spec.crd as u32,
        _pad: [0; 3],
    };
    // The wide kernel: an invocation 4 input columns of one input row.
    let groups = match wide {
        true => [(w / 4).div_ceil(16), h.div_ceil(4)],
        false => [out_w.div_ceil(16), out_h.div_ceil(4)],
    };
    super::step(gpu, label, &pipeline, &params, &[src, dst], groups, out_c)
}

/// Whether [`wide_source`] runs this DepthToSpace: 2x2 blocks (a stride-2 ConvTranspose's
/// phases, a 2x pixel shuffle), no crop, input rows a multiple of 4 wide.
/// `BATCHWISE_D2S_WIDE=off` keeps the one-value kernel (to measure).
pub fn wide_for(spec: &DepthToSpaceSpec, [h, w]: [u32; 2], [out_h, out_w]: [u32; 2]) -> bool {
    let off = std::env::var("BATCHWISE_D2S_WIDE").is_ok_and(|v| v == "off");
    let [bh, bw] = spec.block;
    !off && matches!(bw, 2 | 4)
        && (1..=4).contains(&bh)
        && [out_h, out_w] == [bh * h, bw * w]
        && w.is_multiple_of(4)
}

/// depth_to_space.wgsl's `main` for blocks of `bh` x `bw` (`bw` 2 or 4), 4 input columns an
/// invocation: a `vec4` load from each of the `bh * bw` phase channels, each of the `bh` output
/// rows of `4 * bw` values written as `vec4`s, or (`eight`: a CPU adapter, float32) as
/// `vec4<u64>`s. On llvmpipe every load and store is a loop over the lanes: for 2x2 blocks 8
/// (6) loops for 16 values instead of 32.
pub fn wide_source([bh, bw]: [u32; 2], eight: bool) -> String {
    assert!(
        matches!(bw, 2 | 4),
        "the wide kernel writes rows of 8 or 16 values"
    );
    let shader = super::shader("depth_to_space.wgsl");
    let head = &shader[..shader
        .find("@compute")
        .expect("depth_to_space.wgsl has an entry point")];
    let dst = if eight { "vec4<u64>" } else { "vec4<act>" };
    let mut w = redeclared(&redeclared(head, "src", "vec4<act>"), "dst", dst);
    if eight {
        w.push_str(super::eight::HELPERS);
    }
    let store = match eight {
        true => "dst[at / 8u] = pack8(vec4<f32>(a), vec4<f32>(b));",
        false => "dst[at / 4u] = a; dst[at / 4u + 1u] = b;",
    };
    let comp = ["x", "y", "z", "w"];
    let mut rows = String::new();
    for by in 0..bh {
        for bx in 0..bw {
            rows += &format!("    let v{by}{bx} = src[phase_row(n, c, {by}u, {bx}u, y) + x4];\n");
        }
        rows += &format!(
            "    let row{by} = ((n * p.out_c + c) * p.out_h + {bh}u * y + {by}u) * p.out_w + {}u * x4;\n",
            4 * bw
        );
        // Output column m of the row's 4 * bw is input column m / bw of phase m % bw.
        let value = |m: u32| format!("v{by}{}.{}", m % bw, comp[(m / bw) as usize]);
        let vec = |k: u32| {
            let v: Vec<String> = (4 * k..4 * k + 4).map(value).collect();
            format!("vec4<act>({})", v.join(", "))
        };
        for pair in 0..bw / 2 {
            rows += &format!(
                "    put(row{by} + {}u, {}, {});\n",
                8 * pair,
                vec(2 * pair),
                vec(2 * pair + 1)
            );
        }
    }
    w.push_str(&format!(
        "
// Where input row `y` of phase (by, bx) of output channel c of item n starts, in vec4s.
fn phase_row(n: u32, c: u32, by: u32, bx: u32, y: u32) -> u32 {{
    var ic = (by * {bw}u + bx) * p.out_c + c;
    if p.crd != 0u {{
        ic = (c * {bh}u + by) * {bw}u + bx;
    }}
    return ((n * p.in_c + ic) * p.in_h + y) * (p.in_w / 4u);
}}

// Output values at `at` (a multiple of 8): a then b.
fn put(at: u32, a: vec4<act>, b: vec4<act>) {{
    {store}
}}

// Generated (src/kernels/depth_to_space.rs): {bh}x{bw} blocks, 4 input columns an invocation.
@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
    let x4 = gid.x;
    let y = gid.y;
    if x4 >= p.in_w / 4u || y >= p.in_h {{
        return;
    }}
    let n = gid.z / p.out_c;
    let c = gid.z % p.out_c;
{rows}}}
"
    ));
    w
}
