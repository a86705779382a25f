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
                        (4, 3) => tile_4x3(&t, alpha, beta),
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
    // Plain loops, no closures: a closure does not inherit this function's target features,
    // and where it is not inlined (the dev profile) it cannot use AVX registers.
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    let mut a = [t.a; R];
    for (i, a) in a.iter_mut().enumerate() {
        *a = t.a.wrapping_add(i * t.lda);
    }
    let mut b = [t.b; C];
    for (j, b) in b.iter_mut().enumerate() {
        *b = t.b.wrapping_add(j * t.ldb);
    }
    let mut bv = [_mm256_setzero_ps(); C];
    // SAFETY (all loads): row pointers of `a` and `b` advanced by 8 at most `k / 8` times,
    // so each load of 8 reads inside its row of `k` values.
    for _ in 0..t.k / 8 {
        for (v, b) in bv.iter_mut().zip(b.iter_mut()) {
            *v = unsafe { load8(*b) };
            *b = b.wrapping_add(8);
        }
        for (acc, a) in acc.iter_mut().zip(a.iter_mut()) {
            let av = unsafe { load8(*a) };
            *a = a.wrapping_add(8);
            for (s, v) in acc.iter_mut().zip(&bv) {
                *s = _mm256_fmadd_ps(av, *v, *s);
            }
        }
    }
    let rest = t.k % 8;
    if rest > 0 {
        // The last `k mod 8` columns; the masked-off lanes load zeros and touch no memory.
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rest as i32), lanes);
        for (v, b) in bv.iter_mut().zip(&b) {
            *v = unsafe { _mm256_maskload_ps(*b, mask) };
        }
        for (acc, a) in acc.iter_mut().zip(&a) {
            let av = unsafe { _mm256_maskload_ps(*a, mask) };
            for (s, v) in acc.iter_mut().zip(&bv) {
                *s = _mm256_fmadd_ps(av, *v, *s);
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

/// The full tile, written out: the generic [`tile`] keeps its running sums in registers in
/// the release profile, but spills some to the stack in the dev profile (W1 in
/// `target/debug/examples/throughput`: 128k samples/s through [`tile`], 165k through this).
/// Sums in the same order as [`tile`].
///
/// # Safety
///
/// As [`tile`], with 4 rows of `a` and 3 of `b^T`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_4x3(t: &Tile, alpha: f32, beta: f32) {
    let (a0, a1, a2, a3) = (
        t.a,
        t.a.wrapping_add(t.lda),
        t.a.wrapping_add(2 * t.lda),
        t.a.wrapping_add(3 * t.lda),
    );
    let (b0, b1, b2) = (t.b, t.b.wrapping_add(t.ldb), t.b.wrapping_add(2 * t.ldb));
    let z = _mm256_setzero_ps();
    let (mut c00, mut c01, mut c02, mut c10, mut c11, mut c12) = (z, z, z, z, z, z);
    let (mut c20, mut c21, mut c22, mut c30, mut c31, mut c32) = (z, z, z, z, z, z);
    let mut p = 0usize;
    // The 12 multiply-adds of 8 columns from `p`, each row's 8 values read by `$load`.
    macro_rules! step {
        ($load:ident $(, $mask:expr)?) => {{
            // SAFETY: `load8` reads 8 columns from `p`, `p + 8 <= k`; the masked load reads
            // only the columns below `k` (the masked-off lanes touch no memory).
            let (v0, v1, v2) = unsafe {
                (
                    $load(b0.wrapping_add(p) $(, $mask)?),
                    $load(b1.wrapping_add(p) $(, $mask)?),
                    $load(b2.wrapping_add(p) $(, $mask)?),
                )
            };
            let u = unsafe { $load(a0.wrapping_add(p) $(, $mask)?) };
            c00 = _mm256_fmadd_ps(u, v0, c00);
            c01 = _mm256_fmadd_ps(u, v1, c01);
            c02 = _mm256_fmadd_ps(u, v2, c02);
            let u = unsafe { $load(a1.wrapping_add(p) $(, $mask)?) };
            c10 = _mm256_fmadd_ps(u, v0, c10);
            c11 = _mm256_fmadd_ps(u, v1, c11);
            c12 = _mm256_fmadd_ps(u, v2, c12);
            let u = unsafe { $load(a2.wrapping_add(p) $(, $mask)?) };
            c20 = _mm256_fmadd_ps(u, v0, c20);
            c21 = _mm256_fmadd_ps(u, v1, c21);
            c22 = _mm256_fmadd_ps(u, v2, c22);
            let u = unsafe { $load(a3.wrapping_add(p) $(, $mask)?) };
            c30 = _mm256_fmadd_ps(u, v0, c30);
            c31 = _mm256_fmadd_ps(u, v1, c31);
            c32 = _mm256_fmadd_ps(u, v2, c32);
        }};
    }
    for _ in 0..t.k / 8 {
        step!(load8);
        p += 8;
    }
    if p < t.k {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((t.k - p) as i32), lanes);
        step!(_mm256_maskload_ps, mask);
    }
    let sums = [
        [c00, c01, c02],
        [c10, c11, c12],
        [c20, c21, c22],
        [c30, c31, c32],
    ];
    for (i, row) in sums.iter().enumerate() {
        for (j, &s) in row.iter().enumerate() {
            let s = alpha * sum_lanes(s);
            // SAFETY: (i, j) lies inside the tile's 4 x 3 block of `c`.
            unsafe {
                let dst = t.c.offset(i as isize * t.rsc + j as isize * t.csc);
                *dst = if beta == 0.0 { s } else { s + beta * *dst };
            }
        }
    }
}

/// 8 floats at `p`, aligned or not.
#[repr(C, packed)]
#[derive(Clone, Copy)]
struct Unaligned(__m256);

/// Loads 8 floats from `p` (any alignment) with a plain vector load. `_mm256_loadu_ps` goes
/// through `copy_nonoverlapping`, whose pointer checks the dev profile keeps (a stack round
/// trip, a null and an overlap check per load: the MLP example trained 1.6x slower there).
///
/// # Safety
///
/// `p` points to 8 readable floats.
#[inline(always)]
pub(super) unsafe fn load8(p: *const f32) -> __m256 {
    // SAFETY: the caller's bounds; `Unaligned` has alignment 1.
    unsafe { (*p.cast::<Unaligned>()).0 }
}

/// Stores 8 floats at `p` (any alignment), as [`load8`] loads them.
///
/// # Safety
///
/// `p` points to 8 writable floats.
#[inline(always)]
pub(super) unsafe fn store8(p: *mut f32, v: __m256) {
    // SAFETY: the caller's bounds; `Unaligned` has alignment 1.
    unsafe { *p.cast::<Unaligned>() = Unaligned(v) };
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
