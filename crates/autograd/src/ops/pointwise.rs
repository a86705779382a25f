//! Element-wise functions beyond arithmetic: `sin`, `cos`, `abs`, `clamp`, `minimum`,
//! `maximum` and select-by-mask (`where_mask`), with PyTorch's gradients at the kinks
//! (`abs'(0) = 0`; `clamp` passes the gradient where `min <= x <= max`; ties of
//! `minimum`/`maximum` split it in halves).

use ndarray::{ArrayD, Zip};
use smallvec::smallvec;

use super::{broadcast_shape, combine, zip_map};
use crate::{Float, Var, pool};

impl<'t, T: Float> Var<'t, T> {
    /// Sine, element-wise.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr1};
    /// let tape = Tape::<f64>::no_grad();
    /// let x = tape.constant(arr1(&[0.0, std::f64::consts::FRAC_PI_2]).into_dyn());
    /// assert_eq!(x.sin().value().as_slice().unwrap(), &[0.0, 1.0]);
    /// ```
    pub fn sin(self) -> Var<'t, T> {
        let value = pool::map(&self.value(), T::sin);
        self.tape.push_op("sin", &[self], value, |g, _, x, _| {
            smallvec![Some(combine(g, x[0], |d, x| d * x.cos()))]
        })
    }

    /// Cosine, element-wise.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr1};
    /// let tape = Tape::<f64>::no_grad();
    /// let x = tape.constant(arr1(&[0.0]).into_dyn());
    /// assert_eq!(x.cos().item(), 1.0);
    /// ```
    pub fn cos(self) -> Var<'t, T> {
        let value = pool::map(&self.value(), T::cos);
        self.tape.push_op("cos", &[self], value, |g, _, x, _| {
            smallvec![Some(combine(g, x[0], |d, x| -d * x.sin()))]
        })
    }

    /// Absolute value, element-wise; its gradient at 0 is 0, as in PyTorch.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr1};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(arr1(&[-2.0, 3.0]).into_dyn());
    /// assert_eq!(x.abs().value().as_slice().unwrap(), &[2.0, 3.0]);
    /// ```
    pub fn abs(self) -> Var<'t, T> {
        let value = pool::map(&self.value(), T::abs);
        self.tape.push_op("abs", &[self], value, |g, _, x, _| {
            smallvec![Some(combine(g, x[0], |d, x| d * sign(x)))]
        })
    }

    /// Limits every element to `[min, max]` (PyTorch's `clamp`); either bound may be `None`.
    /// The gradient passes where `min <= x <= max` and is 0 elsewhere.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr1};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(arr1(&[-2.0, 0.5, 3.0]).into_dyn());
    /// assert_eq!(x.clamp(Some(0.0), Some(1.0)).value().as_slice().unwrap(), &[0.0, 0.5, 1.0]);
    /// ```
    pub fn clamp(self, min: Option<T>, max: Option<T>) -> Var<'t, T> {
        if let (Some(lo), Some(hi)) = (min, max) {
            assert!(lo <= hi, "clamp: min {lo} is greater than max {hi}");
        }
        let lo = min.unwrap_or(T::neg_infinity());
        let hi = max.unwrap_or(T::infinity());
        let value = pool::map(&self.value(), |v| {
            if v < lo {
                lo
            } else if v > hi {
                hi
            } else {
                v
            }
        });
        self.tape
            .push_op("clamp", &[self], value, move |g, _, x, _| {
                let pass = |x: T| x >= lo && x <= hi;
                smallvec![Some(combine(g, x[0], |d, x| if pass(x) {
                    d
                } else {
                    T::zero()
                }))]
            })
    }

    /// The larger of two values element by element, broadcasting; on ties each operand gets
    /// half the gradient (PyTorch's rule).
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr1};
    /// let tape = Tape::<f32>::no_grad();
    /// let a = tape.constant(arr1(&[1.0, 5.0]).into_dyn());
    /// let b = tape.constant(arr1(&[3.0]).into_dyn());
    /// assert_eq!(a.maximum(b).value().as_slice().unwrap(), &[3.0, 5.0]);
    /// ```
    pub fn maximum(self, other: Var<'t, T>) -> Var<'t, T> {
        self.extremum(other, "maximum", |a, b| a > b)
    }

    /// The smaller of two values element by element, broadcasting; on ties each operand gets
    /// half the gradient.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr1};
    /// let tape = Tape::<f32>::no_grad();
    /// let a = tape.constant(arr1(&[1.0, 5.0]).into_dyn());
    /// let b = tape.constant(arr1(&[3.0, 2.0]).into_dyn());
    /// assert_eq!(a.minimum(b).value().as_slice().unwrap(), &[1.0, 2.0]);
    /// ```
    pub fn minimum(self, other: Var<'t, T>) -> Var<'t, T> {
        self.extremum(other, "minimum", |a, b| a < b)
    }

    /// `maximum` or `minimum`: `wins(a, b)` says when `a` is the result.
    fn extremum(self, other: Var<'t, T>, op: &'static str, wins: fn(T, T) -> bool) -> Var<'t, T> {
        let (a, b) = self.broadcast_pair(other, op);
        let value = zip_map(&a.value(), &b.value(), |x, y| {
            if wins(x, y) || x == y || x.is_nan() {
                x
            } else {
                y
            }
        });
        self.tape
            .push_op(op, &[a, b], value, move |g, _, v, needs| {
                let half = T::of(0.5);
                let share = |x: T, y: T| {
                    if x == y {
                        half
                    } else if wins(x, y) {
                        T::one()
                    } else {
                        T::zero()
                    }
                };
                let ga = needs[0].then(|| {
                    let mut d = pool::copy(g);
                    Zip::from(&mut d)
                        .and(v[0])
                        .and(v[1])
                        .for_each(|d, &x, &y| *d *= share(x, y));
                    d
                });
                let gb = needs[1].then(|| {
                    let mut d = pool::copy(g);
                    Zip::from(&mut d)
                        .and(v[0])
                        .and(v[1])
                        .for_each(|d, &x, &y| *d *= share(y, x));
                    d
                });
                smallvec![ga, gb]
            })
    }

    /// `self` where `mask` is true and `other` elsewhere (PyTorch's `torch.where(mask, self,
    /// other)`); the operands broadcast to the mask's shape. Each gradient flows only through
    /// the elements that were selected from it.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::{arr1, ArrayD}};
    /// let tape = Tape::<f32>::no_grad();
    /// let a = tape.constant(arr1(&[1.0, 2.0, 3.0]).into_dyn());
    /// let b = tape.constant(arr1(&[0.0]).into_dyn());
    /// let mask = arr1(&[true, false, true]).into_dyn();
    /// assert_eq!(a.where_mask(&mask, b).value().as_slice().unwrap(), &[1.0, 0.0, 3.0]);
    /// ```
    pub fn where_mask(self, mask: &ArrayD<bool>, other: Var<'t, T>) -> Var<'t, T> {
        let shape = broadcast_shape(
            "where_mask",
            &broadcast_shape("where_mask", &self.shape(), &other.shape()),
            mask.shape(),
        );
        assert!(
            shape == mask.shape(),
            "where_mask: the mask's shape {:?} must be the result's shape {shape:?}",
            mask.shape()
        );
        let a = self.broadcast_to(&shape);
        let b = other.broadcast_to(&shape);
        let mut value = pool::copy(&b.value());
        Zip::from(&mut value)
            .and(&*a.value())
            .and(mask)
            .for_each(|v, &x, &m| {
                if m {
                    *v = x
                }
            });
        let mask = mask.clone();
        self.tape
            .push_op("where_mask", &[a, b], value, move |g, _, _, needs| {
                let pick = |keep: bool| {
                    let mut d = pool::copy(g);
                    Zip::from(&mut d).and(&mask).for_each(|d, &m| {
                        if m != keep {
                            *d = T::zero()
                        }
                    });
                    d
                };
                smallvec![needs[0].then(|| pick(true)), needs[1].then(|| pick(false))]
            })
    }

    /// Both operands broadcast to their common shape (no op recorded when already there).
    pub(crate) fn broadcast_pair(self, other: Var<'t, T>, op: &str) -> (Var<'t, T>, Var<'t, T>) {
        let (sa, sb) = (self.shape(), other.shape());
        let shape = broadcast_shape(op, &sa, &sb);
        let fit = |v: Var<'t, T>, s: &[usize]| {
            if s == shape.as_slice() {
                v
            } else {
                v.broadcast_to(&shape)
            }
        };
        (fit(self, &sa), fit(other, &sb))
    }
}

