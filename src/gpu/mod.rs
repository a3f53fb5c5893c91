//! The GPU context: adapter choice, device, queue, and the buffer ledger.

mod ledger;
mod memory;

pub use ledger::{TrackedBuffer, VramLedger};
pub use memory::DeviceMemory;

use anyhow::{Context as _, Result, anyhow};
use serde::Serialize;
use wgpu::util::DeviceExt as _;

/// Which adapter the engine runs on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AdapterChoice {
    /// The best adapter: a discrete GPU, else an integrated one, else a software one.
    #[default]
    Auto,
    /// The adapter at this index in [`list_adapters`].
    Index(usize),
}

/// What `batchwise devices` prints for each adapter.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub shader_f16: bool,
    pub timestamp_query: bool,
    /// The device's memory as its driver reports it; None where the backend says nothing.
    pub memory: Option<DeviceMemory>,
}

/// Buffer creation fails with an out-of-memory error (which halves the batch) once the driver's
/// memory budget is this full, before the device itself gives out.
pub const MEMORY_BUDGET_THRESHOLD_PERCENT: u8 = 90;

fn instance() -> wgpu::Instance {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    // Where the backend offers them (D3D12; Vulkan with VK_EXT_memory_budget).
    descriptor.memory_budget_thresholds = wgpu::MemoryBudgetThresholds {
        for_resource_creation: Some(MEMORY_BUDGET_THRESHOLD_PERCENT),
        for_device_loss: None,
    };
    wgpu::Instance::new(descriptor)
}

fn summarize(index: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    AdapterSummary {
        index,
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_owned(),
        max_buffer_size: limits.max_buffer_size,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        memory: memory::query(adapter),
    }
}

/// Adapters that can run compute shaders, in a stable order.
fn compute_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .filter(|a| {
            a.get_downlevel_capabilities()
                .flags
                .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        })
        .collect()
}

/// Every adapter that can run compute shaders, with its limits.
pub fn list_adapters() -> Vec<AdapterSummary> {
    compute_adapters(&instance())
        .iter()
        .enumerate()
        .map(|(i, a)| summarize(i, a))
        .collect()
}

fn preference(device_type: wgpu::DeviceType, backend: wgpu::Backend) -> (u8, u8) {
    let kind = match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    // Native compute APIs first; GL lacks features the engine uses on some drivers.
    let api = match backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (kind, api)
}

/// A device and queue for compute, with the ledger of every buffer the engine creates on it.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub ledger: VramLedger,
    raw_adapter: wgpu::Adapter,
    /// Why the device was lost (a driver reset, a removed GPU, `destroy`), once it is.
    lost: std::sync::Arc<std::sync::OnceLock<String>>,
}

