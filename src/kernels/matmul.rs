//! Batched matrix products with broadcasting (`shaders/matmul.wgsl`): MatMul, and Gemm's product.

use super::{Bind, Step};
use crate::model::MatMulSpec;

impl MatMulSpec {
    /// CPU reference (f64 accumulation) for one item.
    pub fn reference(&self, a: &[f32], b: &[f32]) -> Vec<f32> {
        let (m, n) = (self.m as usize, self.n as usize);
        (0..self.count() as usize)
            .map(|o| {
                let (j, i) = (o % n, (o / n) % m);
                let mut rest = o / (n * m);
                let (mut ia, mut ib) = (i * self.a_row as usize, j * self.b_col as usize);
                for d in (0..self.batch.len()).rev() {
                    let at = rest % self.batch[d] as usize;
                    rest /= self.batch[d] as usize;
                    ia += at * self.a_batch[d] as usize;
                    ib += at * self.b_batch[d] as usize;
                }
                let sum: f64 = (0..self.k as usize)
                    .map(|k| {
                        a[ia + k * self.a_col as usize] as f64
                            * b[ib + k * self.b_row as usize] as f64
                    })
                    .sum();
                (self.alpha as f64 * sum) as f32
            })
            .collect()
    }
}

/// Mirror of `Params` in shaders/matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatMulParams {
    pub batch: [u32; 4],
    pub a_batch: [u32; 4],
    pub b_batch: [u32; 4],
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub count: u32,
    pub a_row: u32,
    pub a_col: u32,
    pub b_row: u32,
    pub b_col: u32,
    pub a_item: u32,
    pub b_item: u32,
    pub alpha: f32,
    pub batches: u32,
    pub z_groups: u32,
    pub _pad: [u32; 3],
}

/// The workgroup of matmul.wgsl: `wx x wy` invocations, each a block of `rm x rn` outputs (both
/// multiples of 4), a tile of `rm wy` rows by `rn wx` columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    pub wx: u32,
    pub wy: u32,
    pub rm: u32,
    pub rn: u32,
}

const LANES: [&str; 4] = ["x", "y", "z", "w"];

impl Tiling {
    /// The tiling for `m` rows: 32 x 128 tiles of 8 x 16 blocks, or for a product of few rows a
    /// tile as short as a block, so that the rows of a tile past `m` (computed and dropped) stay
    /// few. The fastest measured on lavapipe (BENCHMARKS.md, "The general matmul").
    pub fn for_rows(m: u32) -> Self {
        match m {
            0..=4 => Self::new(16, 1, 4, 16),
            5..=8 => Self::new(8, 1, 8, 16),
            _ => Self::new(8, 4, 8, 16),
        }
    }

    /// The tiling for `m` rows of `n` columns: [`Self::for_rows`], but at most 64 columns
    /// (attention's weights times v, 64 values a head) in 32 x 64 tiles of 8 x 8 blocks, where
    /// 128 columns left half of each tile idle: 1.6-1.8x on 197 x 197 x 64 on lavapipe
    /// (BENCHMARKS.md, "Transformers").
    pub fn for_shape(m: u32, n: u32) -> Self {
        match (m, n) {
            (9.., ..=64) => Self::new(8, 4, 8, 8),
            _ => Self::for_rows(m),
        }
    }

    pub const fn new(wx: u32, wy: u32, rm: u32, rn: u32) -> Self {
        Self { wx, wy, rm, rn }
    }

    /// Rows and columns of a workgroup's tile.
    pub fn tile(&self) -> (u32, u32) {
        (self.rm * self.wy, self.rn * self.wx)
    }

