//! Element-wise arithmetic with NumPy broadcasting, scalar ops, and the element-wise
//! functions `powf`, `exp`, `log`, `sqrt`.
//!
//! A broadcast operand's gradient is summed back to its own shape.

use smallvec::smallvec;
use std::ops::{Add, Div, Mul, Neg, Sub};

use ndarray::ArrayD;

use super::{broadcast_shape, combine, sum_to, zip_map};
use crate::tape::Grads;
use crate::{Float, Var, pool};

/// The gradients of `a + b` (or `a - b` when `negate_b`): the incoming gradient itself for
/// an operand of the output's shape (taken over, or copied when both operands need it),
/// summed back to the shape of a broadcast one.
fn pass_through<T: Float>(
    g: &mut ArrayD<T>,
    inputs: &[&ArrayD<T>],
    needs: &[bool],
    negate_b: bool,
) -> Grads<T> {
    let same = [0, 1].map(|i| inputs[i].shape() == g.shape());
    let db = needs[1].then(|| {
        let mut d = if same[1] {
            if needs[0] {
                pool::copy(g)
            } else {
                pool::steal(g)
            }
        } else {
            sum_to(g, inputs[1].shape())
        };
        if negate_b {
            d.mapv_inplace(|v| -v);
        }
        d
    });
    let da = needs[0].then(|| {
        if same[0] {
            pool::steal(g)
        } else {
            sum_to(g, inputs[0].shape())
        }
    });
    smallvec![da, db]
}

impl<'t, T: Float> Var<'t, T> {
    /// `self + other`, broadcasting: the `+` operator.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::{arr1, arr2}};
    /// let tape = Tape::<f32>::no_grad();
    /// let a = tape.constant(arr2(&[[1.0, 2.0], [3.0, 4.0]]).into_dyn());
    /// let b = tape.constant(arr1(&[10.0, 20.0]).into_dyn());
    /// assert_eq!((a + b).value().as_slice().unwrap(), &[11.0, 22.0, 13.0, 24.0]);
    /// ```
    fn add_vars(self, other: Var<'t, T>) -> Var<'t, T> {
        let (a, b) = (self.value(), other.value());
        let value = if a.shape() == b.shape() {
            zip_map(&a, &b, |x, y| x + y)
        } else {
            broadcast_shape("add", a.shape(), b.shape());
            &*a + &*b
        };
        self.tape
            .push_op("add", &[self, other], value, |g, _, inputs, needs| {
                pass_through(g, inputs, needs, false)
            })
    }

    /// `self - other`, broadcasting: the `-` operator.
    fn sub_vars(self, other: Var<'t, T>) -> Var<'t, T> {
        let (a, b) = (self.value(), other.value());
        let value = if a.shape() == b.shape() {
            zip_map(&a, &b, |x, y| x - y)
        } else {
            broadcast_shape("sub", a.shape(), b.shape());
            &*a - &*b
        };
        self.tape
            .push_op("sub", &[self, other], value, |g, _, inputs, needs| {
                pass_through(g, inputs, needs, true)
            })
    }

    /// `self * other` element-wise, broadcasting: the `*` operator.
    fn mul_vars(self, other: Var<'t, T>) -> Var<'t, T> {
        let (a, b) = (self.value(), other.value());
        let value = if a.shape() == b.shape() {
            zip_map(&a, &b, |x, y| x * y)
        } else {
            broadcast_shape("mul", a.shape(), b.shape());
            &*a * &*b
        };
        self.tape
            .push_op("mul", &[self, other], value, |g, _, inputs, needs| {
                let (a, b) = (inputs[0], inputs[1]);
                if a.shape() == b.shape() {
                    return smallvec![
                        needs[0].then(|| zip_map(g, b, |g, b| g * b)),
                        needs[1].then(|| zip_map(g, a, |g, a| g * a)),
                    ];
                }
                smallvec![
                    needs[0].then(|| sum_to(&(&*g * b), a.shape())),
                    needs[1].then(|| sum_to(&(&*g * a), b.shape())),
                ]
            })
    }

    /// `self / other` element-wise, broadcasting: the `/` operator.
    fn div_vars(self, other: Var<'t, T>) -> Var<'t, T> {
        let (a, b) = (self.value(), other.value());
        let value = if a.shape() == b.shape() {
            zip_map(&a, &b, |x, y| x / y)
        } else {
            broadcast_shape("div", a.shape(), b.shape());
            &*a / &*b
        };
        self.tape
            .push_op("div", &[self, other], value, |g, out, inputs, needs| {
                // d(a/b)/db = -a/b^2 = -out/b
                let (a, b) = (inputs[0], inputs[1]);
                if a.shape() == b.shape() {
                    let db = needs[1].then(|| {
                        let mut d = zip_map(g, out, |g, y| -(g * y));
                        d = combine(&mut d, b, |d, b| d / b);
                        d
                    });
                    return smallvec![needs[0].then(|| combine(g, b, |g, b| g / b)), db];
                }
                smallvec![
                    needs[0].then(|| sum_to(&(&*g / b), a.shape())),
                    needs[1].then(|| sum_to(&(-(&*g * out) / b), b.shape())),
                ]
            })
    }

    /// `-self`: the unary `-` operator.
    fn neg_var(self) -> Var<'t, T> {
        let value = pool::map(&self.value(), |v| -v);
        self.tape.push_op("neg", &[self], value, |g, _, _, _| {
            let mut d = pool::steal(g);
            d.mapv_inplace(|v| -v);
            smallvec![Some(d)]
        })
    }

    /// `self + s` for a scalar `s`.
    pub fn add_scalar(self, s: T) -> Var<'t, T> {
        let value = pool::map(&self.value(), |v| v + s);
        self.tape
            .push_op("add_scalar", &[self], value, |g, _, _, _| {
                smallvec![Some(pool::steal(g))]
            })
    }

    /// `self * s` for a scalar `s`.
    pub fn mul_scalar(self, s: T) -> Var<'t, T> {
        let value = pool::map(&self.value(), |v| v * s);
        self.tape
            .push_op("mul_scalar", &[self], value, move |g, _, _, _| {
                let mut d = pool::steal(g);
                d.mapv_inplace(|v| v * s);
                smallvec![Some(d)]
            })
    }

    /// `s - self` for a scalar `s`.
    pub fn rsub_scalar(self, s: T) -> Var<'t, T> {
        self.neg_var().add_scalar(s)
    }

