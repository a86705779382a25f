//! Adagrad, as `torch.optim.Adagrad`: per-element step sizes that shrink with the sum of
//! squared gradients seen so far.

use std::collections::BTreeMap;

use gradus_autograd::{Float, Gradients, ParamStore};

use crate::core::{array, elements, for_each_param, lr_and_state_methods};
use crate::parallel::split_mut;
use crate::{MissingGrad, OptimError, Optimizer, OptimizerState, ParamState};

/// Adagrad:
/// `s += d^2; p -= lr / (1 + (t - 1) lr_decay) * d / (sqrt(s) + eps)` with `d = g + wd p`.
///
/// Defaults equal PyTorch's: lr 1e-2, lr_decay 0, weight_decay 0,
/// initial_accumulator_value 0, eps 1e-10.
///
/// ```
/// use gradus_optim::Adagrad;
/// let opt = Adagrad::<f32>::default();
/// assert_eq!((opt.lr, opt.eps), (1e-2, 1e-10));
/// ```
#[derive(Clone, Debug)]
pub struct Adagrad<T: Float = f32> {
    /// Learning rate.
    pub lr: f64,
    /// Learning-rate decay per step.
    pub lr_decay: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Starting value of the accumulator.
    pub initial_accumulator_value: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// What to do with a parameter that got no gradient.
    pub missing_grad: MissingGrad,
    state: BTreeMap<String, ParamState<T>>,
}

impl<T: Float> Default for Adagrad<T> {
    fn default() -> Self {
        Self::new(1e-2)
    }
}

impl<T: Float> Adagrad<T> {
    /// Adagrad at learning rate `lr`, other settings PyTorch's defaults.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            missing_grad: MissingGrad::Error,
            state: BTreeMap::new(),
        }
    }

    /// Learning-rate decay: step `t` uses `lr / (1 + (t - 1) * lr_decay)`.
    ///
    /// ```
    /// use gradus_optim::Adagrad;
    /// let opt = Adagrad::<f32>::new(0.1).lr_decay(1e-3).initial_accumulator_value(0.1).weight_decay(1e-4);
    /// assert_eq!((opt.lr_decay, opt.initial_accumulator_value, opt.weight_decay), (1e-3, 0.1, 1e-4));
    /// ```
    pub fn lr_decay(mut self, lr_decay: f64) -> Self {
        self.lr_decay = lr_decay;
        self
    }

    /// The starting value of the sum of squared gradients.
    pub fn initial_accumulator_value(mut self, value: f64) -> Self {
        self.initial_accumulator_value = value;
        self
    }

    crate::core::shared_builders!();
}

impl<T: Float> Optimizer<T> for Adagrad<T> {
    fn step(&mut self, params: &mut ParamStore<T>, grads: &Gradients<T>) -> Result<(), OptimError> {
        let opt = self;
        gradus_autograd::monomorphic!(T; f32 => Adagrad::step_f32, f64 => Adagrad::step_f64; opt, params, grads);
        opt.step_generic(params, grads)
    }

    fn name(&self) -> &'static str {
        "Adagrad"
    }

    lr_and_state_methods!(ParamState::Adagrad { .. });
}

impl<T: Float> Adagrad<T> {
    #[inline(always)]
    fn step_generic(
        &mut self,
        params: &mut ParamStore<T>,
        grads: &Gradients<T>,
    ) -> Result<(), OptimError> {
        let (wd, eps, init) = (
            T::of(self.weight_decay),
            T::of(self.eps),
            T::of(self.initial_accumulator_value),
        );
        let (lr, lr_decay) = (self.lr, self.lr_decay);
        for_each_param(
            params,
            grads,
            self.missing_grad,
            &mut self.state,
            |p, g, shape, slot| {
                if !matches!(slot, Some(ParamState::Adagrad { .. })) {
                    *slot = Some(ParamState::Adagrad {
                        step: 0,
                        sum: array(shape, vec![init; p.len()]),
                    });
                }
                let Some(ParamState::Adagrad { step, sum }) = slot else {
                    unreachable!()
                };
                *step += 1;
                let clr = T::of(lr / (1.0 + (*step - 1) as f64 * lr_decay));
                split_mut(p.len(), [p, elements(sum)], |[p, s], r| {
                    update((clr, wd, eps), p, &g[r], s)
                });
            },
        )
    }
}

/// The update of a range of elements. Slices as separate arguments: the compiler then knows
/// they do not overlap and vectorizes.
#[inline(always)]
fn update<T: Float>((clr, wd, eps): (T, T, T), p: &mut [T], g: &[T], s: &mut [T]) {
    for ((p, &g), s) in p.iter_mut().zip(g).zip(s) {
        let d = g + wd * *p;
        *s += d * d;
        *p -= clr * d / (s.sqrt() + eps);
    }
}

crate::core::concrete_steps!(Adagrad);
