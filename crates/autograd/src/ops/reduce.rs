//! Reductions: `sum` and `mean` over all elements, along an axis or several (with
//! `keepdim`), `logsumexp`, and `max_axis`, whose gradient flows to the first maximal element
//! of each lane (as PyTorch).

use ndarray::{ArrayD, Axis, IxDyn, Zip};
use smallvec::smallvec;

use super::check_axis;
use crate::{Float, Var};

impl<'t, T: Float> Var<'t, T> {
    /// Sum of all elements, a 0-dimensional value.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr2};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(arr2(&[[1.0, 2.0], [3.0, 4.0]]).into_dyn());
    /// assert_eq!(x.sum().item(), 10.0);
    /// assert_eq!(x.mean().item(), 2.5);
    /// ```
    pub fn sum(self) -> Var<'t, T> {
        let x = self.value();
        let shape = x.raw_dim();
        let value = ArrayD::from_elem(IxDyn(&[]), x.sum());
        self.tape.push_op("sum", &[self], value, move |g, _, _, _| {
            smallvec![Some(ArrayD::from_elem(shape.clone(), g[[]]))]
        })
    }

    /// Mean of all elements (composed: `sum / n`).
    pub fn mean(self) -> Var<'t, T> {
        let n = self.value().len();
        assert!(n > 0, "mean: empty value of shape {:?}", self.shape());
        self.sum().mul_scalar(T::one() / T::of(n as f64))
    }

    /// Sum along `axis`; `keepdim` keeps it with length 1.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr2};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(arr2(&[[1.0, 2.0], [3.0, 4.0]]).into_dyn());
    /// assert_eq!(x.sum_axis(0, false).value().as_slice().unwrap(), &[4.0, 6.0]);
    /// assert_eq!(x.sum_axis(1, true).shape(), vec![2, 1]);
    /// ```
    pub fn sum_axis(self, axis: usize, keepdim: bool) -> Var<'t, T> {
        let x = self.value();
        check_axis("sum_axis", axis, x.shape());
        let shape = x.raw_dim();
        let mut value = x.sum_axis(Axis(axis));
        if keepdim {
            value = value.insert_axis(Axis(axis));
        }
        self.tape
            .push_op("sum_axis", &[self], value, move |g, _, _, _| {
                let g = if keepdim {
                    g.view()
                } else {
                    g.view().insert_axis(Axis(axis))
                };
                smallvec![Some(
                    g.broadcast(shape.clone())
                        .expect("reduced axis broadcasts")
                        .to_owned(),
                )]
            })
    }

    /// Mean along `axis` (composed: `sum_axis / n`).
    pub fn mean_axis(self, axis: usize, keepdim: bool) -> Var<'t, T> {
        let shape = self.shape();
        check_axis("mean_axis", axis, &shape);
        assert!(
            shape[axis] > 0,
            "mean_axis: axis {axis} of shape {shape:?} is empty"
        );
        self.sum_axis(axis, keepdim)
            .mul_scalar(T::one() / T::of(shape[axis] as f64))
    }

    /// Sum over several axes (PyTorch's `x.sum(dim=(..), keepdim=..)`), composed from
    /// [`Var::sum_axis`].
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::ArrayD};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(ArrayD::ones(vec![2, 3, 4]));
    /// let s = x.sum_axes(&[0, 2], false);
    /// assert_eq!((s.shape(), s.value().as_slice().unwrap().to_vec()), (vec![3], vec![8.0; 3]));
    /// assert_eq!(x.mean_axes(&[2, 0], true).shape(), vec![1, 3, 1]);
    /// ```
    pub fn sum_axes(self, axes: &[usize], keepdim: bool) -> Var<'t, T> {
        let shape = self.shape();
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert!(
            sorted.len() == axes.len(),
            "sum_axes: axes {axes:?} repeat an axis"
        );
        for &a in &sorted {
            check_axis("sum_axes", a, &shape);
        }
        // Highest axis first, so the lower axes keep their numbers without keepdim.
        sorted
            .iter()
            .rev()
            .fold(self, |x, &a| x.sum_axis(a, keepdim))
    }

    /// Mean over several axes (composed: `sum_axes / n`).
    pub fn mean_axes(self, axes: &[usize], keepdim: bool) -> Var<'t, T> {
        let shape = self.shape();
        let n: usize = axes
            .iter()
            .map(|&a| {
                check_axis("mean_axes", a, &shape);
                shape[a]
            })
            .product();
        assert!(
            n > 0,
            "mean_axes: axes {axes:?} of shape {shape:?} are empty"
        );
        self.sum_axes(axes, keepdim)
            .mul_scalar(T::one() / T::of(n as f64))
    }

    /// `log(sum(exp(x)))` along `axis`, computed stably (shifted by the lane's maximum); the
    /// gradient is the softmax of the lane.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr2};
    /// let tape = Tape::<f64>::no_grad();
    /// let x = tape.constant(arr2(&[[1000.0, 1000.0]]).into_dyn());
    /// let y = x.logsumexp(1, false).item();
    /// assert!((y - (1000.0 + 2f64.ln())).abs() < 1e-12);
    /// ```
    pub fn logsumexp(self, axis: usize, keepdim: bool) -> Var<'t, T> {
        let x = self.value();
        check_axis("logsumexp", axis, x.shape());
        let lse = x.map_axis(Axis(axis), |lane| {
            let m = lane.iter().copied().fold(T::neg_infinity(), T::max);
            if !m.is_finite() {
                // All -inf gives -inf; an inf or NaN propagates.
                return lane
                    .iter()
                    .copied()
                    .fold(T::zero(), |a, v| a + v.exp())
                    .ln();
            }
            m + lane.iter().map(|&v| (v - m).exp()).sum::<T>().ln()
        });
        let kept = lse.clone().insert_axis(Axis(axis));
        let value = if keepdim { kept.clone() } else { lse };
        self.tape
            .push_op("logsumexp", &[self], value, move |g, _, inputs, _| {
                let g = if keepdim {
                    g.view()
                } else {
                    g.view().insert_axis(Axis(axis))
                };
                let mut d = inputs[0].to_owned();
                Zip::from(&mut d)
                    .and_broadcast(&kept)
                    .and_broadcast(&g)
                    .for_each(|d, &l, &g| *d = g * (*d - l).exp());
                smallvec![Some(d)]
            })
    }

    /// Maximum along `axis`; the gradient goes to the first maximal element of each lane.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr2};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(arr2(&[[1.0, 5.0], [7.0, 4.0]]).into_dyn());
    /// assert_eq!(x.max_axis(1, false).value().as_slice().unwrap(), &[5.0, 7.0]);
    /// ```
    pub fn max_axis(self, axis: usize, keepdim: bool) -> Var<'t, T> {
        let x = self.value();
        check_axis("max_axis", axis, x.shape());
        assert!(
            x.shape()[axis] > 0,
            "max_axis: axis {axis} of shape {:?} is empty",
            x.shape()
        );
        let argmax = x.map_axis(Axis(axis), |lane| {
            let mut best = 0;
            for (i, &v) in lane.iter().enumerate() {
                // NaN propagates as the maximum, as in PyTorch.
                if v > lane[best] || (v.is_nan() && !lane[best].is_nan()) {
                    best = i;
                }
            }
            best
        });
        let mut value = Zip::from(x.lanes(Axis(axis)))
            .and(&argmax)
            .map_collect(|lane, &i| lane[i]);
        if keepdim {
            value = value.insert_axis(Axis(axis));
        }
        let shape = x.raw_dim();
        self.tape
            .push_op("max_axis", &[self], value, move |g, _, _, _| {
                let mut gx = ArrayD::zeros(shape.clone());
                let g = if keepdim {
                    g.view().remove_axis(Axis(axis))
                } else {
                    g.view()
                };
                Zip::from(gx.lanes_mut(Axis(axis)))
                    .and(&argmax)
                    .and(&g)
                    .for_each(|mut lane, &i, &gv| lane[i] = gv);
                smallvec![Some(gx)]
            })
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{arr1, arr2};

    use crate::ops::test_util::{assert_close, check, eval, sample};

    #[test]
    fn reduction_values() {
        let x = arr2(&[[1.0, 6.0, 3.0], [4.0, 2.0, 9.0]]).into_dyn();
        let ins = [x];
        assert_eq!(eval(|v| v[0].sum(), &ins)[[]], 25.0);
        assert!((eval(|v| v[0].mean(), &ins)[[]] - 25.0 / 6.0).abs() < 1e-15);
        assert_close(
            &eval(|v| v[0].sum_axis(0, false), &ins),
            &arr1(&[5.0, 8.0, 12.0]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[0].sum_axis(1, true), &ins),
            &arr2(&[[10.0], [15.0]]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[0].mean_axis(1, false), &ins),
            &arr1(&[10.0 / 3.0, 5.0]).into_dyn(),
            1e-15,
        );
        assert_close(
            &eval(|v| v[0].max_axis(0, false), &ins),
            &arr1(&[4.0, 6.0, 9.0]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[0].max_axis(1, true), &ins),
            &arr2(&[[6.0], [9.0]]).into_dyn(),
            0.0,
        );
    }

    #[test]
    fn gradcheck_sum_mean_axes_and_logsumexp() {
        let x = sample(&[2, 3, 4], 7);
        let w = sample(&[3], 8);
        check(
            |v| (v[0].sum_axes(&[0, 2], false) * v[1]).sum(),
            &[x.clone(), w.clone()],
        );
        check(
            |v| v[0].mean_axes(&[2, 0], true).square().sum(),
            std::slice::from_ref(&x),
        );
        check(
            |v| (v[0].logsumexp(1, false) * v[0].sum_axis(1, false)).sum(),
            std::slice::from_ref(&x),
        );
        check(|v| v[0].logsumexp(2, true).square().sum(), &[x]);
    }

    #[test]
    fn logsumexp_values() {
        // torch.logsumexp(torch.tensor([[1., 2., 3.], [-1e4, 0., -inf]]), 1)
        let x = arr2(&[[1.0, 2.0, 3.0], [-1e4, 0.0, f64::NEG_INFINITY]]).into_dyn();
        let y = eval(|v| v[0].logsumexp(1, false), &[x]);
        assert_close(&y, &arr1(&[3.4076059644443806, 0.0]).into_dyn(), 1e-15);
        let all_neg_inf = arr1(&[f64::NEG_INFINITY; 2]).into_dyn();
        assert_eq!(
            eval(|v| v[0].logsumexp(0, false), &[all_neg_inf])[[]],
            f64::NEG_INFINITY
        );
    }

    #[test]
    fn max_gradient_goes_to_first_maximum_on_ties() {
        let mut id = None;
        let (_, grads) = crate::value_and_grad(|tape| {
            let x = tape.input(arr1(&[3.0, 3.0, 1.0]).into_dyn());
            id = Some(x.id());
            x.max_axis(0, false).sum()
        });
        let g = grads.input(id.unwrap()).unwrap();
        assert_eq!(g.as_slice().unwrap(), &[1.0, 0.0, 0.0]);
    }

    #[test]
    fn gradcheck_reductions() {
        let x = [sample(&[3, 4, 2], 1)];
        check(|v| v[0].sum(), &x);
        check(|v| v[0].mean(), &x);
        for axis in 0..3 {
            for keepdim in [false, true] {
                check(|v| v[0].sum_axis(axis, keepdim), &x);
                check(|v| v[0].mean_axis(axis, keepdim), &x);
                check(|v| v[0].max_axis(axis, keepdim), &x);
            }
        }
    }

    #[test]
    #[should_panic(expected = "sum_axis: axis 2 is out of range for shape [3, 4]")]
    fn bad_axis_panics() {
        eval(|v| v[0].sum_axis(2, false), &[sample(&[3, 4], 1)]);
    }
}
