//! Finite-difference gradient checking in `f64`, with PyTorch's tolerances.
//!
//! A non-scalar output is reduced with fixed pseudo-random weights `w` to `sum(out * w)`, so
//! every element of the vector-Jacobian product is checked, not only the gradient of a sum.

use ndarray::{ArrayD, Dimension, IxDyn};

use crate::{ParamStore, Tape, Var, value_and_grad};

/// Tolerances for [`gradcheck_with`]; the defaults are `torch.autograd.gradcheck`'s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradcheckOptions {
    /// Central-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        Self {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
        }
    }
}

/// The worst disagreement between backward and finite differences.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error(
    "gradcheck failed for {name}, element {index:?}: analytic {analytic} vs numeric {numeric} \
     (atol {atol}, rtol {rtol})"
)]
pub struct GradcheckError {
    /// Which input (position in the slice, or the parameter's index in its store).
    pub input: usize,
    /// `input N` or `parameter NAME`.
    pub name: String,
    /// The worst element's index.
    pub index: Vec<usize>,
    /// The gradient from backward.
    pub analytic: f64,
    /// The central-difference estimate.
    pub numeric: f64,
    /// Tolerances used.
    pub atol: f64,
    /// Tolerances used.
    pub rtol: f64,
}

/// Checks `f`'s gradients with respect to every input against central differences, with
/// PyTorch's defaults (eps 1e-6, atol 1e-5, rtol 1e-3).
///
/// ```
/// use gradus_autograd::{gradcheck, ndarray::arr1};
/// let x = arr1(&[0.5, -1.0, 2.0]).into_dyn();
/// gradcheck(|v| (v[0] * v[0]).tanh(), &[x]).unwrap();
///
/// // A wrong gradient is caught: `relu` at exactly 0 has no derivative.
/// let at_kink = arr1(&[0.0]).into_dyn();
/// assert!(gradcheck(|v| v[0].relu(), &[at_kink]).is_err());
/// ```
pub fn gradcheck<F>(f: F, inputs: &[ArrayD<f64>]) -> Result<(), GradcheckError>
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    gradcheck_with(f, inputs, GradcheckOptions::default())
}

/// [`gradcheck`] with explicit tolerances.
pub fn gradcheck_with<F>(
    f: F,
    inputs: &[ArrayD<f64>],
    opts: GradcheckOptions,
) -> Result<(), GradcheckError>
where
    F: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    // Weights for reducing a non-scalar output, fixed once its shape is known.
    let out_shape = {
        let tape = Tape::no_grad();
        let vars: Vec<_> = inputs.iter().map(|a| tape.constant(a.clone())).collect();
        f(&vars).shape()
    };
    let weights = reduction_weights(&out_shape);
    let mut ids = Vec::new();
    let (_, grads) = value_and_grad(|tape| {
        let vars: Vec<_> = inputs.iter().map(|a| tape.input(a.clone())).collect();
        ids = vars.iter().map(|v| v.id()).collect();
        reduce(f(&vars), &weights)
    });

    let eval = |perturbed: &Vec<ArrayD<f64>>| -> f64 {
        let tape = Tape::no_grad();
        let vars: Vec<_> = perturbed.iter().map(|a| tape.constant(a.clone())).collect();
        reduce(f(&vars), &weights).item()
    };
    let mut work: Vec<ArrayD<f64>> = inputs.to_vec();
    for i in 0..inputs.len() {
        let analytic = grads.input(ids[i]).cloned();
        compare(
            i,
            format!("input {i}"),
            analytic,
            opts,
            &mut work,
            |w| &mut w[i],
            eval,
        )?;
    }
    Ok(())
}

