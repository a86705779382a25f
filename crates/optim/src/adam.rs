//! Adam and AdamW, as `torch.optim.Adam` / `torch.optim.AdamW`: bias-corrected moment
//! estimates, with L2 (coupled) or decoupled weight decay and the AMSGrad variant.

use std::collections::BTreeMap;

use gradus_autograd::{Float, Gradients, ParamStore};
use serde::{Deserialize, Serialize};

use crate::core::{array, elements, for_each_param, lr_and_state_methods};
use crate::parallel::split_mut;
use crate::{MissingGrad, OptimError, Optimizer, OptimizerState, ParamState};

/// How weight decay enters the update.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum WeightDecay {
    /// Added to the gradient, `d = g + wd * p` (Adam's `weight_decay`).
    L2(f64),
    /// Applied to the weights before the step, `p *= 1 - lr * wd` (AdamW).
    Decoupled(f64),
}

/// Adam: `m = b1 m + (1 - b1) d`, `v = b2 v + (1 - b2) d^2`,
/// `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`; with AMSGrad the running
/// maximum of `v` is used in the denominator.
///
/// [`Adam::new`] has Adam's defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight
/// decay); [`Adam::adamw`] has AdamW's (the same with decoupled weight decay 1e-2).
///
/// ```
/// use gradus_optim::{Adam, Optimizer, WeightDecay};
/// let adamw = Adam::<f32>::adamw(1e-3);
/// assert_eq!(adamw.weight_decay, WeightDecay::Decoupled(0.01));
/// assert_eq!(adamw.name(), "AdamW");
/// let amsgrad = Adam::<f32>::new(1e-3).amsgrad(true);
/// assert!(amsgrad.amsgrad);
/// ```
#[derive(Clone, Debug)]
pub struct Adam<T: Float = f32> {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment.
    pub betas: (f64, f64),
    /// Added to the denominator.
    pub eps: f64,
    /// Weight decay, coupled (Adam) or decoupled (AdamW).
    pub weight_decay: WeightDecay,
    /// Use the running maximum of the second moment.
    pub amsgrad: bool,
    /// What to do with a parameter that got no gradient.
    pub missing_grad: MissingGrad,
    state: BTreeMap<String, ParamState<T>>,
}

impl<T: Float> Default for Adam<T> {
    fn default() -> Self {
        Self::new(1e-3)
    }
}

impl<T: Float> Adam<T> {
    /// Adam at learning rate `lr`, other settings PyTorch's defaults.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: WeightDecay::L2(0.0),
            amsgrad: false,
            missing_grad: MissingGrad::Error,
            state: BTreeMap::new(),
        }
    }

    /// AdamW at learning rate `lr`: decoupled weight decay 1e-2, as PyTorch's default.
    pub fn adamw(lr: f64) -> Self {
        Self {
            weight_decay: WeightDecay::Decoupled(1e-2),
            ..Self::new(lr)
        }
    }

    /// Sets the moment decay rates.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.betas = (beta1, beta2);
        self
    }

    /// Sets eps.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the weight decay coefficient, keeping its kind, as PyTorch's `weight_decay`:
    /// coupled L2 for Adam ([`Adam::new`]), decoupled for AdamW ([`Adam::adamw`]).
    ///
    /// ```
    /// use gradus_optim::{Adam, WeightDecay};
    /// assert_eq!(Adam::<f32>::new(1e-3).weight_decay(1e-4).weight_decay, WeightDecay::L2(1e-4));
    /// assert_eq!(Adam::<f32>::adamw(1e-3).weight_decay(0.1).weight_decay, WeightDecay::Decoupled(0.1));
    /// ```
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = match self.weight_decay {
            WeightDecay::L2(_) => WeightDecay::L2(weight_decay),
            WeightDecay::Decoupled(_) => WeightDecay::Decoupled(weight_decay),
        };
        self
    }

    /// Sets the weight decay's kind and coefficient.
    pub fn weight_decay_mode(mut self, weight_decay: WeightDecay) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// The missing-gradient policy.
    pub fn missing_grad(mut self, policy: MissingGrad) -> Self {
        self.missing_grad = policy;
        self
    }

    /// Turns AMSGrad on or off.
    pub fn amsgrad(mut self, amsgrad: bool) -> Self {
        self.amsgrad = amsgrad;
        self
    }

    fn kind(&self) -> &'static str {
        match self.weight_decay {
            WeightDecay::L2(_) => "Adam",
            WeightDecay::Decoupled(_) => "AdamW",
        }
    }
}

