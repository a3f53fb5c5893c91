//! AFL target: see `batchwise_fuzz::ncnn`. Outside AFL it reads one input from stdin.
fn main() {
    afl::fuzz!(|data: &[u8]| batchwise_fuzz::ncnn(data));
}
