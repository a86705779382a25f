//! RMSprop, as `torch.optim.RMSprop`: steps scaled by a running average of squared
//! gradients, optionally centered and with momentum.

use std::collections::BTreeMap;

use gradus_autograd::{Float, Gradients, ParamStore};

use crate::core::{array, elements, for_each_param, lr_and_state_methods};
use crate::parallel::split_mut;
use crate::{MissingGrad, OptimError, Optimizer, OptimizerState, ParamState};

/// RMSprop: `v = alpha v + (1 - alpha) d^2`; `p -= lr * d / (sqrt(v) + eps)`, where
/// centered subtracts the squared running mean of `d` inside the root and momentum
/// accumulates `d / (...)` into a buffer that is stepped along instead.
///
/// Defaults equal PyTorch's: lr 1e-2, alpha 0.99, eps 1e-8, weight_decay 0, momentum 0,
/// centered false.
///
/// ```
/// use gradus_optim::RmsProp;
/// let opt = RmsProp::<f32>::new(0.01);
/// assert_eq!((opt.alpha, opt.eps, opt.centered), (0.99, 1e-8, false));
/// ```
#[derive(Clone, Debug)]
pub struct RmsProp<T: Float = f32> {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the running averages.
    pub alpha: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Momentum factor (0 for none).
    pub momentum: f64,
    /// Normalise by the estimated variance instead of the second moment.
    pub centered: bool,
    /// What to do with a parameter that got no gradient.
    pub missing_grad: MissingGrad,
    state: BTreeMap<String, ParamState<T>>,
}

impl<T: Float> Default for RmsProp<T> {
    fn default() -> Self {
        Self::new(1e-2)
    }
}

impl<T: Float> RmsProp<T> {
    /// RMSprop at learning rate `lr`, other settings PyTorch's defaults.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            missing_grad: MissingGrad::Error,
            state: BTreeMap::new(),
        }
    }

    /// The smoothing constant of the squared-gradient average.
    ///
    /// ```
    /// use gradus_optim::RmsProp;
    /// let opt = RmsProp::<f32>::new(1e-3).alpha(0.9).momentum(0.9).centered(true).eps(1e-6);
    /// assert_eq!((opt.alpha, opt.momentum, opt.centered, opt.eps), (0.9, 0.9, true, 1e-6));
    /// ```
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Momentum (0 for none).
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Normalise by the centered second moment (an estimate of the variance).
    pub fn centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }

    crate::core::shared_builders!();
}

impl<T: Float> Optimizer<T> for RmsProp<T> {
    fn step(&mut self, params: &mut ParamStore<T>, grads: &Gradients<T>) -> Result<(), OptimError> {
        let opt = self;
        gradus_autograd::monomorphic!(T; f32 => RmsProp::step_f32, f64 => RmsProp::step_f64; opt, params, grads);
        opt.step_generic(params, grads)
    }

    fn name(&self) -> &'static str {
        "RmsProp"
    }

    lr_and_state_methods!(ParamState::RmsProp { .. });

    fn momentum(&self) -> Option<f64> {
        (self.momentum > 0.0).then_some(self.momentum)
    }

    fn set_momentum(&mut self, momentum: f64) -> bool {
        self.momentum = momentum;
        true
    }
}

impl<T: Float> RmsProp<T> {
    #[inline(always)]
    fn step_generic(
        &mut self,
        params: &mut ParamStore<T>,
        grads: &Gradients<T>,
    ) -> Result<(), OptimError> {
        let (lr, alpha, eps, wd, mu) = (
            T::of(self.lr),
            T::of(self.alpha),
            T::of(self.eps),
            T::of(self.weight_decay),
            T::of(self.momentum),
        );
        let (centered, with_momentum) = (self.centered, self.momentum > 0.0);
        let one_minus_alpha = T::one() - alpha;
        for_each_param(
            params,
            grads,
            self.missing_grad,
            &mut self.state,
            |p, g, shape, slot| {
                if !matches!(slot, Some(ParamState::RmsProp { .. })) {
                    let zeros = || array(shape, vec![T::zero(); p.len()]);
                    *slot = Some(ParamState::RmsProp {
                        step: 0,
                        square_avg: zeros(),
                        grad_avg: centered.then(zeros),
                        momentum_buffer: with_momentum.then(zeros),
                    });
                }
                let Some(ParamState::RmsProp {
                    step,
                    square_avg,
                    grad_avg,
                    momentum_buffer,
                }) = slot
                else {
                    unreachable!()
                };
                *step += 1;
                let v = elements(square_avg);
                let m = grad_avg.as_mut().map_or(&mut [][..], elements);
                let b = momentum_buffer.as_mut().map_or(&mut [][..], elements);
                let k = (lr, wd, alpha, one_minus_alpha, eps, mu);
                split_mut(p.len(), [p, v, m, b], |[p, v, m, b], r| {
                    update(k, p, &g[r], v, m, b)
                });
            },
        )
    }
}

/// The update of a range of elements (`m` empty unless centered, `b` without momentum).
/// Slices as separate arguments: the compiler then knows they do not overlap.
#[inline(always)]
fn update<T: Float>(
    (lr, wd, alpha, one_minus_alpha, eps, mu): (T, T, T, T, T, T),
    p: &mut [T],
    g: &[T],
    v: &mut [T],
    m: &mut [T],
    b: &mut [T],
) {
    let (centered, momentum) = (!m.is_empty(), !b.is_empty());
    for i in 0..p.len() {
        let d = g[i] + wd * p[i];
        v[i] = alpha * v[i] + one_minus_alpha * d * d;
        let den = if centered {
            m[i] += one_minus_alpha * (d - m[i]); // torch's lerp
            (v[i] - m[i] * m[i]).sqrt() + eps
        } else {
            v[i].sqrt() + eps
        };
        if momentum {
            b[i] = mu * b[i] + d / den;
            p[i] -= lr * b[i];
        } else {
            p[i] -= lr * d / den;
        }
    }
}

crate::core::concrete_steps!(RmsProp);