    /// `s / self` for a scalar `s`.
    pub fn rdiv_scalar(self, s: T) -> Var<'t, T> {
        self.powf(-T::one()).mul_scalar(s)
    }

    /// `self` raised to the power `p`, element-wise.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr1};
    /// let tape = Tape::<f64>::no_grad();
    /// let x = tape.constant(arr1(&[4.0, 9.0]).into_dyn());
    /// assert_eq!(x.powf(0.5).value().as_slice().unwrap(), &[2.0, 3.0]);
    /// ```
    pub fn powf(self, p: T) -> Var<'t, T> {
        let value = pool::map(&self.value(), |v| v.powf(p));
        self.tape
            .push_op("powf", &[self], value, move |g, _, inputs, _| {
                let d = combine(g, inputs[0], |d, x| d * (p * x.powf(p - T::one())));
                smallvec![Some(d)]
            })
    }

    /// `e^self`, element-wise.
    pub fn exp(self) -> Var<'t, T> {
        let value = pool::map(&self.value(), T::exp);
        self.tape.push_op("exp", &[self], value, |g, out, _, _| {
            smallvec![Some(combine(g, out, |d, y| d * y))]
        })
    }

    /// Natural logarithm, element-wise (`log(0) = -inf`, as in PyTorch).
    pub fn log(self) -> Var<'t, T> {
        let value = pool::map(&self.value(), T::ln);
        self.tape.push_op("log", &[self], value, |g, _, inputs, _| {
            smallvec![Some(combine(g, inputs[0], |d, x| d / x))]
        })
    }

    /// Square root, element-wise.
    pub fn sqrt(self) -> Var<'t, T> {
        let value = pool::map(&self.value(), T::sqrt);
        self.tape.push_op("sqrt", &[self], value, |g, out, _, _| {
            let two = T::one() + T::one();
            smallvec![Some(combine(g, out, |d, y| d / (two * y)))]
        })
    }

    /// `self * self`, element-wise.
    pub fn square(self) -> Var<'t, T> {
        self.mul_vars(self)
    }
}

macro_rules! paste_vars {
    (add, $a:expr, $b:expr) => {
        $a.add_vars($b)
    };
    (sub, $a:expr, $b:expr) => {
        $a.sub_vars($b)
    };
    (mul, $a:expr, $b:expr) => {
        $a.mul_vars($b)
    };
    (div, $a:expr, $b:expr) => {
        $a.div_vars($b)
    };
}

