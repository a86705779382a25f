//! Activations: `relu`, `leaky_relu`, `sigmoid`, `tanh`, `gelu` (exact, erf-based, as
//! PyTorch's default), numerically stable `softmax` / `log_softmax`, and seeded `dropout`.

use ndarray::{ArrayD, Axis, Zip};
use rand::Rng;
use smallvec::smallvec;

use super::{check_axis, combine, zip_map};
use crate::{Float, Var, pool};

/// `x - max(x)` along `axis`: the shift that keeps `exp` from overflowing.
fn shifted<T: Float>(x: &ArrayD<T>, axis: usize) -> ArrayD<T> {
    let max = x
        .map_axis(Axis(axis), |lane| {
            lane.iter().copied().fold(T::neg_infinity(), T::max)
        })
        .insert_axis(Axis(axis));
    // A lane of all -inf would give -inf - -inf = NaN; shift it by 0 instead.
    let max = max.mapv(|m| if m.is_finite() { m } else { T::zero() });
    x - &max
}

/// `d = 0` where `y <= 0`: a select rather than a conditional store, over two slices passed
/// as separate arguments (so known not to overlap): vector code. (A `Zip` with a branch was
/// 5% of a W1 step, and the same loop over slices of one function 2% of a W3 step.)
#[inline(always)]
fn relu_mask<T: Float>(ds: &mut [T], ys: &[T]) {
    for (d, &y) in ds.iter_mut().zip(ys) {
        *d = if y > T::zero() { *d } else { T::zero() };
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// `max(x, 0)`; the gradient at 0 is 0, as in PyTorch.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr1};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(arr1(&[-1.0, 0.0, 2.0]).into_dyn());
    /// assert_eq!(x.relu().value().as_slice().unwrap(), &[0.0, 0.0, 2.0]);
    /// ```
    pub fn relu(self) -> Var<'t, T> {
        let value = pool::map(&self.value(), |v| if v > T::zero() { v } else { T::zero() });
        // Backward masks the incoming gradient in place.
        self.tape.push_op("relu", &[self], value, |g, out, _, _| {
            let mut d = pool::steal(g);
            match (d.as_slice_mut(), out.as_slice()) {
                (Some(ds), Some(ys)) if ds.len() == ys.len() => relu_mask(ds, ys),
                _ => Zip::from(&mut d).and(out).for_each(|d, &y| {
                    *d = if y > T::zero() { *d } else { T::zero() };
                }),
            }
            smallvec![Some(d)]
        })
    }

    /// `x` where positive, `slope * x` elsewhere (PyTorch's default slope is 0.01).
    pub fn leaky_relu(self, slope: T) -> Var<'t, T> {
        let value = pool::map(&self.value(), |v| if v > T::zero() { v } else { v * slope });
        self.tape
            .push_op("leaky_relu", &[self], value, move |g, _, inputs, _| {
                let d = combine(
                    g,
                    inputs[0],
                    |d, x| if x > T::zero() { d } else { d * slope },
                );
                smallvec![Some(d)]
            })
    }

    /// The logistic function `1 / (1 + e^-x)`, evaluated without overflow.
    pub fn sigmoid(self) -> Var<'t, T> {
        let value = pool::map(&self.value(), sigmoid);
        self.tape
            .push_op("sigmoid", &[self], value, |g, out, _, _| {
                smallvec![Some(combine(g, out, |d, y| d * (y * (T::one() - y))))]
            })
    }

    /// Hyperbolic tangent.
    pub fn tanh(self) -> Var<'t, T> {
        let value = pool::map(&self.value(), T::tanh);
        self.tape.push_op("tanh", &[self], value, |g, out, _, _| {
            smallvec![Some(combine(g, out, |d, y| d * (T::one() - y * y)))]
        })
    }

    /// GELU, exact: `x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))` (PyTorch's `approximate='none'`).
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr1};
    /// let tape = Tape::<f64>::no_grad();
    /// let y = tape.constant(arr1(&[1.0]).into_dyn()).gelu().item();
    /// assert!((y - 0.8413447460685429).abs() < 1e-12);
    /// ```
    pub fn gelu(self) -> Var<'t, T> {
        let half = T::of(0.5);
        let inv_sqrt2 = T::of(std::f64::consts::FRAC_1_SQRT_2);
        let value = pool::map(&self.value(), |v| {
            half * v * (T::one() + (v * inv_sqrt2).erf())
        });
        self.tape
            .push_op("gelu", &[self], value, |g, _, inputs, _| {
                let half = T::of(0.5);
                let inv_sqrt2 = T::of(std::f64::consts::FRAC_1_SQRT_2);
                let inv_sqrt_2pi =
                    T::of(0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
                let d = combine(g, inputs[0], |d, x| {
                    let cdf = half * (T::one() + (x * inv_sqrt2).erf());
                    let pdf = inv_sqrt_2pi * (-half * x * x).exp();
                    d * (cdf + x * pdf)
                });
                smallvec![Some(d)]
            })
    }

    /// Softmax along `axis`, shifted by the maximum so large logits do not overflow.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr2};
    /// let tape = Tape::<f64>::no_grad();
    /// let p = tape.constant(arr2(&[[1e4, 1e4]]).into_dyn()).softmax(1);
    /// assert_eq!(p.value().as_slice().unwrap(), &[0.5, 0.5]);
    /// ```
    pub fn softmax(self, axis: usize) -> Var<'t, T> {
        let x = self.value();
        check_axis("softmax", axis, x.shape());
        let mut e = shifted(&x, axis).mapv_into(T::exp);
        let s = e.sum_axis(Axis(axis)).insert_axis(Axis(axis));
        e /= &s;
        self.tape.push_op("softmax", &[self], e, move |g, y, _, _| {
            // dx = y * (g - sum(g * y))
            let gy = &*g * y;
            let s = gy.sum_axis(Axis(axis)).insert_axis(Axis(axis));
            smallvec![Some(gy - &(y * &s))]
        })
    }

    /// `log(softmax(x))` along `axis`, computed as `x - max - log(sum(exp(x - max)))`.
    pub fn log_softmax(self, axis: usize) -> Var<'t, T> {
        let x = self.value();
        check_axis("log_softmax", axis, x.shape());
        let z = shifted(&x, axis);
        let lse = z
            .mapv(T::exp)
            .sum_axis(Axis(axis))
            .mapv_into(T::ln)
            .insert_axis(Axis(axis));
        let value = z - &lse;
        self.tape
            .push_op("log_softmax", &[self], value, move |g, out, _, _| {
                // dx = g - softmax * sum(g)
                let s = g.sum_axis(Axis(axis)).insert_axis(Axis(axis));
                let mut d = g.clone();
                Zip::from(&mut d)
                    .and(out)
                    .and_broadcast(&s)
                    .for_each(|d, &lp, &s| *d -= lp.exp() * s);
                smallvec![Some(d)]
            })
    }

    /// Inverted dropout: zeroes each element with probability `p` and scales the rest by
    /// `1 / (1 - p)`, drawing the mask from `rng`. Use only while training.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::ArrayD};
    /// use rand::SeedableRng;
    /// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// let tape = Tape::<f32>::no_grad();
    /// let y = tape.constant(ArrayD::ones(vec![1000])).dropout(0.5, &mut rng);
    /// assert!(y.value().iter().all(|&v| v == 0.0 || v == 2.0));
    /// ```
    pub fn dropout<R: Rng + ?Sized>(self, p: f64, rng: &mut R) -> Var<'t, T> {
        assert!(
            (0.0..=1.0).contains(&p),
            "dropout: probability {p} is not in [0, 1]"
        );
        let x = self.value();
        let scale = if p < 1.0 {
            T::of(1.0 / (1.0 - p))
        } else {
            T::zero()
        };
        let mask = pool::from_iter(
            x.shape(),
            (0..x.len()).map(|_| {
                if rng.random::<f64>() >= p {
                    scale
                } else {
                    T::zero()
                }
            }),
        );
        let value = zip_map(&x, &mask, |v, m| v * m);
        self.tape
            .push_op("dropout", &[self], value, move |g, _, _, _| {
                let d = combine(g, &mask, |d, m| d * m);
                pool::recycle(mask);
                smallvec![Some(d)]
            })
    }
}