impl<T: Float> Optimizer<T> for Adam<T> {
    fn step(&mut self, params: &mut ParamStore<T>, grads: &Gradients<T>) -> Result<(), OptimError> {
        let opt = self;
        gradus_autograd::monomorphic!(T; f32 => Adam::step_f32, f64 => Adam::step_f64; opt, params, grads);
        opt.step_generic(params, grads)
    }

    fn name(&self) -> &'static str {
        self.kind()
    }

    lr_and_state_methods!(ParamState::Adam { .. });

    fn momentum(&self) -> Option<f64> {
        Some(self.betas.0)
    }

    fn set_momentum(&mut self, momentum: f64) -> bool {
        self.betas.0 = momentum;
        true
    }
}

impl<T: Float> Adam<T> {
    #[inline(always)]
    fn step_generic(
        &mut self,
        params: &mut ParamStore<T>,
        grads: &Gradients<T>,
    ) -> Result<(), OptimError> {
        let (b1, b2) = self.betas;
        let (l2, decay) = match self.weight_decay {
            WeightDecay::L2(wd) => (T::of(wd), T::one()),
            WeightDecay::Decoupled(wd) => (T::zero(), T::of(1.0 - self.lr * wd)),
        };
        let (lr, eps, amsgrad) = (self.lr, T::of(self.eps), self.amsgrad);
        let (one_minus_b1, b2t, one_minus_b2) = (T::of(1.0 - b1), T::of(b2), T::of(1.0 - b2));
        for_each_param(
            params,
            grads,
            self.missing_grad,
            &mut self.state,
            |p, g, shape, slot| {
                if !matches!(slot, Some(ParamState::Adam { .. })) {
                    let zeros = || array(shape, vec![T::zero(); p.len()]);
                    *slot = Some(ParamState::Adam {
                        step: 0,
                        exp_avg: zeros(),
                        exp_avg_sq: zeros(),
                        max_exp_avg_sq: amsgrad.then(zeros),
                    });
                }
                let Some(ParamState::Adam {
                    step,
                    exp_avg,
                    exp_avg_sq,
                    max_exp_avg_sq,
                }) = slot
                else {
                    unreachable!()
                };
                *step += 1;
                let t = *step as i32;
                // Scalars in f64, as PyTorch computes them in Python floats.
                let step_size = T::of(lr / (1.0 - b1.powi(t)));
                let bc2_sqrt = T::of((1.0 - b2.powi(t)).sqrt());
                let (m, v) = (elements(exp_avg), elements(exp_avg_sq));
                let vmax = max_exp_avg_sq.as_mut().map_or(&mut [][..], elements);
                let k = Scalars {
                    decay,
                    l2,
                    one_minus_b1,
                    b2t,
                    one_minus_b2,
                    step_size,
                    bc2_sqrt,
                    eps,
                };
                split_mut(p.len(), [p, m, v, vmax], |[p, m, v, vmax], r| {
                    k.update(p, &g[r], m, v, vmax)
                });
            },
        )
    }
}

/// One step's constants.
#[derive(Clone, Copy)]
struct Scalars<T> {
    decay: T,
    l2: T,
    one_minus_b1: T,
    b2t: T,
    one_minus_b2: T,
    step_size: T,
    bc2_sqrt: T,
    eps: T,
}

impl<T: Float> Scalars<T> {
    /// The update of a range of elements (`vmax` empty without AMSGrad). The slices are
    /// separate arguments so that the compiler knows they do not overlap and vectorizes.
    #[inline(always)]
    fn update(self, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], vmax: &mut [T]) {
        let Scalars {
            decay,
            l2,
            one_minus_b1,
            b2t,
            one_minus_b2,
            step_size,
            bc2_sqrt,
            eps,
        } = self;
        let moments = |p: &mut T, g: T, m: &mut T, v: &mut T| {
            *p *= decay;
            let d = g + l2 * *p;
            *m += one_minus_b1 * (d - *m); // torch's lerp
            *v = b2t * *v + one_minus_b2 * d * d;
        };
        // One loop per variant, so that each vectorizes.
        if vmax.is_empty() {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                moments(p, g, m, v);
                *p -= step_size * *m / (v.sqrt() / bc2_sqrt + eps);
            }
        } else {
            for ((((p, &g), m), v), vmax) in p.iter_mut().zip(g).zip(m).zip(v).zip(vmax) {
                moments(p, g, m, v);
                *vmax = vmax.max(*v);
                *p -= step_size * *m / (vmax.sqrt() / bc2_sqrt + eps);
            }
        }
    }
}

crate::core::concrete_steps!(Adam);
