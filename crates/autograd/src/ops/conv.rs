//! Convolution and pooling over NCHW images, with PyTorch's functional names and argument
//! meanings: `conv2d` (stride, padding, dilation, groups), `max_pool2d`, `avg_pool2d`
//! (padding counted in the divisor, PyTorch's default) and `adaptive_avg_pool2d`.
//!
//! `conv2d` is im2col plus one GEMM per group over the whole batch; its backward is two more
//! GEMMs (the weight's gradient against the saved columns, and the columns' gradient, which
//! col2im adds back into the input's). Pooling keeps the argmax of every window for backward.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, ArrayView2, Axis, IxDyn};
use smallvec::smallvec;

use crate::{Float, Var, pool};

/// A size given as one number for both axes or as `(height, width)`, as PyTorch accepts.
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
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    oh: usize,
    ow: usize,
}

impl Geometry {
    fn new(
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
    fn source(
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

    fn positions(&self) -> usize {
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

fn contiguous<T: Float>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
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
            assert!(
                b.shape() == [o],
                "conv2d: bias of shape {:?} for {o} output channels",
                b.shape()
            );
        }
        let (og, p, k) = (o / groups, g.positions(), cg * g.kh * g.kw);
        let xs = contiguous(&x);
        let ws = contiguous(&w);
        let mut out = pool::scratch::<T>(&[g.n, o, g.oh, g.ow]);
        let mut saved = Vec::with_capacity(groups);
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
        let operands: Vec<Var<'t, T>> = std::iter::once(self).chain([weight]).chain(bias).collect();
        self.tape
            .push_op("conv2d", &operands, out, move |grad, _, inputs, needs| {
                let gs = contiguous(grad);
                let w = inputs[1];
                let ws = contiguous(w);
                let mut dx = needs[0].then(|| pool::full::<T>(&[g.n, g.c, g.h, g.w], T::zero()));
                let mut dw = needs[1].then(|| Array2::<T>::zeros((o, k)));
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
                    grads.push(
                        needs[2]
                            .then(|| grad.sum_axis(Axis(3)).sum_axis(Axis(2)).sum_axis(Axis(0))),
                    );
                }
                grads
            })
    }

