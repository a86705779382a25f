//! Every matrix product of the ops, `c = alpha a b + beta c`: ndarray's `general_mat_mul`,
//! with the operands first laid out the way matrixmultiply packs them fastest, or, where both
//! run along `k` in memory, a kernel of dot products of their rows (`nt.rs`).
//!
//! matrixmultiply copies `a` into panels of whole columns and `b` into panels of whole rows
//! before its kernel runs. Where `a` is column-major and `b` row-major it copies a panel's
//! rows as blocks; any other layout goes element by element, a scalar load and store each.
//! The ops hand it the other layouts all the time: a linear layer's forward `x W^T` reads
//! `x` by rows and `W^T` (PyTorch's `[out, in]` weight) by columns, and a convolution's
//! weight gradient reads its columns transposed. So:
//!
//! - where `a` is row-major and `b` column-major (both contiguous along `k`: the linear
//!   forward, the convolutions' weight gradients), each element of `c` is the dot product
//!   of two contiguous rows, and `nt.rs` computes them in place, with no copy of either
//!   operand; measured with `MATMUL_NUM_THREADS=1 cargo run --release --manifest-path
//!   benches/gemm_probe/Cargo.toml` (one thread, this project's 2-core AMD EPYC), against
//!   the transposes below in the same probe before: W1's forward at a worker's half batch
//!   (32 x 784 x 128) 62 against 85 us, W2's first layer (128 x 784 x 512) 1.04 against
//!   1.18 ms, W3's first convolution's weight gradient (32 x 14196 x 9) 94 against 312 us;
//! - otherwise an operand in the slow layout is first transposed into pooled scratch, 8x8
//!   tiles at a time in AVX2 registers, and matrixmultiply runs on the copy (W3's linear
//!   forward 358 against 320 us before the dot kernel took it over).
//!
//! The packed panels are the same whichever layout they were copied from, so the
//! transposed path computes the same sums in the same order as `general_mat_mul` on the
//! operands as given: bit-identical (tested). The dot kernel sums in its own order (8 lanes
//! along `k`, then the lanes), the same for every element wherever it lies, so a row of `c`
//! does not depend on the rows around it (tested), and it agrees with `general_mat_mul` to
//! rounding. Only `f32` on x86-64 with AVX2 (and FMA, for the dot kernel) takes these paths;
//! `f64` (gradient checks) and the OpenBLAS build (which transposes inside its own packing)
//! go straight to `general_mat_mul`.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

use crate::Float;

/// `c = alpha a b + beta c` (`a: [m, k]`, `b: [k, n]`, `c: [m, n]`) for operands in any
/// layout: ndarray's `general_mat_mul`, the same result bit for bit, with the operands first
/// copied into the layouts matrixmultiply packs fastest where that pays (see the module
/// notes). The product every op of gradus uses; for a custom op's own products. Shapes that
/// do not meet panic, naming them.
///
/// ```
/// use gradus_autograd::gemm;
/// use gradus_autograd::ndarray::{Array2, arr2};
/// let x = arr2(&[[1.0f32, 2.0], [3.0, 4.0]]);
/// let w = arr2(&[[1.0f32, 0.0], [1.0, 1.0], [0.0, 2.0]]); // [out, in], as a linear layer's
/// let mut y = Array2::zeros((2, 3));
/// gemm(1.0, &x.view(), &w.t(), 0.0, &mut y.view_mut()); // x W^T
/// assert_eq!(y, arr2(&[[1.0, 3.0, 4.0], [3.0, 7.0, 8.0]]));
/// ```
pub fn gemm<T: Float>(
    alpha: T,
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    beta: T,
    c: &mut ArrayViewMut2<'_, T>,
) {
    #[cfg(all(target_arch = "x86_64", not(feature = "openblas")))]
    if crate::simd::avx2() && a.ncols() == b.nrows() {
        // SAFETY: each cast is between one type and itself (T is f32 here).
        let cast = unsafe {
            (
                crate::mono::cast::<T, f32, T, f32>(alpha),
                crate::mono::cast::<T, f32, _, ArrayView2<'_, f32>>(a.view()),
                crate::mono::cast::<T, f32, _, ArrayView2<'_, f32>>(b.view()),
                crate::mono::cast::<T, f32, T, f32>(beta),
                crate::mono::cast::<T, f32, _, &mut ArrayViewMut2<'_, f32>>(&mut *c),
            )
        };
        if let (Ok(alpha), Ok(a), Ok(b), Ok(beta), Ok(c)) = cast {
            return x86::gemm_f32(alpha, a, b, beta, c);
        }
    }
    general_mat_mul(alpha, a, b, beta, c);
}

