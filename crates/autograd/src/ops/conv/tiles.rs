//! Winograd F(2x2, 3x3)'s transforms between NCHW planes and the 16 transformed matrices.
//!
//! A transformed matrix holds one element of the 4x4 transform for every tile of a block:
//! element `xi` (row-major in the 4x4) of channel `ci`'s tile `n` is at `xi * stride + ci *
//! N + n` (`N` tiles in the block, `stride` from [`skewed`]). Each transform first gathers a
//! plane's 4x4 patches (or 2x2 tiles) into rows of one lane per tile, then applies the 1-D
//! transforms lane by lane along both axes of the 4x4: straight loops over the tiles, which
//! the compiler vectorises, writing (or reading) the 16 matrices' rows in order.

use super::Geometry;
use super::lanes::{
    CHUNK, chunked, lanes_2_4, lanes_4_2, lanes_4_4, rows2, rows2_mut, rows4, rows4_mut,
};
use crate::Float;

/// The tiling of one sample's output: `th x tw` tiles of 2x2, the last row or column of
/// tiles half outside when the output's side is odd.
#[derive(Clone, Copy)]
pub(super) struct Tiles {
    th: usize,
    tw: usize,
    /// The padded input plane every tile reads from: `(2 th + 2) x (2 tw + 2)`, split into
    /// its even and odd columns, `tw + 1` each.
    ph: usize,
    half: usize,
}

impl Tiles {
    pub(super) fn new(g: &Geometry) -> Self {
        let (th, tw) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
        Tiles {
            th,
            tw,
            ph: 2 * th + 2,
            half: tw + 1,
        }
    }

    /// Tiles per sample.
    pub(super) fn per_sample(&self) -> usize {
        self.th * self.tw
    }

    /// One half of the split padded plane, with a chunk's slack.
    fn half_plane(&self) -> usize {
        self.ph * self.half + CHUNK
    }

    /// The distance between two lane rows of a block of `cols` tiles: a chunk past them,
    /// for the chunks of the last tiles (and of a row of tiles, which run into the next).
    fn row(cols: usize) -> usize {
        chunked(cols) + CHUNK
    }

    /// The scratch every transform of a block of `samples` takes: a split padded plane and
    /// two sets of 16 lane rows.
    pub(super) fn scratch(&self, samples: usize) -> usize {
        2 * self.half_plane() + 32 * Self::row(samples * self.per_sample())
    }

    /// `scratch` cut into the plane and the two sets of lane rows of a block of `cols` tiles.
    fn split<'a, T>(
        &self,
        scratch: &'a mut [T],
        cols: usize,
    ) -> (&'a mut [T], &'a mut [T], &'a mut [T]) {
        let (plane, rest) = scratch.split_at_mut(2 * self.half_plane());
        let (p, q) = rest.split_at_mut(16 * Self::row(cols));
        (plane, p, &mut q[..16 * Self::row(cols)])
    }
}

/// The distance between two of the 16 transformed matrices of `rows x cols`: one cache line
/// more than their size. Without it the 16 are often a multiple of 4 KiB apart (W3: 36 KiB),
/// so that the same element of each maps to one set of the L1 cache, which holds 8: the
/// transforms ran 5x slower.
/// The gap also takes the chunks run past the last row's lanes.
pub(super) fn skewed(rows: usize, cols: usize) -> usize {
    rows * cols + 2 * CHUNK
}

// The 1-D transforms and their adjoints (the 2-D ones apply them along both axes).

#[inline(always)]
fn bt<T: Float>([d0, d1, d2, d3]: [T; 4]) -> [T; 4] {
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
}

#[inline(always)]
fn bt_adjoint<T: Float>([v0, v1, v2, v3]: [T; 4]) -> [T; 4] {
    [v0, v1 - v2 + v3, v1 + v2 - v0, -v3]
}

#[inline(always)]
fn gt<T: Float>([w0, w1, w2]: [T; 3]) -> [T; 4] {
    let half = T::of(0.5);
    [w0, (w0 + w1 + w2) * half, (w0 - w1 + w2) * half, w2]
}

#[inline(always)]
fn gt_adjoint<T: Float>([u0, u1, u2, u3]: [T; 4]) -> [T; 3] {
    let half = T::of(0.5);
    [
        u0 + (u1 + u2) * half,
        (u1 - u2) * half,
        (u1 + u2) * half + u3,
    ]
}

