//! RMSprop, as `torch.optim.RMSprop`: steps scaled by a running average of squared
//! gradients, optionally centered and with momentum.

use std::collections::BTreeMap;

use gradus_autograd::ndarray::{ArrayD, Zip};
use gradus_autograd::{Float, Gradients, ParamStore};

use crate::core::{check_state, for_each_param};
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
}

impl<T: Float> Optimizer<T> for RmsProp<T> {
    fn step(&mut self, params: &mut ParamStore<T>, grads: &Gradients<T>) -> Result<(), OptimError> {
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
            |p, g, slot| {
                if !matches!(slot, Some(ParamState::RmsProp { .. })) {
                    let zeros = || ArrayD::zeros(p.raw_dim());
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
                // One fused pass per parameter; the optional buffers are zipped only if present.
                let avg_of = |d: T, v: &mut T, m: Option<&mut T>| -> T {
                    *v = alpha * *v + one_minus_alpha * d * d;
                    match m {
                        Some(m) => {
                            *m += one_minus_alpha * (d - *m); // torch's lerp
                            (*v - *m * *m).sqrt() + eps
                        }
                        None => v.sqrt() + eps,
                    }
                };
                match (grad_avg.as_mut(), momentum_buffer.as_mut()) {
                    (None, None) => Zip::from(p).and(g).and(square_avg).for_each(|p, &g, v| {
                        let d = g + wd * *p;
                        *p -= lr * d / avg_of(d, v, None);
                    }),
                    (Some(ga), None) => {
                        Zip::from(p)
                            .and(g)
                            .and(square_avg)
                            .and(ga)
                            .for_each(|p, &g, v, m| {
                                let d = g + wd * *p;
                                *p -= lr * d / avg_of(d, v, Some(m));
                            })
                    }
                    (None, Some(buf)) => {
                        Zip::from(p)
                            .and(g)
                            .and(square_avg)
                            .and(buf)
                            .for_each(|p, &g, v, b| {
                                let d = g + wd * *p;
                                *b = mu * *b + d / avg_of(d, v, None);
                                *p -= lr * *b;
                            })
                    }
                    (Some(ga), Some(buf)) => Zip::from(p)
                        .and(g)
                        .and(square_avg)
                        .and(ga)
                        .and(buf)
                        .for_each(|p, &g, v, m, b| {
                            let d = g + wd * *p;
                            *b = mu * *b + d / avg_of(d, v, Some(m));
                            *p -= lr * *b;
                        }),
                }
            },
        )
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn name(&self) -> &'static str {
        "RmsProp"
    }

    fn state(&self) -> OptimizerState<T> {
        OptimizerState {
            optimizer: "RmsProp".into(),
            lr: self.lr,
            params: self.state.clone(),
        }
    }

    fn load_state(&mut self, state: OptimizerState<T>) -> Result<(), OptimError> {
        check_state("RmsProp", &state, |s| {
            matches!(s, ParamState::RmsProp { .. })
        })?;
        self.lr = state.lr;
        self.state = state.params;
        Ok(())
    }
}
