//! Thread CPU time, natively and under the benchmark hosts (a `bench.thread_cpu_ns` import).

/// Thread CPU time in nanoseconds.
#[cfg(target_arch = "wasm32")]
pub fn cpu_ns() -> u64 {
    #[link(wasm_import_module = "bench")]
    extern "C" {
        fn thread_cpu_ns() -> u64;
    }
    // SAFETY: a host function without arguments or memory access.
    unsafe { thread_cpu_ns() }
}

/// Thread CPU time in nanoseconds.
#[cfg(not(target_arch = "wasm32"))]
pub fn cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
