//! Pooling over NCHW images, with PyTorch's functional names and argument meanings:
//! `max_pool2d` (keeping the argmax of every window for backward), `avg_pool2d` (padding
//! counted in the divisor, PyTorch's default) and `adaptive_avg_pool2d`.

use ndarray::{ArrayD, IxDyn};
use smallvec::smallvec;

use super::conv::{Geometry, Pair, contiguous};
use crate::{Float, Var, pool};

/// Whether `v` replaces `best` as a window's maximum: greater, or the first NaN (NaN
/// propagates, as in PyTorch). `|` and `&` rather than `||` and `&&`: no branch.
#[inline(always)]
fn better<T: Float>(v: T, best: T) -> bool {
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// One output row of 2x2 / stride 2 max pooling from its two input rows: the maxima into
/// `dst`, their indices in the plane (`first` is the top row's, `w` the plane's width) into
/// `arg`. Four windows at a time in fixed-size arrays with selects, which the compiler
/// turns into vector code (a window at a time, it stayed scalar: 7% of a W3 step).
#[inline(always)]
fn max_row_2x2<T: Float>(
    top: &[T],
    bottom: &[T],
    first: u32,
    w: u32,
    dst: &mut [T],
    arg: &mut [u32],
) {
    const L: usize = 4;
    let window = |ox: usize| {
        let (mut best, mut off) = (top[2 * ox], 0);
        for (v, o) in [
            (top[2 * ox + 1], 1),
            (bottom[2 * ox], w),
            (bottom[2 * ox + 1], w + 1),
        ] {
            let b = better(v, best);
            best = if b { v } else { best };
            off = if b { o } else { off };
        }
        (best, first + 2 * ox as u32 + off)
    };
    let full = dst.len() / L * L;
    for (c, (d, a)) in dst[..full]
        .chunks_exact_mut(L)
        .zip(arg[..full].chunks_exact_mut(L))
        .enumerate()
    {
        let t: &[T; 2 * L] = top[2 * L * c..][..2 * L].try_into().expect("2L elements");
        let b: &[T; 2 * L] = bottom[2 * L * c..][..2 * L]
            .try_into()
            .expect("2L elements");
        let mut best: [T; L] = std::array::from_fn(|l| t[2 * l]);
        let mut off = [0u32; L];
        let mut step = |candidates: [T; L], o: u32| {
            for l in 0..L {
                let m = better(candidates[l], best[l]);
                best[l] = if m { candidates[l] } else { best[l] };
                off[l] = if m { o } else { off[l] };
            }
        };
        step(std::array::from_fn(|l| t[2 * l + 1]), 1);
        step(std::array::from_fn(|l| b[2 * l]), w);
        step(std::array::from_fn(|l| b[2 * l + 1]), w + 1);
        d.copy_from_slice(&best);
        for (l, a) in a.iter_mut().enumerate() {
            *a = first + 2 * (L * c + l) as u32 + off[l];
        }
    }
    for ox in full..dst.len() {
        (dst[ox], arg[ox]) = window(ox);
    }
}

/// 2x2 / stride 2 max pooling of every plane, one output row at a time from two input rows
/// (compiled for AVX2 where the CPU has it: see `simd`).
fn max_pool_2x2<T: Float>(xs: &[T], g: &Geometry, out: &mut [T], argmax: &mut [u32]) {
    #[inline(always)]
    fn body<T: Float>(xs: &[T], g: &Geometry, out: &mut [T], argmax: &mut [u32]) {
        let p = g.positions();
        for (plane, (dst, arg)) in out
            .chunks_exact_mut(p)
            .zip(argmax.chunks_exact_mut(p))
            .enumerate()
        {
            let src = &xs[plane * g.h * g.w..][..g.h * g.w];
            for (oy, (dst, arg)) in dst
                .chunks_exact_mut(g.ow)
                .zip(arg.chunks_exact_mut(g.ow))
                .enumerate()
            {
                let top = &src[2 * oy * g.w..][..2 * g.ow];
                let bottom = &src[(2 * oy + 1) * g.w..][..2 * g.ow];
                max_row_2x2(top, bottom, (2 * oy * g.w) as u32, g.w as u32, dst, arg);
            }
        }
    }
    crate::simd::with_avx2!(body::<T>(xs: &[T], g: &Geometry, out: &mut [T], argmax: &mut [u32]))
}

/// The gradient of 2x2 / stride 2 max pooling: each plane cleared in one piece while it is
/// in cache, then each window's maximum gets its output's gradient. (Clearing two rows at a
/// time, one `memset` call each, was 2.3% of a W3 step; writing every element once with
/// selects, 5.6%.)
fn max_unpool_2x2<T: Float>(grads: &[T], argmax: &[u32], g: &Geometry, dx: &mut [T]) {
    let p = g.positions();
    for ((plane, args), grads) in dx
        .chunks_exact_mut(g.h * g.w)
        .zip(argmax.chunks_exact(p))
        .zip(grads.chunks_exact(p))
    {
        plane.fill(T::zero());
        for (&at, &gv) in args.iter().zip(grads) {
            plane[at as usize] = gv;
        }
    }
}

/// The windows of a pooling op, checked as PyTorch does: padding at most half the kernel.
fn window_geometry(
    op: &str,
    input: &[usize],
    kernel: Pair,
    stride: Pair,
    padding: Pair,
) -> Geometry {
    assert!(
        padding.0 <= kernel.0 / 2 && padding.1 <= kernel.1 / 2,
        "{op}: padding {padding:?} must be at most half the kernel {kernel:?}"
    );
    Geometry::new(op, input, kernel, stride, padding, Pair(1, 1))
}

impl<'t, T: Float> Var<'t, T> {
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
        let g = window_geometry("max_pool2d", x.shape(), kernel, stride.into(), padding);
        assert!(
            g.h * g.w <= u32::MAX as usize,
            "max_pool2d: planes of {}x{} are too large",
            g.h,
            g.w
        );
        let xs = contiguous(&x);
        let planes = g.n * g.c;
        let mut argmax = pool::take_indices(planes * g.positions());
        let mut out = pool::scratch::<T>(&[g.n, g.c, g.oh, g.ow]);
        let out_s = out.as_slice_mut().expect("pooled storage is contiguous");
        // NaN propagates as the maximum, as in PyTorch.
        let two_by_two = padding == Pair(0, 0) && kernel == Pair(2, 2) && g.stride == Pair(2, 2);
        if two_by_two {
            max_pool_2x2(&xs, &g, out_s, &mut argmax);
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
                let p = g.positions();
                let dx = if two_by_two {
                    // Windows that do not overlap: each input element gets one gradient.
                    let mut dx = pool::scratch::<T>(&[g.n, g.c, g.h, g.w]);
                    let d = dx.as_slice_mut().expect("pooled storage is contiguous");
                    max_unpool_2x2(&gs, &argmax, &g, d);
                    dx
                } else {
                    let mut dx = pool::full::<T>(&[g.n, g.c, g.h, g.w], T::zero());
                    let d = dx.as_slice_mut().expect("pooled storage is contiguous");
                    for ((plane, args), grads) in d
                        .chunks_exact_mut(g.h * g.w)
                        .zip(argmax.chunks_exact(p))
                        .zip(gs.chunks_exact(p))
                    {
                        for (&at, &gv) in args.iter().zip(grads) {
                            plane[at as usize] += gv;
                        }
                    }
                    dx
                };
                pool::recycle_indices(argmax);
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
        let g = window_geometry("avg_pool2d", x.shape(), kernel, stride.into(), padding);
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
    fn gradcheck_pooling() {
        // Distinct values keep the max away from ties, where it has no derivative.
        let x = sample(&[2, 3, 6, 5], 31);
        // Without padding (the path with no bounds tests), overlapping and not.
        check(
            |v: &[Var<'_, f64>]| v[0].max_pool2d(2, 2, 0).square().sum(),
            std::slice::from_ref(&x),
        );
        // Odd height and width: a last row and column in no 2x2 window get zero.
        check(
            |v: &[Var<'_, f64>]| v[0].max_pool2d(2, 2, 0).square().sum(),
            &[sample(&[2, 2, 5, 7], 32)],
        );
        // Rows of 5 windows: four at a time, then one.
        check(
            |v: &[Var<'_, f64>]| v[0].max_pool2d(2, 2, 0).square().sum(),
            &[sample(&[1, 2, 4, 10], 34)],
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

    #[test]
    fn two_by_two_max_pool_takes_the_first_of_ties_and_propagates_nan() {
        use crate::{ParamStore, value_and_grad_with_aux};
        use ndarray::ArrayD;
        let mut params = ParamStore::<f32>::new();
        #[rustfmt::skip]
        let x = ArrayD::from_shape_vec(vec![1, 1, 3, 4], vec![
            1.0, 1.0, 2.0, f32::NAN,
            1.0, 1.0, 5.0, 2.0,
            9.0, 9.0, 9.0, 9.0,
        ]).unwrap();
        let id = params.insert("x", x).unwrap();
        let (_, grads, out) = value_and_grad_with_aux(false, |tape| {
            let y = tape.param(&params, id).max_pool2d(2, 2, 0);
            let out = y.value().as_slice().unwrap().to_vec();
            (y.sum(), out)
        })
        .unwrap();
        assert_eq!(out[0], 1.0);
        assert!(out[1].is_nan());
        let g = grads.get(id).unwrap().as_slice().unwrap().to_vec();
        // Ties: the first (top-left) element; NaN: the NaN; the last row is in no window.
        assert_eq!(
            g,
            vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    /// Rows long enough for the four-windows-at-a-time path and its remainder, with ties and
    /// NaNs inside it, against a window-by-window reference.
    #[test]
    fn two_by_two_max_pool_matches_a_reference_on_long_rows() {
        use crate::{ParamStore, value_and_grad_with_aux};
        let (n, c, h, w) = (2, 3, 7, 19); // 9 windows a row: 2 groups of 4 and 1 more
        let mut x = sample(&[n, c, h, w], 33).mapv(|v| (v * 4.0).round() as f32); // ties
        let xs = x.as_slice_mut().unwrap();
        for at in [5, 40, 41, 77, 200, 333, 501] {
            xs[at] = f32::NAN;
        }
        let mut params = ParamStore::<f32>::new();
        let id = params.insert("x", x.clone()).unwrap();
        let flipped = params.insert("flipped", x.mapv(|v| -v)).unwrap();
        let run = |id| {
            value_and_grad_with_aux(false, |tape| {
                let y = tape.param(&params, id).max_pool2d(2, 2, 0);
                let out = y.value().as_slice().unwrap().to_vec();
                (y.mul_scalar(3.0).sum(), out)
            })
            .unwrap()
        };
        // The second run gets storage the first gave back, holding 3 at the first input's
        // maxima (elsewhere than the second's): every element has to be written.
        drop(run(flipped));
        let (_, grads, out) = run(id);
        let xs = x.as_slice().unwrap();
        let mut want_grad = vec![0.0f32; xs.len()];
        let (oh, ow) = (h / 2, w / 2);
        for plane in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let i = plane * h * w + 2 * oy * w + 2 * ox;
                    let mut at = i;
                    for j in [i + 1, i + w, i + w + 1] {
                        let (v, b) = (xs[j], xs[at]);
                        if v > b || (v.is_nan() && !b.is_nan()) {
                            at = j;
                        }
                    }
                    let got = out[(plane * oh + oy) * ow + ox];
                    assert!(
                        got == xs[at] || (got.is_nan() && xs[at].is_nan()),
                        "window {plane} {oy} {ox}"
                    );
                    want_grad[at] = 3.0;
                }
            }
        }
        assert_eq!(grads.get(id).unwrap().as_slice().unwrap(), &want_grad[..]);
    }
}