/// Whether matrixmultiply would pack a `rows x cols` operand with these strides element by
/// element, while its transpose is a row-major matrix (unit column stride, rows apart by at
/// least their length) that the tile transpose can read; `by_columns` asks it of `a`, whose
/// panels are columns, and otherwise of `b`, whose panels are rows.
#[cfg_attr(
    any(not(target_arch = "x86_64"), feature = "openblas"),
    allow(dead_code)
)]
fn worth_transposing(rows: usize, cols: usize, strides: &[isize], by_columns: bool) -> bool {
    let (along, across, len) = if by_columns {
        (strides[1], strides[0], cols)
    } else {
        (strides[0], strides[1], rows)
    };
    rows >= 8 && cols >= 8 && along == 1 && across >= len as isize
}

#[cfg(all(target_arch = "x86_64", not(feature = "openblas")))]
mod nt;

#[cfg(all(target_arch = "x86_64", not(feature = "openblas")))]
mod x86 {
    use std::arch::x86_64::*;

    use ndarray::linalg::general_mat_mul;
    use ndarray::{ArrayView2, ArrayViewMut2};

    use super::nt::{load8, store8};
    use super::worth_transposing;
    use crate::pool;

    #[inline(never)]
    pub(super) fn gemm_f32(
        alpha: f32,
        a: ArrayView2<'_, f32>,
        b: ArrayView2<'_, f32>,
        beta: f32,
        c: &mut ArrayViewMut2<'_, f32>,
    ) {
        let ((m, k), n) = (a.dim(), b.ncols());
        // Rows (of `a`) and columns (of `b`) contiguous along `k`; ndarray gives an axis of
        // length 1 any stride (slicing makes it 0), which then is never used.
        let (sa, sb) = (a.strides(), b.strides());
        let lda = if m == 1 { k as isize } else { sa[0] };
        let ldb = if n == 1 { k as isize } else { sb[1] };
        if m > 0
            && n > 0
            && k > 0
            && (sa[1] == 1 || k == 1)
            && lda >= k as isize
            && (sb[0] == 1 || k == 1)
            && ldb >= k as isize
            && std::arch::is_x86_feature_detected!("fma")
        {
            let o = super::nt::Operands {
                m,
                n,
                k,
                a: a.as_ptr(),
                lda: lda as usize,
                b: b.as_ptr(),
                ldb: ldb as usize,
                c: c.as_mut_ptr(),
                rsc: c.strides()[0],
                csc: c.strides()[1],
            };
            // SAFETY: AVX2 (checked by `gemm`) and FMA (above); `a` holds `m` rows of `k`
            // contiguous values `lda >= k` apart, `b` `n` columns of `k` contiguous values
            // `ldb >= k` apart, and `c` is an exclusively borrowed `m x n` view.
            unsafe { super::nt::gemm(alpha, &o, beta) };
            return;
        }
        let mut a_t = Vec::new();
        let mut b_t = Vec::new();
        let a = if worth_transposing(m, k, a.strides(), true) {
            // `a` row-major: its transpose `[k, m]`, row-major, is `a` column-major.
            a_t = transposed(&a);
            ArrayView2::from_shape((k, m), &a_t[..])
                .expect("sized")
                .reversed_axes()
        } else {
            a
        };
        let b = if worth_transposing(k, n, b.strides(), false) {
            // `b` column-major: `b^T` is row-major, and its transpose is `b` row-major.
            b_t = transposed(&b.t());
            ArrayView2::from_shape((k, n), &b_t[..]).expect("sized")
        } else {
            b
        };
        general_mat_mul(alpha, &a, &b, beta, c);
        pool::recycle_vec(a_t);
        pool::recycle_vec(b_t);
    }

