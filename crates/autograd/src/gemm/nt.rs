//! `c = alpha a b + beta c` where both operands run along `k` in memory: `a` row-major and
//! `b` column-major (`b^T` row-major), the layout of a linear layer's forward `x W^T` with
//! PyTorch's `[out, in]` weight. Each element of `c` is a dot product of two contiguous
//! rows, so the kernel reads the operands where they are, with no transposed or packed copy:
//! a tile of 4 rows of `a` by 3 rows of `b^T`, 8 lanes of `k` at a time, 12 running sums in
//! AVX2 registers (7 loads for 12 FMAs). Every element is summed in the same order whatever
//! tile it falls in (lane `l` adds the columns `k = l mod 8` in order, the last `k mod 8`
//! through masked loads, then the 8 lanes in a fixed tree), so a row of `c` does not depend
//! on the rows around it.
//!
//! `b^T` is taken in blocks of rows that fit in the L2 cache (512 KiB) while every row
//! block of `a` passes over them. The figures, against transposing the operands for
//! matrixmultiply, are in the module notes of `gemm`.

use std::arch::x86_64::*;

/// Tile rows of `a` and of `b^T`.
const MR: usize = 4;
const NR: usize = 3;

/// Bytes of `b^T` per block, kept in L2 while the rows of `a` pass over them.
const BLOCK_BYTES: usize = 512 * 1024;

/// Where the operands are: `a` has `m` rows of `k` contiguous values `lda` apart; `b^T` has
/// `n` rows of `k` contiguous values `ldb` apart; `c` is `m x n` with strides `rsc`, `csc`.
pub(super) struct Operands {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: *const f32,
    pub lda: usize,
    pub b: *const f32,
    pub ldb: usize,
    pub c: *mut f32,
    pub rsc: isize,
    pub csc: isize,
}

/// `c = alpha a b + beta c` (with `beta == 0`, `c` is written without being read).
///
/// # Safety
///
/// The CPU has AVX2 and FMA; the pointers and strides of `o` describe readable `a`, `b`
/// and writable `c` (no element of `c` shared with another), `lda, ldb >= k`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gemm(alpha: f32, o: &Operands, beta: f32) {
    let block = (BLOCK_BYTES / (4 * o.k.max(1))).max(NR) / NR * NR;
    let mut j0 = 0;
    while j0 < o.n {
        let j1 = (j0 + block).min(o.n);
        for i in (0..o.m).step_by(MR) {
            let rows = (o.m - i).min(MR);
            let mut j = j0;
            while j < j1 {
                let cols = (j1 - j).min(NR);
                // SAFETY: rows i..i + rows of `a`, j..j + cols of `b^T` and that block of
                // `c` lie inside the operands (the caller's bounds).
                let t = unsafe {
                    Tile {
                        k: o.k,
                        a: o.a.add(i * o.lda),
                        lda: o.lda,
                        b: o.b.add(j * o.ldb),
                        ldb: o.ldb,
                        c: o.c.offset(i as isize * o.rsc + j as isize * o.csc),
                        rsc: o.rsc,
                        csc: o.csc,
                    }
                };
                // SAFETY: as above; AVX2 and FMA are enabled here.
                unsafe {
                    match (rows, cols) {
                        (4, 3) => tile::<4, 3>(&t, alpha, beta),
                        (4, 2) => tile::<4, 2>(&t, alpha, beta),
                        (4, _) => tile::<4, 1>(&t, alpha, beta),
                        (3, 3) => tile::<3, 3>(&t, alpha, beta),
                        (3, 2) => tile::<3, 2>(&t, alpha, beta),
                        (3, _) => tile::<3, 1>(&t, alpha, beta),
                        (2, 3) => tile::<2, 3>(&t, alpha, beta),
                        (2, 2) => tile::<2, 2>(&t, alpha, beta),
                        (2, _) => tile::<2, 1>(&t, alpha, beta),
                        (_, 3) => tile::<1, 3>(&t, alpha, beta),
                        (_, 2) => tile::<1, 2>(&t, alpha, beta),
                        (_, _) => tile::<1, 1>(&t, alpha, beta),
                    }
                }
                j += cols;
            }
        }
        j0 = j1;
    }
}

/// One tile's operands: `R` rows of `a` from `a`, `C` rows of `b^T` from `b`, `c` at its
/// top-left element.
struct Tile {
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    rsc: isize,
    csc: isize,
}

/// The `R x C` dot products of one tile.
///
/// # Safety
///
/// AVX2 and FMA; `t` describes `R` readable rows of `a`, `C` of `b^T` (each `k` long) and
/// an `R x C` writable block of `c`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const R: usize, const C: usize>(t: &Tile, alpha: f32, beta: f32) {
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    let k8 = t.k / 8 * 8;
    let mut p = 0;
    // SAFETY (all loads): rows of `k` values from `a` and `b`, `p + 8 <= k8 <= k`.
    while p < k8 {
        let b: [__m256; C] =
            std::array::from_fn(|j| unsafe { _mm256_loadu_ps(t.b.add(j * t.ldb + p)) });
        for (i, acc) in acc.iter_mut().enumerate() {
            let a = unsafe { _mm256_loadu_ps(t.a.add(i * t.lda + p)) };
            for (s, b) in acc.iter_mut().zip(&b) {
                *s = _mm256_fmadd_ps(a, *b, *s);
            }
        }
        p += 8;
    }
    if k8 < t.k {
        // The last `k mod 8` columns; the masked-off lanes load zeros and touch no memory.
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((t.k - k8) as i32), lanes);
        let b: [__m256; C] =
            std::array::from_fn(|j| unsafe { _mm256_maskload_ps(t.b.add(j * t.ldb + k8), mask) });
        for (i, acc) in acc.iter_mut().enumerate() {
            let a = unsafe { _mm256_maskload_ps(t.a.add(i * t.lda + k8), mask) };
            for (s, b) in acc.iter_mut().zip(&b) {
                *s = _mm256_fmadd_ps(a, *b, *s);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (j, &s) in acc.iter().enumerate() {
            let s = alpha * sum_lanes(s);
            // SAFETY: (i, j) lies inside the tile's block of `c`.
            unsafe {
                let dst = t.c.offset(i as isize * t.rsc + j as isize * t.csc);
                *dst = if beta == 0.0 { s } else { s + beta * *dst };
            }
        }
    }
}

/// The sum of the 8 lanes, in a fixed order: halves, then pairs, then the last two.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn sum_lanes(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}