macro_rules! var_binary_ops {
    ($($trait:ident $method:ident $scalar:ident;)*) => {$(
        impl<'t, T: Float> $trait<Var<'t, T>> for Var<'t, T> {
            type Output = Var<'t, T>;
            fn $method(self, rhs: Var<'t, T>) -> Var<'t, T> {
                paste_vars!($method, self, rhs)
            }
        }
        impl<'t, T: Float> $trait<T> for Var<'t, T> {
            type Output = Var<'t, T>;
            fn $method(self, rhs: T) -> Var<'t, T> {
                $scalar(self, rhs)
            }
        }
    )*};
}

fn add_s<'t, T: Float>(v: Var<'t, T>, s: T) -> Var<'t, T> {
    v.add_scalar(s)
}
fn sub_s<'t, T: Float>(v: Var<'t, T>, s: T) -> Var<'t, T> {
    v.add_scalar(-s)
}
fn mul_s<'t, T: Float>(v: Var<'t, T>, s: T) -> Var<'t, T> {
    v.mul_scalar(s)
}
fn div_s<'t, T: Float>(v: Var<'t, T>, s: T) -> Var<'t, T> {
    v.mul_scalar(T::one() / s)
}

var_binary_ops! {
    Add add add_s;
    Sub sub sub_s;
    Mul mul mul_s;
    Div div div_s;
}

impl<'t, T: Float> Neg for Var<'t, T> {
    type Output = Var<'t, T>;
    fn neg(self) -> Var<'t, T> {
        self.neg_var()
    }
}

macro_rules! scalar_lhs_ops {
    ($($t:ty),*) => {$(
        impl<'t> Add<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn add(self, rhs: Var<'t, $t>) -> Var<'t, $t> { rhs.add_scalar(self) }
        }
        impl<'t> Sub<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn sub(self, rhs: Var<'t, $t>) -> Var<'t, $t> { rhs.rsub_scalar(self) }
        }
        impl<'t> Mul<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn mul(self, rhs: Var<'t, $t>) -> Var<'t, $t> { rhs.mul_scalar(self) }
        }
        impl<'t> Div<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn div(self, rhs: Var<'t, $t>) -> Var<'t, $t> { rhs.rdiv_scalar(self) }
        }
    )*};
}
scalar_lhs_ops!(f32, f64);

#[cfg(test)]
mod tests {
    use ndarray::{arr1, arr2};

    use crate::Var;
    use crate::ops::test_util::{assert_close, check, eval, sample};

    #[test]
    fn forward_values_with_broadcasting() {
        let a = arr2(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).into_dyn();
        let b = arr1(&[10.0, 20.0, 30.0]).into_dyn();
        let c = arr2(&[[2.0], [4.0]]).into_dyn();
        let ins = [a, b, c];
        assert_close(
            &eval(|v| v[0] + v[1], &ins),
            &arr2(&[[11.0, 22.0, 33.0], [14.0, 25.0, 36.0]]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[0] - v[2], &ins),
            &arr2(&[[-1.0, 0.0, 1.0], [0.0, 1.0, 2.0]]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[1] * v[2], &ins),
            &arr2(&[[20.0, 40.0, 60.0], [40.0, 80.0, 120.0]]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[0] / v[2], &ins),
            &arr2(&[[0.5, 1.0, 1.5], [1.0, 1.25, 1.5]]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| -v[1], &ins),
            &arr1(&[-10.0, -20.0, -30.0]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| (v[1] + 1.0) * 2.0 - 3.0, &ins),
            &arr1(&[19.0, 39.0, 59.0]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| 1.0 - v[1], &ins),
            &arr1(&[-9.0, -19.0, -29.0]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| 10.0 / v[1], &ins),
            &arr1(&[1.0, 0.5, 1.0 / 3.0]).into_dyn(),
            1e-15,
        );
        assert_close(
            &eval(|v| v[1] / 10.0, &ins),
            &arr1(&[1.0, 2.0, 3.0]).into_dyn(),
            1e-15,
        );
    }

    #[test]
    fn elementwise_function_values() {
        let x = arr1(&[1.0, 4.0]).into_dyn();
        let ins = [x];
        assert_close(
            &eval(|v| v[0].sqrt(), &ins),
            &arr1(&[1.0, 2.0]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[0].powf(3.0), &ins),
            &arr1(&[1.0, 64.0]).into_dyn(),
            1e-12,
        );
        assert_close(
            &eval(|v| v[0].exp(), &ins),
            &arr1(&[std::f64::consts::E, 4f64.exp()]).into_dyn(),
            1e-15,
        );
        assert_close(
            &eval(|v| v[0].log(), &ins),
            &arr1(&[0.0, 4f64.ln()]).into_dyn(),
            1e-15,
        );
        assert_close(
            &eval(|v| v[0].square(), &ins),
            &arr1(&[1.0, 16.0]).into_dyn(),
            0.0,
        );
    }

