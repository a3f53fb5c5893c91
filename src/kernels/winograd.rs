//! Winograd convolution F(m x m, 3 x 3) for 3x3, stride-1, undilated, ungrouped convolutions, on
//! conv2d.wgsl's declarations: a generated `main`, as `conv2d_narrow.rs` (no shader file of its
//! own; `tests/shader_validation.rs` validates the generated ones, float32 and float16).
//!
//! One invocation owns one or more m x m output tiles (side by side) of a block of output
//! channels. Per input channel it
//! loads the (m + 2)^2 input patch (zero outside the image: the padding), transforms it
//! (V = B^T d B, additions and small constants), multiplies V elementwise by the weights
//! transformed once at upload (U = G g G^T) and accumulates; after the last input channel of its
//! chunk it transforms back (Y = A^T M A) and stores through conv2d.wgsl's `store_acc`: the same
//! params, weight window, input-channel chunks, fused bias, activation and residual as the direct
//! kernel. F(2,3) does 16 products a tile where the direct kernel does 36; F(4,3) 36 where it
//! does 144. On lavapipe, where the accumulators live in memory either way, the extra weight
//! loads and transforms eat most of that (BENCHMARKS.md, "Winograd"); autotuning decides per
//! adapter and shape.
//!
//! The transformed weights are packed as conv2d packs a (m + 2) x (m + 2) kernel
//! (`conv2d::pack_weights`): per block and chunk `[ic][tap][channel]`.

use super::conv2d::{PackedConv2d, Variant};
use crate::model::Conv2dSpec;

/// Which Winograd transform and kernel: F(2x2, 3x3) or F(4x4, 3x3) fused into one kernel (here),
/// or F(2x2), F(4x4), F(6x6, 3x3) split into transforms and a batched GEMM (`winograd_gemm.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Tile {
    F2,
    F4,
    F2Split,
    F4Split,
    F6Split,
}

impl Tile {
    pub const ALL: [Tile; 5] = [
        Tile::F2,
        Tile::F4,
        Tile::F2Split,
        Tile::F4Split,
        Tile::F6Split,
    ];
    /// The tiles of the fused kernel (generated into conv2d.wgsl's variant).
    pub const FUSED: [Tile; 2] = [Tile::F2, Tile::F4];
    /// The tiles of the split kernel (`winograd_gemm.rs`).
    pub const SPLIT: [Tile; 3] = [Tile::F2Split, Tile::F4Split, Tile::F6Split];

    /// Output rows and columns of a tile.
    pub fn m(self) -> u32 {
        match self {
            Tile::F2 | Tile::F2Split => 2,
            Tile::F4 | Tile::F4Split => 4,
            Tile::F6Split => 6,
        }
    }

    /// Whether the tile runs split into transforms and a GEMM (`winograd_gemm.rs`).
    pub fn split(self) -> bool {
        matches!(self, Tile::F2Split | Tile::F4Split | Tile::F6Split)
    }

    /// The name reports and `BATCHWISE_WINOGRAD` use: `f2`, `f4` (fused), `f2s`, `f4s`, `f6s`.
    pub fn name(self) -> &'static str {
        match self {
            Tile::F2 => "f2",
            Tile::F4 => "f4",
            Tile::F2Split => "f2s",
            Tile::F4Split => "f4s",
            Tile::F6Split => "f6s",
        }
    }

    /// Input rows and columns of a tile's patch, and the transform's size.
    pub fn alpha(self) -> u32 {
        self.m() + 2
    }

    /// Output channels an invocation computes. With [`Self::tiles`], the fastest of the
    /// blockings measured on lavapipe (8 or 16 channels of 1, 2 or 4 tiles; BENCHMARKS.md,
    /// "Winograd"): F(2,3) 8 channels of 4 tiles, F(4,3) 16 channels of one.
    pub fn block(self) -> u32 {
        match self {
            Tile::F2 | Tile::F2Split => 8,
            _ => 16,
        }
    }

    /// Horizontally adjacent tiles an invocation computes (each weight load serves them all, the
    /// row transform of their shared input columns is done once).
    pub fn tiles(self) -> u32 {
        match self {
            Tile::F2 | Tile::F2Split => 4,
            _ => 1,
        }
    }

    /// (B^T, G, A^T): alpha x alpha, alpha x 3 and m x alpha, row-major (Lavin and Gray, 2016;
    /// F(6,3) on the points 0, +-1, +-2, +-1/2 as ncnn has it).
    pub(crate) fn matrices(self) -> (&'static [f64], &'static [f64], &'static [f64]) {
        match self {
            Tile::F2 | Tile::F2Split => (&BT2, &G2, &AT2),
            Tile::F4 | Tile::F4Split => (&BT4, &G4, &AT4),
            Tile::F6Split => (&BT6, &G6, &AT6),
        }
    }
}

