//! Batch normalisation, composed from the reductions and arithmetic (so its gradient is theirs
//! and needs no rule of its own), with PyTorch's `F.batch_norm` semantics.

use ndarray::{ArrayD, IxDyn};

use crate::{Float, Var};

/// The new running statistics a training-mode [`Var::batch_norm`] computes, per channel.
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
        // Channel-shaped values broadcast as [1, c, 1, ...].
        let mut channel_shape = vec![1; shape.len()];
        channel_shape[1] = c;
        let axes: Vec<usize> = (0..shape.len()).filter(|&a| a != 1).collect();
        let per_channel: usize = axes.iter().map(|&a| shape[a]).product();
        let tape = self.tape;
        let as_channels = |a: &ArrayD<T>| {
            a.clone()
                .into_shape_with_order(IxDyn(&channel_shape))
                .expect("c elements")
        };
        let (normalised, stats) = if training {
            assert!(
                per_channel > 1,
                "batch_norm: expected more than 1 value per channel when training, got input shape {shape:?}"
            );
            let mean = self.mean_axes(&axes, true);
            let centered = self - mean;
            let var = (centered * centered).mean_axes(&axes, true);
            let normalised = centered / (var + T::of(eps)).sqrt();
            let m = T::of(momentum);
            let unbias = T::of(per_channel as f64 / (per_channel - 1) as f64);
            let flat = |v: Var<'t, T>| {
                v.value()
                    .iter()
                    .copied()
                    .collect::<ndarray::Array1<T>>()
                    .into_dyn()
            };
            let stats = RunningStats {
                mean: running_mean.mapv(|r| r * (T::one() - m)) + flat(mean).mapv(|b| b * m),
                var: running_var.mapv(|r| r * (T::one() - m)) + flat(var).mapv(|b| b * m * unbias),
            };
            (normalised, Some(stats))
        } else {
            let mean = tape.constant(as_channels(running_mean));
            let std = as_channels(running_var).mapv(|v| (v + T::of(eps)).sqrt());
            ((self - mean) / tape.constant(std), None)
        };
        let reshape = |v: Var<'t, T>| v.reshape(&channel_shape);
        let mut y = normalised;
        if let Some(w) = weight {
            y = y * reshape(w);
        }
        if let Some(b) = bias {
            y = y + reshape(b);
        }
        (y, stats)
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
