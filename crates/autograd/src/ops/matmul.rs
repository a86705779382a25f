//! Matrix products: `matmul` (2-D, or a vector on either side) and the fused `linear`
//! (`x W^T + b`, PyTorch's layout), the hot path of an MLP.
//!
//! Products go through [`crate::gemm`], which hands them to ndarray's `general_mat_mul`
//! with the operands in the layouts matrixmultiply packs fastest.

use ndarray::{ArrayD, ArrayView2, ArrayViewMut2, Axis, Ix1, Ix2};
use smallvec::SmallVec;
use smallvec::smallvec;

use crate::gemm::gemm;
use crate::tape::Grads;
use crate::{Float, Var, pool};

fn as_matrix<'a, T: Float>(a: &'a ArrayD<T>, op: &str, side: &str) -> ArrayView2<'a, T> {
    match a.ndim() {
        1 if side == "left" => a.view().insert_axis(Axis(0)).into_dimensionality::<Ix2>(),
        1 => a.view().insert_axis(Axis(1)).into_dimensionality::<Ix2>(),
        2 => a.view().into_dimensionality::<Ix2>(),
        _ => panic!(
            "{op}: expected a matrix or a vector, got shape {:?}",
            a.shape()
        ),
    }
    .expect("dimensionality checked")
}

/// `a` with the same elements in `shape`, copying only when the layout requires it.
fn reshaped<T: Float>(a: ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    if a.shape() == shape {
        return a;
    }
    a.as_standard_layout()
        .into_owned()
        .into_shape_with_order(shape)
        .expect("same element count")
}

impl<'t, T: Float> Var<'t, T> {
    /// Matrix product as `torch.matmul` for 1-D and 2-D operands:
    /// `[n, k] x [k, m] -> [n, m]`, `[k] x [k, m] -> [m]`, `[n, k] x [k] -> [n]`, `[k] x [k] -> []`.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::{arr1, arr2}};
    /// let tape = Tape::<f32>::no_grad();
    /// let a = tape.constant(arr2(&[[1.0, 2.0], [3.0, 4.0]]).into_dyn());
    /// let v = tape.constant(arr1(&[1.0, 1.0]).into_dyn());
    /// assert_eq!(a.matmul(v).value().as_slice().unwrap(), &[3.0, 7.0]);
    /// ```
    ///
    /// Shapes that cannot meet panic with both shapes:
    ///
    /// ```should_panic
    /// use gradus_autograd::{Tape, ndarray::ArrayD};
    /// let tape = Tape::<f32>::no_grad();
    /// let a = tape.constant(ArrayD::zeros(vec![64, 784]));
    /// let b = tape.constant(ArrayD::zeros(vec![128, 10]));
    /// a.matmul(b); // matmul: [64, 784] x [128, 10]: inner dimensions 784 and 128 differ
    /// ```
    pub fn matmul(self, other: Var<'t, T>) -> Var<'t, T> {
        let (a, b) = (self.value(), other.value());
        let (am, bm) = (
            as_matrix(&a, "matmul", "left"),
            as_matrix(&b, "matmul", "right"),
        );
        if am.ncols() != bm.nrows() {
            panic!(
                "matmul: {:?} x {:?}: inner dimensions {} and {} differ",
                a.shape(),
                b.shape(),
                am.ncols(),
                bm.nrows()
            );
        }
        let mut out_shape = Vec::new();
        if a.ndim() == 2 {
            out_shape.push(am.nrows());
        }
        if b.ndim() == 2 {
            out_shape.push(bm.ncols());
        }
        let value = reshaped(product(&am, &bm), &out_shape);
        self.tape
            .push_op("matmul", &[self, other], value, move |g, _, _, needs| {
                let (am, bm) = (
                    as_matrix(&a, "matmul", "left"),
                    as_matrix(&b, "matmul", "right"),
                );
                let g = g.as_standard_layout();
                let g2 = g
                    .view()
                    .into_shape_with_order((am.nrows(), bm.ncols()))
                    .expect("gradient has the output's elements");
                smallvec![
                    needs[0].then(|| reshaped(product(&g2, &bm.t()), a.shape())),
                    needs[1].then(|| reshaped(product(&am.t(), &g2), b.shape())),
                ]
            })
    }

    /// The 2-D transpose.
    pub fn t(self) -> Var<'t, T> {
        let shape = self.shape();
        assert!(
            shape.len() == 2,
            "t: expected a matrix, got shape {shape:?}"
        );
        self.permute(&[1, 0])
    }