#[inline(always)]
fn at<T: Float>([m0, m1, m2, m3]: [T; 4]) -> [T; 2] {
    [m0 + m1 + m2, m1 - m2 - m3]
}

#[inline(always)]
fn at_adjoint<T: Float>([y0, y1]: [T; 2]) -> [T; 4] {
    [y0, y0 + y1, y0 - y1, -y1]
}

/// The weight `[o, c, 3, 3]` in the transformed space, 16 matrices `skewed(o, c)` apart:
/// for the forward (`input_grad` false) each `[o, c]` column-major,
/// `u[xi * stride + ci * o + oi]`; for the input's gradient each `[c, o]` column-major,
/// `u[xi * stride + oi * c + ci]`. Either way the inner loop writes each matrix in order.
pub(super) fn transform_weight<T: Float>(
    w: &[T],
    o: usize,
    c: usize,
    input_grad: bool,
    u: &mut [T],
) {
    let stride = skewed(o, c);
    let (outer, inner) = if input_grad { (o, c) } else { (c, o) };
    for a in 0..outer {
        for b in 0..inner {
            let (oi, ci) = if input_grad { (a, b) } else { (b, a) };
            let k = &w[(oi * c + ci) * 9..][..9];
            // Down the kernel's columns first, then along the rows.
            let [c0, c1, c2] = [0, 1, 2].map(|j| gt([k[j], k[3 + j], k[6 + j]]));
            for (r, ((&x0, &x1), &x2)) in c0.iter().zip(&c1).zip(&c2).enumerate() {
                for (col, v) in gt([x0, x1, x2]).into_iter().enumerate() {
                    u[(r * 4 + col) * stride + a * inner + b] = v;
                }
            }
        }
    }
}

/// The weight's gradient `[o, c, 3, 3]` from its gradient in the transformed space (`du`,
/// laid out as [`transform_weight`]'s for the input's gradient): the adjoint of that
/// transform.
pub(super) fn untransform_weight_grad<T: Float>(du: &[T], o: usize, c: usize, dw: &mut [T]) {
    let stride = skewed(o, c);
    for oi in 0..o {
        for ci in 0..c {
            let e = |xi: usize| du[xi * stride + oi * c + ci];
            let rows: [[T; 3]; 4] = std::array::from_fn(|a| {
                gt_adjoint([e(a * 4), e(a * 4 + 1), e(a * 4 + 2), e(a * 4 + 3)])
            });
            let k = &mut dw[(oi * c + ci) * 9..][..9];
            for j in 0..3 {
                let col = gt_adjoint([rows[0][j], rows[1][j], rows[2][j], rows[3][j]]);
                for (i, &v) in col.iter().enumerate() {
                    k[i * 3 + j] = v;
                }
            }
        }
    }
}

/// One block of samples' input in the transformed space, into `v` (stride
/// `skewed(c, N)`): the forward's right operands.
pub(super) fn transform_input<T: Float>(
    x: &[T],
    g: &Geometry,
    t: &Tiles,
    samples: std::ops::Range<usize>,
    scratch: &mut [T],
    v: &mut [T],
) {
    crate::simd::with_avx2!(transform_input_body::<T>(
        x: &[T],
        g: &Geometry,
        t: &Tiles,
        samples: std::ops::Range<usize>,
        scratch: &mut [T],
        v: &mut [T],
    ))
}

#[inline(always)]
fn transform_input_body<T: Float>(
    x: &[T],
    g: &Geometry,
    t: &Tiles,
    samples: std::ops::Range<usize>,
    scratch: &mut [T],
    v: &mut [T],
) {
    let per = t.per_sample();
    let cols = samples.len() * per;
    let stride = skewed(g.c, cols);
    let row = Tiles::row(cols);
    let half = t.half;
    let (plane, _, q) = t.split(scratch, cols);
    for ci in 0..g.c {
        for (j, s) in samples.clone().enumerate() {
            pad_plane(&x[(s * g.c + ci) * g.h * g.w..][..g.h * g.w], g, t, plane);
            // Down the patches' columns into q: column `jj` of tile `tx` is the padded
            // plane's column `2 tx + jj`, element `tx + jj / 2` of its even or odd half.
            // A row of tiles' chunks run into the next row's lanes, written after them.
            let (even, odd) = plane.split_at(t.half_plane());
            for ty in 0..t.th {
                let q = &mut q[j * per + ty * t.tw..];
                for jj in 0..4 {
                    let side = if jj % 2 == 0 { even } else { odd };
                    let line = |i: usize| &side[(2 * ty + i) * half + jj / 2..];
                    lanes_4_4(
                        [line(0), line(1), line(2), line(3)],
                        rows4_mut(q, row, chunked(t.tw), [jj, 4 + jj, 8 + jj, 12 + jj]),
                        t.tw,
                        bt,
                    );
                }
            }
        }
        // Then along their rows into the matrices, the block's samples in one run (its
        // chunks run into the next channel's lanes, or the gap after the last).
        let out = &mut v[ci * cols..];
        for a in 0..4 {
            let pick = [4 * a, 4 * a + 1, 4 * a + 2, 4 * a + 3];
            lanes_4_4(
                rows4(q, row, chunked(cols), pick),
                rows4_mut(out, stride, chunked(cols), pick),
                cols,
                bt,
            );
        }
    }
}

