//! The ops, one file per family; each file holds forward values, backward rules and tests.
//!
//! Every op is a method on [`Var`](crate::Var) that computes its value with ndarray and
//! records a closure that maps the output's gradient to its operands' gradients.

pub mod activation;
pub mod arithmetic;
pub mod conv;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod pointwise;
pub mod pooling;
pub mod reduce;
pub mod shape;

use ndarray::{ArrayD, Axis, Zip};

use crate::{Float, pool};

/// The NumPy broadcast of two shapes, or a panic naming the op and both shapes.
pub(crate) fn broadcast_shape(op: &str, a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => panic!("{op}: shapes {a:?} and {b:?} cannot be broadcast together"),
        };
    }
    out
}

/// Sums a broadcast gradient back to an operand's shape.
pub(crate) fn sum_to<T: Float>(g: &ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    if g.shape() == shape {
        return g.clone();
    }
    let mut g = g.clone();
    while g.ndim() > shape.len() {
        g = g.sum_axis(Axis(0));
    }
    for (ax, &d) in shape.iter().enumerate() {
        if d == 1 && g.shape()[ax] != 1 {
            g = g.sum_axis(Axis(ax)).insert_axis(Axis(ax));
        }
    }
    g
}

/// The incoming gradient, taken over (no copy) and combined element by element with `other`
/// (the op's input or output, same shape): `d = f(d, other)`, over plain slices when both
/// are contiguous, so the loop vectorises.
pub(crate) fn combine<T: Float>(
    g: &mut ArrayD<T>,
    other: &ArrayD<T>,
    f: impl Fn(T, T) -> T,
) -> ArrayD<T> {
    let mut d = pool::steal(g);
    match (d.as_slice_mut(), other.as_slice()) {
        (Some(ds), Some(os)) if ds.len() == os.len() => {
            ds.iter_mut().zip(os).for_each(|(d, &o)| *d = f(*d, o));
        }
        _ => Zip::from(&mut d).and(other).for_each(|d, &o| *d = f(*d, o)),
    }
    d
}

/// `f(a, b)` element by element for two arrays of the same shape, on pooled storage.
pub(crate) fn zip_map<T: Float>(a: &ArrayD<T>, b: &ArrayD<T>, f: impl Fn(T, T) -> T) -> ArrayD<T> {
    debug_assert_eq!(a.shape(), b.shape());
    match (a.as_slice(), b.as_slice()) {
        (Some(x), Some(y)) => pool::from_iter(a.shape(), x.iter().zip(y).map(|(&x, &y)| f(x, y))),
        _ => pool::from_iter(a.shape(), a.iter().zip(b.iter()).map(|(&x, &y)| f(x, y))),
    }
}

/// Checks an axis argument, panicking with the op's name and the shape.
pub(crate) fn check_axis(op: &str, axis: usize, shape: &[usize]) {
    assert!(
        axis < shape.len(),
        "{op}: axis {axis} is out of range for shape {shape:?}"
    );
}

#[cfg(test)]
pub(crate) mod test_util {
    use ndarray::{ArrayD, IxDyn};

    use crate::{Tape, Var, gradcheck};

    /// A deterministic, non-symmetric array with values in about [-2, 2].
    pub fn sample(shape: &[usize], seed: u64) -> ArrayD<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ArrayD::from_shape_fn(IxDyn(shape), |_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
        })
    }

    /// Runs gradcheck and panics with its message on failure.
    pub fn check<F>(f: F, inputs: &[ArrayD<f64>])
    where
        F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
    {
        if let Err(e) = gradcheck(f, inputs) {
            panic!("{e}");
        }
    }

    /// Evaluates `f` without recording.
    pub fn eval<F>(f: F, inputs: &[ArrayD<f64>]) -> ArrayD<f64>
    where
        F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
    {
        let tape = Tape::no_grad();
        let vars: Vec<_> = inputs.iter().map(|a| tape.constant(a.clone())).collect();
        (*f(&vars).value()).clone()
    }

    pub fn assert_close(a: &ArrayD<f64>, b: &ArrayD<f64>, tol: f64) {
        assert_eq!(a.shape(), b.shape(), "shapes differ");
        for (x, y) in a.iter().zip(b.iter()) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a} != {b}");
        }
    }
}
