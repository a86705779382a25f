//! Losses, all with mean reduction as PyTorch's defaults: the fused and stable
//! `cross_entropy_with_logits` (integer class labels), `mse_loss` (composed from primitives)
//! and `bce_with_logits`.

use ndarray::{ArrayD, Axis, Ix2, Zip};
use smallvec::smallvec;

use crate::{Float, Var, pool};

impl<'t, T: Float> Var<'t, T> {
    /// Mean softmax cross-entropy of logits `[batch, classes]` against class indices, fused:
    /// forward is a stable log-softmax, backward is `(softmax - onehot) / batch`.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr2};
    /// let tape = Tape::<f64>::no_grad();
    /// let logits = tape.constant(arr2(&[[0.0, 0.0], [0.0, 0.0]]).into_dyn());
    /// let loss = logits.cross_entropy_with_logits(&[0, 1]).item();
    /// assert!((loss - 2f64.ln()).abs() < 1e-12);
    /// ```
    pub fn cross_entropy_with_logits(self, labels: &[usize]) -> Var<'t, T> {
        let x = self.value();
        let logits = x.view().into_dimensionality::<Ix2>().unwrap_or_else(|_| {
            panic!(
                "cross_entropy_with_logits: logits must be [batch, classes], got shape {:?}",
                x.shape()
            )
        });
        let (n, c) = logits.dim();
        assert!(
            labels.len() == n,
            "cross_entropy_with_logits: logits {:?} but {} labels",
            x.shape(),
            labels.len()
        );
        assert!(
            n > 0,
            "cross_entropy_with_logits: empty batch, logits {:?}",
            x.shape()
        );
        if let Some(&bad) = labels.iter().find(|&&l| l >= c) {
            panic!(
                "cross_entropy_with_logits: label {bad} is out of range for logits {:?} ({c} classes)",
                x.shape()
            );
        }
        // probs = softmax(logits) row by row; loss = mean(lse - logit[label]).
        let mut probs = pool::copy(&x);
        let mut total = 0.0f64;
        let mut prob_rows = probs.view_mut().into_dimensionality::<Ix2>().expect("2-D");
        for (mut row, &label) in prob_rows.rows_mut().into_iter().zip(labels) {
            let max = row.iter().copied().fold(T::neg_infinity(), T::max);
            if max == T::infinity() {
                // The +inf logits share all the probability.
                let k = row.iter().filter(|&&v| v == T::infinity()).count();
                let picked = row[label] == T::infinity();
                row.mapv_inplace(|v| {
                    if v == T::infinity() {
                        T::one() / T::of(k as f64)
                    } else {
                        T::zero()
                    }
                });
                total += if picked {
                    (k as f64).ln()
                } else {
                    f64::INFINITY
                };
                continue;
            }
            let max = if max.is_finite() { max } else { T::zero() };
            let picked = row[label] - max;
            let mut sum = T::zero();
            row.mapv_inplace(|v| {
                let e = (v - max).exp();
                sum += e;
                e
            });
            row /= sum;
            total += (sum.ln() - picked).as_f64();
        }
        let value = pool::full(&[], T::of(total / n as f64));
        let labels = labels.to_vec();
        self.tape.push_op(
            "cross_entropy_with_logits",
            &[self],
            value,
            move |g, _, _, _| {
                // The saved probabilities become the gradient: (softmax - onehot) * g / n.
                let scale = g[[]] / T::of(n as f64);
                let mut d = probs;
                let mut rows = d.view_mut().into_dimensionality::<Ix2>().expect("2-D");
                for (mut row, &label) in rows.rows_mut().into_iter().zip(&labels) {
                    row[label] -= T::one();
                    row *= scale;
                }
                smallvec![Some(d)]
            },
        )
    }

    /// Mean squared error `mean((self - target)^2)`, composed from primitives.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr1};
    /// let tape = Tape::<f32>::no_grad();
    /// let p = tape.constant(arr1(&[1.0, 2.0]).into_dyn());
    /// let t = tape.constant(arr1(&[0.0, 4.0]).into_dyn());
    /// assert_eq!(p.mse_loss(t).item(), 2.5);
    /// ```
    pub fn mse_loss(self, target: Var<'t, T>) -> Var<'t, T> {
        let (a, b) = (self.shape(), target.shape());
        assert!(
            a == b,
            "mse_loss: prediction {a:?} and target {b:?} differ in shape"
        );
        (self - target).square().mean()
    }

    /// Mean binary cross-entropy of logits against targets in [0, 1], in the stable form
    /// `max(x, 0) - x t + log(1 + e^-|x|)`.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr1};
    /// let tape = Tape::<f64>::no_grad();
    /// let x = tape.constant(arr1(&[0.0]).into_dyn());
    /// let t = tape.constant(arr1(&[1.0]).into_dyn());
    /// assert!((x.bce_with_logits(t).item() - 2f64.ln()).abs() < 1e-12);
    /// ```
    pub fn bce_with_logits(self, target: Var<'t, T>) -> Var<'t, T> {
        let (x, t) = (self.value(), target.value());
        assert!(
            x.shape() == t.shape(),
            "bce_with_logits: logits {:?} and target {:?} differ in shape",
            x.shape(),
            t.shape()
        );
        assert!(
            !x.is_empty(),
            "bce_with_logits: empty input of shape {:?}",
            x.shape()
        );
        let n = T::of(x.len() as f64);
        let mut total = T::zero();
        Zip::from(&*x).and(&*t).for_each(|&x, &t| {
            total += bce_term(x, t);
        });
        let value = ArrayD::from_elem(vec![], total / n);
        self.tape.push_op(
            "bce_with_logits",
            &[self, target],
            value,
            move |g, _, _, needs| {
                let scale = g[[]] / n;
                smallvec![
                    needs[0].then(|| {
                        let mut d = x.mapv(super::activation::sigmoid);
                        Zip::from(&mut d)
                            .and(&*t)
                            .for_each(|d, &t| *d = (*d - t) * scale);
                        d
                    }),
                    needs[1].then(|| x.mapv(|x| -x * scale)),
                ]
            },
        )
    }
}

/// One element of the binary cross-entropy with logits, `max(x, 0) - x t + log(1 + e^-|x|)`,
/// arranged so that infinite logits give 0 or infinity rather than `inf - inf = NaN`.
fn bce_term<T: Float>(x: T, t: T) -> T {
    let soft = (-x.abs()).exp().ln_1p();
    let linear = if x >= T::zero() {
        let w = T::one() - t;
        if w == T::zero() { T::zero() } else { x * w }
    } else if t == T::zero() {
        T::zero()
    } else {
        -x * t
    };
    linear + soft
}

/// Rows of `x` whose argmax equals the label, for accuracy.
///
/// ```
/// use gradus_autograd::{ops::loss::count_correct, ndarray::arr2};
/// let logits = arr2(&[[0.1, 0.9], [0.8, 0.2]]).into_dyn();
/// assert_eq!(count_correct(&logits, &[1, 1]), 1);
/// ```
pub fn count_correct<T: Float>(logits: &ArrayD<T>, labels: &[usize]) -> usize {
    logits
        .axis_iter(Axis(0))
        .zip(labels)
        .filter(|(row, label)| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best == **label
        })
        .count()
}