/// Copies one input plane into `plane`, offset by the padding, zeros around, split into
/// the padded plane's even columns (`ph x (tw + 1)`) followed by its odd ones.
#[inline(always)]
fn pad_plane<T: Float>(src: &[T], g: &Geometry, t: &Tiles, plane: &mut [T]) {
    let (pad_y, pad_x) = (g.padding.0, g.padding.1);
    let half = t.half;
    plane.fill(T::zero());
    let (even, odd) = plane.split_at_mut(t.half_plane());
    // The padded plane is 2 wider than the output, so it holds the whole input.
    let rows = g.h.min(t.ph.saturating_sub(pad_y));
    let cols = g.w.min((2 * half).saturating_sub(pad_x));
    for y in 0..rows {
        let at = (y + pad_y) * half;
        let (first, second) =
            halves_mut(&mut even[at..][..half], &mut odd[at..][..half], pad_x, cols);
        let line = &src[y * g.w..][..cols];
        let mut pairs = line.chunks_exact(2);
        for (pair, (f, s)) in (&mut pairs).zip(first.iter_mut().zip(second.iter_mut())) {
            *f = pair[0];
            *s = pair[1];
        }
        if let ([v], Some(f)) = (pairs.remainder(), first.last_mut()) {
            *f = *v;
        }
    }
}

/// Where a row of `cols` input values lands in the padded row's even and odd halves
/// (`even`, `odd`): input column `x` is padded column `x + pad_x`, so the input's even
/// columns fill the first slice returned and its odd columns the second.
#[inline(always)]
fn halves_mut<'a, T>(
    even: &'a mut [T],
    odd: &'a mut [T],
    pad_x: usize,
    cols: usize,
) -> (&'a mut [T], &'a mut [T]) {
    let (first, second) = if pad_x.is_multiple_of(2) {
        (even, odd)
    } else {
        (odd, even)
    };
    (
        &mut first[pad_x / 2..][..cols.div_ceil(2)],
        &mut second[pad_x.div_ceil(2)..][..cols / 2],
    )
}