pub(crate) fn sigmoid<T: Float>(v: T) -> T {
    if v >= T::zero() {
        T::one() / (T::one() + (-v).exp())
    } else {
        let e = v.exp();
        e / (T::one() + e)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{arr1, arr2};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use crate::ops::test_util::{assert_close, check, eval, sample};

    #[test]
    fn activation_values() {
        let x = arr1(&[-2.0, -0.5, 0.0, 1.5]).into_dyn();
        let ins = [x];
        assert_close(
            &eval(|v| v[0].relu(), &ins),
            &arr1(&[0.0, 0.0, 0.0, 1.5]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[0].leaky_relu(0.1), &ins),
            &arr1(&[-0.2, -0.05, 0.0, 1.5]).into_dyn(),
            1e-15,
        );
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        assert_close(&eval(|v| v[0].sigmoid(), &ins), &ins[0].mapv(sig), 1e-15);
        assert_close(&eval(|v| v[0].tanh(), &ins), &ins[0].mapv(f64::tanh), 1e-15);
        // torch.nn.functional.gelu(torch.tensor([-2.0, -0.5, 0.0, 1.5], dtype=torch.float64))
        assert_close(
            &eval(|v| v[0].gelu(), &ins),
            &arr1(&[
                -0.04550026389635842,
                -0.15426876936299344,
                0.0,
                1.399789198096713,
            ])
            .into_dyn(),
            1e-12,
        );
    }

    #[test]
    fn softmax_values_and_stability() {
        let x = arr2(&[[1.0, 2.0, 3.0], [1e4, 1e4 + 1.0, -1e4]]).into_dyn();
        let ins = [x];
        let p = eval(|v| v[0].softmax(1), &ins);
        let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
        let s: f64 = e.iter().sum();
        let row1 = [
            1.0 / (1.0 + 1f64.exp()),
            1f64.exp() / (1.0 + 1f64.exp()),
            0.0,
        ];
        assert_close(
            &p,
            &arr2(&[[e[0] / s, e[1] / s, e[2] / s], row1]).into_dyn(),
            1e-12,
        );
        let lp = eval(|v| v[0].log_softmax(1), &ins);
        assert!(lp.iter().all(|v| v.is_finite()), "{lp}");
        assert!((lp[[1, 0]] - (-(1.0 + 1f64.exp()).ln())).abs() < 1e-12);
        assert!((lp[[1, 2]] - (-2e4 - 1.0 - (1.0 + (-1f64).exp()).ln())).abs() < 1e-9);
        assert_close(&lp.mapv(f64::exp), &p, 1e-12);
    }

    #[test]
    fn gradcheck_activations() {
        // Keep samples away from the kinks of relu / leaky_relu.
        let x = [sample(&[3, 4], 1).mapv(|v| if v.abs() < 0.05 { v + 0.2 } else { v })];
        check(|v| v[0].relu(), &x);
        check(|v| v[0].leaky_relu(0.01), &x);
        check(|v| v[0].sigmoid(), &x);
        check(|v| v[0].tanh(), &x);
        check(|v| v[0].gelu(), &x);
        for axis in 0..2 {
            check(|v| v[0].softmax(axis), &x);
            check(|v| v[0].log_softmax(axis), &x);
        }
    }

    #[test]
    fn gradcheck_dropout_with_a_fixed_mask() {
        // The mask is redrawn on every evaluation unless the rng is reseeded, so reseed.
        let x = [sample(&[4, 5], 2)];
        check(
            |v| {
                let mut rng = ChaCha8Rng::seed_from_u64(3);
                v[0].dropout(0.3, &mut rng)
            },
            &x,
        );
    }

    #[test]
    fn dropout_scales_and_keeps_the_expectation() {
        let rng = ChaCha8Rng::seed_from_u64(7);
        let x = [ndarray::ArrayD::<f64>::ones(vec![100_000])];
        let y = eval(|v| v[0].dropout(0.25, &mut rng.clone()), &x);
        let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / 1e5;
        assert!((zeros - 0.25).abs() < 0.01, "dropped fraction {zeros}");
        assert!(
            y.iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-12)
        );
        assert!((y.mean().unwrap() - 1.0).abs() < 0.02);
        let z = eval(|v| v[0].dropout(0.0, &mut rng.clone()), &x);
        assert_eq!(z, x[0]);
    }
}