#[rustfmt::skip]
const BT2: [f64; 16] = [
    1.0, 0.0, -1.0, 0.0,
    0.0, 1.0, 1.0, 0.0,
    0.0, -1.0, 1.0, 0.0,
    0.0, 1.0, 0.0, -1.0,
];
#[rustfmt::skip]
const G2: [f64; 12] = [
    1.0, 0.0, 0.0,
    0.5, 0.5, 0.5,
    0.5, -0.5, 0.5,
    0.0, 0.0, 1.0,
];
#[rustfmt::skip]
const AT2: [f64; 8] = [
    1.0, 1.0, 1.0, 0.0,
    0.0, 1.0, -1.0, -1.0,
];
#[rustfmt::skip]
const BT4: [f64; 36] = [
    4.0, 0.0, -5.0, 0.0, 1.0, 0.0,
    0.0, -4.0, -4.0, 1.0, 1.0, 0.0,
    0.0, 4.0, -4.0, -1.0, 1.0, 0.0,
    0.0, -2.0, -1.0, 2.0, 1.0, 0.0,
    0.0, 2.0, -1.0, -2.0, 1.0, 0.0,
    0.0, 4.0, 0.0, -5.0, 0.0, 1.0,
];
#[rustfmt::skip]
const G4: [f64; 18] = [
    1.0 / 4.0, 0.0, 0.0,
    -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
    -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
    1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
    1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
    0.0, 0.0, 1.0,
];
#[rustfmt::skip]
const AT4: [f64; 24] = [
    1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
    0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
    0.0, 1.0, 1.0, 4.0, 4.0, 0.0,
    0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
];

#[rustfmt::skip]
const BT6: [f64; 64] = [
    1.0, 0.0, -5.25, 0.0, 5.25, 0.0, -1.0, 0.0,
    0.0, 1.0, 1.0, -4.25, -4.25, 1.0, 1.0, 0.0,
    0.0, -1.0, 1.0, 4.25, -4.25, -1.0, 1.0, 0.0,
    0.0, 0.5, 0.25, -2.5, -1.25, 2.0, 1.0, 0.0,
    0.0, -0.5, 0.25, 2.5, -1.25, -2.0, 1.0, 0.0,
    0.0, 2.0, 4.0, -2.5, -5.0, 0.5, 1.0, 0.0,
    0.0, -2.0, 4.0, 2.5, -5.0, -0.5, 1.0, 0.0,
    0.0, -1.0, 0.0, 5.25, 0.0, -5.25, 0.0, 1.0,
];
#[rustfmt::skip]
const G6: [f64; 24] = [
    1.0, 0.0, 0.0,
    -2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0,
    -2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0,
    1.0 / 90.0, 1.0 / 45.0, 2.0 / 45.0,
    1.0 / 90.0, -1.0 / 45.0, 2.0 / 45.0,
    32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0,
    32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0,
    0.0, 0.0, 1.0,
];
#[rustfmt::skip]
const AT6: [f64; 48] = [
    1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
    0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 0.0,
    0.0, 1.0, 1.0, 4.0, 4.0, 0.25, 0.25, 0.0,
    0.0, 1.0, -1.0, 8.0, -8.0, 0.125, -0.125, 0.0,
    0.0, 1.0, 1.0, 16.0, 16.0, 0.0625, 0.0625, 0.0,
    0.0, 1.0, -1.0, 32.0, -32.0, 0.03125, -0.03125, 1.0,
];

/// Whether a convolution is one Winograd F(m, 3) computes: 3x3, stride 1, no dilation, one group.
pub fn supported(spec: &Conv2dSpec) -> bool {
    spec.k_h == 3
        && spec.k_w == 3
        && spec.stride == [1, 1]
        && spec.dilation == [1, 1]
        && spec.groups == 1
}

/// The kernel measured fastest for one 3x3 shape: a Winograd tile, or None for the direct kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Choice {
    pub in_c: u32,
    pub out_c: u32,
    pub tile: Option<Tile>,
}

