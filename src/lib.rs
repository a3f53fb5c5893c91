//! batchwise: batch image inference on any GPU.
//!
//! Start with `ARCHITECTURE.md`. The data flows one way: UI or CLI -> [`job`] -> [`engine`] (WGSL
//! [`kernels`] on a [`gpu`] device) -> events -> UI or CLI.

pub mod analyze;
pub mod app;
pub mod autotune;
pub mod bench;
pub mod builtin;
pub mod chain;
pub mod check;
pub mod cli;
pub mod engine;
pub mod faces;
pub mod gpu;
pub mod job;
pub mod kernels;
pub mod manifest;
pub mod model;
pub mod models_dir;
pub mod ncnn;
pub mod onnx;
pub mod passes;
pub mod resize;
pub mod tiling;
pub mod upscale;
