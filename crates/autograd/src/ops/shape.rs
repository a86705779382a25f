//! Shape ops: `permute`, `reshape`, `broadcast_to`, `concat` and `slice_axis` along an axis,
//! and `index_select` of rows. Their gradients only move, sum or scatter values.

use smallvec::smallvec;
use std::ops::Range;

use ndarray::{ArrayD, Axis, IxDyn, Slice};

use super::{check_axis, sum_to};
use crate::{Float, Var, pool};

impl<'t, T: Float> Var<'t, T> {
    /// Reorders the axes: output axis `i` is input axis `axes[i]`.
    pub fn permute(self, axes: &[usize]) -> Var<'t, T> {
        let x = self.value();
        let mut seen = vec![false; x.ndim()];
        let valid = axes.len() == x.ndim()
            && axes
                .iter()
                .all(|&a| a < seen.len() && !std::mem::replace(&mut seen[a], true));
        assert!(
            valid,
            "permute: axes {axes:?} are not a permutation for shape {:?}",
            x.shape()
        );
        let value = (*x).clone().permuted_axes(IxDyn(axes));
        let mut inverse = vec![0; axes.len()];
        for (i, &a) in axes.iter().enumerate() {
            inverse[a] = i;
        }
        self.tape
            .push_op("permute", &[self], value, move |g, _, _, _| {
                smallvec![Some(g.clone().permuted_axes(IxDyn(&inverse)))]
            })
    }

    /// The same elements (in row-major order) in a new shape.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::ArrayD};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(ArrayD::zeros(vec![2, 3, 4]));
    /// assert_eq!(x.reshape(&[6, 4]).shape(), vec![6, 4]);
    /// ```
    pub fn reshape(self, shape: &[usize]) -> Var<'t, T> {
        let x = self.value();
        let n: usize = shape.iter().product();
        assert!(
            n == x.len(),
            "reshape: {:?} ({} elements) cannot become {shape:?} ({n} elements)",
            x.shape(),
            x.len()
        );
        // Pooled copies in row-major order, and the original shape inline (up to 4 axes):
        // no allocation once the pool is warm.
        let value = pool::copy(&x)
            .into_shape_with_order(shape)
            .expect("sizes match");
        let original = x.raw_dim();
        self.tape
            .push_op("reshape", &[self], value, move |g, _, _, _| {
                let g = if g.is_standard_layout() {
                    pool::steal(g)
                } else {
                    pool::copy(g)
                };
                smallvec![Some(
                    g.into_shape_with_order(original).expect("sizes match")
                )]
            })
    }

    /// Broadcasts to `shape` under NumPy rules; the gradient is summed back.
    pub fn broadcast_to(self, shape: &[usize]) -> Var<'t, T> {
        let x = self.value();
        let value = match x.broadcast(shape) {
            Some(view) => view.to_owned(),
            None => panic!(
                "broadcast_to: shape {:?} cannot be broadcast to {shape:?}",
                x.shape()
            ),
        };
        let original = x.shape().to_vec();
        self.tape
            .push_op("broadcast_to", &[self], value, move |g, _, _, _| {
                smallvec![Some(sum_to(g, &original))]
            })
    }

    /// Joins values along `axis`; all other axes must agree.
    ///
    /// ```
    /// use gradus_autograd::{Tape, Var, ndarray::arr1};
    /// let tape = Tape::<f32>::no_grad();
    /// let a = tape.constant(arr1(&[1.0]).into_dyn());
    /// let b = tape.constant(arr1(&[2.0, 3.0]).into_dyn());
    /// assert_eq!(Var::concat(&[a, b], 0).value().as_slice().unwrap(), &[1.0, 2.0, 3.0]);
    /// ```
    pub fn concat(parts: &[Var<'t, T>], axis: usize) -> Var<'t, T> {
        assert!(!parts.is_empty(), "concat: no operands");
        let values: Vec<_> = parts.iter().map(|p| p.value()).collect();
        let first = values[0].shape().to_vec();
        check_axis("concat", axis, &first);
        for v in &values[1..] {
            let ok = v.ndim() == first.len()
                && v.shape()
                    .iter()
                    .zip(&first)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            assert!(
                ok,
                "concat: shapes {first:?} and {:?} differ off axis {axis}",
                v.shape()
            );
        }
        let views: Vec<_> = values.iter().map(|v| v.view()).collect();
        let value = ndarray::concatenate(Axis(axis), &views).expect("shapes checked");
        let lengths: Vec<usize> = values.iter().map(|v| v.shape()[axis]).collect();
        parts[0]
            .tape
            .push_op("concat", parts, value, move |g, _, _, needs| {
                let mut start = 0;
                lengths
                    .iter()
                    .zip(needs)
                    .map(|(&len, &need)| {
                        let part = need.then(|| {
                            g.slice_axis(Axis(axis), Slice::from(start..start + len))
                                .to_owned()
                        });
                        start += len;
                        part
                    })
                    .collect()
            })
    }

    /// Joins values of one shape along a new axis `axis` (composed: reshape, then concat).
    ///
    /// ```
    /// use gradus_autograd::{Tape, Var, ndarray::arr1};
    /// let tape = Tape::<f32>::no_grad();
    /// let a = tape.constant(arr1(&[1.0, 2.0]).into_dyn());
    /// let b = tape.constant(arr1(&[3.0, 4.0]).into_dyn());
    /// let s = Var::stack(&[a, b], 1);
    /// assert_eq!(s.shape(), vec![2, 2]);
    /// assert_eq!(s.value().iter().copied().collect::<Vec<_>>(), [1.0, 3.0, 2.0, 4.0]);
    /// ```
    pub fn stack(parts: &[Var<'t, T>], axis: usize) -> Var<'t, T> {
        assert!(!parts.is_empty(), "stack: no operands");
        let first = parts[0].shape();
        assert!(
            axis <= first.len(),
            "stack: axis {axis} is out of range for operands of shape {first:?}"
        );
        let lifted: Vec<_> = parts
            .iter()
            .map(|p| {
                let shape = p.shape();
                assert!(
                    shape == first,
                    "stack: shapes {first:?} and {shape:?} differ"
                );
                p.unsqueeze(axis)
            })
            .collect();
        Var::concat(&lifted, axis)
    }

    /// A new axis of length 1 at `axis` (composed: reshape).
    pub fn unsqueeze(self, axis: usize) -> Var<'t, T> {
        let mut shape = self.shape();
        assert!(
            axis <= shape.len(),
            "unsqueeze: axis {axis} is out of range for shape {shape:?}"
        );
        shape.insert(axis, 1);
        self.reshape(&shape)
    }

    /// Swaps two axes (composed: permute).
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::ArrayD};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(ArrayD::zeros(vec![2, 3, 4]));
    /// assert_eq!(x.transpose(0, 2).shape(), vec![4, 3, 2]);
    /// ```
    pub fn transpose(self, a: usize, b: usize) -> Var<'t, T> {
        let n = self.shape().len();
        assert!(
            a < n && b < n,
            "transpose: axes {a} and {b} are out of range for shape {:?}",
            self.shape()
        );
        let mut axes: Vec<usize> = (0..n).collect();
        axes.swap(a, b);
        self.permute(&axes)
    }

    /// The elements with index `range` along `axis`.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr1};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(arr1(&[1.0, 2.0, 3.0, 4.0]).into_dyn());
    /// assert_eq!(x.slice_axis(0, 1..3).value().as_slice().unwrap(), &[2.0, 3.0]);
    /// ```
    pub fn slice_axis(self, axis: usize, range: Range<usize>) -> Var<'t, T> {
        let x = self.value();
        check_axis("slice_axis", axis, x.shape());
        assert!(
            range.start <= range.end && range.end <= x.shape()[axis],
            "slice_axis: range {range:?} is out of bounds for axis {axis} of shape {:?}",
            x.shape()
        );
        let value = x
            .slice_axis(Axis(axis), Slice::from(range.clone()))
            .to_owned();
        let shape = x.raw_dim();
        self.tape
            .push_op("slice_axis", &[self], value, move |g, _, _, _| {
                let mut gx = ArrayD::zeros(shape.clone());
                gx.slice_axis_mut(Axis(axis), Slice::from(range.clone()))
                    .assign(g);
                smallvec![Some(gx)]
            })
    }

    /// Rows (indices along axis 0) in the given order; repeats are allowed and their
    /// gradients add up.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr2};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(arr2(&[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]).into_dyn());
    /// assert_eq!(x.index_select(&[2, 0]).value().as_slice().unwrap(), &[5.0, 6.0, 1.0, 2.0]);
    /// ```
    pub fn index_select(self, rows: &[usize]) -> Var<'t, T> {
        let x = self.value();
        assert!(
            x.ndim() >= 1,
            "index_select: cannot select rows of a scalar"
        );
        if let Some(&bad) = rows.iter().find(|&&r| r >= x.shape()[0]) {
            panic!(
                "index_select: row {bad} is out of range for shape {:?}",
                x.shape()
            );
        }
        let value = x.select(Axis(0), rows);
        let rows = rows.to_vec();
        let shape = x.raw_dim();
        self.tape
            .push_op("index_select", &[self], value, move |g, _, _, _| {
                let mut gx = ArrayD::zeros(shape.clone());
                for (i, &r) in rows.iter().enumerate() {
                    let mut dst = gx.index_axis_mut(Axis(0), r);
                    dst += &g.index_axis(Axis(0), i);
                }
                smallvec![Some(gx)]
            })
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{arr1, arr2};

    use crate::Var;
    use crate::ops::test_util::{assert_close, check, eval, sample};

    #[test]
    fn gradcheck_stack_transpose_unsqueeze() {
        let a = sample(&[2, 3], 11);
        let b = sample(&[2, 3], 12);
        let w = sample(&[2, 2, 3], 13);
        check(
            |v| (Var::stack(&[v[0], v[1]], 1) * v[2]).sum(),
            &[a.clone(), b.clone(), w.clone()],
        );
        check(
            |v| (v[0].transpose(0, 1).unsqueeze(0) * v[0].t().sin()).sum(),
            std::slice::from_ref(&a),
        );
        let s = eval(|v| Var::stack(&[v[0], v[1]], 0), &[a.clone(), b.clone()]);
        assert_eq!(s.shape(), &[2, 2, 3]);
        assert_close(&s.index_axis(ndarray::Axis(0), 1).to_owned(), &b, 0.0);
    }

    #[test]
    fn shape_op_values() {
        let x = arr2(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).into_dyn();
        let ins = [x, arr1(&[7.0, 8.0, 9.0]).into_dyn()];
        assert_close(
            &eval(|v| v[0].reshape(&[3, 2]), &ins),
            &arr2(&[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[0].t().reshape(&[6]), &ins),
            &arr1(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[1].broadcast_to(&[2, 3]), &ins),
            &arr2(&[[7.0, 8.0, 9.0], [7.0, 8.0, 9.0]]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| Var::concat(&[v[0], v[1].reshape(&[1, 3])], 0), &ins),
            &arr2(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[0].slice_axis(1, 1..3), &ins),
            &arr2(&[[2.0, 3.0], [5.0, 6.0]]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[0].index_select(&[1, 1, 0]), &ins),
            &arr2(&[[4.0, 5.0, 6.0], [4.0, 5.0, 6.0], [1.0, 2.0, 3.0]]).into_dyn(),
            0.0,
        );
    }

    #[test]
    fn gradcheck_shape_ops() {
        let x = [sample(&[2, 3, 4], 1)];
        check(|v| v[0].permute(&[2, 0, 1]), &x);
        check(|v| v[0].reshape(&[6, 4]), &x);
        check(|v| v[0].permute(&[1, 0, 2]).reshape(&[24]), &x);
        check(|v| v[0].slice_axis(2, 1..3), &x);
        check(|v| v[0].index_select(&[1, 0, 1]), &x);
        check(|v| v[0].broadcast_to(&[5, 2, 3, 4]), &x);
        check(|v| v[0].slice_axis(1, 0..1).broadcast_to(&[2, 3, 4]), &x);
        let parts = [sample(&[2, 3], 2), sample(&[2, 1], 3), sample(&[2, 2], 4)];
        check(|v| Var::concat(v, 1), &parts);
    }

    #[test]
    #[should_panic(expected = "reshape: [2, 3] (6 elements) cannot become [4] (4 elements)")]
    fn reshape_mismatch_panics() {
        eval(|v| v[0].reshape(&[4]), &[sample(&[2, 3], 1)]);
    }

    #[test]
    #[should_panic(expected = "concat: shapes [2, 3] and [3, 3] differ off axis 1")]
    fn concat_mismatch_panics() {
        eval(
            |v| Var::concat(v, 1),
            &[sample(&[2, 3], 1), sample(&[3, 3], 2)],
        );
    }
}
