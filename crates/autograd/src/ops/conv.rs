//! Convolution over NCHW images with PyTorch's functional name and argument meanings:
//! `conv2d` (stride, padding, dilation, groups); pooling is in `pooling.rs`.
//!
//! `conv2d` is im2col plus one GEMM per group over the whole batch; its backward is two more
//! GEMMs (the weight's gradient against the saved columns, and the columns' gradient, which
//! col2im adds back into the input's).

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, ArrayView2, IxDyn};
use smallvec::{SmallVec, smallvec};

use crate::{Float, Var, pool};

/// A size given as one number for both axes or as `(height, width)`, as PyTorch accepts.
///
/// ```
/// use gradus_autograd::ops::conv::Pair;
/// assert_eq!(Pair::from(3), Pair(3, 3));
/// assert_eq!(Pair::from((2, 1)), Pair(2, 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair(pub usize, pub usize);

impl From<usize> for Pair {
    fn from(v: usize) -> Self {
        Pair(v, v)
    }
}

impl From<(usize, usize)> for Pair {
    fn from((h, w): (usize, usize)) -> Self {
        Pair(h, w)
    }
}

/// Where every window of a convolution or pooling lies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) stride: Pair,
    pub(crate) padding: Pair,
    pub(crate) dilation: Pair,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl Geometry {
    pub(crate) fn new(
        op: &str,
        input: &[usize],
        kernel: Pair,
        stride: Pair,
        padding: Pair,
        dilation: Pair,
    ) -> Self {
        assert!(
            input.len() == 4,
            "{op}: expected an NCHW input of 4 dimensions, got shape {input:?}"
        );
        let (n, c, h, w) = (input[0], input[1], input[2], input[3]);
        assert!(
            kernel.0 > 0
                && kernel.1 > 0
                && stride.0 > 0
                && stride.1 > 0
                && dilation.0 > 0
                && dilation.1 > 0,
            "{op}: kernel {kernel:?}, stride {stride:?} and dilation {dilation:?} must be at least 1"
        );
        let span = |k: usize, d: usize| d * (k - 1) + 1;
        let (eh, ew) = (h + 2 * padding.0, w + 2 * padding.1);
        let (sh, sw) = (span(kernel.0, dilation.0), span(kernel.1, dilation.1));
        assert!(
            eh >= sh && ew >= sw,
            "{op}: input {input:?} padded by {padding:?} is smaller than the kernel {kernel:?} \
             (dilation {dilation:?})"
        );
        Geometry {
            n,
            c,
            h,
            w,
            kh: kernel.0,
            kw: kernel.1,
            stride,
            padding,
            dilation,
            oh: (eh - sh) / stride.0 + 1,
            ow: (ew - sw) / stride.1 + 1,
        }
    }

    /// The input row (or column) that output position `o` with kernel offset `k` reads, if
    /// it is not padding.
    #[inline]
    pub(crate) fn source(
        o: usize,
        k: usize,
        stride: usize,
        dilation: usize,
        pad: usize,
        len: usize,
    ) -> Option<usize> {
        (o * stride + k * dilation)
            .checked_sub(pad)
            .filter(|&i| i < len)
    }

    /// The output positions `o0..o1` (of `outs`) whose input index `o * stride + k * dilation
    /// - pad` lies inside `0..len`, and the input index of `o0`.
    #[inline]
    fn valid(
        outs: usize,
        k: usize,
        stride: usize,
        dilation: usize,
        pad: usize,
        len: usize,
    ) -> (usize, usize, usize) {
        let off = k * dilation;
        let o0 = pad.saturating_sub(off).div_ceil(stride);
        let o1 = (len + pad).saturating_sub(off).div_ceil(stride).min(outs);
        if o0 >= o1 {
            return (0, 0, 0);
        }
        (o0, o1, o0 * stride + off - pad)
    }

    pub(crate) fn positions(&self) -> usize {
        self.oh * self.ow
    }
}

