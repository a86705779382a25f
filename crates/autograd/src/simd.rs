//! Hot loops compiled for wider vectors when the CPU has them, chosen at run time.
//!
//! The crates are built for the baseline x86-64 target (SSE2, 4 floats a register) so that
//! a binary runs anywhere. A loop whose data sits in cache is limited by that width: W3's
//! first-layer weight gradient ran about 2x faster compiled for AVX2. Building everything
//! with `-C target-cpu=native` instead made W3 slower here (3.0k against 3.2k samples/s),
//! so only measured loops get an AVX2 copy: an `#[inline(always)]` body, called through
//! [`with_avx2!`] (the body must be a named function: a closure is not inlined into the
//! `#[target_feature]` function, and stays SSE2). The results are the same either way:
//! these loops use no fused multiply-add and keep their order of operations.

/// Whether this CPU runs AVX2 (one cached load after the first call).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
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

/// Calls `body(args..)` (an `#[inline(always)]` function over `T: Float`, returning `()`)
/// from a copy compiled for AVX2 where the CPU has it, and returns from the calling
/// function.
macro_rules! with_avx2 {
    ($body:ident::<$T:ident>($($arg:ident: $ty:ty),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        if $crate::simd::avx2() {
            #[target_feature(enable = "avx2")]
            fn wide<$T: $crate::Float>($($arg: $ty),*) {
                $body($($arg),*)
            }
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { wide($($arg),*) };
        }
        $body($($arg),*)
    }};
}
pub(crate) use with_avx2;