fn sign<T: Float>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn, arr1};

    use crate::ops::test_util::{assert_close, check, eval, sample};
    use crate::{Tape, value_and_grad};

    #[test]
    fn gradcheck_sin_cos_abs_clamp() {
        let x = sample(&[3, 4], 1);
        check(|v| v[0].sin().sum(), std::slice::from_ref(&x));
        check(|v| (v[0].cos() * v[0]).sum(), std::slice::from_ref(&x));
        // Keep clear of the kinks, where finite differences are undefined.
        let away = x.mapv(|v| if v.abs() < 0.05 { v + 0.2 } else { v });
        check(|v| (v[0].abs() * v[0]).sum(), std::slice::from_ref(&away));
        let away = x.mapv(|v| {
            if (v.abs() - 0.5).abs() < 0.05 {
                v + 0.2
            } else {
                v
            }
        });
        check(
            |v| v[0].clamp(Some(-0.5), Some(0.5)).square().sum(),
            std::slice::from_ref(&away),
        );
        check(|v| v[0].clamp(None, Some(0.5)).square().sum(), &[away]);
    }

    #[test]
    fn gradcheck_minimum_maximum_broadcasting() {
        let a = sample(&[3, 4], 2);
        let b = sample(&[1, 4], 3);
        check(
            |v| (v[0].maximum(v[1]) * v[0]).sum(),
            &[a.clone(), b.clone()],
        );
        check(|v| (v[0].minimum(v[1]) * v[1]).sum(), &[a, b]);
    }

    #[test]
    fn gradcheck_where_mask() {
        let a = sample(&[2, 3], 4);
        let b = sample(&[3], 5);
        let mask = ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| (i[0] + i[1]) % 2 == 0);
        check(|v| v[0].where_mask(&mask, v[1]).square().sum(), &[a, b]);
    }

    #[test]
    fn values_and_kink_gradients_follow_pytorch() {
        // torch.abs(torch.tensor([-1., 0., 2.])).backward -> [-1, 0, 1]
        let x = arr1(&[-1.0, 0.0, 2.0]).into_dyn();
        let mut params = crate::ParamStore::<f64>::new();
        let id = params.insert("x", x.clone()).unwrap();
        let (_, g) = value_and_grad(|t| t.param(&params, id).abs().sum());
        assert_eq!(g.get(id).unwrap().as_slice().unwrap(), &[-1.0, 0.0, 1.0]);
        // clamp(-1, 1) passes the gradient at the bounds themselves.
        let (_, g) = value_and_grad(|t| t.param(&params, id).clamp(Some(-1.0), Some(1.0)).sum());
        assert_eq!(g.get(id).unwrap().as_slice().unwrap(), &[1.0, 1.0, 0.0]);
        // maximum ties split the gradient: torch.maximum(x, zeros) at x = 0 gives 0.5.
        let (_, g) = value_and_grad(|t| {
            let x = t.param(&params, id);
            x.maximum(t.constant(ArrayD::zeros(vec![3]))).sum()
        });
        assert_eq!(g.get(id).unwrap().as_slice().unwrap(), &[0.0, 0.5, 1.0]);
        let y = eval(|v| v[0].sin() * v[0].cos(), std::slice::from_ref(&x));
        assert_close(&y, &x.mapv(|v| v.sin() * v.cos()), 1e-15);
    }

    #[test]
    #[should_panic(expected = "maximum: shapes [2] and [3] cannot be broadcast together")]
    fn maximum_names_both_shapes() {
        let tape = Tape::<f32>::no_grad();
        let a = tape.constant(ArrayD::zeros(vec![2]));
        let b = tape.constant(ArrayD::zeros(vec![3]));
        let _ = a.maximum(b);
    }
}
