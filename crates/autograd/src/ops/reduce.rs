//! Reductions: `sum` and `mean` over all elements or along an axis (with `keepdim`), and
//! `max_axis`, whose gradient flows to the first maximal element of each lane (as PyTorch).

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