    /// The affine map of a PyTorch `Linear` layer, fused: `x W^T + b` with `x: [n, in]`,
    /// `weight: [out, in]`, `bias: [out]`.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::{arr1, arr2}};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(arr2(&[[1.0, 2.0]]).into_dyn());
    /// let w = tape.constant(arr2(&[[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]).into_dyn());
    /// let b = tape.constant(arr1(&[0.5, 0.5, 0.5]).into_dyn());
    /// assert_eq!(x.linear(w, Some(b)).value().as_slice().unwrap(), &[1.5, 3.5, 4.5]);
    /// ```
    pub fn linear(self, weight: Var<'t, T>, bias: Option<Var<'t, T>>) -> Var<'t, T> {
        let (x, w) = (self.value(), weight.value());
        let xm = x.view().into_dimensionality::<Ix2>().unwrap_or_else(|_| {
            panic!(
                "linear: input must be [batch, in_features], got shape {:?}",
                x.shape()
            )
        });
        let wm = w.view().into_dimensionality::<Ix2>().unwrap_or_else(|_| {
            panic!(
                "linear: weight must be [out_features, in_features], got shape {:?}",
                w.shape()
            )
        });
        if xm.ncols() != wm.ncols() {
            panic!(
                "linear: input {:?} x weight {:?}: in_features {} and {} differ",
                x.shape(),
                w.shape(),
                xm.ncols(),
                wm.ncols()
            );
        }
        let mut parents: SmallVec<[Var<'t, T>; 3]> = smallvec![self, weight];
        let (n, out) = (xm.nrows(), wm.nrows());
        let mut y = pool::scratch(&[n, out]);
        let mut beta = T::zero();
        if let Some(b) = bias {
            let bv = b.value();
            if bv.shape() != [out] {
                panic!(
                    "linear: bias {:?} does not match weight {:?}: expected [{}]",
                    bv.shape(),
                    w.shape(),
                    out
                );
            }
            // The bias goes in first and the product is accumulated onto it (beta = 1).
            let bias_row = bv.view().into_dimensionality::<Ix1>().expect("checked 1-D");
            y.view_mut()
                .into_dimensionality::<Ix2>()
                .expect("2-D")
                .rows_mut()
                .into_iter()
                .for_each(|mut r| r.assign(&bias_row));
            beta = T::one();
            parents.push(b);
        }
        gemm(T::one(), &xm, &wm.t(), beta, &mut as_matrix_mut(&mut y));
        // The rule captures nothing (the operands' values come from the tape), so recording
        // it allocates nothing.
        self.tape
            .push_op("linear", &parents, y, |g, _, inputs, needs| {
                let g2 = g
                    .view()
                    .into_dimensionality::<Ix2>()
                    .expect("linear output is 2-D");
                let xm = inputs[0]
                    .view()
                    .into_dimensionality::<Ix2>()
                    .expect("checked");
                let wm = inputs[1]
                    .view()
                    .into_dimensionality::<Ix2>()
                    .expect("checked");
                let mut grads: Grads<T> = smallvec![
                    needs[0].then(|| product(&g2, &wm)),
                    needs[1].then(|| product(&g2.t(), &xm)),
                ];
                if inputs.len() == 3 {
                    grads.push(needs[2].then(|| {
                        let mut gb = pool::full(&[g2.ncols()], T::zero());
                        let acc = gb.as_slice_mut().expect("fresh array is contiguous");
                        for row in g2.rows() {
                            for (a, &v) in acc.iter_mut().zip(row) {
                                *a += v;
                            }
                        }
                        gb
                    }));
                }
                grads
            })
    }
}

