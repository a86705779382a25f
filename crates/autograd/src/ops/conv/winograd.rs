//! 3x3 convolutions at stride 1 by Winograd's minimal filtering F(2x2, 3x3) (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! Each 2x2 tile of a channel's output is `A^T [(G w G^T) . (B^T d B)] A`, where `d` is the
//! 4x4 input patch under the tile and `.` multiplies element by element. Summed over input
//! channels, each of the 16 elements of that 4x4 product is one matrix product (output
//! channels x input channels times input channels x tiles): 16 multiplications per tile and
//! channel pair instead of 36. W3's second convolution (32 -> 64 channels on 13x13) does
//! 1.9x fewer of them, its im2col and col2im are gone, and the transforms are additions.
//!
//! The backward is the exact adjoint of this forward, in the same transformed space: the
//! output gradient goes through `A (.) A^T` into each element's product, the input's
//! gradient through `B (.) B^T` and the weight's through `G^T (.) G`. So the gradients are
//! those of the function the forward computes, rounding included, and need no im2col.
//!
//! The values differ from im2col's by rounding only (a few ulp: the transforms' sums are
//! short, their coefficients 1 and 1/2). One difference is not rounding: an infinite input
//! gives NaN (mostly) where the direct sum gives an infinity, since the transforms subtract
//! neighbouring values. Both are non-finite, which training reports the same way.

use ndarray::{ArrayD, ArrayView2, ArrayViewMut2};

use super::Geometry;
use super::columns::scratch_vec;
use super::tiles::{
    Tiles, skewed, transform_input, transform_output_grad, transform_weight,
    untransform_input_grad, untransform_output, untransform_weight_grad,
};
use crate::gemm::gemm;
use crate::{Float, pool};

/// Input and output channels from which the 16 products are wide enough to beat im2col:
/// a first layer (1 or 3 channels) keeps its single GEMM.
const MIN_CHANNELS: usize = 16;

/// About how many elements the transformed input and the 16 products of one block of
/// samples hold: they stay in a core's L2 cache between the transforms and the GEMMs
/// (W3's second convolution: 4 samples a block).
const BLOCK_ELEMENTS: usize = 1 << 18;

/// Whether [`forward`] and [`backward`] compute this convolution: a 3x3 kernel at stride and
/// dilation 1, one group, and enough channels both ways.
pub(super) fn applies(g: &Geometry, o: usize, groups: usize) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.stride.0 == 1
        && g.stride.1 == 1
        && g.dilation.0 == 1
        && g.dilation.1 == 1
        && groups == 1
        && g.c >= MIN_CHANNELS
        && o >= MIN_CHANNELS
}

/// Samples per block for `c` input and `o` output channels.
fn block_samples(c: usize, o: usize, t: &Tiles, n: usize) -> usize {
    (BLOCK_ELEMENTS / (16 * (c + o) * t.per_sample()).max(1)).clamp(1, n.max(1))
}

/// The 16 `rows x cols` matrices one after the other in `buf`, `skewed(rows, cols)` apart.
fn matrix<T: Float>(buf: &[T], xi: usize, rows: usize, cols: usize) -> ArrayView2<'_, T> {
    let at = xi * skewed(rows, cols);
    ArrayView2::from_shape((rows, cols), &buf[at..][..rows * cols]).expect("sized")
}

fn matrix_mut<T: Float>(
    buf: &mut [T],
    xi: usize,
    rows: usize,
    cols: usize,
) -> ArrayViewMut2<'_, T> {
    let at = xi * skewed(rows, cols);
    ArrayViewMut2::from_shape((rows, cols), &mut buf[at..][..rows * cols]).expect("sized")
}

