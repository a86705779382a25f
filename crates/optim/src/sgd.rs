//! Stochastic gradient descent with optional momentum (classic or Nesterov), dampening and
//! L2 weight decay, as `torch.optim.SGD`.
//!
//! Plain SGD is the update of batch, stochastic and mini-batch gradient descent alike: which
//! one it is depends only on how many samples the gradient was averaged over.

use std::collections::BTreeMap;

use gradus_autograd::{Float, Gradients, ParamStore};
use serde::{Deserialize, Serialize};

use crate::core::{array, elements, for_each_param, lr_and_state_methods};
use crate::parallel::split_mut;
use crate::{MissingGrad, OptimError, Optimizer, OptimizerState, ParamState};

/// The momentum variants of SGD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Momentum {
    /// Plain gradient descent (PyTorch's `momentum=0`).
    #[default]
    None,
    /// Heavy-ball momentum: `b = momentum * b + (1 - dampening) * g`, step along `b`.
    Classic {
        /// Momentum factor.
        momentum: f64,
        /// Dampening of the new gradient.
        dampening: f64,
    },
    /// Nesterov momentum: step along `g + momentum * b` (no dampening, as PyTorch requires).
    Nesterov {
        /// Momentum factor.
        momentum: f64,
    },
}

/// SGD: `p -= lr * d` with `d` the (weight-decayed, momentum-filtered) gradient.
///
/// Defaults equal PyTorch's: lr 1e-3, no momentum, dampening 0, weight decay 0.
///
/// ```
/// use gradus_optim::{Momentum, Sgd};
/// let opt = Sgd::<f32>::new(0.1).momentum(0.9).weight_decay(5e-4);
/// assert_eq!(opt.momentum, Momentum::Classic { momentum: 0.9, dampening: 0.0 });
/// let nesterov = Sgd::<f32>::new(0.1).nesterov(0.9);
/// assert_eq!(nesterov.momentum, Momentum::Nesterov { momentum: 0.9 });
/// ```
#[derive(Clone, Debug)]
pub struct Sgd<T: Float = f32> {
    /// Learning rate.
    pub lr: f64,
    /// Momentum variant.
    pub momentum: Momentum,
    /// L2 penalty added to the gradient: `g + weight_decay * p`.
    pub weight_decay: f64,
    /// What to do with a parameter that got no gradient.
    pub missing_grad: MissingGrad,
    state: BTreeMap<String, ParamState<T>>,
}

impl<T: Float> Default for Sgd<T> {
    fn default() -> Self {
        Self::new(1e-3)
    }
}

impl<T: Float> Sgd<T> {
    /// Plain SGD at learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            momentum: Momentum::None,
            weight_decay: 0.0,
            missing_grad: MissingGrad::Error,
            state: BTreeMap::new(),
        }
    }

    /// Classic momentum (keeping a dampening set before).
    pub fn momentum(mut self, momentum: f64) -> Self {
        let dampening = match self.momentum {
            Momentum::Classic { dampening, .. } => dampening,
            _ => 0.0,
        };
        self.momentum = Momentum::Classic {
            momentum,
            dampening,
        };
        self
    }

    /// Dampening of classic momentum (PyTorch's `dampening`): the buffer is
    /// `momentum * buf + (1 - dampening) * g`. Without momentum it has no effect, as in
    /// PyTorch. Panics with Nesterov momentum, which PyTorch also refuses with dampening.
    ///
    /// ```
    /// use gradus_optim::{Momentum, Sgd};
    /// let opt = Sgd::<f32>::new(0.1).momentum(0.9).dampening(0.1);
    /// assert_eq!(opt.momentum, Momentum::Classic { momentum: 0.9, dampening: 0.1 });
    /// assert_eq!(Sgd::<f32>::new(0.1).dampening(0.1).momentum(0.9).momentum, opt.momentum);
    /// ```
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.momentum = match self.momentum {
            Momentum::Nesterov { .. } if dampening != 0.0 => {
                panic!("Sgd::dampening: Nesterov momentum requires zero dampening")
            }
            Momentum::Nesterov { momentum } => Momentum::Nesterov { momentum },
            Momentum::Classic { momentum, .. } => Momentum::Classic {
                momentum,
                dampening,
            },
            Momentum::None => Momentum::Classic {
                momentum: 0.0,
                dampening,
            },
        };
        self
    }

    /// Classic momentum with dampening.
    pub fn momentum_dampened(mut self, momentum: f64, dampening: f64) -> Self {
        self.momentum = Momentum::Classic {
            momentum,
            dampening,
        };
        self
    }

    /// Nesterov momentum.
    pub fn nesterov(mut self, momentum: f64) -> Self {
        self.momentum = Momentum::Nesterov { momentum };
        self
    }

    /// L2 weight decay.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// The missing-gradient policy.
    pub fn missing_grad(mut self, policy: MissingGrad) -> Self {
        self.missing_grad = policy;
        self
    }
}

