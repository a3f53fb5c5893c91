//! AFL target: see `batchwise_fuzz::onnx`. Outside AFL it reads one input from stdin.
fn main() {
    afl::fuzz!(|data: &[u8]| batchwise_fuzz::onnx(data));
}
