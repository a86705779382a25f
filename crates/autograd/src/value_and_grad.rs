//! The entry points that record a tape and run backward once: `value_and_grad`, with
//! anomaly detection, and with an auxiliary output (JAX's `has_aux`).

use crate::tape::Anomaly;
use crate::{Float, Gradients, Tape, Var};

/// Records `f` on a fresh tape, runs backward from the scalar it returns, and gives back the
/// loss value and the gradients. Vars cannot escape the closure, so the tape is consumed
/// exactly once.
///
/// ```
/// use gradus_autograd::{value_and_grad, ParamStore, ndarray::arr1};
///
/// let mut params = ParamStore::<f64>::new();
/// let w = params.insert("w", arr1(&[1.0, 2.0]).into_dyn()).unwrap();
/// let (loss, grads) = value_and_grad(|tape| {
///     let w = tape.param(&params, w);
///     (w * w).sum() // d/dw sum(w^2) = 2w
/// });
/// assert_eq!(loss, 5.0);
/// assert_eq!(grads.get(w).unwrap().as_slice().unwrap(), &[2.0, 4.0]);
/// ```
pub fn value_and_grad<T, F>(f: F) -> (T, Gradients<T>)
where
    T: Float,
    F: for<'t> FnOnce(&'t Tape<T>) -> Var<'t, T>,
{
    record_and_backward(f, false).expect("anomaly detection is off")
}

/// [`value_and_grad`] in anomaly mode (PyTorch's `detect_anomaly`): every forward value and
/// every backward gradient is checked, and the first op that produced a NaN or an infinity
/// is reported with its name and shapes. Slower; for debugging.
///
/// ```
/// use gradus_autograd::{value_and_grad_detect_anomaly, Phase, ndarray::arr1};
/// let err = value_and_grad_detect_anomaly(|tape| {
///     let x = tape.input(arr1(&[1.0f64, 0.0]).into_dyn());
///     (x.log() * 2.0).sum()
/// })
/// .unwrap_err();
/// assert_eq!((err.op.as_str(), err.phase), ("log", Phase::Forward));
/// assert_eq!(err.output_shape, vec![2]);
/// ```
pub fn value_and_grad_detect_anomaly<T, F>(f: F) -> Result<(T, Gradients<T>), Anomaly>
where
    T: Float,
    F: for<'t> FnOnce(&'t Tape<T>) -> Var<'t, T>,
{
    record_and_backward(f, true)
}

fn record_and_backward<T, F>(f: F, detect_anomaly: bool) -> Result<(T, Gradients<T>), Anomaly>
where
    T: Float,
    F: for<'t> FnOnce(&'t Tape<T>) -> Var<'t, T>,
{
    record_with_aux(|tape| (f(tape), ()), detect_anomaly).map(|(v, g, ())| (v, g))
}

fn record_with_aux<T, A, F>(f: F, detect_anomaly: bool) -> Result<(T, Gradients<T>, A), Anomaly>
where
    T: Float,
    F: for<'t> FnOnce(&'t Tape<T>) -> (Var<'t, T>, A),
{
    let mut tape = Tape::new(true);
    tape.detect_anomaly = detect_anomaly;
    let (loss, aux) = f(&tape);
    let loss = loss.id;
    let value = tape
        .value_of(loss)
        .iter()
        .next()
        .copied()
        .expect("loss has one element");
    Ok((value, tape.backward(loss)?, aux))
}

/// [`value_and_grad`] for a closure that returns, beside the loss, anything computed on the
/// way (JAX's `has_aux=True`): logits' accuracy, metrics, buffer updates. With
/// `detect_anomaly`, it fails as [`value_and_grad_detect_anomaly`] does.
///
/// ```
/// use gradus_autograd::{value_and_grad_with_aux, count_correct, ParamStore, ndarray::arr2};
///
/// let mut params = ParamStore::<f32>::new();
/// let w = params.insert("w", arr2(&[[1.0, 0.0], [0.0, 1.0]]).into_dyn()).unwrap();
/// let x = arr2(&[[2.0, 1.0], [0.0, 3.0]]).into_dyn();
/// let labels = [0, 0];
/// let (loss, grads, correct) = value_and_grad_with_aux(false, |tape| {
///     let logits = tape.constant(x.clone()).matmul(tape.param(&params, w));
///     let correct = count_correct(&logits.value(), &labels);
///     (logits.cross_entropy_with_logits(&labels), correct)
/// })
/// .unwrap();
/// assert_eq!(correct, 1);
/// assert!(loss > 0.0 && grads.get(w).is_some());
/// ```
pub fn value_and_grad_with_aux<T, A, F>(
    detect_anomaly: bool,
    f: F,
) -> Result<(T, Gradients<T>, A), Anomaly>
where
    T: Float,
    F: for<'t> FnOnce(&'t Tape<T>) -> (Var<'t, T>, A),
{
    record_with_aux(f, detect_anomaly)
}