    /// `src^T` (`src: [rows, cols]` with unit column stride), row-major, in pooled storage.
    fn transposed(src: &ArrayView2<'_, f32>) -> Vec<f32> {
        let (rows, cols) = src.dim();
        let rs = src.strides()[0] as usize;
        debug_assert!(src.strides()[1] == 1 && rs >= cols);
        let (mut dst, _) = pool::scratch::<f32>(&[rows * cols]).into_raw_vec_and_offset();
        // SAFETY: the CPU has AVX2 (checked by `gemm`); `src` has `rows` rows of `cols`
        // contiguous elements `rs` apart, and `dst` holds `rows * cols`.
        unsafe { transpose_avx2(src.as_ptr(), rs, rows, cols, &mut dst) };
        dst
    }

    /// `dst[j * rows + i] = src[i * rs + j]` for `i < rows`, `j < cols`: whole 8x8 tiles in
    /// registers, two side by side (a full cache line of each source row) down each pair of
    /// column strips, so every destination row is written in order; the edges one by one.
    ///
    /// # Safety
    ///
    /// AVX2; `src` points to `rows` rows of `cols` readable elements, `rs` apart;
    /// `dst.len() >= rows * cols`.
    #[target_feature(enable = "avx2")]
    unsafe fn transpose_avx2(
        src: *const f32,
        rs: usize,
        rows: usize,
        cols: usize,
        dst: &mut [f32],
    ) {
        assert!(dst.len() >= rows * cols);
        let (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
        let d = dst.as_mut_ptr();
        let mut j = 0;
        while j < c8 {
            for i in (0..r8).step_by(8) {
                // SAFETY: rows i..i + 8 < rows, columns j..j + 8 <= cols (the caller's bounds).
                unsafe { tile(src.add(i * rs + j), rs, d.add(j * rows + i), rows) };
                if j + 8 < c8 {
                    unsafe { tile(src.add(i * rs + j + 8), rs, d.add((j + 8) * rows + i), rows) };
                }
            }
            j += 16;
        }
        for i in 0..rows {
            let from = if i < r8 { c8 } else { 0 };
            for j in from..cols {
                // SAFETY: i < rows, j < cols.
                dst[j * rows + i] = unsafe { *src.add(i * rs + j) };
            }
        }
    }

    /// One 8x8 tile: `dst[c * ld_dst + r] = src[r * ld_src + c]`.
    #[inline(always)]
    unsafe fn tile(src: *const f32, ld_src: usize, dst: *mut f32, ld_dst: usize) {
        // SAFETY (all): the caller's bounds; AVX2 is enabled in the caller.
        unsafe {
            // Plain loads and stores, no closure: see `nt::load8` (the dev profile).
            let mut r = [_mm256_setzero_ps(); 8];
            for (x, r) in r.iter_mut().enumerate() {
                *r = load8(src.wrapping_add(x * ld_src));
            }
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let out = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (x, v) in out.into_iter().enumerate() {
                store8(dst.wrapping_add(x * ld_dst), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, ArrayView2, s};

    use super::*;

    fn matrix(rows: usize, cols: usize, seed: u32) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            let h = (i as u32 * 7919 + j as u32 * 104_729 + seed).wrapping_mul(2_654_435_761);
            (h >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
    }

    /// Every layout pairing, sizes on and off the 8x8 tiles, views cut out of larger
    /// arrays (rows further apart than their length), alpha and beta: bit for bit the
    /// product on the operands as handed over, except where both run along `k` (the dot
    /// kernel, which sums in its own order: equal to rounding).
    #[test]
    fn products_equal_general_mat_mul_bit_for_bit_in_every_layout() {
        for &(m, k, n) in &[
            (32, 784, 128),
            (9, 17, 23),
            (8, 8, 8),
            (7, 30, 5),
            (64, 363, 41),
            (1, 12, 9),
        ] {
            let a_rows = matrix(m, k + 3, 1);
            let a_cols = matrix(k, m + 5, 2);
            let b_rows = matrix(k, n + 2, 3);
            let b_cols = matrix(n, k + 4, 4);
            let a_views: [ArrayView2<f32>; 2] = [
                a_rows.slice(s![.., ..k]),
                a_cols.slice(s![.., ..m]).reversed_axes(),
            ];
            let b_views: [ArrayView2<f32>; 2] = [
                b_rows.slice(s![.., ..n]),
                b_cols.slice(s![.., ..k]).reversed_axes(),
            ];
            for a in &a_views {
                for b in &b_views {
                    let start = matrix(m, n, 5);
                    let mut want = start.clone();
                    general_mat_mul(0.75, a, b, 0.5, &mut want.view_mut());
                    let mut got = start.clone();
                    gemm(0.75, a, b, 0.5, &mut got.view_mut());
                    let dot_kernel = cfg!(target_arch = "x86_64")
                        && !cfg!(feature = "openblas")
                        && a.strides()[1] == 1
                        && b.strides()[0] == 1;
                    let same = want
                        .iter()
                        .zip(&got)
                        .all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(
                        same || dot_kernel,
                        "{m} x {k} x {n}, strides {:?} x {:?}",
                        a.strides(),
                        b.strides()
                    );
                    // Not a product of zeros: the reference is what it should be.
                    let naive = a.dot(b) * 0.75 + &start * 0.5;
                    let close = naive.iter().zip(&got).all(|(x, y)| (x - y).abs() < 1e-3);
                    assert!(close, "{m} x {k} x {n}");
                }
            }
        }
    }

    /// The dot kernel's tiles are 4 rows by 3 columns with `k` in steps of 8: every element,
    /// in a full tile or at an edge, alone or among others, gets the same bits, and
    /// `beta = 0` writes `c` without reading it (NaN there is overwritten). (OpenBLAS, and
    /// matrixmultiply's kernels, choose their blocking by shape: no such promise there.)
    #[test]
    #[cfg(all(target_arch = "x86_64", not(feature = "openblas")))]
    fn each_element_of_a_product_along_k_is_the_same_wherever_it_lies() {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            eprintln!("skipped: the dot kernel needs AVX2 and FMA, which this CPU lacks");
            return;
        }
        for &(m, k, n) in &[(9, 37, 7), (4, 8, 3), (5, 3, 2), (6, 17, 4), (2, 1600, 5)] {
            let a = matrix(m, k + 2, 6);
            let w = matrix(n, k + 1, 7); // rows of b^T, as a linear layer's [out, in] weight
            let (a, w) = (a.slice(s![.., ..k]), w.slice(s![.., ..k]));
            let mut c = Array2::from_elem((m, n), f32::NAN);
            gemm(1.25, &a, &w.t(), 0.0, &mut c.view_mut());
            for i in 0..m {
                for j in 0..n {
                    let mut one = Array2::from_elem((1, 1), f32::NAN);
                    let (ai, wj) = (a.slice(s![i..i + 1, ..]), w.slice(s![j..j + 1, ..]));
                    gemm(1.25, &ai, &wj.t(), 0.0, &mut one.view_mut());
                    assert_eq!(
                        one[[0, 0]].to_bits(),
                        c[[i, j]].to_bits(),
                        "{m}x{k}x{n} ({i}, {j})"
                    );
                    let exact: f64 = (0..k)
                        .map(|p| f64::from(a[[i, p]]) * f64::from(w[[j, p]]))
                        .sum();
                    let err = (f64::from(c[[i, j]]) - 1.25 * exact).abs();
                    assert!(
                        err < 1e-5 * (k as f64).sqrt(),
                        "{m}x{k}x{n} ({i}, {j}): {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_the_layouts_packed_element_by_element_are_transposed() {
        // a: row-major (packed by columns: slow) yes; column-major no.
        assert!(worth_transposing(32, 784, &[784, 1], true));
        assert!(!worth_transposing(32, 784, &[1, 32], true));
        // b: column-major (packed by rows: slow) yes; row-major no.
        assert!(worth_transposing(784, 128, &[1, 784], false));
        assert!(!worth_transposing(784, 128, &[128, 1], false));
        // Smaller than a tile, overlapping or negative strides: left as they are.
        assert!(!worth_transposing(7, 784, &[784, 1], true));
        assert!(!worth_transposing(32, 784, &[0, 1], true));
        assert!(!worth_transposing(32, 784, &[-784, 1], true));
    }
}