/// The forward: `[n, o, oh, ow]` from the input `[n, c, h, w]`, the weight `[o, c, 3, 3]` and
/// an optional bias `[o]`, all contiguous.
pub(super) fn forward<T: Float>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: &Geometry,
    o: usize,
) -> ArrayD<T> {
    let c = g.c;
    let t = Tiles::new(g);
    let per = t.per_sample();
    let bs = block_samples(c, o, &t, g.n);
    let mut out = pool::scratch::<T>(&[g.n, o, g.oh, g.ow]);
    let out_s = out.as_slice_mut().expect("pooled storage is contiguous");
    let ws = skewed(o, c);
    let mut u = scratch_vec::<T>(16 * ws);
    transform_weight(w, o, c, false, &mut u);
    let mut scratch = scratch_vec::<T>(t.scratch(bs));
    let mut v = scratch_vec::<T>(16 * skewed(c, bs * per));
    let mut m = scratch_vec::<T>(16 * skewed(o, bs * per));
    for s0 in (0..g.n).step_by(bs) {
        let samples = s0..(s0 + bs).min(g.n);
        let cols = samples.len() * per;
        transform_input(x, g, &t, samples.clone(), &mut scratch, &mut v);
        for xi in 0..16 {
            // u holds each [o, c] matrix column-major: its transpose's view is row-major.
            let a = ArrayView2::from_shape((c, o), &u[xi * ws..][..c * o]).expect("sized");
            let b = matrix(&v, xi, c, cols);
            gemm(
                T::one(),
                &a.t(),
                &b,
                T::zero(),
                &mut matrix_mut(&mut m, xi, o, cols),
            );
        }
        untransform_output(&m, g, &t, o, samples, bias, &mut scratch, out_s);
    }
    for s in [u, scratch, v, m] {
        pool::recycle_vec(s);
    }
    out
}

/// The backward: the input's gradient `[n, c, h, w]` and the weight's `[o, c, 3, 3]` (each
/// only where asked for) from the output's gradient `gy` `[n, o, oh, ow]`.
pub(super) fn backward<T: Float>(
    gy: &[T],
    x: &[T],
    w: &[T],
    g: &Geometry,
    o: usize,
    (need_x, need_w): (bool, bool),
) -> (Option<ArrayD<T>>, Option<ArrayD<T>>) {
    let c = g.c;
    let t = Tiles::new(g);
    let per = t.per_sample();
    let bs = block_samples(c, o, &t, g.n);
    let mut dx = need_x.then(|| pool::full::<T>(&[g.n, c, g.h, g.w], T::zero()));
    let ws = skewed(o, c);
    let mut du = scratch_vec::<T>(if need_w { 16 * ws } else { 0 });
    du.fill(T::zero());
    let mut ut = scratch_vec::<T>(if need_x { 16 * ws } else { 0 });
    if need_x {
        transform_weight(w, o, c, true, &mut ut);
    }
    let mut scratch = scratch_vec::<T>(t.scratch(bs));
    let mut v = scratch_vec::<T>(16 * skewed(c, bs * per));
    let mut dm = scratch_vec::<T>(16 * skewed(o, bs * per));
    for s0 in (0..g.n).step_by(bs) {
        let samples = s0..(s0 + bs).min(g.n);
        let cols = samples.len() * per;
        transform_output_grad(gy, g, &t, o, samples.clone(), &mut scratch, &mut dm);
        if need_w {
            // dU += dM V^T, each [o, c] row-major (`gemm` transposes both operands).
            transform_input(x, g, &t, samples.clone(), &mut scratch, &mut v);
            for xi in 0..16 {
                let (a, b) = (matrix(&dm, xi, o, cols), matrix(&v, xi, c, cols));
                let mut d =
                    ArrayViewMut2::from_shape((o, c), &mut du[xi * ws..][..o * c]).expect("sized");
                gemm(T::one(), &a, &b.t(), T::one(), &mut d);
            }
        }
        if let Some(dx) = &mut dx {
            // dV = U^T dM, into v's storage (its transformed input is used up).
            for xi in 0..16 {
                let a = ArrayView2::from_shape((o, c), &ut[xi * ws..][..o * c]).expect("sized");
                let b = matrix(&dm, xi, o, cols);
                gemm(
                    T::one(),
                    &a.t(),
                    &b,
                    T::zero(),
                    &mut matrix_mut(&mut v, xi, c, cols),
                );
            }
            let dxs = dx.as_slice_mut().expect("pooled storage is contiguous");
            untransform_input_grad(&v, g, &t, samples, &mut scratch, dxs);
        }
    }
    let dw = need_w.then(|| {
        let mut dw = pool::scratch::<T>(&[o, c, 3, 3]);
        let dws = dw.as_slice_mut().expect("pooled storage is contiguous");
        untransform_weight_grad(&du, o, c, dws);
        dw
    });
    for s in [du, ut, scratch, v, dm] {
        pool::recycle_vec(s);
    }
    (dx, dw)
}

