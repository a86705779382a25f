//! The convolution's memory work around its GEMMs: im2col and col2im, the blocks of
//! samples whose columns stay in cache, moving a block's rows to and from NCHW, and the
//! reductions its gradients need.

use ndarray::{ArrayView2, ArrayViewMut2};

use super::{Geometry, Pair};
use crate::{Float, pool};

/// About how many elements one block of im2col columns holds: with the matrix product's
/// output and the block's share of the input, a block stays in a core's L2 cache (1 MB
/// here), so the columns are packed for the GEMM from cache instead of from memory. W3's
/// second convolution keeps 3 samples per block, its first 21.
const BLOCK_ELEMENTS: usize = 1 << 17;

/// Up to this many kernel elements (`in / groups * kh * kw`) a sample's weight gradient is
/// computed as dot products ([`weight_grad_dots`]) rather than a GEMM.
pub(super) const DOT_KERNEL: usize = 16;

/// The samples of one block of columns, for columns of `rows` rows and `p` positions per
/// sample.
pub(super) fn block_samples(rows: usize, p: usize, n: usize) -> usize {
    (BLOCK_ELEMENTS / (rows * p).max(1)).clamp(1, n.max(1))
}

/// The columns of one group for `samples`, into `data` (`[rows, samples.len() * P]`): row
/// `(ci * kh + ki) * kw + kj`, column `j * P + oy * ow + ox` holds the input value that
/// kernel element `(ci, ki, kj)` meets at output `(oy, ox)` of sample `samples.start + j`
/// (0 in padding).
pub(super) fn im2col<T: Float>(
    x: &[T],
    g: &Geometry,
    channels: std::ops::Range<usize>,
    samples: std::ops::Range<usize>,
    data: &mut [T],
) {
    let p = g.positions();
    let width = samples.len() * p;
    if g.padding != Pair(0, 0) {
        // Without padding every element is written below.
        data.fill(T::zero());
    }
    for (ci, c) in channels.enumerate() {
        for ki in 0..g.kh {
            let (y0, y1, iy0) =
                Geometry::valid(g.oh, ki, g.stride.0, g.dilation.0, g.padding.0, g.h);
            for kj in 0..g.kw {
                let (x0, x1, ix0) =
                    Geometry::valid(g.ow, kj, g.stride.1, g.dilation.1, g.padding.1, g.w);
                let row = ((ci * g.kh + ki) * g.kw + kj) * width;
                for (j, ni) in samples.clone().enumerate() {
                    let plane = &x[(ni * g.c + c) * g.h * g.w..][..g.h * g.w];
                    let out = &mut data[row + j * p..][..p];
                    for (oy, iy) in (y0..y1).zip((iy0..).step_by(g.stride.0)) {
                        let line = &plane[iy * g.w..][..g.w];
                        let dst = &mut out[oy * g.ow + x0..oy * g.ow + x1];
                        if g.stride.1 == 1 {
                            dst.copy_from_slice(&line[ix0..ix0 + (x1 - x0)]);
                        } else {
                            for (d, ix) in dst.iter_mut().zip((ix0..).step_by(g.stride.1)) {
                                *d = line[ix];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds columns laid out as [`im2col`] makes them for `samples` back into the input's
/// gradient (compiled for AVX2 where the CPU has it: see `simd`).
pub(super) fn col2im<T: Float>(
    data: &[T],
    dx: &mut [T],
    g: &Geometry,
    channels: std::ops::Range<usize>,
    samples: std::ops::Range<usize>,
) {
    crate::simd::with_avx2!(col2im_body::<T>(
        data: &[T],
        dx: &mut [T],
        g: &Geometry,
        channels: std::ops::Range<usize>,
        samples: std::ops::Range<usize>,
    ))
}

#[inline(always)]
fn col2im_body<T: Float>(
    data: &[T],
    dx: &mut [T],
    g: &Geometry,
    channels: std::ops::Range<usize>,
    samples: std::ops::Range<usize>,
) {
    let p = g.positions();
    let width = samples.len() * p;
    for (ci, c) in channels.enumerate() {
        for ki in 0..g.kh {
            let (y0, y1, iy0) =
                Geometry::valid(g.oh, ki, g.stride.0, g.dilation.0, g.padding.0, g.h);
            for kj in 0..g.kw {
                let (x0, x1, ix0) =
                    Geometry::valid(g.ow, kj, g.stride.1, g.dilation.1, g.padding.1, g.w);
                let row = ((ci * g.kh + ki) * g.kw + kj) * width;
                for (j, ni) in samples.clone().enumerate() {
                    let plane = &mut dx[(ni * g.c + c) * g.h * g.w..][..g.h * g.w];
                    let src = &data[row + j * p..][..p];
                    for (oy, iy) in (y0..y1).zip((iy0..).step_by(g.stride.0)) {
                        let line = &mut plane[iy * g.w..][..g.w];
                        let from = &src[oy * g.ow + x0..oy * g.ow + x1];
                        if g.stride.1 == 1 {
                            for (d, &s) in line[ix0..ix0 + (x1 - x0)].iter_mut().zip(from) {
                                *d += s;
                            }
                        } else {
                            for (&s, ix) in from.iter().zip((ix0..).step_by(g.stride.1)) {
                                line[ix] += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Pooled storage of `len` elements whose values are unspecified (about to be overwritten).
pub(super) fn scratch_vec<T: Float>(len: usize) -> Vec<T> {
    let (v, _) = pool::scratch::<T>(&[len]).into_raw_vec_and_offset();
    v
}

/// Where one group's rows of an `[n, o, P]` array lie for a block of samples: `og` rows from
/// channel `og0`, samples from `s0`, against a block `[og, samples * P]`.
#[derive(Clone, Copy)]
pub(super) struct Rows {
    pub(super) o: usize,
    pub(super) og0: usize,
    pub(super) og: usize,
    pub(super) s0: usize,
    pub(super) samples: usize,
    pub(super) p: usize,
}

impl Rows {
    /// Copies the block into the `[n, o, P]` array, adding each channel's bias (`[o]`, or
    /// none) on the way: no separate pass over the output.
    pub(super) fn scatter<T: Float>(self, block: &[T], out: &mut [T], bias: Option<&[T]>) {
        let width = self.samples * self.p;
        for oi in 0..self.og {
            for j in 0..self.samples {
                let at = ((self.s0 + j) * self.o + self.og0 + oi) * self.p;
                let (dst, src) = (
                    &mut out[at..at + self.p],
                    &block[oi * width + j * self.p..][..self.p],
                );
                match bias {
                    Some(b) => add_scalar(dst, src, b[self.og0 + oi]),
                    None => dst.copy_from_slice(src),
                }
            }
        }
    }

    /// Sample `j`'s `[og, P]` rows of the `[n, o, P]` array (contiguous).
    pub(super) fn sample<T: Float>(self, from: &[T], j: usize) -> ArrayView2<'_, T> {
        let at = ((self.s0 + j) * self.o + self.og0) * self.p;
        ArrayView2::from_shape((self.og, self.p), &from[at..at + self.og * self.p]).expect("sized")
    }

    /// The same rows, mutable.
    pub(super) fn sample_mut<T: Float>(
        self,
        out: &mut [T],
        j: usize,
    ) -> ndarray::ArrayViewMut2<'_, T> {
        let at = ((self.s0 + j) * self.o + self.og0) * self.p;
        ArrayViewMut2::from_shape((self.og, self.p), &mut out[at..at + self.og * self.p])
            .expect("sized")
    }

    /// Copies the `[n, o, P]` array's rows into the block.
    pub(super) fn gather<T: Float>(self, from: &[T], block: &mut [T]) {
        let width = self.samples * self.p;
        for oi in 0..self.og {
            for j in 0..self.samples {
                let at = ((self.s0 + j) * self.o + self.og0 + oi) * self.p;
                block[oi * width + j * self.p..][..self.p].copy_from_slice(&from[at..at + self.p]);
            }
        }
    }
}

/// `dst = src + b`, over slices passed separately (known not to overlap: vector code).
#[inline(always)]
fn add_scalar<T: Float>(dst: &mut [T], src: &[T], b: T) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s + b;
    }
}

/// `dw[og, k] += gy[og, p] cols[k, p]^T` as dot products, for a kernel of few elements (a
/// first layer's `k` = 9 against `P` = 676): as a GEMM both operands are packed across
/// their contiguous axis and `k` fills half a register tile (22 GFLOP/s measured). Rows
/// `t` of `cols` start at `t * stride`. Four rows of `cols` share each load of `gy`, in
/// 16 interleaved partial sums each (vector code without reassociating).
pub(super) fn weight_grad_dots<T: Float>(
    gy: &[T],
    cols: &[T],
    stride: usize,
    kp: (usize, usize),
    dw: ArrayViewMut2<'_, T>,
) {
    crate::simd::with_avx2!(weight_grad_dots_body::<T>(
        gy: &[T],
        cols: &[T],
        stride: usize,
        kp: (usize, usize),
        dw: ArrayViewMut2<'_, T>,
    ))
}

#[inline(always)]
fn weight_grad_dots_body<T: Float>(
    gy: &[T],
    cols: &[T],
    stride: usize,
    (k, p): (usize, usize),
    mut dw: ArrayViewMut2<'_, T>,
) {
    const LANES: usize = 16;
    const ROWS: usize = 4;
    let whole = p / LANES * LANES;
    for (oi, g) in gy.chunks_exact(p).enumerate() {
        for t0 in (0..k).step_by(ROWS) {
            let rows = ROWS.min(k - t0);
            // Missing rows (past `k`) read row `t0` again; their sums are dropped.
            let c: [&[T]; ROWS] =
                std::array::from_fn(|r| &cols[(t0 + r.min(rows - 1)) * stride..][..p]);
            let mut acc = [[T::zero(); LANES]; ROWS];
            for at in (0..whole).step_by(LANES) {
                let gv: &[T; LANES] = g[at..at + LANES].try_into().expect("LANES long");
                for (acc, c) in acc.iter_mut().zip(&c) {
                    let cv: &[T; LANES] = c[at..at + LANES].try_into().expect("LANES long");
                    for l in 0..LANES {
                        acc[l] += gv[l] * cv[l];
                    }
                }
            }
            for r in 0..rows {
                let tail = (whole..p).fold(T::zero(), |s, i| s + g[i] * c[r][i]);
                let sum = acc[r].iter().copied().fold(tail, |a, b| a + b);
                dw[[oi, t0 + r]] += sum;
            }
        }
    }
}

/// The sum of `v` in 16 interleaved partial sums, added at the end: vector code, where one
/// running sum is a chain of dependent additions.
pub(super) fn lane_sum<T: Float>(v: &[T]) -> T {
    const LANES: usize = 16;
    let mut acc = [T::zero(); LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .copied()
        .fold(T::zero(), |a, b| a + b);
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().copied().fold(rest, |a, b| a + b)
}