/// The shapes autotuning measures (input, output channels): the built-in upscalers' 3x3 layers.
pub const TUNED_SHAPES: [(u32, u32); 4] = [(16, 32), (32, 32), (64, 64), (128, 128)];

/// Which kernel each 3x3 shape runs: the measured shapes with their winners; another shape runs
/// as the nearest measured one (in log2 of its channel counts).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Choices(pub Vec<Choice>);

impl Choices {
    /// The choices before autotuning on an adapter of `device_type` (wgpu's, as
    /// `GpuSummary::device_type` names it): [`Self::lavapipe`] on a CPU's Vulkan, else
    /// [`Self::direct`].
    pub fn defaults_for(device_type: &str) -> Self {
        if device_type == "Cpu" {
            Self::lavapipe()
        } else {
            Self::direct()
        }
    }

    /// The direct kernel for every shape: on a GPU until autotuning measures it. An NVIDIA
    /// H200's `batchwise tune` measured the direct kernel fastest on all four shapes, by 4x to
    /// 40x (64 -> 64: 0.74 ms against 4.2 ms for fused F(4,3) and 30.7 ms for split F(6,3);
    /// BENCHMARKS.md, "The first GPU run"): the split products' 256 accumulators an invocation
    /// and their dispatch per weight window suit a CPU's lanes, not a GPU's threads.
    pub fn direct() -> Self {
        Self::by_inputs(|_| None)
    }

    /// What lavapipe measured: from 64 input channels split F(6,3) (on 64, 1.4x the direct
    /// kernel and 1.1x F(4,3) on upscale-anime-4x's 164x164 maps, BENCHMARKS.md, "Winograd"; on
    /// 128 and 256, since the products move 8 q a load, upscale-photo-2x 1.1-1.2x its F(4,3) at
    /// 64, 128 and 256 px tiles, BENCHMARKS.md, "The split Winograd's products 8 q a load");
    /// on 16 and 32 channels split F(4,3) (enhance-low-light, 32 and 64 channels on 142 px
    /// tiles, 1.3x the direct kernel at batch 1, 1.7x at batch 4: BENCHMARKS.md, "Winograd for
    /// the few-channel layers"; F(6,3) no faster there), until autotuning measures the adapter.
    pub fn lavapipe() -> Self {
        Self::by_inputs(|in_c| match in_c {
            64.. => Some(Tile::F6Split),
            _ => Some(Tile::F4Split),
        })
    }

    /// Each of [`TUNED_SHAPES`] on `tile(its input channels)`.
    fn by_inputs(tile: impl Fn(u32) -> Option<Tile>) -> Self {
        Self(
            TUNED_SHAPES
                .iter()
                .map(|&(in_c, out_c)| Choice {
                    in_c,
                    out_c,
                    tile: tile(in_c),
                })
                .collect(),
        )
    }
}

/// `BATCHWISE_WINOGRAD=off|f2|f4|f2s|f4s|f6s` fixes the choice for every shape: Some(None) for
/// the direct kernel, Some(Some(tile)) for that tile ([`Tile::name`]).
pub fn from_env() -> Option<Option<Tile>> {
    match std::env::var("BATCHWISE_WINOGRAD").ok()?.as_str() {
        "off" | "0" => Some(None),
        name => Tile::ALL.into_iter().find(|t| t.name() == name).map(Some),
    }
}

impl Choices {
    /// The tile a convolution runs on, or None: None for shapes Winograd cannot compute and for
    /// those the narrow kernel takes (at most 12 output channels).
    pub fn choose(&self, spec: &Conv2dSpec) -> Option<Tile> {
        // An image's first convolution (3 input channels) runs direct: its transforms and
        // 36 products of 3 input channels cost more than the products save (enhance-low-light's
        // 3 -> 32: 91 ms split F(4,3) on lavapipe against 41 ms direct).
        let few_inputs = spec.in_c / spec.groups <= super::conv2d_rows::MAX_INPUTS;
        if !supported(spec) || spec.out_c <= super::conv2d_narrow::MAX_CHANNELS || few_inputs {
            return None;
        }
        if let Some(forced) = from_env() {
            return forced;
        }
        let distance = |c: &Choice| {
            let d = |a: u32, b: u32| (f64::from(a).log2() - f64::from(b).log2()).abs();
            d(c.in_c, spec.in_c) + d(c.out_c, spec.out_c)
        };
        self.0
            .iter()
            .min_by(|a, b| distance(a).total_cmp(&distance(b)))
            .and_then(|c| c.tile)
    }
}