    /// Max pooling over `kernel` windows (PyTorch's `F.max_pool2d`; `stride` defaults to the
    /// kernel there, here it is explicit). Padding counts as minus infinity. The gradient
    /// goes to the first maximal element of each window.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::{Array, ArrayD}};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(Array::range(0.0, 16.0, 1.0).into_shape_with_order(vec![1, 1, 4, 4]).unwrap());
    /// let y = x.max_pool2d(2, 2, 0);
    /// assert_eq!(y.value().as_slice().unwrap(), &[5.0, 7.0, 13.0, 15.0]);
    /// ```
    pub fn max_pool2d(
        self,
        kernel: impl Into<Pair>,
        stride: impl Into<Pair>,
        padding: impl Into<Pair>,
    ) -> Var<'t, T> {
        let x = self.value();
        let (kernel, padding) = (kernel.into(), padding.into());
        let g = Geometry::new(
            "max_pool2d",
            x.shape(),
            kernel,
            stride.into(),
            padding,
            Pair(1, 1),
        );
        assert!(
            2 * padding.0 <= kernel.0 && 2 * padding.1 <= kernel.1,
            "max_pool2d: padding {padding:?} must be at most half the kernel {kernel:?}"
        );
        assert!(
            g.h * g.w <= u32::MAX as usize,
            "max_pool2d: planes of {}x{} are too large",
            g.h,
            g.w
        );
        let xs = contiguous(&x);
        let planes = g.n * g.c;
        let mut argmax = vec![0u32; planes * g.positions()];
        let mut out = pool::scratch::<T>(&[g.n, g.c, g.oh, g.ow]);
        let out_s = out.as_slice_mut().expect("pooled storage is contiguous");
        // NaN propagates as the maximum, as in PyTorch.
        let better = |v: T, b: T| v > b || (v.is_nan() && !b.is_nan());
        if padding == Pair(0, 0) && kernel == Pair(2, 2) && g.stride == Pair(2, 2) {
            // The common 2x2 / stride 2 case, unrolled.
            for plane in 0..planes {
                let src = &xs[plane * g.h * g.w..][..g.h * g.w];
                let dst = &mut out_s[plane * g.positions()..][..g.positions()];
                let arg = &mut argmax[plane * g.positions()..][..g.positions()];
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let i = 2 * oy * g.w + 2 * ox;
                        let mut at = i;
                        for j in [i + 1, i + g.w, i + g.w + 1] {
                            if better(src[j], src[at]) {
                                at = j;
                            }
                        }
                        dst[oy * g.ow + ox] = src[at];
                        arg[oy * g.ow + ox] = at as u32;
                    }
                }
            }
        } else if padding == Pair(0, 0) {
            // Every window lies inside the input: no bounds to test.
            for plane in 0..planes {
                let src = &xs[plane * g.h * g.w..][..g.h * g.w];
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let first = oy * g.stride.0 * g.w + ox * g.stride.1;
                        let (mut at, mut best) = (first, src[first]);
                        for ki in 0..g.kh {
                            let row = first + ki * g.w;
                            for (kj, &v) in src[row..row + g.kw].iter().enumerate() {
                                if better(v, best) {
                                    (at, best) = (row + kj, v);
                                }
                            }
                        }
                        let o = plane * g.positions() + oy * g.ow + ox;
                        argmax[o] = at as u32;
                        out_s[o] = best;
                    }
                }
            }
        }
        for plane in (0..planes).filter(|_| padding != Pair(0, 0)) {
            let src = &xs[plane * g.h * g.w..][..g.h * g.w];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut best: Option<(usize, T)> = None;
                    for ki in 0..g.kh {
                        let Some(iy) = Geometry::source(oy, ki, g.stride.0, 1, g.padding.0, g.h)
                        else {
                            continue;
                        };
                        for kj in 0..g.kw {
                            let Some(ix) =
                                Geometry::source(ox, kj, g.stride.1, 1, g.padding.1, g.w)
                            else {
                                continue;
                            };
                            let v = src[iy * g.w + ix];
                            if best.is_none_or(|(_, b)| better(v, b)) {
                                best = Some((iy * g.w + ix, v));
                            }
                        }
                    }
                    let (at, v) =
                        best.expect("a window holds at least one element (padding <= kernel / 2)");
                    let o = plane * g.positions() + oy * g.ow + ox;
                    argmax[o] = at as u32;
                    out_s[o] = v;
                }
            }
        }
        self.tape
            .push_op("max_pool2d", &[self], out, move |grad, _, _, _| {
                let gs = contiguous(grad);
                let mut dx = pool::full::<T>(&[g.n, g.c, g.h, g.w], T::zero());
                let d = dx.as_slice_mut().expect("pooled storage is contiguous");
                let p = g.positions();
                for ((plane, args), grads) in d
                    .chunks_exact_mut(g.h * g.w)
                    .zip(argmax.chunks_exact(p))
                    .zip(gs.chunks_exact(p))
                {
                    for (&at, &gv) in args.iter().zip(grads) {
                        plane[at as usize] += gv;
                    }
                }
                smallvec![Some(dx)]
            })
    }

    /// Average pooling over `kernel` windows; padding counts in the divisor (PyTorch's
    /// default `count_include_pad=True`), so every window divides by `kh * kw`.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::ArrayD};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(ArrayD::ones(vec![1, 1, 2, 2]));
    /// // With padding 1 and a 2x2 kernel, the corner windows hold one real element of four.
    /// assert_eq!(x.avg_pool2d(2, 1, 1).value().as_slice().unwrap(), &[0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25]);
    /// ```
    pub fn avg_pool2d(
        self,
        kernel: impl Into<Pair>,
        stride: impl Into<Pair>,
        padding: impl Into<Pair>,
    ) -> Var<'t, T> {
        let x = self.value();
        let (kernel, padding) = (kernel.into(), padding.into());
        let g = Geometry::new(
            "avg_pool2d",
            x.shape(),
            kernel,
            stride.into(),
            padding,
            Pair(1, 1),
        );
        assert!(
            2 * padding.0 <= kernel.0 && 2 * padding.1 <= kernel.1,
            "avg_pool2d: padding {padding:?} must be at most half the kernel {kernel:?}"
        );
        let divisor = T::of((g.kh * g.kw) as f64);
        let windows = move |oy: usize, ox: usize, mut f: Box<dyn FnMut(usize) + '_>| {
            for ki in 0..g.kh {
                let Some(iy) = Geometry::source(oy, ki, g.stride.0, 1, g.padding.0, g.h) else {
                    continue;
                };
                for kj in 0..g.kw {
                    if let Some(ix) = Geometry::source(ox, kj, g.stride.1, 1, g.padding.1, g.w) {
                        f(iy * g.w + ix);
                    }
                }
            }
        };
        let xs = contiguous(&x);
        let mut out = pool::scratch::<T>(&[g.n, g.c, g.oh, g.ow]);
        let out_s = out.as_slice_mut().expect("pooled storage is contiguous");
        for plane in 0..g.n * g.c {
            let src = &xs[plane * g.h * g.w..][..g.h * g.w];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut sum = T::zero();
                    windows(oy, ox, Box::new(|i| sum += src[i]));
                    out_s[plane * g.positions() + oy * g.ow + ox] = sum / divisor;
                }
            }
        }
        self.tape
            .push_op("avg_pool2d", &[self], out, move |grad, _, _, _| {
                let gs = contiguous(grad);
                let mut dx = ArrayD::<T>::zeros(IxDyn(&[g.n, g.c, g.h, g.w]));
                let d = dx.as_slice_mut().expect("fresh array");
                for plane in 0..g.n * g.c {
                    let dst = &mut d[plane * g.h * g.w..][..g.h * g.w];
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let share = gs[plane * g.positions() + oy * g.ow + ox] / divisor;
                            windows(oy, ox, Box::new(|i| dst[i] += share));
                        }
                    }
                }
                smallvec![Some(dx)]
            })
    }

    /// Average pooling to an `(out_h, out_w)` grid whatever the input's size (PyTorch's
    /// `F.adaptive_avg_pool2d`): output cell `i` averages input rows `floor(i h / out_h)` to
    /// `ceil((i + 1) h / out_h)`. `(1, 1)` is global average pooling.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::{Array, ArrayD}};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(Array::range(0.0, 12.0, 1.0).into_shape_with_order(vec![1, 2, 2, 3]).unwrap());
    /// assert_eq!(x.adaptive_avg_pool2d((1, 1)).value().as_slice().unwrap(), &[2.5, 8.5]);
    /// ```
    pub fn adaptive_avg_pool2d(self, output: impl Into<Pair>) -> Var<'t, T> {
        let x = self.value();
        let Pair(oh, ow) = output.into();
        assert!(
            x.ndim() == 4 && oh > 0 && ow > 0,
            "adaptive_avg_pool2d: expected an NCHW input and an output of at least 1x1, got \
             shape {:?} and ({oh}, {ow})",
            x.shape()
        );
        let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        assert!(
            h > 0 && w > 0,
            "adaptive_avg_pool2d: empty input of shape {:?}",
            x.shape()
        );
        let bounds =
            |i: usize, out: usize, len: usize| (i * len / out, ((i + 1) * len).div_ceil(out));
        let xs = contiguous(&x);
        let mut out = pool::scratch::<T>(&[n, c, oh, ow]);
        let out_s = out.as_slice_mut().expect("pooled storage is contiguous");
        for plane in 0..n * c {
            let src = &xs[plane * h * w..][..h * w];
            for oy in 0..oh {
                let (y0, y1) = bounds(oy, oh, h);
                for ox in 0..ow {
                    let (x0, x1) = bounds(ox, ow, w);
                    let sum: T = (y0..y1)
                        .flat_map(|y| (x0..x1).map(move |x| (y, x)))
                        .map(|(y, x)| src[y * w + x])
                        .sum();
                    out_s[(plane * oh + oy) * ow + ox] =
                        sum / T::of(((y1 - y0) * (x1 - x0)) as f64);
                }
            }
        }
        self.tape
            .push_op("adaptive_avg_pool2d", &[self], out, move |grad, _, _, _| {
                let gs = contiguous(grad);
                let mut dx = ArrayD::<T>::zeros(IxDyn(&[n, c, h, w]));
                let d = dx.as_slice_mut().expect("fresh array");
                for plane in 0..n * c {
                    for oy in 0..oh {
                        let (y0, y1) = bounds(oy, oh, h);
                        for ox in 0..ow {
                            let (x0, x1) = bounds(ox, ow, w);
                            let share = gs[(plane * oh + oy) * ow + ox]
                                / T::of(((y1 - y0) * (x1 - x0)) as f64);
                            for y in y0..y1 {
                                for xx in x0..x1 {
                                    d[plane * h * w + y * w + xx] += share;
                                }
                            }
                        }
                    }
                }
                smallvec![Some(dx)]
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

    #[test]
    fn gradcheck_pooling() {
        // Distinct values keep the max away from ties, where it has no derivative.
        let x = sample(&[2, 3, 6, 5], 31);
        // Without padding (the path with no bounds tests), overlapping and not.
        check(
            |v: &[Var<'_, f64>]| v[0].max_pool2d(2, 2, 0).square().sum(),
            std::slice::from_ref(&x),
        );
        check(
            |v: &[Var<'_, f64>]| v[0].max_pool2d(3, (2, 1), 0).square().sum(),
            std::slice::from_ref(&x),
        );
        check(
            |v: &[Var<'_, f64>]| v[0].max_pool2d((3, 2), (2, 1), 1).square().sum(),
            std::slice::from_ref(&x),
        );
        check(
            |v: &[Var<'_, f64>]| v[0].avg_pool2d(3, 2, 1).square().sum(),
            std::slice::from_ref(&x),
        );
        check(
            |v: &[Var<'_, f64>]| v[0].adaptive_avg_pool2d((4, 3)).square().sum(),
            std::slice::from_ref(&x),
        );
        check(
            |v: &[Var<'_, f64>]| v[0].adaptive_avg_pool2d(1).square().sum(),
            &[x],
        );
    }
}