/// The columns of one group: row `(ci * kh + ki) * kw + kj`, column `ni * P + oy * ow + ox`
/// holds the input value that kernel element `(ci, ki, kj)` meets at output `(oy, ox)` of
/// sample `ni` (0 in padding). The storage comes from the pool.
fn im2col<T: Float>(x: &[T], g: &Geometry, channels: std::ops::Range<usize>) -> Array2<T> {
    let p = g.positions();
    let rows = channels.len() * g.kh * g.kw;
    let mut cols = pooled_zeros::<T>(rows, g.n * p);
    let data = cols.as_slice_mut().expect("pooled storage is contiguous");
    for (ci, c) in channels.enumerate() {
        for ki in 0..g.kh {
            let (y0, y1, iy0) =
                Geometry::valid(g.oh, ki, g.stride.0, g.dilation.0, g.padding.0, g.h);
            for kj in 0..g.kw {
                let (x0, x1, ix0) =
                    Geometry::valid(g.ow, kj, g.stride.1, g.dilation.1, g.padding.1, g.w);
                let row = ((ci * g.kh + ki) * g.kw + kj) * g.n * p;
                for ni in 0..g.n {
                    let plane = &x[(ni * g.c + c) * g.h * g.w..][..g.h * g.w];
                    let out = &mut data[row + ni * p..][..p];
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
    cols
}

/// Adds columns laid out as [`im2col`] makes them back into the input's gradient.
fn col2im<T: Float>(
    cols: &Array2<T>,
    dx: &mut [T],
    g: &Geometry,
    channels: std::ops::Range<usize>,
) {
    let p = g.positions();
    let data = cols.as_slice().expect("standard layout");
    for (ci, c) in channels.enumerate() {
        for ki in 0..g.kh {
            let (y0, y1, iy0) =
                Geometry::valid(g.oh, ki, g.stride.0, g.dilation.0, g.padding.0, g.h);
            for kj in 0..g.kw {
                let (x0, x1, ix0) =
                    Geometry::valid(g.ow, kj, g.stride.1, g.dilation.1, g.padding.1, g.w);
                let row = ((ci * g.kh + ki) * g.kw + kj) * g.n * p;
                for ni in 0..g.n {
                    let plane = &mut dx[(ni * g.c + c) * g.h * g.w..][..g.h * g.w];
                    let src = &data[row + ni * p..][..p];
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

/// An `[r, c]` matrix of zeros on pooled storage.
fn pooled_zeros<T: Float>(r: usize, c: usize) -> Array2<T> {
    let mut v = pool::take::<T>(r * c);
    v.resize(r * c, T::zero());
    Array2::from_shape_vec((r, c), v).expect("sized above")
}

/// `[og, n * P]` (a GEMM's result for one group) into rows `og0..` of an `[n, o, P]` output.
fn scatter_group<T: Float>(y: &Array2<T>, out: &mut [T], n: usize, o: usize, og0: usize, p: usize) {
    for (oi, row) in y.outer_iter().enumerate() {
        let row = row.as_slice().expect("standard layout");
        for ni in 0..n {
            out[(ni * o + og0 + oi) * p..][..p].copy_from_slice(&row[ni * p..][..p]);
        }
    }
}

/// The reverse of [`scatter_group`]: rows `og0..og0 + og` of `[n, o, P]` as `[og, n * P]`.
fn gather_group<T: Float>(
    g: &[T],
    n: usize,
    o: usize,
    og0: usize,
    og: usize,
    p: usize,
) -> Array2<T> {
    let mut y = pooled_zeros::<T>(og, n * p);
    for (oi, mut row) in y.outer_iter_mut().enumerate() {
        let row = row.as_slice_mut().expect("pooled storage is contiguous");
        for ni in 0..n {
            row[ni * p..][..p].copy_from_slice(&g[(ni * o + og0 + oi) * p..][..p]);
        }
    }
    y
}

pub(crate) fn contiguous<T: Float>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// 2-D convolution (cross-correlation, as PyTorch's `F.conv2d`) of an `[n, c, h, w]`
    /// input with a `[o, c / groups, kh, kw]` weight and an optional `[o]` bias; `stride`,
    /// `padding` and `dilation` are a number or `(height, width)`.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::ArrayD};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(ArrayD::ones(vec![2, 4, 9, 9]));
    /// let w = tape.constant(ArrayD::ones(vec![6, 2, 3, 3]));
    /// let y = x.conv2d(w, None, 2, (1, 0), 1, 2);
    /// assert_eq!(y.shape(), vec![2, 6, 5, 4]);
    /// ```
    pub fn conv2d(
        self,
        weight: Var<'t, T>,
        bias: Option<Var<'t, T>>,
        stride: impl Into<Pair>,
        padding: impl Into<Pair>,
        dilation: impl Into<Pair>,
        groups: usize,
    ) -> Var<'t, T> {
        let (x, w) = (self.value(), weight.value());
        assert!(
            w.ndim() == 4,
            "conv2d: expected a [out, in / groups, kh, kw] weight, got shape {:?}",
            w.shape()
        );
        let (o, cg) = (w.shape()[0], w.shape()[1]);
        let g = Geometry::new(
            "conv2d",
            x.shape(),
            Pair(w.shape()[2], w.shape()[3]),
            stride.into(),
            padding.into(),
            dilation.into(),
        );
        assert!(
            groups > 0 && g.c == cg * groups && o % groups == 0,
            "conv2d: input {:?} and weight {:?} do not fit {groups} group(s): the input's \
             channels must be groups x the weight's second axis, and its first axis a multiple \
             of groups",
            x.shape(),
            w.shape()
        );
        if let Some(b) = bias {
            let bv = b.value();
            assert!(
                bv.shape() == [o],
                "conv2d: bias of shape {:?} for {o} output channels",
                bv.shape()
            );
        }
        let (og, p, k) = (o / groups, g.positions(), cg * g.kh * g.kw);
        let xs = contiguous(&x);
        let ws = contiguous(&w);
        let mut out = pool::scratch::<T>(&[g.n, o, g.oh, g.ow]);
        // One im2col matrix per group, kept for backward (inline for one group: no allocation).
        let mut saved: SmallVec<[Array2<T>; 1]> = SmallVec::with_capacity(groups);
        {
            let out_s = out.as_slice_mut().expect("pooled storage is contiguous");
            for gi in 0..groups {
                let cols = im2col(&xs, &g, gi * cg..(gi + 1) * cg);
                let wg = ArrayView2::from_shape((og, k), &ws[gi * og * k..][..og * k])
                    .expect("sizes checked");
                let mut y = pooled_zeros::<T>(og, g.n * p);
                general_mat_mul(T::one(), &wg, &cols, T::zero(), &mut y);
                scatter_group(&y, out_s, g.n, o, gi * og, p);
                pool::recycle(y.into_dyn());
                saved.push(cols);
            }
        }
        if let Some(b) = bias {
            let b = b.value();
            for mut sample in out.outer_iter_mut() {
                for (mut plane, &bv) in sample.outer_iter_mut().zip(b.iter()) {
                    plane.mapv_inplace(|v| v + bv);
                }
            }
        }
        let operands: SmallVec<[Var<'t, T>; 3]> =
            std::iter::once(self).chain([weight]).chain(bias).collect();
        self.tape
            .push_op("conv2d", &operands, out, move |grad, _, inputs, needs| {
                let gs = contiguous(grad);
                let w = inputs[1];
                let ws = contiguous(w);
                let mut dx = needs[0].then(|| pool::full::<T>(&[g.n, g.c, g.h, g.w], T::zero()));
                let mut dw = needs[1].then(|| pooled_zeros::<T>(o, k));
                for (gi, cols) in saved.iter().enumerate() {
                    let gy = gather_group(&gs, g.n, o, gi * og, og, p);
                    if let Some(dw) = &mut dw {
                        let mut rows = dw.slice_mut(ndarray::s![gi * og..(gi + 1) * og, ..]);
                        general_mat_mul(T::one(), &gy, &cols.t(), T::zero(), &mut rows);
                    }
                    if let Some(dx) = &mut dx {
                        let wg = ArrayView2::from_shape((og, k), &ws[gi * og * k..][..og * k])
                            .expect("sizes checked");
                        let mut dcols = pooled_zeros::<T>(k, g.n * p);
                        general_mat_mul(T::one(), &wg.t(), &gy, T::zero(), &mut dcols);
                        col2im(
                            &dcols,
                            dx.as_slice_mut().expect("pooled storage is contiguous"),
                            &g,
                            gi * cg..(gi + 1) * cg,
                        );
                        pool::recycle(dcols.into_dyn());
                    }
                    pool::recycle(gy.into_dyn());
                }
                for cols in saved {
                    pool::recycle(cols.into_dyn());
                }
                let mut grads = smallvec![
                    dx,
                    dw.map(|d| d
                        .into_shape_with_order(IxDyn(w.shape()))
                        .expect("same size"))
                ];
                if needs.len() == 3 {
                    // The bias's gradient: the output gradient summed over samples and
                    // positions, per channel, into pooled storage.
                    grads.push(needs[2].then(|| {
                        let mut db = pool::full::<T>(&[o], T::zero());
                        let dbs = db.as_slice_mut().expect("pooled storage is contiguous");
                        for (i, plane) in gs.chunks_exact(p).enumerate() {
                            dbs[i % o] += plane.iter().copied().sum::<T>();
                        }
                        db
                    }));
                }
                grads
            })
    }
}

#[cfg(test)]
mod tests {
    use crate::Var;
    use crate::ops::test_util::{check, sample};

    #[test]
    fn gradcheck_conv2d_with_stride_padding_dilation_groups_and_bias() {
        let x = sample(&[2, 4, 7, 6], 21);
        let w = sample(&[6, 2, 3, 2], 22);
        let b = sample(&[6], 23);
        check(
            |v: &[Var<'_, f64>]| {
                v[0].conv2d(v[1], Some(v[2]), (2, 1), (1, 2), (2, 1), 2)
                    .square()
                    .sum()
            },
            &[x.clone(), w.clone(), b],
        );
        let w1 = sample(&[3, 4, 3, 3], 24);
        check(
            |v: &[Var<'_, f64>]| v[0].conv2d(v[1], None, 1, 0, 1, 1).tanh().sum(),
            &[x, w1],
        );
    }
}