/// The 16 products of a block (`m`, stride `skewed(o, N)`) back to the output's 2x2 tiles,
/// plus the bias.
#[allow(clippy::too_many_arguments)]
pub(super) fn untransform_output<T: Float>(
    m: &[T],
    g: &Geometry,
    t: &Tiles,
    o: usize,
    samples: std::ops::Range<usize>,
    bias: Option<&[T]>,
    scratch: &mut [T],
    out: &mut [T],
) {
    crate::simd::with_avx2!(untransform_output_body::<T>(
        m: &[T],
        g: &Geometry,
        t: &Tiles,
        o: usize,
        samples: std::ops::Range<usize>,
        bias: Option<&[T]>,
        scratch: &mut [T],
        out: &mut [T],
    ))
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn untransform_output_body<T: Float>(
    m: &[T],
    g: &Geometry,
    t: &Tiles,
    o: usize,
    samples: std::ops::Range<usize>,
    bias: Option<&[T]>,
    scratch: &mut [T],
    out: &mut [T],
) {
    let per = t.per_sample();
    let cols = samples.len() * per;
    let stride = skewed(o, cols);
    let (row, lanes) = (Tiles::row(cols), chunked(cols));
    let (_, p, q) = t.split(scratch, cols);
    let plane_len = g.oh * g.ow;
    for oi in 0..o {
        let src = &m[oi * cols..];
        // Down the columns of the 4x4 into two rows (q), then along them (p), the block's
        // samples in one run.
        for bb in 0..4 {
            let pick = [bb, 4 + bb, 8 + bb, 12 + bb];
            lanes_4_2(
                rows4(src, stride, lanes, pick),
                rows2_mut(q, row, lanes, [bb, 4 + bb]),
                cols,
                at,
            );
        }
        for i in 0..2 {
            let pick = [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3];
            lanes_4_2(
                rows4(q, row, lanes, pick),
                rows2_mut(p, row, lanes, [2 * i, 2 * i + 1]),
                cols,
                at,
            );
        }
        let b = bias.map_or(T::zero(), |b| b[oi]);
        for (j, s) in samples.clone().enumerate() {
            let plane = &mut out[(s * o + oi) * plane_len..][..plane_len];
            for ty in 0..t.th {
                for i in 0..2.min(g.oh - 2 * ty) {
                    let line = &mut plane[(2 * ty + i) * g.ow..][..g.ow];
                    let left = &p[2 * i * row + j * per + ty * t.tw..][..t.tw];
                    let right = &p[(2 * i + 1) * row + j * per + ty * t.tw..][..t.tw];
                    // Whole tiles, then the left column of a last tile half outside.
                    let mut pairs = line.chunks_exact_mut(2);
                    for (d, (&l, &r)) in (&mut pairs).zip(left.iter().zip(right)) {
                        d[0] = l + b;
                        d[1] = r + b;
                    }
                    if let ([d], Some(&l)) = (pairs.into_remainder(), left.last()) {
                        *d = l + b;
                    }
                }
            }
        }
    }
}

/// The output gradient of a block in the transformed space, into `dm` (laid out as
/// [`untransform_output`]'s `m`): the adjoint of that transform, positions outside the
/// output counting as 0.
pub(super) fn transform_output_grad<T: Float>(
    gy: &[T],
    g: &Geometry,
    t: &Tiles,
    o: usize,
    samples: std::ops::Range<usize>,
    scratch: &mut [T],
    dm: &mut [T],
) {
    crate::simd::with_avx2!(transform_output_grad_body::<T>(
        gy: &[T],
        g: &Geometry,
        t: &Tiles,
        o: usize,
        samples: std::ops::Range<usize>,
        scratch: &mut [T],
        dm: &mut [T],
    ))
}

#[inline(always)]
fn transform_output_grad_body<T: Float>(
    gy: &[T],
    g: &Geometry,
    t: &Tiles,
    o: usize,
    samples: std::ops::Range<usize>,
    scratch: &mut [T],
    dm: &mut [T],
) {
    let per = t.per_sample();
    let cols = samples.len() * per;
    let stride = skewed(o, cols);
    let (row, lanes) = (Tiles::row(cols), chunked(cols));
    let (_, p, q) = t.split(scratch, cols);
    let plane_len = g.oh * g.ow;
    if g.oh % 2 == 1 || g.ow % 2 == 1 {
        // The tiles' parts outside the output stay 0.
        p[..4 * row].fill(T::zero());
    }
    for oi in 0..o {
        for (j, s) in samples.clone().enumerate() {
            let plane = &gy[(s * o + oi) * plane_len..][..plane_len];
            for ty in 0..t.th {
                for i in 0..2.min(g.oh - 2 * ty) {
                    let line = &plane[(2 * ty + i) * g.ow..][..g.ow];
                    let (left, right) = p[2 * i * row..].split_at_mut(row);
                    let at = j * per + ty * t.tw;
                    let left = &mut left[at..][..t.tw];
                    let right = &mut right[at..][..t.tw];
                    let mut pairs = line.chunks_exact(2);
                    for (v, (l, r)) in (&mut pairs).zip(left.iter_mut().zip(right.iter_mut())) {
                        *l = v[0];
                        *r = v[1];
                    }
                    if let ([v], Some(l)) = (pairs.remainder(), left.last_mut()) {
                        *l = *v;
                    }
                }
            }
        }
        // Along the tiles' rows into q, then down their columns into the matrices, the
        // block's samples in one run.
        for i in 0..2 {
            let pick = [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3];
            lanes_2_4(
                rows2(p, row, lanes, [2 * i, 2 * i + 1]),
                rows4_mut(q, row, lanes, pick),
                cols,
                at_adjoint,
            );
        }
        let out = &mut dm[oi * cols..];
        for bb in 0..4 {
            let pick = [bb, 4 + bb, 8 + bb, 12 + bb];
            lanes_2_4(
                rows2(q, row, lanes, [bb, 4 + bb]),
                rows4_mut(out, stride, lanes, pick),
                cols,
                at_adjoint,
            );
        }
    }
}

/// Adds a block's input gradient in the transformed space (`dv`, laid out as
/// [`transform_input`]'s `v`) into `dx`: the adjoint of that transform.
pub(super) fn untransform_input_grad<T: Float>(
    dv: &[T],
    g: &Geometry,
    t: &Tiles,
    samples: std::ops::Range<usize>,
    scratch: &mut [T],
    dx: &mut [T],
) {
    crate::simd::with_avx2!(untransform_input_grad_body::<T>(
        dv: &[T],
        g: &Geometry,
        t: &Tiles,
        samples: std::ops::Range<usize>,
        scratch: &mut [T],
        dx: &mut [T],
    ))
}

#[inline(always)]
fn untransform_input_grad_body<T: Float>(
    dv: &[T],
    g: &Geometry,
    t: &Tiles,
    samples: std::ops::Range<usize>,
    scratch: &mut [T],
    dx: &mut [T],
) {
    let per = t.per_sample();
    let cols = samples.len() * per;
    let stride = skewed(g.c, cols);
    let (row, lanes) = (Tiles::row(cols), chunked(cols));
    let (pad_y, pad_x) = (g.padding.0, g.padding.1);
    let half = t.half;
    let (plane, p, q) = t.split(scratch, cols);
    for ci in 0..g.c {
        let src = &dv[ci * cols..];
        // Along the rows of the 4x4 into q, the block's samples in one run.
        for a in 0..4 {
            let pick = [4 * a, 4 * a + 1, 4 * a + 2, 4 * a + 3];
            lanes_4_4(
                rows4(src, stride, lanes, pick),
                rows4_mut(q, row, lanes, pick),
                cols,
                bt_adjoint,
            );
        }
        for (j, s) in samples.clone().enumerate() {
            // Down the columns of a sample's tiles into p.
            for jj in 0..4 {
                let pick = [jj, 4 + jj, 8 + jj, 12 + jj];
                lanes_4_4(
                    rows4(&q[j * per..], row, chunked(per), pick),
                    rows4_mut(p, row, chunked(per), pick),
                    per,
                    bt_adjoint,
                );
            }
            // The patches overlap: add each into the padded plane, then the plane into dx.
            // Column `jj` of tile `tx` is padded column `2 tx + jj`: element `tx + jj / 2`
            // of the plane's even or odd half, as `pad_plane` splits it.
            plane.fill(T::zero());
            let (even, odd) = plane.split_at_mut(t.half_plane());
            for ty in 0..t.th {
                for i in 0..4 {
                    let at = (2 * ty + i) * half;
                    let lane_row = |jj: usize| &p[(i * 4 + jj) * row + ty * t.tw..][..t.tw];
                    // Columns 0 and 2 of the tiles land on one half, 2 a place further:
                    // summed before they are added, so no store is read back at once.
                    for (side, jj) in [(&mut *even, 0), (&mut *odd, 1)] {
                        let line = &mut side[at..][..half];
                        let (near, far) = (lane_row(jj), lane_row(jj + 2));
                        line[0] += near[0];
                        for (d, (&a, &b)) in line[1..t.tw].iter_mut().zip(near[1..].iter().zip(far))
                        {
                            *d += a + b;
                        }
                        line[t.tw] += far[t.tw - 1];
                    }
                }
            }
            let dst = &mut dx[(s * g.c + ci) * g.h * g.w..][..g.h * g.w];
            let rows = g.h.min(t.ph.saturating_sub(pad_y));
            let width = g.w.min((2 * half).saturating_sub(pad_x));
            for y in 0..rows {
                let at = (y + pad_y) * half;
                let (first, second) = halves_mut(
                    &mut even[at..][..half],
                    &mut odd[at..][..half],
                    pad_x,
                    width,
                );
                let line = &mut dst[y * g.w..][..width];
                let mut pairs = line.chunks_exact_mut(2);
                for (pair, (&f, &s)) in (&mut pairs).zip(first.iter().zip(second.iter())) {
                    pair[0] += f;
                    pair[1] += s;
                }
                if let ([d], Some(&f)) = (pairs.into_remainder(), first.last()) {
                    *d += f;
                }
            }
        }
    }
}
