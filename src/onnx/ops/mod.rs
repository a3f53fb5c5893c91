//! The ONNX translator's ops, one module per op family (the families of [`super::registry`]).
//! Each op is one method of [`super::lowering::Lowering`], for free and fixed dims alike: where
//! the two need different IR (image layers sized per batch, or tensor layers of known dims), the
//! method branches on its input's value, and a `*_free` helper beside it holds the free form.

pub mod activation;
pub mod constant;
pub mod conv;
pub mod elementwise;
pub mod matmul;
pub mod norm;
pub mod pad;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod shape;
pub mod slice_concat;