    /// matmul.wgsl with this workgroup, its `tile` unrolled (every accumulator a named variable).
    pub fn source(&self) -> String {
        let Self { wx, wy, rm, rn } = *self;
        assert!(rm % 4 == 0 && rn % 4 == 0, "blocks of whole vec4s");
        let generic = super::shader("matmul.wgsl");
        let head = &generic[..generic
            .find("// The TM x TN tile at")
            .expect("matmul.wgsl has a tile function")];
        let mut w = head
            .replace("const WX: u32 = 8u;", &format!("const WX: u32 = {wx}u;"))
            .replace("const WY: u32 = 8u;", &format!("const WY: u32 = {wy}u;"))
            .replace("const RM: u32 = 8u;", &format!("const RM: u32 = {rm}u;"))
            .replace("const RN: u32 = 8u;", &format!("const RN: u32 = {rn}u;"));
        let mut line = |l: String| {
            w.push_str(&l);
            w.push('\n');
        };
        let (av, bv) = (rm / 4, rn / 4);
        line(format!("// Unrolled: {rm} x {rn} outputs an invocation."));
        line("fn tile(lid: vec3<u32>, item: u32, bi: u32, i0: u32, j0: u32) {".into());
        line("    let at = bases(item, bi);".into());
        for r in 0..rm {
            for h in 0..bv {
                line(format!("    var c{r}_{h} = vec4<f32>(0.0);"));
            }
        }
        line("    for (var k0 = 0u; k0 < p.k; k0 += KT) {".into());
        line("        load_tiles(lid.y * WX + lid.x, at, i0, j0, k0);".into());
        line("        workgroupBarrier();".into());
        line("        for (var kk = 0u; kk < KT; kk++) {".into());
        line(format!(
            "            let ra = kk * (TM / 4u) + lid.y * {av}u;"
        ));
        line(format!(
            "            let rb = kk * (TN / 4u) + lid.x * {bv}u;"
        ));
        for q in 0..av {
            line(format!("            let a{q} = ta[ra + {q}u];"));
        }
        for h in 0..bv {
            line(format!("            let b{h} = tb[rb + {h}u];"));
        }
        for r in 0..rm {
            for h in 0..bv {
                line(format!(
                    "            c{r}_{h} += a{}.{} * b{h};",
                    r / 4,
                    LANES[r as usize % 4]
                ));
            }
        }
        line("        }".into());
        line("        workgroupBarrier();".into());
        line("    }".into());
        line("    let base = item * p.count + bi * p.m * p.n;".into());
        line(format!("    let i = i0 + lid.y * {rm}u;"));
        line(format!("    let j = j0 + lid.x * {rn}u;"));
        for r in 0..rm {
            for h in 0..bv {
                line(format!(
                    "    store4(base, i + {r}u, j + {}u, c{r}_{h});",
                    4 * h
                ));
            }
        }
        line("}".into());
        w
    }
}

/// Batch entries a workgroup column in z serves at most this many of (z is `items x` them).
const MAX_Z_GROUPS: u32 = 128;
/// Workgroups a dispatch has at most along x or y; the shader loops over the tiles past them.
const MAX_GROUPS: u32 = 65535;

/// Records the product for every item; `a_item` / `b_item` are elements per item (0: a constant).
pub fn prepare(
    cx: Bind,
    spec: &MatMulSpec,
    a: &wgpu::Buffer,
    a_item: u32,
    b: &wgpu::Buffer,
    b_item: u32,
    dst: &wgpu::Buffer,
) -> Step {
    prepare_tiled(
        cx,
        Tiling::for_shape(spec.m, spec.n),
        spec,
        (a, a_item),
        (b, b_item),
        dst,
    )
}

/// As [`prepare`], with the tiling `tiling` (to measure it).
pub fn prepare_tiled(
    cx: Bind,
    tiling: Tiling,
    spec: &MatMulSpec,
    (a, a_item): (&wgpu::Buffer, u32),
    (b, b_item): (&wgpu::Buffer, u32),
    dst: &wgpu::Buffer,
) -> Step {
    let Bind {
        gpu,
        kernels,
        label,
    } = cx;
    let pipeline = kernels.generated("matmul", &tiling.source());
    let four = |v: &[u32], fill: u32| {
        let mut out = [fill; 4];
        out[4 - v.len()..].copy_from_slice(v);
        out
    };
    let batches = spec.batch.iter().product::<u32>();
    let z_groups = batches.clamp(1, MAX_Z_GROUPS);
    let params = MatMulParams {
        batch: four(&spec.batch, 1),
        a_batch: four(&spec.a_batch, 0),
        b_batch: four(&spec.b_batch, 0),
        m: spec.m,
        k: spec.k,
        n: spec.n,
        count: spec.count(),
        a_row: spec.a_row,
        a_col: spec.a_col,
        b_row: spec.b_row,
        b_col: spec.b_col,
        a_item,
        b_item,
        alpha: spec.alpha,
        batches,
        z_groups,
        _pad: [0; 3],
    };
    let tiles = |len: u32, tile: u32| len.div_ceil(tile).clamp(1, MAX_GROUPS);
    let (tm, tn) = tiling.tile();
    super::step(
        gpu,
        label,
        &pipeline,
        &params,
        &[a, b, dst],
        [tiles(spec.n, tn), tiles(spec.m, tm)],
        z_groups,
    )
}
