//! Products by a constant matrix for items of one q each (`shaders/gemv.wgsl`): a 1x1 convolution
//! on a 1x1 map (a classifier's head) or a Gemm of one row an item, in one dispatch over every
//! channel, reading [`GemmLayer`]'s packed weights as storage.

use super::gemm::{Dispatch, GemmLayer, Layout};
use super::{Bind, Step};
use crate::model::Residual;

/// Items an invocation computes. Keep in sync with `ROWS` in gemv.wgsl.
const ROWS: u32 = 8;
/// Output channel quads a workgroup covers. Keep in sync with `@workgroup_size` in gemv.wgsl.
const WORKGROUP_Y: u32 = 64;
/// Items a workgroup of the entry point `items` covers. Keep in sync with its `@workgroup_size`.
const ITEMS: u32 = 8;

/// Mirror of `Params` in shaders/gemv.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemvParams {
    pub rows: u32,
    pub in_cs: u32,
    pub in_item: u32,
    pub out_cs: u32,
    pub out_item: u32,
    pub in_c: u32,
    pub out_c: u32,
    pub oc_block: u32,
    pub chunk: u32,
    pub chunks: u32,
    pub activation: u32,
    pub alpha: f32,
    pub beta: f32,
    pub residual: u32,
    pub slope_base: u32,
    pub _pad: u32,
}

/// Whether a product laid out as `layout` runs here: one q an item.
pub fn suits(layout: &Layout) -> bool {
    layout.q_count == 1
}

/// gemv.wgsl's two orders of the same product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// `main`: an invocation 4 channels of 8 items, the items' inputs the same for a workgroup's
    /// invocations, the weights read per invocation (adjacent invocations adjacent vec4s).
    Channels,
    /// `items`: an invocation one item of a block of 16 to 32 channels, the block's weights the
    /// same for a workgroup's invocations, the inputs read per invocation.
    Items,
}

impl Order {
    /// `Items` on a CPU adapter where the blocking allows (measured 2.2-2.4x `Channels` on
    /// lavapipe: each input value, loaded per lane, serves the block's channels); `Channels` on a
    /// GPU (coalesced weight reads).
    /// `BATCHWISE_GEMV=channels|items` picks one, to measure both.
    pub fn for_adapter(gpu: &crate::gpu::Gpu, oc_block: u32) -> Order {
        let items_fit = items_fit(oc_block);
        match std::env::var("BATCHWISE_GEMV").as_deref() {
            Ok("channels") => Order::Channels,
            Ok("items") if items_fit => Order::Items,
            _ if items_fit && gpu.adapter.device_type == "Cpu" => Order::Items,
            _ => Order::Channels,
        }
    }
}

/// Whether the `items` order takes blocks of `oc_block` channels (4 to 8 quads).
fn items_fit(oc_block: u32) -> bool {
    (16..=32).contains(&oc_block)
}

/// Where each channel block's input-channel chunk starts in gemm's packed weights, in vec4s,
/// `[block][chunk]`; and the chunk size. A dispatch covers `blocks` blocks of one chunk, each
/// block's `[ic in chunk][oc_block]` weights after the one before it.
pub fn offsets(dispatches: &[Dispatch], oc_block: u32, in_c: u32) -> (Vec<u32>, u32) {
    let chunk = dispatches.first().map_or(in_c, |d| d.ic_count).max(1);
    let chunks = in_c.div_ceil(chunk);
    let blocks = dispatches
        .iter()
        .map(|d| d.oc_base / oc_block + d.blocks)
        .max()
        .unwrap_or(0);
    let mut table = vec![0u32; (blocks * chunks) as usize];
    for d in dispatches {
        for b in 0..d.blocks {
            let block = d.oc_base / oc_block + b;
            let floats = d.weight_offset / 4 + u64::from(b * d.block_stride);
            table[(block * chunks + d.ic_base / chunk) as usize] = (floats / 4) as u32;
        }
    }
    (table, chunk)
}

impl GemmLayer {
    /// As [`GemmLayer::prepare`], for a `layout` that [`suits`] this kernel: one dispatch, in
    /// the adapter's [`Order`].
    pub(super) fn prepare_rows(
        &self,
        cx: Bind,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        layout: Layout,
        residual: Option<(&wgpu::Buffer, Residual)>,
    ) -> Step {
        let order = Order::for_adapter(cx.gpu, self.blocking.oc_block);
        self.prepare_ordered(cx, (src, dst), layout, residual, order)
    }

    /// As [`Self::prepare_rows`], in `order` (`Items` only for blocks of 16 to 32 channels).
    pub fn prepare_ordered(
        &self,
        cx: Bind,
        (src, dst): (&wgpu::Buffer, &wgpu::Buffer),
        layout: Layout,
        residual: Option<(&wgpu::Buffer, Residual)>,
        order: Order,
    ) -> Step {
        assert!(
            order == Order::Channels || items_fit(self.blocking.oc_block),
            "gemv's items order takes blocks of 16 to 32 channels"
        );
        let (gpu, kernels, label) = (cx.gpu, cx.kernels, cx.label);
        let bytes = kernels.precision.bytes();
        let items = |b: &wgpu::Buffer, item: u32| b.size() / (bytes * u64::from(item.max(1)));
        let mut rows = items(src, layout.in_item).min(items(dst, layout.out_item));
        if let Some((r, _)) = residual {
            rows = rows.min(items(r, layout.out_item));
        }
        let (table, chunk) = offsets(&self.dispatches, self.blocking.oc_block, self.in_c);
        let (activation, alpha, beta) = self.activation;
        let params = GemvParams {
            rows: rows.clamp(1, u64::from(u32::MAX)) as u32,
            in_cs: layout.in_cs,
            in_item: layout.in_item,
            out_cs: layout.out_cs,
            out_item: layout.out_item,
            in_c: self.in_c,
            out_c: self.out_c,
            oc_block: self.blocking.oc_block,
            chunk,
            chunks: self.in_c.div_ceil(chunk),
            activation,
            alpha,
            beta,
            residual: residual.map_or(0, |(_, r)| r as u32),
            slope_base: self.slope_base,
            _pad: 0,
        };
        let table = gpu.create_buffer_init(
            label,
            bytemuck::cast_slice(&table),
            wgpu::BufferUsages::STORAGE,
        );
        let params = gpu.create_buffer_init(
            label,
            bytemuck::bytes_of(&params),
            wgpu::BufferUsages::UNIFORM,
        );
        // Without a residual the binding is never read; src stands in.
        let skip = residual.map_or(src, |(r, _)| r);
        let buffers = [
            &*params,
            &*self.weights,
            &*table,
            &*self.bias_slope,
            src,
            dst,
            skip,
        ];
        let (pipeline, groups, per_group) = match order {
            Order::Channels => {
                let quads = self.out_c.div_ceil(4);
                (&kernels.gemv, [1, quads.div_ceil(WORKGROUP_Y)], ROWS)
            }
            Order::Items => {
                let blocks = self.out_c.div_ceil(self.blocking.oc_block);
                (&kernels.gemv_items, [1, blocks], ITEMS)
            }
        };
        let bind_group = gpu.bind_group(label, pipeline, &buffers);
        Step::with_offsets(
            label,
            pipeline.clone(),
            bind_group,
            groups,
            1,
            Vec::new(),
            vec![params, table],
        )
        .folding_items(1, per_group)
    }
}
