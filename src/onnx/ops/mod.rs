//! Translations of ONNX ops shared by both lowerings (the image one in `super::lower_image`, the
//! static one in `super::static_graph`), one module per op family.

pub mod activation;
pub mod constant;
pub mod conv;
pub mod elementwise;
pub mod matmul;
pub mod norm;
pub mod pad;
pub mod pool;
pub mod reduce;
pub mod shape;
pub mod slice_concat;