impl Gpu {
    /// Opens a device on the chosen adapter with the adapter's own limits.
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        let instance = instance();
        let adapters = compute_adapters(&instance);
        if adapters.is_empty() {
            return Err(anyhow!(
                "no GPU adapter with compute shaders was found; install a Vulkan driver \
                 (on Debian/Ubuntu without a GPU: `apt-get install mesa-vulkan-drivers`)"
            ));
        }
        let index = match choice {
            AdapterChoice::Index(i) => {
                if *i >= adapters.len() {
                    return Err(anyhow!(
                        "adapter {i} does not exist; `batchwise devices` lists {} adapter(s)",
                        adapters.len()
                    ));
                }
                *i
            }
            AdapterChoice::Auto => (0..adapters.len())
                .min_by_key(|&i| {
                    let info = adapters[i].get_info();
                    preference(info.device_type, info.backend)
                })
                .unwrap_or(0),
        };
        let adapter = &adapters[index];
        let summary = summarize(index, adapter);
        let limits = adapter.limits();
        let mut wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::SHADER_F16;
        if summary.device_type == "Cpu" {
            // 8 values a load on llvmpipe (`kernels::eight_a_load`).
            wanted |= wgpu::Features::SHADER_INT64;
        }
        let features = adapter.features() & wanted;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("batchwise engine"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("could not open a device on adapter {}", summary.name))?;
        // Errors outside an error scope are logged, not turned into panics: the engine checks the
        // operations that can fail (allocation, submission) with scopes of its own.
        device.on_uncaptured_error(std::sync::Arc::new(|e: wgpu::Error| {
            log::error!("GPU error outside an error scope: {e}");
        }));
        let lost = std::sync::Arc::new(std::sync::OnceLock::new());
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let _ = flag.set(format!("{reason:?}: {message}"));
        });
        Ok(Self {
            lost,
            device,
            queue,
            adapter: summary,
            limits,
            ledger: VramLedger::default(),
            raw_adapter: adapter.clone(),
        })
    }

    /// Why the device was lost, once it is: nothing submitted to it runs any more.
    pub fn lost(&self) -> Option<String> {
        self.lost.get().cloned()
    }

    /// The device's memory as its driver reports it now (total, and budget and usage where the
    /// backend says); None where it reports nothing.
    pub fn device_memory(&self) -> Option<DeviceMemory> {
        memory::query(&self.raw_adapter)
    }

    /// Creates a buffer and books it in the ledger.
    pub fn create_buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> TrackedBuffer {
        // Zero-sized bindings are invalid; 4 bytes keep empty tensors bindable.
        let size = size.max(4).next_multiple_of(4);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        });
        TrackedBuffer::new(buffer, &self.ledger)
    }

    /// Creates a buffer holding `contents` and books it in the ledger.
    pub fn create_buffer_init(
        &self,
        label: &str,
        contents: &[u8],
        usage: wgpu::BufferUsages,
    ) -> TrackedBuffer {
        let mut padded;
        let contents = if !contents.len().is_multiple_of(4) || contents.is_empty() {
            padded = contents.to_vec();
            padded.resize(contents.len().max(4).next_multiple_of(4), 0);
            &padded[..]
        } else {
            contents
        };
        let buffer = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage,
            });
        TrackedBuffer::new(buffer, &self.ledger)
    }

    /// Builds a compute pipeline from WGSL source with an automatic layout.
    pub fn compute_pipeline(&self, label: &str, wgsl: &str) -> wgpu::ComputePipeline {
        self.compute_pipeline_at(label, wgsl, "main")
    }

    /// As [`Self::compute_pipeline`], for the entry point `entry` of a shader that has several.
    pub fn compute_pipeline_at(
        &self,
        label: &str,
        wgsl: &str,
        entry: &str,
    ) -> wgpu::ComputePipeline {
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(wgsl.into()),
            });
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
    }

    /// Binds `buffers` to bindings 0.. of group 0 of `pipeline`.
    pub fn bind_group(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Copies `size` bytes of `src` back to the CPU, blocking this (non-UI) thread until they arrive.
    pub fn read_back(&self, src: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let staging = self.create_buffer(
            "read back",
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        encoder.copy_buffer_to_buffer(src, 0, &staging, 0, size.next_multiple_of(4));
        self.queue.submit([encoder.finish()]);
        self.map_read(&staging, size)
    }

    /// Maps a `MAP_READ` buffer after the work that fills it was submitted and returns its bytes.
    pub fn map_read(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        self.map_read_after(staging, size, None)
    }

    /// As [`Self::map_read`], waiting only for submission `index` (None: the latest), so that
    /// later submissions keep the GPU busy meanwhile.
    pub fn map_read_after(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        index: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<u8>> {
        self.read_mapped(staging, size, index, <[u8]>::to_vec)
    }

    /// Waits for submission `index` (None: the latest), maps the first `size` bytes of `staging`
    /// and hands them to `read` while mapped, so that they are copied once, where `read` puts
    /// them (a MAP_READ buffer is host-cached memory where the adapter has it).
    pub fn read_mapped<R>(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        index: Option<wgpu::SubmissionIndex>,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let padded = size.next_multiple_of(4);
        let (tx, rx) = crossbeam_channel::bounded(1);
        staging.map_async(wgpu::MapMode::Read, 0..padded, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: None,
            })
            .context("waiting for the GPU")?;
        rx.recv()
            .context("the GPU device was lost while reading back")?
            .context("mapping a read-back buffer")?;
        let out = {
            let view = staging
                .get_mapped_range(0..padded)
                .map_err(|e| anyhow!("reading a mapped buffer: {e:?}"))?;
            read(&view[..size as usize])
        };
        staging.unmap();
        Ok(out)
    }
}
