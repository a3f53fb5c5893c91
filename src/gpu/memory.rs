//! What the device itself says about its memory: the size of its device-local heaps, and the
//! budget and usage of this process where the driver reports them (Vulkan's
//! `VK_EXT_memory_budget`). Other backends report nothing through wgpu; callers then fall back to
//! batchwise's own budget and ledger and say so.

use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeviceMemory {
    /// Device-local memory, all heaps together (system memory for software and many integrated
    /// adapters).
    pub total_bytes: u64,
    /// What the driver lets this process use now, when it says.
    pub budget_bytes: Option<u64>,
    /// What this process uses now, by the driver's count, when it says.
    pub usage_bytes: Option<u64>,
}

/// The adapter's memory as its driver reports it now; None where the backend reports nothing.
pub fn query(adapter: &wgpu::Adapter) -> Option<DeviceMemory> {
    #[cfg(any(target_os = "linux", target_os = "windows"))]
    if let Some(memory) = vulkan::query(adapter) {
        return Some(memory);
    }
    let _ = adapter;
    None
}

#[cfg(any(target_os = "linux", target_os = "windows"))]
mod vulkan {
    use ash::vk;

    use super::DeviceMemory;

    pub fn query(adapter: &wgpu::Adapter) -> Option<DeviceMemory> {
        // SAFETY: the handles are only read from, and only while the guard keeps them alive.
        let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
        let shared = hal.shared_instance();
        let instance = shared.raw_instance();
        let device = hal.raw_physical_device();
        // SAFETY: `device` belongs to `instance`, which outlives this call.
        let has_budget = shared.instance_api_version() >= vk::API_VERSION_1_1
            && unsafe { instance.enumerate_device_extension_properties(device) }
                .unwrap_or_default()
                .iter()
                .any(|e| e.extension_name_as_c_str() == Ok(ash::ext::memory_budget::NAME));
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        let properties = if has_budget {
            let mut props = vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
            // SAFETY: as above; the budget struct is chained as the extension requires.
            unsafe { instance.get_physical_device_memory_properties2(device, &mut props) };
            props.memory_properties
        } else {
            // SAFETY: as above.
            unsafe { instance.get_physical_device_memory_properties(device) }
        };
        let heaps = &properties.memory_heaps[..properties.memory_heap_count as usize];
        let local: Vec<usize> = (0..heaps.len())
            .filter(|&i| heaps[i].flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
            .collect();
        let total_bytes = local.iter().map(|&i| heaps[i].size).sum();
        let sum = |values: &[u64]| -> Option<u64> {
            let total: u64 = local.iter().map(|&i| values[i]).sum();
            (has_budget && total > 0).then_some(total)
        };
        Some(DeviceMemory {
            total_bytes,
            budget_bytes: sum(&budget.heap_budget),
            usage_bytes: sum(&budget.heap_usage),
        })
    }
}
