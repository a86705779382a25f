//! Batch normalisation with PyTorch's `F.batch_norm` semantics, as one fused op: a pass for
//! the statistics and one for the output forward, and the closed-form gradient backward.

use ndarray::{ArrayD, IxDyn};

use crate::{Float, Var};

/// The new running statistics a training-mode [`Var::batch_norm`] computes, per channel.
///
/// ```
/// use gradus_autograd::{Tape, ndarray::{ArrayD, arr2}};
/// let tape = Tape::<f64>::no_grad();
/// let x = tape.constant(arr2(&[[1.0], [3.0]]).into_dyn());
/// let (mean, var) = (ArrayD::zeros(vec![1]), ArrayD::ones(vec![1]));
/// let (_, stats) = x.batch_norm(&mean, &var, None, None, true, 0.1, 1e-5);
/// let stats = stats.unwrap();
/// assert!((stats.mean[0] - 0.2).abs() < 1e-12); // 0.9 * 0 + 0.1 * 2
/// assert!((stats.var[0] - 1.1).abs() < 1e-12);  // 0.9 * 1 + 0.1 * 2 (unbiased)
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RunningStats<T: Float> {
    /// `(1 - momentum) * running_mean + momentum * batch_mean`.
    pub mean: ArrayD<T>,
    /// `(1 - momentum) * running_var + momentum * unbiased_batch_var`.
    pub var: ArrayD<T>,
}

impl<'t, T: Float> Var<'t, T> {
    /// Batch normalisation over an `[n, c]` or `[n, c, ...]` input, per channel `c`
    /// (PyTorch's `F.batch_norm`). In training it normalises with the batch's mean and biased
    /// variance and returns the updated running statistics (the variance there is unbiased);
    /// in evaluation it normalises with `running_mean` and `running_var` and returns `None`.
    /// `weight` and `bias` (`[c]`) scale and shift the result.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::{ArrayD, arr1, arr2}};
    /// let tape = Tape::<f64>::no_grad();
    /// let x = tape.constant(arr2(&[[1.0, 10.0], [3.0, 30.0]]).into_dyn());
    /// let (mean, var) = (ArrayD::zeros(vec![2]), ArrayD::ones(vec![2]));
    /// let (y, stats) = x.batch_norm(&mean, &var, None, None, true, 0.1, 0.0);
    /// assert_eq!(y.value().as_slice().unwrap(), &[-1.0, -1.0, 1.0, 1.0]);
    /// let stats = stats.unwrap();
    /// assert_eq!(stats.mean, arr1(&[0.2, 2.0]).into_dyn());            // 0.9 * 0 + 0.1 * mean
    /// assert!((stats.var[[0]] - (0.9 + 0.1 * 2.0)).abs() < 1e-12);     // unbiased variance 2
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        self,
        running_mean: &ArrayD<T>,
        running_var: &ArrayD<T>,
        weight: Option<Var<'t, T>>,
        bias: Option<Var<'t, T>>,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> (Var<'t, T>, Option<RunningStats<T>>) {
        let shape = self.shape();
        assert!(
            shape.len() >= 2,
            "batch_norm: expected an [n, c, ...] input, got shape {shape:?}"
        );
        let c = shape[1];
        for (what, s) in [
            ("running_mean", running_mean.shape()),
            ("running_var", running_var.shape()),
        ] {
            assert!(
                s == [c],
                "batch_norm: {what} of shape {s:?} for an input of shape {shape:?} ({c} channels)"
            );
        }
        for (what, v) in [("weight", weight), ("bias", bias)] {
            if let Some(v) = v {
                assert!(
                    v.shape() == [c],
                    "batch_norm: {what} of shape {:?} for an input of shape {shape:?} ({c} channels)",
                    v.shape()
                );
            }
        }
        let n = shape[0];
        let inner: usize = shape[2..].iter().product();
        let per_channel = n * inner;
        if training {
            assert!(
                per_channel > 1,
                "batch_norm: expected more than 1 value per channel when training, got input shape {shape:?}"
            );
        }
        let x = self.value();
        let xs = slice_of(&x);
        let eps = T::of(eps);
        let count = T::of(per_channel as f64);
        // The elements of channel `ch`: `inner` contiguous values in each of the n samples.
        let lanes =
            move |ch: usize| (0..n).map(move |ni| (ni * c + ch) * inner..(ni * c + ch + 1) * inner);
        let mut mean = vec![T::zero(); c];
        let mut invstd = vec![T::zero(); c];
        let mut batch_var = vec![T::zero(); c];
        for ch in 0..c {
            let m = if training {
                lanes(ch).flat_map(|r| xs[r].iter().copied()).sum::<T>() / count
            } else {
                running_mean[[ch]]
            };
            let var = if training {
                let v = lanes(ch)
                    .flat_map(|r| xs[r].iter().copied())
                    .map(|v| (v - m) * (v - m))
                    .sum::<T>()
                    / count;
                batch_var[ch] = v;
                v
            } else {
                running_var[[ch]]
            };
            mean[ch] = m;
            invstd[ch] = T::one() / (var + eps).sqrt();
        }
        let gamma: Vec<T> =
            weight.map_or(vec![T::one(); c], |w| w.value().iter().copied().collect());
        let beta: Vec<T> = bias.map_or(vec![T::zero(); c], |b| b.value().iter().copied().collect());
        let mut out = crate::pool::scratch::<T>(&shape);
        {
            let o = out.as_slice_mut().expect("pooled storage is contiguous");
            for ch in 0..c {
                let (m, s, g, b) = (mean[ch], invstd[ch], gamma[ch], beta[ch]);
                for r in lanes(ch) {
                    for (o, &v) in o[r.clone()].iter_mut().zip(&xs[r]) {
                        *o = (v - m) * s * g + b;
                    }
                }
            }
        }
        let stats = training.then(|| {
            let m = T::of(momentum);
            let unbias = T::of(per_channel as f64 / (per_channel - 1) as f64);
            RunningStats {
                mean: ArrayD::from_shape_fn(IxDyn(&[c]), |i| {
                    running_mean[[i[0]]] * (T::one() - m) + mean[i[0]] * m
                }),
                var: ArrayD::from_shape_fn(IxDyn(&[c]), |i| {
                    running_var[[i[0]]] * (T::one() - m) + batch_var[i[0]] * m * unbias
                }),
            }
        });
        let operands: Vec<Var<'t, T>> = std::iter::once(self).chain(weight).chain(bias).collect();
        let (has_weight, has_bias) = (weight.is_some(), bias.is_some());
        let y =
            self.tape.push_op(
                "batch_norm",
                &operands,
                out,
                move |grad, _, inputs, needs| {
                    let x = inputs[0];
                    let xs = slice_of(x);
                    let gs = slice_of(grad);
                    let mut dx = needs[0].then(|| crate::pool::full::<T>(x.shape(), T::zero()));
                    let mut dgamma = vec![T::zero(); c];
                    let mut dbeta = vec![T::zero(); c];
                    for ch in 0..c {
                        let (m, s) = (mean[ch], invstd[ch]);
                        // Sums over the channel: of the gradient, and of the gradient times x-hat.
                        let (mut sum_g, mut sum_gx) = (T::zero(), T::zero());
                        for r in lanes(ch) {
                            for (&g, &v) in gs[r.clone()].iter().zip(&xs[r]) {
                                sum_g += g;
                                sum_gx += g * (v - m) * s;
                            }
                        }
                        dgamma[ch] = sum_gx;
                        dbeta[ch] = sum_g;
                        if let Some(dx) = &mut dx {
                            let d = dx.as_slice_mut().expect("pooled storage is contiguous");
                            let k = gamma[ch] * s;
                            for r in lanes(ch) {
                                for ((d, &g), &v) in
                                    d[r.clone()].iter_mut().zip(&gs[r.clone()]).zip(&xs[r])
                                {
                                    *d = if training {
                                        // d/dx of (x - mean) / std with the batch's mean and std.
                                        k * (g - (sum_g + (v - m) * s * sum_gx) / count)
                                    } else {
                                        k * g
                                    };
                                }
                            }
                        }
                    }
                    let mut grads: crate::tape::Grads<T> = smallvec::smallvec![dx];
                    if has_weight {
                        grads.push(needs[1].then(|| {
                            ArrayD::from_shape_vec(IxDyn(&[c]), dgamma).expect("c values")
                        }));
                    }
                    if has_bias {
                        grads.push(needs[grads.len()].then(|| {
                            ArrayD::from_shape_vec(IxDyn(&[c]), dbeta).expect("c values")
                        }));
                    }
                    grads
                },
            );
        (y, stats)
    }
}