/// `r x k` times `k x c` (row-major), in f64; with `magnitudes`, of the absolute values.
fn product(a: &[f64], b: &[f64], (r, k, c): (usize, usize, usize), magnitudes: bool) -> Vec<f64> {
    let f = |x: f64| if magnitudes { x.abs() } else { x };
    (0..r * c)
        .map(|i| {
            (0..k)
                .map(|j| f(a[i / c * k + j]) * f(b[j * c + i % c]))
                .sum()
        })
        .collect()
}

fn transpose(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..rows * cols)
        .map(|i| a[(i % rows) * cols + i / rows])
        .collect()
}

/// U = G g G^T for one 3x3 kernel `g`, alpha x alpha; with `magnitudes`, |G| |g| |G|^T.
fn weight_tile(tile: Tile, g: &[f64], magnitudes: bool) -> Vec<f64> {
    let (_, gm, _) = tile.matrices();
    let a = tile.alpha() as usize;
    let gg = product(gm, g, (a, 3, 3), magnitudes);
    product(&gg, &transpose(gm, a, 3), (a, 3, a), magnitudes)
}

/// The OIHW weights of a 3x3 convolution transformed to `[oc][ic][alpha][alpha]` (f64, rounded
/// once to f32).
pub fn transform_weights(weights: &[f32], tile: Tile) -> Vec<f32> {
    weights
        .chunks_exact(9)
        .flat_map(|g| {
            let g: Vec<f64> = g.iter().map(|&x| x as f64).collect();
            weight_tile(tile, &g, false).into_iter().map(|u| u as f32)
        })
        .collect()
}

/// The transformed weights packed for the generated kernel, with its dispatches, bias and slopes.
pub fn pack(spec: &Conv2dSpec, weights: &[f32], bias: &[f32], tile: Tile) -> PackedConv2d {
    let as_kernel = Conv2dSpec {
        k_h: tile.alpha(),
        k_w: tile.alpha(),
        ..spec.clone()
    };
    let u = transform_weights(weights, tile);
    super::conv2d::pack_weights(&as_kernel, &u, bias, tile.block())
}

/// The conv2d variant that runs `tile` (`tiles` tiles of m x m pixels an invocation).
pub fn variant(tile: Tile) -> Variant {
    Variant {
        k_h: 3,
        stride_h: 1,
        dil_h: 1,
        rows: tile.m(),
        narrow: None,
        winograd: Some(tile),
    }
}

/// CPU reference of the Winograd algorithm, in f64: NCHW input of `n` items, OIHW weights,
/// before the activation. With `magnitudes`, every matrix, input, weight and the bias taken in
/// absolute value: each output is then the sum of the absolute values of the terms the
/// algorithm adds up for it (its transforms' coefficient growth included), the scale of its
/// rounding error.
#[allow(
    clippy::too_many_arguments,
    reason = "the convolution's parts, as conv2d::reference takes them"
)]
pub fn reference(
    spec: &Conv2dSpec,
    tile: Tile,
    input: &[f32],
    (n, in_h, in_w): (u32, u32, u32),
    weights: &[f32],
    bias: &[f32],
    magnitudes: bool,
) -> Vec<f64> {
    assert!(supported(spec), "a Winograd shape");
    let (oh, ow) = spec.output_hw(in_h, in_w).expect("kernel fits the input");
    let (m, a) = (tile.m() as usize, tile.alpha() as usize);
    let (bt, _, at) = tile.matrices();
    let (b, aa) = (transpose(bt, a, a), transpose(at, m, a));
    let f = |x: f32| if magnitudes { x.abs() as f64 } else { x as f64 };
    let u: Vec<Vec<f64>> = weights
        .chunks_exact(9)
        .map(|g| {
            weight_tile(
                tile,
                &g.iter().map(|&x| f(x)).collect::<Vec<_>>(),
                magnitudes,
            )
        })
        .collect();
    let (oh, ow, c_in) = (oh as usize, ow as usize, spec.in_c as usize);
    let mut out = vec![0.0f64; n as usize * spec.out_c as usize * oh * ow];
    for item in 0..n as usize {
        for ty in (0..oh).step_by(m) {
            for tx in (0..ow).step_by(m) {
                let v: Vec<Vec<f64>> = (0..c_in)
                    .map(|c| {
                        let d: Vec<f64> = (0..a * a)
                            .map(|i| {
                                let y = (ty + i / a) as i64 - spec.pads[0] as i64;
                                let x = (tx + i % a) as i64 - spec.pads[1] as i64;
                                let inside =
                                    (0..in_h as i64).contains(&y) && (0..in_w as i64).contains(&x);
                                let at = ((item * c_in + c) * in_h as usize + y.max(0) as usize)
                                    * in_w as usize
                                    + x.max(0) as usize;
                                if inside { f(input[at]) } else { 0.0 }
                            })
                            .collect();
                        let btd = product(bt, &d, (a, a, a), magnitudes);
                        product(&btd, &b, (a, a, a), magnitudes)
                    })
                    .collect();
                for oc in 0..spec.out_c as usize {
                    let mut acc = vec![0.0f64; a * a];
                    for (c, vc) in v.iter().enumerate() {
                        for (t, sum) in acc.iter_mut().enumerate() {
                            *sum += vc[t] * u[oc * c_in + c][t];
                        }
                    }
                    let atm = product(at, &acc, (m, a, a), magnitudes);
                    let y = product(&atm, &aa, (m, a, m), magnitudes);
                    let b0 = bias.get(oc).map_or(0.0, |&x| f(x));
                    for (i, value) in y.iter().enumerate() {
                        let (oy, ox) = (ty + i / m, tx + i % m);
                        if oy < oh && ox < ow {
                            out[((item * spec.out_c as usize + oc) * oh + oy) * ow + ox] =
                                value + b0;
                        }
                    }
                }
            }
        }
    }
    out
}