/// [`gradcheck`] for the parameters of a store: `f` builds a scalar loss from `params`
/// (typically a model's forward pass and a loss), and every parameter's gradient is checked.
///
/// ```
/// use gradus_autograd::{gradcheck_params, ParamStore, ndarray::arr1};
/// let mut params = ParamStore::<f64>::new();
/// let w = params.insert("w", arr1(&[0.3, -0.7]).into_dyn()).unwrap();
/// gradcheck_params(&params, |tape, p| tape.param(p, w).sigmoid().sum()).unwrap();
/// ```
pub fn gradcheck_params<F>(params: &ParamStore<f64>, f: F) -> Result<(), GradcheckError>
where
    F: for<'t> Fn(&'t Tape<f64>, &ParamStore<f64>) -> Var<'t, f64>,
{
    let opts = GradcheckOptions::default();
    let (_, grads) = value_and_grad(|tape| f(tape, params));
    let eval = |p: &ParamStore<f64>| f(&Tape::no_grad(), p).item();
    let mut work = params.clone();
    for (id, name, _) in params.iter() {
        let analytic = grads.get(id).cloned();
        let name = format!("parameter {name}");
        compare(
            id.index(),
            name,
            analytic,
            opts,
            &mut work,
            |w| w.get_mut(id),
            eval,
        )?;
    }
    Ok(())
}

/// Compares one input's analytic gradient with central differences, perturbing the array
/// that `slot` picks out of `work` element by element.
fn compare<W>(
    input: usize,
    name: String,
    analytic: Option<ArrayD<f64>>,
    opts: GradcheckOptions,
    work: &mut W,
    slot: impl Fn(&mut W) -> &mut ArrayD<f64>,
    eval: impl Fn(&W) -> f64,
) -> Result<(), GradcheckError> {
    let analytic = analytic.unwrap_or_else(|| ArrayD::zeros(slot(work).raw_dim()));
    let mut worst: Option<(f64, GradcheckError)> = None;
    for (index, &a) in analytic.indexed_iter() {
        let x = slot(work)[&index];
        slot(work)[&index] = x + opts.eps;
        let plus = eval(work);
        slot(work)[&index] = x - opts.eps;
        let minus = eval(work);
        slot(work)[&index] = x;
        let numeric = (plus - minus) / (2.0 * opts.eps);
        let excess = (a - numeric).abs() - (opts.atol + opts.rtol * numeric.abs());
        if (excess > 0.0 || a.is_nan() != numeric.is_nan())
            && worst.as_ref().is_none_or(|(e, _)| excess > *e)
        {
            let error = GradcheckError {
                input,
                name: name.clone(),
                index: index.slice().to_vec(),
                analytic: a,
                numeric,
                atol: opts.atol,
                rtol: opts.rtol,
            };
            worst = Some((excess, error));
        }
    }
    worst.map_or(Ok(()), |(_, e)| Err(e))
}

/// `sum(out * weights)`, or `out` itself when it is already a scalar.
fn reduce<'t>(out: Var<'t, f64>, weights: &ArrayD<f64>) -> Var<'t, f64> {
    if weights.ndim() == 0 {
        out
    } else {
        (out * out.tape().constant(weights.clone())).sum()
    }
}

/// Deterministic weights in [-1.5, -0.5] U [0.5, 1.5]: never near zero, so no element of
/// the output can hide.
fn reduction_weights(shape: &[usize]) -> ArrayD<f64> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let u = (s >> 11) as f64 / (1u64 << 53) as f64;
        if u < 0.5 {
            -0.5 - 2.0 * u
        } else {
            2.0 * u - 0.5
        }
    })
}

#[cfg(test)]
mod tests {
    use ndarray::arr1;

    use super::*;

    #[test]
    fn reports_the_input_and_worst_element_of_a_wrong_rule() {
        // d/dx relu at 0 is taken as 0, but central differences see 0.5.
        let err = gradcheck(
            |v| v[0] * v[1].relu(),
            &[arr1(&[1.0, 2.0]).into_dyn(), arr1(&[3.0, 0.0]).into_dyn()],
        )
        .unwrap_err();
        assert_eq!(err.input, 1);
        assert_eq!(err.index, vec![1]);
        assert_eq!(err.analytic, 0.0);
        assert!((err.numeric.abs() - 1.0).abs() < 0.6, "{err}");
        assert!(err.to_string().contains("input 1, element [1]"), "{err}");
    }

    #[test]
    fn passes_when_an_input_is_unused() {
        gradcheck(
            |v| v[0].exp().sum(),
            &[arr1(&[1.0]).into_dyn(), arr1(&[2.0]).into_dyn()],
        )
        .unwrap();
    }
}
