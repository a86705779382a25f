//! Convolution over NCHW images with PyTorch's functional name and argument meanings:
//! `conv2d` (stride, padding, dilation, groups); pooling is in `pooling.rs`.
//!
//! `conv2d` dispatches: 3x3 kernels at stride 1 with enough channels go to Winograd's
//! F(2x2, 3x3) (`winograd.rs`), every other convolution to im2col and GEMMs (`lowered.rs`).

use ndarray::ArrayD;
use smallvec::{SmallVec, smallvec};

use crate::{Float, Var, pool};

mod columns;
mod lanes;
mod lowered;
mod tiles;
mod winograd;
use columns::lane_sum;

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
        let p = g.positions();
        let xs = contiguous(&x);
        let ws = contiguous(&w);
        let bias_value = bias.map(|b| b.value());
        let bias_cow = bias_value.as_ref().map(|b| contiguous(b));
        let bias_s = bias_cow.as_deref();
        // A 3x3 kernel at stride 1 with enough channels: Winograd's F(2x2, 3x3); every
        // other convolution lowered to matrix products (im2col).
        let wino = winograd::applies(&g, o, groups);
        let out = if wino {
            winograd::forward(&xs, &ws, bias_s, &g, o)
        } else {
            lowered::forward(&xs, &ws, bias_s, &g, o, groups)
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
                    lowered::backward(&gs, &xs, &ws, &g, o, groups, needs)
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