/// The elements in row-major order, borrowed when the array is contiguous.
fn slice_of<T: Float>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => s.into(),
        None => a.iter().copied().collect::<Vec<T>>().into(),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::ArrayD;

    use crate::Var;
    use crate::ops::test_util::{check, sample};

    #[test]
    fn gradcheck_batch_norm_in_training_and_evaluation() {
        let x = sample(&[4, 3, 2, 2], 41);
        let w = sample(&[3], 42);
        let b = sample(&[3], 43);
        let rm = sample(&[3], 44);
        let rv = sample(&[3], 45).mapv(|v| v.abs() + 0.5);
        let r = sample(&[4, 3, 2, 2], 46);
        for training in [true, false] {
            check(
                |v: &[Var<'_, f64>]| {
                    let (y, _) =
                        v[0].batch_norm(&rm, &rv, Some(v[1]), Some(v[2]), training, 0.1, 1e-5);
                    (y * v[3]).sum()
                },
                &[x.clone(), w.clone(), b.clone(), r.clone()],
            );
        }
        let x2 = sample(&[5, 3], 47);
        check(
            |v: &[Var<'_, f64>]| {
                let (y, _) = v[0].batch_norm(&rm, &rv, None, None, true, 0.1, 1e-5);
                (y * y * v[0]).sum()
            },
            &[x2],
        );
    }

    #[test]
    #[should_panic(expected = "batch_norm: expected more than 1 value per channel when training")]
    fn one_value_per_channel_cannot_train() {
        let tape = crate::Tape::<f32>::no_grad();
        let x = tape.constant(ArrayD::zeros(vec![1, 3]));
        let s = ArrayD::zeros(vec![3]);
        let _ = x.batch_norm(&s, &s, None, None, true, 0.1, 1e-5);
    }
}