/// `sum_k coefficients[k] * names[k]` as WGSL over `act` (zeros skipped, +-1 as signs).
pub(crate) fn combination(coefficients: &[f64], names: impl Fn(usize) -> String) -> String {
    let mut s = String::new();
    for (k, &c) in coefficients.iter().enumerate() {
        if c == 0.0 {
            continue;
        }
        let sign = if c < 0.0 { " - " } else { " + " };
        let term = if c.abs() == 1.0 {
            names(k)
        } else {
            format!("act({:?}) * {}", c.abs(), names(k))
        };
        s.push_str(sign);
        s.push_str(&term);
    }
    match s.strip_prefix(" + ") {
        Some(rest) => rest.to_owned(),
        None if s.is_empty() => "act(0.0)".to_owned(),
        None => format!("act(0.0){s}"),
    }
}

/// WGSL: conv2d.wgsl's declarations (`head`) with an unrolled Winograd `main` for `tile`.
pub fn source(head: &str, tile: Tile) -> String {
    let (m, a, vecs) = (
        tile.m() as usize,
        tile.alpha() as usize,
        tile.block() as usize / 4,
    );
    let tiles = tile.tiles() as usize;
    let span = a + (tiles - 1) * m;
    let (bt, _, at) = tile.matrices();
    let mut w = String::from(head);
    let mut line = |l: String| {
        w.push_str(&l);
        w.push('\n');
    };
    line(format!(
        "// Winograd F({m}x{m}, 3x3): {} channels of {tiles} {m}x{m} tiles an invocation.",
        4 * vecs
    ));
    line("fn wino_store(n: u32, oy: u32, ox: u32, v: u32, y: vec4<act>) {".into());
    line("    if oy >= p.out_h || ox >= p.out_w { return; }".into());
    line("    var acc = y + vec4<act>(p.bias[v]);".into());
    line("    if p.first == 0u { acc = y + load_acc(n, oy, ox, v); }".into());
    line("    store_acc(n, oy, ox, v, acc);".into());
    line("}".into());
    line("@compute @workgroup_size(16, WG_Y, 1)".into());
    line("fn main(@builtin(global_invocation_id) gid: vec3<u32>) {".into());
    line(format!("    let ox0 = gid.x * {}u;", m * tiles));
    line("    if ox0 >= p.out_w { return; }".into());
    line(format!("    let oy0 = gid.y * {m}u;"));
    line("    let n = gid.z;".into());
    for k in 0..tiles {
        for t in 0..a * a {
            for v in 0..vecs {
                line(format!("    var a{k}_{t}_{v} = vec4<act>(0.0);"));
            }
        }
    }
    let (a32, span32) = (a as u32, span as u32);
    line(super::conv2d_narrow::input_loop(1, 1, a32, span32));
    for r in 0..a {
        for c in 0..span {
            line(format!(
                "        let d{r}_{c} = select(act(0.0), src[plane + ry{r} + cx{c}], my{r} && mx{c});"
            ));
        }
    }
    // V = B^T d B: rows first (t = B^T d, shared by the tiles), then each tile's columns
    // (V = t B, B[k][c] = B^T[c][k]).
    for r in 0..a {
        for c in 0..span {
            let e = combination(&bt[r * a..(r + 1) * a], |k| format!("d{k}_{c}"));
            line(format!("        let t{r}_{c} = {e};"));
        }
    }
    for k in 0..tiles {
        for r in 0..a {
            for c in 0..a {
                let e = combination(&bt[c * a..(c + 1) * a], |j| format!("t{r}_{}", k * m + j));
                line(format!("        let v{k}_{} = {e};", r * a + c));
            }
        }
    }
    line(format!("        let wi = ic * {}u;", a * a * vecs));
    for t in 0..a * a {
        for v in 0..vecs {
            line(format!(
                "        let w{t}_{v} = vec4<act>(weights[wi + {}u]);",
                t * vecs + v
            ));
            for k in 0..tiles {
                line(format!("        a{k}_{t}_{v} += v{k}_{t} * w{t}_{v};"));
            }
        }
    }
    line("    }".into());
    // Y = A^T M A per tile and channel group: rows first (s = A^T M), then columns, into `held`
    // (stored in a loop: `conv2d_variant::Block`).
    let block = super::conv2d_variant::Block {
        rows: m as u32,
        cols: (m * tiles) as u32,
        vecs: vecs as u32,
        ox: "ox0",
    };
    line(block.held());
    for k in 0..tiles {
        for v in 0..vecs {
            line("    {".into());
            for i in 0..m {
                for c in 0..a {
                    let e = combination(&at[i * a..(i + 1) * a], |j| {
                        format!("a{k}_{}_{v}", j * a + c)
                    });
                    line(format!("        let s{i}_{c} = {e};"));
                }
            }
            for i in 0..m {
                for j in 0..m {
                    let e = combination(&at[j * a..(j + 1) * a], |c| format!("s{i}_{c}"));
                    let slot = block.index(i as u32, (k * m + j) as u32, v as u32);
                    line(format!("        held[{slot}] = {e};"));
                }
            }
            line("    }".into());
        }
    }
    line(block.store_held("wino_store"));
    line("}".into());
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;

    fn spec(in_c: u32, out_c: u32, pad: u32) -> Conv2dSpec {
        Conv2dSpec {
            in_c,
            out_c,
            k_h: 3,
            k_w: 3,
            stride: [1, 1],
            pads: [pad; 4],
            dilation: [1, 1],
            groups: 1,
            activation: Activation::None,
        }
    }

    /// The Winograd algorithm (in f64) equals the direct convolution: the matrices, the tiling of
    /// odd sizes and the padding are right.
    #[test]
    fn reference_equals_the_direct_convolution() {
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0) - 1.0)
                .collect()
        };
        for tile in Tile::ALL {
            for (s, (n, h, w)) in [(spec(3, 5, 1), (2, 7, 9)), (spec(4, 2, 0), (1, 11, 6))] {
                let input = values((n * s.in_c * h * w) as usize, 1);
                let weights = values((s.out_c * s.in_c * 9) as usize, 2);
                let bias = values(s.out_c as usize, 3);
                let direct = super::super::conv2d::reference(&s, &input, n, h, w, &weights, &bias);
                let wino = reference(&s, tile, &input, (n, h, w), &weights, &bias, false);
                let bound = reference(&s, tile, &input, (n, h, w), &weights, &bias, true);
                assert_eq!(direct.len(), wino.len());
                for ((d, w), b) in direct.iter().zip(&wino).zip(&bound) {
                    assert!(
                        (*d as f64 - w).abs() <= 1e-6 * (1.0 + b),
                        "{tile:?}: {d} vs {w}"
                    );
                    assert!(*b >= w.abs() - 1e-9, "the magnitude bounds the value");
                }
            }
        }
    }

    #[test]
    fn combination_writes_signs_and_coefficients() {
        assert_eq!(
            combination(&[1.0, 0.0, -1.0], |k| format!("x{k}")),
            "x0 - x2"
        );
        assert_eq!(
            combination(&[0.0, -4.0, 1.0], |k| format!("x{k}")),
            "act(0.0) - act(4.0) * x1 + x2"
        );
        assert_eq!(combination(&[0.0, 0.0], |k| format!("x{k}")), "act(0.0)");
    }
}