impl<T: Float> Optimizer<T> for Sgd<T> {
    fn step(&mut self, params: &mut ParamStore<T>, grads: &Gradients<T>) -> Result<(), OptimError> {
        let opt = self;
        gradus_autograd::monomorphic!(T; f32 => Sgd::step_f32, f64 => Sgd::step_f64; opt, params, grads);
        opt.step_generic(params, grads)
    }

    fn name(&self) -> &'static str {
        "Sgd"
    }

    lr_and_state_methods!(ParamState::Sgd { .. });

    fn momentum(&self) -> Option<f64> {
        match self.momentum {
            Momentum::None => None,
            Momentum::Classic { momentum, .. } | Momentum::Nesterov { momentum } => Some(momentum),
        }
    }

    fn set_momentum(&mut self, momentum: f64) -> bool {
        self.momentum = match self.momentum {
            Momentum::None => Momentum::Classic {
                momentum,
                dampening: 0.0,
            },
            Momentum::Classic { dampening, .. } => Momentum::Classic {
                momentum,
                dampening,
            },
            Momentum::Nesterov { .. } => Momentum::Nesterov { momentum },
        };
        true
    }
}

impl<T: Float> Sgd<T> {
    #[inline(always)]
    fn step_generic(
        &mut self,
        params: &mut ParamStore<T>,
        grads: &Gradients<T>,
    ) -> Result<(), OptimError> {
        let lr = T::of(self.lr);
        let wd = T::of(self.weight_decay);
        let (mu, damp, nesterov) = match self.momentum {
            // Momentum 0 is plain SGD, whatever the dampening (PyTorch's `momentum != 0` test).
            Momentum::None | Momentum::Classic { momentum: 0.0, .. } => (None, T::zero(), false),
            Momentum::Classic {
                momentum,
                dampening,
            } => (Some(T::of(momentum)), T::of(dampening), false),
            Momentum::Nesterov { momentum } => (Some(T::of(momentum)), T::zero(), true),
        };
        for_each_param(
            params,
            grads,
            self.missing_grad,
            &mut self.state,
            |p, g, shape, slot| {
                let Some(mu) = mu else {
                    split_mut(p.len(), [p], |[p], r| plain(lr, wd, p, &g[r]));
                    return;
                };
                match slot {
                    Some(ParamState::Sgd {
                        momentum_buffer: Some(buf),
                    }) => {
                        // b = mu b + (1 - dampening) d; step along d + mu b (Nesterov) or b.
                        let keep = T::one() - damp;
                        let b = elements(buf);
                        let k = (lr, wd, mu, keep, nesterov);
                        split_mut(p.len(), [p, b], |[p, b], r| with_momentum(k, p, &g[r], b));
                    }
                    _ => {
                        // First step: the buffer is the gradient itself, undampened.
                        let mut buf = Vec::with_capacity(p.len());
                        for (p, &g) in p.iter_mut().zip(g) {
                            let d = g + wd * *p;
                            buf.push(d);
                            *p -= lr * if nesterov { d + mu * d } else { d };
                        }
                        *slot = Some(ParamState::Sgd {
                            momentum_buffer: Some(array(shape, buf)),
                        });
                    }
                }
            },
        )
    }
}

/// `p -= lr * (g + wd p)` over a range of elements. Slices as separate arguments: the
/// compiler then knows they do not overlap and vectorizes.
#[inline(always)]
fn plain<T: Float>(lr: T, wd: T, p: &mut [T], g: &[T]) {
    for (p, &g) in p.iter_mut().zip(g) {
        *p -= lr * (g + wd * *p);
    }
}

/// `b = mu b + keep d` and the step along `d + mu b` (Nesterov) or `b`, over a range.
#[inline(always)]
fn with_momentum<T: Float>(
    (lr, wd, mu, keep, nesterov): (T, T, T, T, bool),
    p: &mut [T],
    g: &[T],
    b: &mut [T],
) {
    // Two loops rather than a branch inside one, so each vectorizes.
    if nesterov {
        for ((p, &g), b) in p.iter_mut().zip(g).zip(b) {
            let d = g + wd * *p;
            *b = mu * *b + keep * d;
            *p -= lr * (d + mu * *b);
        }
    } else {
        for ((p, &g), b) in p.iter_mut().zip(g).zip(b) {
            *b = mu * *b + keep * (g + wd * *p);
            *p -= lr * *b;
        }
    }
}

crate::core::concrete_steps!(Sgd);
