//! SpaceToDepth (`shaders/space_to_depth.wgsl`): blocks of pixels to channels, in ONNX's order.

use super::{Bind, Step};
use crate::model::ItemShape;

/// Mirror of `Params` in shaders/space_to_depth.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SpaceToDepthParams {
    pub in_c: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub out_c: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub block_h: u32,
    pub block_w: u32,
}

/// The output's shape for an input of shape `s` (rows and columns past a whole block dropped).
pub fn output(s: ItemShape, [bh, bw]: [u32; 2]) -> ItemShape {
    ItemShape {
        c: s.c * bh * bw,
        h: s.h / bh,
        w: s.w / bw,
    }
}

/// CPU reference on `n` items of shape `s`.
pub fn reference(input: &[f32], n: u32, s: ItemShape, block: [u32; 2]) -> Vec<f32> {
    let o = output(s, block);
    let mut out = Vec::with_capacity((n as u64 * o.elements()) as usize);
    for b in 0..n {
        for oc in 0..o.c {
            let (c, by, bx) = (oc % s.c, oc / s.c / block[1], oc / s.c % block[1]);
            for y in 0..o.h {
                for x in 0..o.w {
                    let (iy, ix) = (y * block[0] + by, x * block[1] + bx);
                    out.push(input[(((b * s.c + c) * s.h + iy) * s.w + ix) as usize]);
                }
            }
        }
    }
    out
}

pub fn prepare(
    cx: Bind,
    block: [u32; 2],
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    s: ItemShape,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let o = output(s, block);
    let params = SpaceToDepthParams {
        in_c: s.c,
        in_h: s.h,
        in_w: s.w,
        out_c: o.c,
        out_h: o.h,
        out_w: o.w,
        block_h: block[0],
        block_w: block[1],
    };
    if wide(s, block) {
        let pipeline = kernels.generated("space_to_depth", &wide_source(block));
        let groups = [(o.w / 4).div_ceil(16), o.h.div_ceil(4)];
        return super::step(
            gpu,
            label,
            &pipeline,
            &params,
            &[src, dst],
            groups,
            s.c * block[0],
        );
    }
    let pipeline = kernels.generated("space_to_depth", super::shader("space_to_depth.wgsl"));
    let groups = [o.w.div_ceil(16), o.h.div_ceil(4)];
    super::step(gpu, label, &pipeline, &params, &[src, dst], groups, o.c)
}

/// Whether the wide kernel ([`wide_source`]) runs: input rows and output rows of whole vec4s, a
/// block 2 or 4 wide. `BATCHWISE_S2D_WIDE=off` keeps one value an invocation (to measure).
pub fn wide(s: ItemShape, [_, bw]: [u32; 2]) -> bool {
    let off = std::env::var("BATCHWISE_S2D_WIDE").is_ok_and(|v| v == "off");
    !off && matches!(bw, 2 | 4) && s.w.is_multiple_of(4) && (s.w / bw).is_multiple_of(4)
}

/// space_to_depth.wgsl's `main` for blocks of `[bh, bw]` (bw 2 or 4): an invocation reads
/// `4 x bw` consecutive values of one input row (bw vec4 loads) and writes 4 output columns of
/// each of the row's `bw` output channels (bw vec4 stores); z is the item, input channel and
/// block row. On lavapipe a load or store is a loop over the lanes: 4 values a pass.
pub fn wide_source([bh, bw]: [u32; 2]) -> String {
    let shader = super::shader("space_to_depth.wgsl");
    let head = &shader[..shader
        .find("@compute")
        .expect("space_to_depth.wgsl has an entry point")];
    let mut w = head.replace("array<act>", "array<vec4<act>>");
    let value = |j: u32| format!("v{}.{}", j / 4, ["x", "y", "z", "w"][(j % 4) as usize]);
    let loads: String = (0..bw)
        .map(|k| format!("    let v{k} = src[base + {k}u];\n"))
        .collect();
    let stores: String = (0..bw)
        .map(|bx| {
            let vals: Vec<String> = (0..4).map(|i| value(bx + i * bw)).collect();
            format!(
                "    dst[((n * p.out_c + (by * {bw}u + {bx}u) * p.in_c + c) * p.out_h + y) * (p.out_w / 4u) + x4] = vec4<act>({});\n",
                vals.join(", ")
            )
        })
        .collect();
    w.push_str(&format!(
        "
// Generated (src/kernels/space_to_depth.rs): blocks of {bh} x {bw}, 4 output columns an
// invocation.
@compute @workgroup_size(16, 4, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
    let x4 = gid.x;
    let y = gid.y;
    if x4 * 4u >= p.out_w || y >= p.out_h {{
        return;
    }}
    let n = gid.z / (p.in_c * {bh}u);
    let c = gid.z / {bh}u % p.in_c;
    let by = gid.z % {bh}u;
    let base = ((n * p.in_c + c) * p.in_h + y * {bh}u + by) * (p.in_w / 4u) + x4 * {bw}u;
{loads}{stores}}}
"
    ));
    w
}
