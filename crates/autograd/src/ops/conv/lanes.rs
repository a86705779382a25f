//! Lane-wise loops for the Winograd transforms (`tiles.rs`): a row holds one lane per tile,
//! and each step of a transform maps a few rows to a few others, lane by lane, in chunks the
//! compiler turns into whole vector operations.

use crate::Float;

/// Lanes are transformed in chunks of this many, the last chunk running past the lanes
/// asked for into slack every buffer has: a loop of a constant count the compiler turns
/// into whole vector operations. A row of W3's tiles is 6 lanes; without the chunks each was
/// a scalar loop.
pub(super) const CHUNK: usize = 8;

/// `n` lanes rounded up to whole chunks.
pub(super) fn chunked(n: usize) -> usize {
    n.next_multiple_of(CHUNK)
}

// Lane-wise application of the 1-D transforms: `dst[r][k] = f(src[0][k], src[1][k], ..)[r]`
// for every lane `k < n`, in chunks: every row has `chunked(n)` lanes, and the lanes past
// `n` get values of no meaning. Written out per arity: the array helpers (`map`,
// `from_fn`) are not inlined into the AVX2 copies and cost a call per lane.

/// `CHUNK` lanes from `c` on, as an array: the chunks compute from local copies, so the
/// compiler need not prove the rows apart and keeps whole vectors.
#[inline(always)]
fn load<T: Float>(row: &[T], c: usize) -> [T; CHUNK] {
    row[c..][..CHUNK].try_into().expect("a chunk")
}

#[inline(always)]
pub(super) fn lanes_4_4<T: Float>(
    s: [&[T]; 4],
    mut d: [&mut [T]; 4],
    n: usize,
    f: impl Fn([T; 4]) -> [T; 4],
) {
    let [s0, s1, s2, s3] = s;
    for c in (0..n).step_by(CHUNK) {
        let [d0, d1, d2, d3] = &mut d;
        let (x0, x1, x2, x3) = (load(s0, c), load(s1, c), load(s2, c), load(s3, c));
        let mut y = [[T::zero(); CHUNK]; 4];
        for k in 0..CHUNK {
            let [a, b, cc, e] = f([x0[k], x1[k], x2[k], x3[k]]);
            y[0][k] = a;
            y[1][k] = b;
            y[2][k] = cc;
            y[3][k] = e;
        }
        d0[c..][..CHUNK].copy_from_slice(&y[0]);
        d1[c..][..CHUNK].copy_from_slice(&y[1]);
        d2[c..][..CHUNK].copy_from_slice(&y[2]);
        d3[c..][..CHUNK].copy_from_slice(&y[3]);
    }
}

#[inline(always)]
pub(super) fn lanes_4_2<T: Float>(
    s: [&[T]; 4],
    mut d: [&mut [T]; 2],
    n: usize,
    f: impl Fn([T; 4]) -> [T; 2],
) {
    let [s0, s1, s2, s3] = s;
    for c in (0..n).step_by(CHUNK) {
        let [d0, d1] = &mut d;
        let (x0, x1, x2, x3) = (load(s0, c), load(s1, c), load(s2, c), load(s3, c));
        let mut y = [[T::zero(); CHUNK]; 2];
        for k in 0..CHUNK {
            let [a, b] = f([x0[k], x1[k], x2[k], x3[k]]);
            y[0][k] = a;
            y[1][k] = b;
        }
        d0[c..][..CHUNK].copy_from_slice(&y[0]);
        d1[c..][..CHUNK].copy_from_slice(&y[1]);
    }
}

#[inline(always)]
pub(super) fn lanes_2_4<T: Float>(
    s: [&[T]; 2],
    mut d: [&mut [T]; 4],
    n: usize,
    f: impl Fn([T; 2]) -> [T; 4],
) {
    let [s0, s1] = s;
    for c in (0..n).step_by(CHUNK) {
        let [d0, d1, d2, d3] = &mut d;
        let (x0, x1) = (load(s0, c), load(s1, c));
        let mut y = [[T::zero(); CHUNK]; 4];
        for k in 0..CHUNK {
            let [a, b, cc, e] = f([x0[k], x1[k]]);
            y[0][k] = a;
            y[1][k] = b;
            y[2][k] = cc;
            y[3][k] = e;
        }
        d0[c..][..CHUNK].copy_from_slice(&y[0]);
        d1[c..][..CHUNK].copy_from_slice(&y[1]);
        d2[c..][..CHUNK].copy_from_slice(&y[2]);
        d3[c..][..CHUNK].copy_from_slice(&y[3]);
    }
}

/// Rows `r0 < r1 < ..` (of `len` lanes, `stride` apart) of `buf`.
#[inline(always)]
pub(super) fn rows4<T>(
    buf: &[T],
    stride: usize,
    len: usize,
    [r0, r1, r2, r3]: [usize; 4],
) -> [&[T]; 4] {
    let row = |r: usize| &buf[r * stride..][..len];
    [row(r0), row(r1), row(r2), row(r3)]
}

#[inline(always)]
pub(super) fn rows2<T>(buf: &[T], stride: usize, len: usize, [r0, r1]: [usize; 2]) -> [&[T]; 2] {
    [&buf[r0 * stride..][..len], &buf[r1 * stride..][..len]]
}

#[inline(always)]
pub(super) fn rows4_mut<T>(
    buf: &mut [T],
    stride: usize,
    len: usize,
    [r0, r1, r2, r3]: [usize; 4],
) -> [&mut [T]; 4] {
    let (a, rest) = buf[r0 * stride..].split_at_mut((r1 - r0) * stride);
    let (b, rest) = rest.split_at_mut((r2 - r1) * stride);
    let (c, d) = rest.split_at_mut((r3 - r2) * stride);
    [&mut a[..len], &mut b[..len], &mut c[..len], &mut d[..len]]
}

#[inline(always)]
pub(super) fn rows2_mut<T>(
    buf: &mut [T],
    stride: usize,
    len: usize,
    [r0, r1]: [usize; 2],
) -> [&mut [T]; 2] {
    let (a, b) = buf[r0 * stride..].split_at_mut((r1 - r0) * stride);
    [&mut a[..len], &mut b[..len]]
}