    #[test]
    #[should_panic(expected = "add: shapes [2, 3] and [2] cannot be broadcast together")]
    fn incompatible_shapes_panic_with_both_shapes() {
        eval(|v| v[0] + v[1], &[sample(&[2, 3], 1), sample(&[2], 2)]);
    }

    #[test]
    fn gradcheck_binary_ops_same_shape() {
        let ins = [
            sample(&[3, 4], 1),
            sample(&[3, 4], 2).mapv(|v| v.abs() + 0.5),
        ];
        check(|v| v[0] + v[1], &ins);
        check(|v| v[0] - v[1], &ins);
        check(|v| v[0] * v[1], &ins);
        check(|v| v[0] / v[1], &ins);
    }

    #[test]
    fn gradcheck_binary_ops_broadcast_operands() {
        // [3,4] with [4], [3,1] and [] (a scalar), in both orders.
        for shape in [&[4][..], &[3, 1], &[]] {
            let ins = [sample(&[3, 4], 3), sample(shape, 4).mapv(|v| v.abs() + 0.5)];
            check(|v| v[0] + v[1], &ins);
            check(|v| v[1] - v[0], &ins);
            check(|v| v[0] * v[1], &ins);
            check(|v| v[0] / v[1], &ins);
            check(|v| v[1] / v[0].exp(), &ins);
        }
        // Both sides broadcast: [3,1] with [1,4].
        let ins = [sample(&[3, 1], 5), sample(&[1, 4], 6)];
        check(|v| v[0] * v[1], &ins);
    }

    #[test]
    fn gradcheck_unary_and_scalar_ops() {
        let x = [sample(&[2, 3], 7)];
        let pos = [sample(&[2, 3], 8).mapv(|v| v.abs() + 0.2)];
        check(|v| -v[0], &x);
        check(|v| v[0] + 2.0, &x);
        check(|v| v[0] - 2.0, &x);
        check(|v| v[0] * 3.0, &x);
        check(|v| v[0] / 4.0, &x);
        check(|v| 2.0 - v[0], &x);
        check(|v| 3.0 * v[0], &x);
        check(|v| 2.0 / v[0], &pos);
        check(|v| v[0].exp(), &x);
        check(|v| v[0].log(), &pos);
        check(|v| v[0].sqrt(), &pos);
        check(|v| v[0].powf(2.5), &pos);
        check(|v| v[0].powf(3.0), &x);
        check(|v| v[0].square(), &x);
    }

    #[test]
    fn gradcheck_value_used_twice() {
        // x*x + x/y uses x three times; gradients must accumulate.
        let ins = [sample(&[3], 9), sample(&[3], 10).mapv(|v| v.abs() + 1.0)];
        check(|v| v[0] * v[0] + v[0] / v[1], &ins);
        // The same value as both operands: one gradient is the incoming one taken over,
        // the other a copy, and they add up.
        check(|v| v[0] + v[0], &ins[..1]);
        check(|v| (v[0] - v[0]) * v[0] + v[0] / v[0], &ins[..1]);
    }

    #[test]
    fn only_the_operand_that_needs_it_gets_a_gradient() {
        use crate::value_and_grad;
        use ndarray::ArrayD;
        let x = sample(&[2, 3], 11);
        let c = sample(&[2, 3], 12);
        type Op = for<'t> fn(Var<'t, f64>, Var<'t, f64>) -> Var<'t, f64>;
        let cases: [(Op, f64); 4] = [
            (|c, x| c + x, 1.0),
            (|c, x| c - x, -1.0),
            (|c, x| x - c, 1.0),
            (|c, x| x + c, 1.0),
        ];
        for (op, slope) in cases {
            let mut id = None;
            let (_, grads) = value_and_grad(|tape| {
                let xi = tape.input(x.clone());
                id = Some(xi.id());
                op(tape.constant(c.clone()), xi).sum()
            });
            let g = grads.input(id.unwrap()).expect("x has a gradient");
            assert_close(g, &ArrayD::from_elem(vec![2, 3], slope), 0.0);
        }
    }
}
