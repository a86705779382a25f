//! Convolution over NCHW images with PyTorch's functional name and argument meanings:
//! `conv2d` (stride, padding, dilation, groups); pooling is in `pooling.rs`.
//!
//! `conv2d` is im2col plus one GEMM per group and block of samples (a block's columns stay in
//! cache); its backward builds each block's columns again and makes two more GEMMs (the
//! weight's gradient against the columns, accumulated over the blocks, and the columns'
//! gradient, which col2im adds back into the input's).

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, IxDyn};
use smallvec::{SmallVec, smallvec};

use crate::gemm::gemm;
use crate::{Float, Var, pool};

mod columns;
mod tiles;
mod winograd;
use columns::{
    DOT_KERNEL, Rows, block_samples, col2im, im2col, lane_sum, scratch_vec, weight_grad_dots,
};

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

/// How many windows of `kernel` elements spread by `dilation`, stepping by `stride`, fit along
/// an axis of `len` elements padded by `padding` on each side (PyTorch's output size):
/// `Some(0)` when none fits, `None` when the padded axis or the window's span passes
/// `usize`. Every window op, and the layers' shape inference, size their outputs with it.
///
/// ```
/// use gradus_autograd::ops::conv::window_output_len;
/// assert_eq!(window_output_len(28, 3, 1, 1, 1), Some(28)); // "same" padding
/// assert_eq!(window_output_len(28, 3, 2, 0, 2), Some(12));
/// assert_eq!(window_output_len(2, 5, 1, 0, 1), Some(0));
/// assert_eq!(window_output_len(28, 3, 1, usize::MAX / 2, 1), None);
/// ```
pub fn window_output_len(
    len: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    let padded = padding.checked_mul(2)?.checked_add(len)?;
    let span = dilation
        .checked_mul(kernel.saturating_sub(1))?
        .checked_add(1)?;
    Some(
        padded
            .checked_sub(span)
            .map_or(0, |v| v / stride.max(1) + 1),
    )
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
        // Checked: a huge padding or dilation must not wrap around into a plausible size.
        let oh = window_output_len(h, kernel.0, stride.0, padding.0, dilation.0);
        let ow = window_output_len(w, kernel.1, stride.1, padding.1, dilation.1);
        let Some((oh, ow)) = oh.zip(ow) else {
            panic!(
                "{op}: padding {padding:?} or dilation {dilation:?} overflows with input \
                 {input:?} and kernel {kernel:?}"
            )
        };
        assert!(
            oh > 0 && ow > 0,
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
            oh,
            ow,
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
        let bias_value = bias.map(|b| b.value());
        let bias_cow = bias_value.as_ref().map(|b| contiguous(b));
        let bias_s = bias_cow.as_deref();
        // im2col and one GEMM per block of samples and group; backward builds the columns
        // again rather than keeping them (memory traffic, not arithmetic, is what they cost).
        let bs = block_samples(k, p, g.n);
        // With a kernel smaller than a plane (a first layer: 1 channel, 3x3), one GEMM per
        // sample writes straight into the output, whose `[o, P]` rows of a sample are
        // contiguous; repacking the small weight each time costs less than moving the
        // output. Otherwise one GEMM per block, then a copy into place.
        let per_sample = k < p;
        // A 3x3 kernel at stride 1 with enough channels: Winograd's F(2x2, 3x3).
        let wino = winograd::applies(&g, o, groups);
        let out = if wino {
            winograd::forward(&xs, &ws, bias_s, &g, o)
        } else {
            let mut out = pool::scratch::<T>(&[g.n, o, g.oh, g.ow]);
            {
                let out_s = out.as_slice_mut().expect("pooled storage is contiguous");
                let mut cols = scratch_vec::<T>(k * bs * p);
                let mut y = scratch_vec::<T>(if per_sample { 0 } else { og * bs * p });
                for s0 in (0..g.n).step_by(bs) {
                    let samples = s0..(s0 + bs).min(g.n);
                    let width = samples.len() * p;
                    for gi in 0..groups {
                        let cols = &mut cols[..k * width];
                        im2col(&xs, &g, gi * cg..(gi + 1) * cg, samples.clone(), cols);
                        let wg = ArrayView2::from_shape((og, k), &ws[gi * og * k..][..og * k])
                            .expect("sizes checked");
                        let cols = ArrayView2::from_shape((k, width), &*cols).expect("sized above");
                        let rows = Rows {
                            o,
                            og0: gi * og,
                            og,
                            s0,
                            samples: samples.len(),
                            p,
                        };
                        if per_sample {
                            for j in 0..samples.len() {
                                let mut yj = rows.sample_mut(out_s, j);
                                let cj = cols.slice(ndarray::s![.., j * p..(j + 1) * p]);
                                gemm(T::one(), &wg, &cj, T::zero(), &mut yj);
                                if let Some(b) = bias_s {
                                    // While the sample's rows are in cache.
                                    let b = &b[gi * og..(gi + 1) * og];
                                    for (mut row, &bv) in yj.rows_mut().into_iter().zip(b) {
                                        row.mapv_inplace(|v| v + bv);
                                    }
                                }
                            }
                        } else {
                            let y = &mut y[..og * width];
                            let mut yv =
                                ArrayViewMut2::from_shape((og, width), &mut *y).expect("sized");
                            gemm(T::one(), &wg, &cols, T::zero(), &mut yv);
                            rows.scatter(y, out_s, bias_s);
                        }
                    }
                }
                pool::recycle_vec(cols);
                pool::recycle_vec(y);
            }
            out
        };
        let operands: SmallVec<[Var<'t, T>; 3]> =
            std::iter::once(self).chain([weight]).chain(bias).collect();
        self.tape
            .push_op("conv2d", &operands, out, move |grad, _, inputs, needs| {
                let gs = contiguous(grad);
                let (x, w) = (inputs[0], inputs[1]);
                let xs = contiguous(x);
                let ws = contiguous(w);
                let (dx, dw) = if wino {
                    winograd::backward(&gs, &xs, &ws, &g, o, (needs[0], needs[1]))
                } else {
                    let mut dx =
                        needs[0].then(|| pool::full::<T>(&[g.n, g.c, g.h, g.w], T::zero()));
                    let mut dw = needs[1].then(|| {
                        let v = pool::full::<T>(&[o * k], T::zero())
                            .into_raw_vec_and_offset()
                            .0;
                        Array2::from_shape_vec((o, k), v).expect("sized")
                    });
                    let mut gy = scratch_vec::<T>(if per_sample { 0 } else { og * bs * p });
                    let mut cols = scratch_vec::<T>(if needs[1] { k * bs * p } else { 0 });
                    let mut dcols = scratch_vec::<T>(if needs[0] { k * bs * p } else { 0 });
                    for s0 in (0..g.n).step_by(bs) {
                        let samples = s0..(s0 + bs).min(g.n);
                        let width = samples.len() * p;
                        for gi in 0..groups {
                            let rows = Rows {
                                o,
                                og0: gi * og,
                                og,
                                s0,
                                samples: samples.len(),
                                p,
                            };
                            let channels = gi * cg..(gi + 1) * cg;
                            // Widths of the blocks in use (0 for a gradient not asked for).
                            let (cw, dxw) = (
                                if needs[1] { width } else { 0 },
                                if needs[0] { width } else { 0 },
                            );
                            if needs[1] {
                                let cols = &mut cols[..k * width];
                                im2col(&xs, &g, channels.clone(), samples.clone(), cols);
                            }
                            let cols =
                                ArrayView2::from_shape((k, cw), &cols[..k * cw]).expect("sized");
                            let wg = ArrayView2::from_shape((og, k), &ws[gi * og * k..][..og * k])
                                .expect("sizes checked");
                            let mut dv = ArrayViewMut2::from_shape((k, dxw), &mut dcols[..k * dxw])
                                .expect("sized");
                            let og_rows = ndarray::s![gi * og..(gi + 1) * og, ..];
                            if per_sample {
                                // The output gradient's rows of one sample are contiguous: no copy.
                                for j in 0..samples.len() {
                                    let gyj = rows.sample(&gs, j);
                                    if let Some(dw) = &mut dw {
                                        let dwg = dw.slice_mut(og_rows);
                                        if k <= DOT_KERNEL {
                                            let gyj = gyj.as_slice().expect("contiguous rows");
                                            let cj = &cols.as_slice().expect("contiguous")[j * p..];
                                            weight_grad_dots(gyj, cj, cw, (k, p), dwg);
                                        } else {
                                            let cj =
                                                cols.slice(ndarray::s![.., j * p..(j + 1) * p]);
                                            let mut dwg = dwg;
                                            gemm(T::one(), &gyj, &cj.t(), T::one(), &mut dwg);
                                        }
                                    }
                                    if needs[0] {
                                        let mut dj =
                                            dv.slice_mut(ndarray::s![.., j * p..(j + 1) * p]);
                                        gemm(T::one(), &wg.t(), &gyj, T::zero(), &mut dj);
                                    }
                                }
                            } else {
                                let gy = &mut gy[..og * width];
                                rows.gather(&gs, gy);
                                let gyv = ArrayView2::from_shape((og, width), &*gy).expect("sized");
                                if let Some(dw) = &mut dw {
                                    // dW^T += cols gy^T: `gemm` transposes both operands
                                    // into the layouts packed fastest.
                                    let mut dwg = dw.slice_mut(og_rows);
                                    let mut dwt = dwg.view_mut().reversed_axes();
                                    gemm(T::one(), &cols, &gyv.t(), T::one(), &mut dwt);
                                }
                                if needs[0] {
                                    gemm(T::one(), &wg.t(), &gyv, T::zero(), &mut dv);
                                }
                            }
                            if let Some(dx) = &mut dx {
                                let dxs = dx.as_slice_mut().expect("pooled storage is contiguous");
                                col2im(&dcols[..k * width], dxs, &g, channels, samples.clone());
                            }
                        }
                    }
                    for v in [gy, cols, dcols] {
                        pool::recycle_vec(v);
                    }
                    (
                        dx,
                        dw.map(|d| {
                            d.into_shape_with_order(IxDyn(w.shape()))
                                .expect("same size")
                        }),
                    )
                };
                let mut grads = smallvec![dx, dw];
                if needs.len() == 3 {
                    // The bias's gradient: the output gradient summed over samples and
                    // positions, per channel, into pooled storage.
                    grads.push(needs[2].then(|| {
                        let mut db = pool::full::<T>(&[o], T::zero());
                        let dbs = db.as_slice_mut().expect("pooled storage is contiguous");
                        for (i, plane) in gs.chunks_exact(p).enumerate() {
                            dbs[i % o] += lane_sum(plane);
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

    /// The dot-product weight gradient of small kernels equals the plain triple loop, for
    /// row counts that do not fill its groups of four and positions that do not fill its
    /// 16 lanes.
    #[test]
    fn weight_gradient_dots_equal_the_plain_sum() {
        use ndarray::Array2;
        for (og, k, p) in [(1, 1, 1), (3, 5, 17), (2, 9, 676), (4, 16, 33), (5, 7, 15)] {
            let stride = p + 3; // rows of the columns are further apart than P
            let gy = sample(&[og * p], 51).into_raw_vec_and_offset().0;
            let cols = sample(&[k * stride], 52).into_raw_vec_and_offset().0;
            let start = sample(&[og, k], 53).into_shape_with_order((og, k)).unwrap();
            let mut got = start.clone();
            super::columns::weight_grad_dots(&gy, &cols, stride, (k, p), got.view_mut());
            let want = Array2::from_shape_fn((og, k), |(o, t)| {
                start[[o, t]]
                    + (0..p)
                        .map(|i| gy[o * p + i] * cols[t * stride + i])
                        .sum::<f64>()
            });
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                    "{og}x{k}x{p}: {a} vs {b}"
                );
            }
        }
    }

    /// A batch large enough to be split into several blocks of im2col columns gives what
    /// each sample gives alone (one block), values and gradients: both the path of one GEMM
    /// per sample (kernel smaller than a plane) and that of one GEMM per block.
    #[test]
    fn a_batch_in_several_blocks_equals_its_samples_one_at_a_time() {
        use crate::{ParamStore, value_and_grad_with_aux};
        use ndarray::{ArrayD, Axis, IxDyn};
        /// `[n, c, h, w]`, `[o, c / groups, kh, kw]`, stride, padding, groups.
        type Case = (&'static [usize], &'static [usize], usize, usize, usize);
        let cases: [Case; 2] = [
            (&[13, 4, 30, 30], &[6, 2, 3, 3], 1, 0, 2), // k 18 < P 784, 9 samples a block
            (&[40, 32, 8, 8], &[8, 32, 3, 3], 2, 1, 1), // k 288 > P 16, 28 samples a block
        ];
        for (xs, ws, stride, padding, groups) in cases {
            let mut params = ParamStore::<f64>::new();
            let x = params.insert("x", sample(xs, 41)).unwrap();
            let w = params.insert("w", sample(ws, 42)).unwrap();
            let b = params.insert("b", sample(&[ws[0]], 43)).unwrap();
            let r = std::cell::RefCell::new(None::<ArrayD<f64>>);
            let run = |params: &ParamStore<f64>, x| {
                value_and_grad_with_aux(false, |tape| {
                    let y = tape.param(params, x).conv2d(
                        tape.param(params, w),
                        Some(tape.param(params, b)),
                        stride,
                        padding,
                        1,
                        groups,
                    );
                    let weights = r
                        .borrow_mut()
                        .get_or_insert_with(|| sample(&y.shape(), 44))
                        .clone();
                    let out = y.value().as_ref().clone();
                    ((y * tape.constant(weights)).sum(), out)
                })
                .unwrap()
            };
            let (_, whole, out) = run(&params, x);
            let full_r = r.borrow().clone().unwrap();
            let (mut dw, mut db) = (ArrayD::zeros(IxDyn(ws)), ArrayD::zeros(IxDyn(&[ws[0]])));
            for i in 0..xs[0] {
                let mut one = ParamStore::<f64>::new();
                let xi = params.get(x).index_axis(Axis(0), i).insert_axis(Axis(0));
                let xi = one.insert("x", xi.to_owned()).unwrap();
                one.insert("w", params.get(w).clone()).unwrap();
                one.insert("b", params.get(b).clone()).unwrap();
                *r.borrow_mut() = Some(
                    full_r
                        .index_axis(Axis(0), i)
                        .insert_axis(Axis(0))
                        .to_owned(),
                );
                let (_, g, o) = run(&one, xi);
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * (1.0 + b.abs());
                let want = out.index_axis(Axis(0), i);
                assert!(
                    o.iter().zip(want.iter()).all(|(&a, &b)| close(a, b)),
                    "{xs:?}: output of sample {i}"
                );
                let gx = whole.get(x).unwrap().index_axis(Axis(0), i);
                let gi = g.get(xi).unwrap().index_axis(Axis(0), 0);
                assert!(
                    gi.iter().zip(gx.iter()).all(|(&a, &b)| close(a, b)),
                    "{xs:?}: input gradient of sample {i}"
                );
                dw += g.get(one.id("w").unwrap()).unwrap();
                db += g.get(one.id("b").unwrap()).unwrap();
            }
            for (name, got, id) in [("weight", &dw, w), ("bias", &db, b)] {
                let want = whole.get(id).unwrap();
                assert!(
                    got.iter()
                        .zip(want.iter())
                        .all(|(&a, &b)| (a - b).abs() <= 1e-10 * (1.0 + b.abs())),
                    "{xs:?}: {name} gradient"
                );
            }
        }
    }
}