/// A 2-D mutable view of a fresh 2-D array.
fn as_matrix_mut<T: Float>(a: &mut ArrayD<T>) -> ArrayViewMut2<'_, T> {
    a.view_mut().into_dimensionality::<Ix2>().expect("2-D")
}

/// `a b` on pooled storage.
fn product<T: Float>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) -> ArrayD<T> {
    let mut c = pool::scratch(&[a.nrows(), b.ncols()]);
    gemm(T::one(), a, b, T::zero(), &mut as_matrix_mut(&mut c));
    c
}

#[cfg(test)]
mod tests {
    use ndarray::{arr1, arr2};

    use crate::ops::test_util::{assert_close, check, eval, sample};

    #[test]
    fn matmul_values_for_every_rank_pairing() {
        let a = arr2(&[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]).into_dyn();
        let b = arr2(&[[1.0, 0.0, 2.0], [0.0, 1.0, 3.0]]).into_dyn();
        let u = arr1(&[1.0, -1.0]).into_dyn();
        let w = arr1(&[1.0, 2.0, 3.0]).into_dyn();
        let ins = [a, b, u, w];
        assert_close(
            &eval(|v| v[0].matmul(v[1]), &ins),
            &arr2(&[[1.0, 2.0, 8.0], [3.0, 4.0, 18.0], [5.0, 6.0, 28.0]]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[0].matmul(v[2]), &ins),
            &arr1(&[-1.0, -1.0, -1.0]).into_dyn(),
            0.0,
        );
        assert_close(
            &eval(|v| v[3].matmul(v[0]), &ins),
            &arr1(&[22.0, 28.0]).into_dyn(),
            0.0,
        );
        let dot = eval(|v| v[2].matmul(v[2]), &ins);
        assert_eq!(dot.shape(), &[] as &[usize]);
        assert_eq!(dot[[]], 2.0);
        assert_close(
            &eval(|v| v[0].t(), &ins),
            &arr2(&[[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]).into_dyn(),
            0.0,
        );
    }

    #[test]
    #[should_panic(expected = "matmul: [64, 784] x [128, 10]: inner dimensions 784 and 128 differ")]
    fn matmul_mismatch_names_both_shapes() {
        eval(
            |v| v[0].matmul(v[1]),
            &[sample(&[64, 784], 1), sample(&[128, 10], 2)],
        );
    }

    #[test]
    #[should_panic(expected = "linear: input [4, 3] x weight [2, 5]: in_features 3 and 5 differ")]
    fn linear_mismatch_names_both_shapes() {
        eval(
            |v| v[0].linear(v[1], None),
            &[sample(&[4, 3], 1), sample(&[2, 5], 2)],
        );
    }

    #[test]
    fn linear_equals_matmul_plus_bias() {
        let ins = [sample(&[4, 3], 1), sample(&[5, 3], 2), sample(&[5], 3)];
        assert_close(
            &eval(|v| v[0].linear(v[1], Some(v[2])), &ins),
            &eval(|v| v[0].matmul(v[1].t()) + v[2], &ins),
            1e-12,
        );
    }

    #[test]
    fn gradcheck_matmul_all_rank_pairings() {
        check(
            |v| v[0].matmul(v[1]),
            &[sample(&[3, 4], 1), sample(&[4, 2], 2)],
        );
        check(
            |v| v[0].matmul(v[1]),
            &[sample(&[3, 4], 3), sample(&[4], 4)],
        );
        check(
            |v| v[0].matmul(v[1]),
            &[sample(&[4], 5), sample(&[4, 2], 6)],
        );
        check(|v| v[0].matmul(v[1]), &[sample(&[4], 7), sample(&[4], 8)]);
        check(|v| v[0].t(), &[sample(&[3, 2], 9)]);
    }

    #[test]
    fn gradcheck_linear_with_and_without_bias() {
        let ins = [sample(&[4, 3], 1), sample(&[5, 3], 2), sample(&[5], 3)];
        check(|v| v[0].linear(v[1], Some(v[2])), &ins);
        check(|v| v[0].linear(v[1], None), &ins[..2]);
    }
}
