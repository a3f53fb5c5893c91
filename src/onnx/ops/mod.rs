//! The ONNX importer's translations, one module per op family (the families of
//! [`super::registry`]). Each file holds the family's free-size translation (methods of
//! `super::image::ImageLowering`, the image lowering) and its fixed-shape translation (methods of
//! `super::static_graph::Lowering`), side by side; what both share (the `UnaryOp` of a node) is
//! one function.

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