#[cfg(test)]
mod tests {
    use ndarray::{arr1, arr2};

    use crate::ops::test_util::{assert_close, check, eval, sample};

    #[test]
    fn cross_entropy_value_by_hand() {
        let x = arr2(&[[1.0, 2.0, 3.0], [1.0, 0.0, -1.0]]).into_dyn();
        let lse0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let lse1 = (1f64.exp() + 1.0 + (-1f64).exp()).ln();
        let expected = ((lse0 - 3.0) + (lse1 - 0.0)) / 2.0;
        let got = eval(
            |v| v[0].cross_entropy_with_logits(&[2, 1]),
            std::slice::from_ref(&x),
        );
        assert!((got[[]] - expected).abs() < 1e-12);
        // Same as the composed definition.
        let composed = eval(
            |v| {
                let lp = v[0].log_softmax(1);
                let picked = (lp * v[1]).sum();
                picked.mul_scalar(-0.5)
            },
            &[x, arr2(&[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).into_dyn()],
        );
        assert!((got[[]] - composed[[]]).abs() < 1e-12);
    }

    #[test]
    fn cross_entropy_is_finite_and_correct_on_huge_logits() {
        for scale in [1e4, 1e30] {
            let x = arr2(&[[scale, 0.0, -scale], [0.0, scale, scale]]).into_dyn();
            let got = eval(
                |v| v[0].cross_entropy_with_logits(&[0, 0]),
                std::slice::from_ref(&x),
            );
            // Row 0 is certain and right (loss 0); row 1 is wrong by `scale` plus log 2.
            let expected = (0.0 + scale + 2f64.ln()) / 2.0;
            assert!(got[[]].is_finite());
            assert!(
                (got[[]] - expected).abs() <= 1e-12 * expected,
                "{} vs {}",
                got[[]],
                expected
            );
            let mut id = None;
            let (_, grads) = crate::value_and_grad(|tape| {
                let v = tape.input(x.clone());
                id = Some(v.id());
                v.cross_entropy_with_logits(&[0, 0])
            });
            let g = grads.input(id.unwrap()).unwrap();
            assert!(g.iter().all(|v| v.is_finite()));
            assert_close(
                g,
                &arr2(&[[0.0, 0.0, 0.0], [-0.5, 0.25, 0.25]]).into_dyn(),
                1e-12,
            );
        }
    }

    #[test]
    fn mse_and_bce_values() {
        let p = arr1(&[0.5, -1.0, 2.0]).into_dyn();
        let t = arr1(&[1.0, 0.0, 0.0]).into_dyn();
        let mse = eval(|v| v[0].mse_loss(v[1]), &[p.clone(), t.clone()]);
        assert!((mse[[]] - (0.25 + 1.0 + 4.0) / 3.0).abs() < 1e-15);
        let bce = eval(|v| v[0].bce_with_logits(v[1]), &[p.clone(), t.clone()]);
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let expected = -((s(0.5)).ln() + (1.0 - s(-1.0)).ln() + (1.0 - s(2.0)).ln()) / 3.0;
        assert!((bce[[]] - expected).abs() < 1e-12);
        let huge = eval(
            |v| v[0].bce_with_logits(v[1]),
            &[
                arr1(&[1e30, -1e30]).into_dyn(),
                arr1(&[0.0, 1.0]).into_dyn(),
            ],
        );
        assert_eq!(huge[[]], 1e30);
    }

    #[test]
    fn gradcheck_losses() {
        check(
            |v| v[0].cross_entropy_with_logits(&[1, 0, 3]),
            &[sample(&[3, 4], 1)],
        );
        let ins = [
            sample(&[3, 2], 2),
            sample(&[3, 2], 3).mapv(|v| (v + 2.0) / 4.0),
        ];
        check(|v| v[0].mse_loss(v[1]), &ins);
        check(|v| v[0].bce_with_logits(v[1]), &ins);
    }

    #[test]
    #[should_panic(
        expected = "cross_entropy_with_logits: label 4 is out of range for logits [2, 4] (4 classes)"
    )]
    fn label_out_of_range_panics() {
        eval(
            |v| v[0].cross_entropy_with_logits(&[0, 4]),
            &[sample(&[2, 4], 1)],
        );
    }
}
