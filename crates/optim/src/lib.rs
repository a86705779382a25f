//! # gradus-optim
//!
//! The gradient-descent family with PyTorch's update rules and defaults: [`Sgd`] (plain,
//! momentum, Nesterov: batch, stochastic and mini-batch GD all use it), [`Adagrad`],
//! [`RmsProp`], [`Adam`] and AdamW ([`Adam::adamw`]); learning-rate [`Schedule`]s as pure
//! functions of the step; gradient clipping ([`GradClip`]). Optimizer state is keyed by
//! parameter name and serialisable ([`OptimizerState`]).
//!
//! ```
//! use gradus_autograd::{value_and_grad, ParamStore, ndarray::arr1};
//! use gradus_optim::{Adam, Optimizer, Schedule};
//!
//! let mut params = ParamStore::<f64>::new();
//! let w = params.insert("w", arr1(&[2.0, -3.0]).into_dyn()).unwrap();
//! let mut opt = Adam::new(0.1);
//! let schedule = Schedule::CosineAnnealing { t_max: 200, eta_min: 0.0 };
//! for t in 0..200 {
//!     opt.set_lr(schedule.lr_at(0.1, t));
//!     let (_, grads) = value_and_grad(|tape| tape.param(&params, w).square().sum());
//!     opt.step(&mut params, &grads).unwrap();
//! }
//! assert!(params.get(w).iter().all(|v| v.abs() < 1e-2));
//! ```

mod adagrad;
mod adam;
mod clip;
mod core;
mod parallel;
mod rmsprop;
mod schedule;
mod sgd;

pub use adagrad::Adagrad;
pub use adam::{Adam, WeightDecay};
pub use clip::{GradClip, NonFiniteNorm, clip_grad_norm, clip_grad_value, grad_norm};
pub use core::{
    MissingGrad, OptimError, Optimizer, OptimizerState, ParamState, check_state, for_each_param,
};
pub use parallel::{Parallel, split_mut, with_parallel};
pub use rmsprop::RmsProp;
pub use schedule::{Anneal, MomentumCycle, Schedule};
pub use sgd::{Momentum, Sgd};