#[cfg(test)]
mod tests {
    use super::super::{Geometry, Pair};
    use crate::ops::test_util::{check, sample};
    use crate::{ParamStore, Var, value_and_grad};
    use ndarray::{ArrayD, IxDyn};

    /// The convolution and the gradients of `sum(y * r)` by the definition's loops.
    fn reference(
        x: &ArrayD<f64>,
        w: &ArrayD<f64>,
        b: &[f64],
        pad: (usize, usize),
        r: &ArrayD<f64>,
    ) -> (ArrayD<f64>, ArrayD<f64>, ArrayD<f64>) {
        let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let o = w.shape()[0];
        let (oh, ow) = (h + 2 * pad.0 - 2, wd + 2 * pad.1 - 2);
        let mut y = ArrayD::zeros(IxDyn(&[n, o, oh, ow]));
        let (mut dx, mut dw) = (ArrayD::zeros(x.raw_dim()), ArrayD::zeros(w.raw_dim()));
        for s in 0..n {
            for oi in 0..o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b[oi];
                        let rv = r[[s, oi, oy, ox]];
                        for ci in 0..c {
                            for ki in 0..3 {
                                for kj in 0..3 {
                                    let (iy, ix) = (oy + ki, ox + kj);
                                    if iy < pad.0
                                        || ix < pad.1
                                        || iy - pad.0 >= h
                                        || ix - pad.1 >= wd
                                    {
                                        continue;
                                    }
                                    let (iy, ix) = (iy - pad.0, ix - pad.1);
                                    acc += x[[s, ci, iy, ix]] * w[[oi, ci, ki, kj]];
                                    dx[[s, ci, iy, ix]] += rv * w[[oi, ci, ki, kj]];
                                    dw[[oi, ci, ki, kj]] += rv * x[[s, ci, iy, ix]];
                                }
                            }
                        }
                        y[[s, oi, oy, ox]] = acc;
                    }
                }
            }
        }
        (y, dx, dw)
    }

    fn assert_close(what: &str, got: &ArrayD<f64>, want: &ArrayD<f64>) {
        assert_eq!(got.shape(), want.shape(), "{what}");
        for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
            assert!(
                (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }

    /// Values and both gradients equal the definition's for odd and even output sides (the
    /// last tiles half outside), paddings 0 to 2, and batches of several blocks.
    #[test]
    fn winograd_equals_the_direct_sums() {
        // [n, c, h, w], o, padding
        let cases: [(&[usize], usize, (usize, usize)); 6] = [
            (&[2, 16, 7, 6], 17, (1, 0)),
            (&[3, 16, 5, 5], 16, (0, 0)),
            (&[1, 20, 4, 9], 16, (2, 1)),
            (&[14, 16, 13, 13], 64, (0, 0)), // 5 samples a block: 3 blocks
            (&[2, 16, 3, 3], 16, (0, 2)),
            (&[1, 16, 2, 3], 16, (3, 4)), // whole rows and tiles in the padding
        ];
        for (xs, o, pad) in cases {
            let g = Geometry::new("t", xs, Pair(3, 3), Pair(1, 1), Pair::from(pad), Pair(1, 1));
            assert!(super::applies(&g, o, 1), "{xs:?} takes the Winograd path");
            let mut params = ParamStore::<f64>::new();
            let xv = sample(xs, 61);
            let wv = sample(&[o, xs[1], 3, 3], 62);
            let bv = sample(&[o], 63);
            let x = params.insert("x", xv.clone()).unwrap();
            let w = params.insert("w", wv.clone()).unwrap();
            let b = params.insert("b", bv.clone()).unwrap();
            let r = sample(&[xs[0], o, g.oh, g.ow], 64);
            let mut out = None;
            let (_, grads) = value_and_grad(|tape| {
                let y = tape.param(&params, x).conv2d(
                    tape.param(&params, w),
                    Some(tape.param(&params, b)),
                    1,
                    pad,
                    1,
                    1,
                );
                out = Some(y.value().as_ref().clone());
                (y * tape.constant(r.clone())).sum()
            });
            let (y, dx, dw) = reference(&xv, &wv, bv.as_slice().unwrap(), pad, &r);
            assert_close("output", out.as_ref().unwrap(), &y);
            assert_close("input gradient", grads.get(x).unwrap(), &dx);
            assert_close("weight gradient", grads.get(w).unwrap(), &dw);
        }
    }

    #[test]
    fn gradcheck_winograd_convolution() {
        let x = sample(&[2, 16, 5, 4], 71);
        let w = sample(&[16, 16, 3, 3], 72);
        let b = sample(&[16], 73);
        check(
            |v: &[Var<'_, f64>]| {
                v[0].conv2d(v[1], Some(v[2]), 1, (1, 0), 1, 1)
                    .square()
                    .sum()
            },
            &[x, w, b],
        );
    }

    /// f32 against f64: the transforms' rounding stays at the level of the direct sum's.
    #[test]
    fn winograd_in_f32_is_as_accurate_as_a_direct_sum() {
        let xs = [4, 32, 13, 13];
        let xv = sample(&xs, 81);
        let wv = sample(&[64, 32, 3, 3], 82);
        let r = sample(&[4, 64, 11, 11], 83);
        let (y, _, _) = reference(&xv, &wv, &[0.0; 64], (0, 0), &r);
        let tape = crate::Tape::<f32>::no_grad();
        let y32 = tape.constant(xv.mapv(|v| v as f32)).conv2d(
            tape.constant(wv.mapv(|v| v as f32)),
            None,
            1,
            0,
            1,
            1,
        );
        let scale = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = y32
            .value()
            .iter()
            .zip(y.iter())
            .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
        // A sum of 288 products of values about 1 in f32: a few times 1e-7 of the scale.
        assert!(
            worst <= 2e-6 * scale,
            "worst error {worst} at scale {scale}"
        );
    }

    /// An infinite input makes every output whose window holds it non-finite (NaN, mostly:
    /// the transforms subtract it from itself), as the docs say; the other outputs of its
    /// tiles stay exact.
    #[test]
    fn an_infinite_input_spoils_only_the_outputs_whose_windows_hold_it() {
        let tape = crate::Tape::<f64>::no_grad();
        let mut x = ArrayD::from_elem(vec![1, 16, 6, 6], 1.0);
        x[[0, 3, 2, 2]] = f64::INFINITY;
        let w = ArrayD::from_elem(vec![16, 16, 3, 3], 0.5);
        let y = tape.constant(x).conv2d(tape.constant(w), None, 1, 0, 1, 1);
        let y = y.value();
        let mut nans = 0;
        for oy in 0..4 {
            for ox in 0..4 {
                let v = y[[0, 5, oy, ox]];
                if oy <= 2 && ox <= 2 {
                    assert!(!v.is_finite(), "({oy}, {ox}) sees the infinity: {v}");
                    nans += usize::from(v.is_nan());
                } else {
                    assert_eq!(v, 72.0, "({oy}, {ox}) does not see it");
                }
            }
        }
        assert!(nans > 0, "the direct sum would give only infinities");
    }
}
