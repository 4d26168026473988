//! Size probe baseline: the same program shell without any verification.
use std::hint::black_box;

fn main() {
    let v = black_box(vec![1u8; 10]);
    println!("{}", v.len());
}
