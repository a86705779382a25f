//! Gradient clipping by global norm and by value, as `torch.nn.utils.clip_grad_norm_` and
//! `clip_grad_value_`.

use gradus_autograd::{Float, Gradients};
use serde::{Deserialize, Serialize};

/// The global gradient norm is NaN or infinite and clipping was asked to fail on that.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "the total norm of order {norm_type} of the gradients is non-finite ({norm}), so it cannot be clipped"
)]
pub struct NonFiniteNorm {
    /// The norm found.
    pub norm: f64,
    /// Its order.
    pub norm_type: f64,
}

/// A clipping rule, for the trainer's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum GradClip {
    /// Rescale all gradients together so that their global norm is at most `max_norm`.
    Norm {
        /// Largest allowed global norm.
        max_norm: f64,
        /// The norm's order (2 for Euclidean, `f64::INFINITY` for max).
        norm_type: f64,
        /// Fail on a NaN or infinite norm instead of scaling by it.
        error_if_nonfinite: bool,
    },
    /// Clamp every element to `[-v, v]`.
    Value(f64),
}

impl GradClip {
    /// Euclidean-norm clipping, not failing on non-finite norms (PyTorch's defaults).
    pub fn norm(max_norm: f64) -> Self {
        GradClip::Norm {
            max_norm,
            norm_type: 2.0,
            error_if_nonfinite: false,
        }
    }

    /// Applies the rule; returns the global norm before clipping for [`GradClip::Norm`].
    pub fn apply<T: Float>(&self, grads: &mut Gradients<T>) -> Result<Option<f64>, NonFiniteNorm> {
        match *self {
            GradClip::Norm {
                max_norm,
                norm_type,
                error_if_nonfinite,
            } => clip_grad_norm(grads, max_norm, norm_type, error_if_nonfinite).map(Some),
            GradClip::Value(v) => {
                clip_grad_value(grads, v);
                Ok(None)
            }
        }
    }
}

/// The global norm of all gradients, computed in `f64`.
pub fn grad_norm<T: Float>(grads: &Gradients<T>, norm_type: f64) -> f64 {
    let values = || {
        grads
            .iter()
            .flat_map(|(_, g)| g.iter().map(|v| v.as_f64().abs()))
    };
    if norm_type.is_infinite() {
        values().fold(0.0, f64::max)
    } else {
        values()
            .map(|v| v.powf(norm_type))
            .sum::<f64>()
            .powf(1.0 / norm_type)
    }
}

/// Scales every gradient by `max_norm / (norm + 1e-6)` when that is below 1; returns the
/// norm before clipping.
///
/// ```
/// use gradus_autograd::{value_and_grad, ParamStore, ndarray::arr1};
/// use gradus_optim::clip_grad_norm;
///
/// let mut params = ParamStore::<f64>::new();
/// let w = params.insert("w", arr1(&[3.0, 4.0]).into_dyn()).unwrap();
/// let (_, mut grads) = value_and_grad(|tape| (tape.param(&params, w) * 0.5).square().sum() * 4.0);
/// // gradient = 2w = [6, 8], norm 10
/// let norm = clip_grad_norm(&mut grads, 1.0, 2.0, false).unwrap();
/// assert!((norm - 10.0).abs() < 1e-12);
/// let g = grads.get(w).unwrap();
/// assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
/// ```
pub fn clip_grad_norm<T: Float>(
    grads: &mut Gradients<T>,
    max_norm: f64,
    norm_type: f64,
    error_if_nonfinite: bool,
) -> Result<f64, NonFiniteNorm> {
    let norm = grad_norm(grads, norm_type);
    if error_if_nonfinite && !norm.is_finite() {
        return Err(NonFiniteNorm { norm, norm_type });
    }
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 || coef.is_nan() {
        let c = T::of(coef);
        for (_, g) in grads.iter_mut() {
            g.mapv_inplace(|v| v * c);
        }
    }
    Ok(norm)
}

/// Clamps every gradient element to `[-clip_value, clip_value]`.
pub fn clip_grad_value<T: Float>(grads: &mut Gradients<T>, clip_value: f64) {
    let v = T::of(clip_value.abs());
    for (_, g) in grads.iter_mut() {
        g.mapv_inplace(|x| x.max(-v).min(v));
    }
}
