//! Hot loops compiled for wider vectors when the CPU has them, chosen at run time.
//!
//! The crates are built for the baseline x86-64 target (SSE2, 4 floats a register) so that
//! a binary runs anywhere. A loop whose data sits in cache is limited by that width: W3's
//! first-layer weight gradient ran about 2x faster compiled for AVX2. Building everything
//! with `-C target-cpu=native` instead made W3 slower here (3.0k against 3.2k samples/s),
//! so only measured loops get an AVX2 copy, written as below: an `#[inline(always)]` body,
//! and a wrapper that calls it from a `#[target_feature(enable = "avx2")]` function when
//! [`avx2`] says so (the body must be a named function: a closure is not inlined into the
//! wrapper, and stays SSE2). The results are the same either way: these loops use no fused
//! multiply-add and keep their order of operations.

/// Whether this CPU runs AVX2 (one cached load after the first call).
#[inline(always)]
pub(crate) fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
