//! Translations of ONNX ops shared by both lowerings (the image one in `super::lower_image`, the
//! static one in `super::static_graph`), one module per op family.

pub mod activation;
