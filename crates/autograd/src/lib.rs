//! # gradus-autograd
//!
//! Reverse-mode automatic differentiation, define-by-run, over `ndarray` tensors.
//!
//! * Parameters live in a [`ParamStore`] with stable ids and dotted names.
//! * [`value_and_grad`] records one forward pass on a [`Tape`] and runs backward once,
//!   returning the loss and the [`Gradients`], keyed by [`ParamId`]: no `zero_grad`, and no
//!   second backward on the same tape.
//! * [`Tape::no_grad`] evaluates without recording any backward rule.
//! * Ops are methods on [`Var`], grouped by family in [`ops`]; [`gradcheck`] checks any
//!   expression against finite differences.
//!
//! ```
//! use gradus_autograd::{value_and_grad, ParamStore, ndarray::{arr1, arr2}};
//!
//! // A tiny linear model y = x W^T + b trained by one gradient step.
//! let mut params = ParamStore::<f32>::new();
//! let w = params.insert("weight", arr2(&[[0.5, -0.5]]).into_dyn()).unwrap();
//! let b = params.insert("bias", arr1(&[0.0]).into_dyn()).unwrap();
//! let x = arr2(&[[1.0, 2.0], [3.0, 4.0]]).into_dyn();
//! let y = arr2(&[[1.0], [2.0]]).into_dyn();
//!
//! let (loss, grads) = value_and_grad(|tape| {
//!     let pred = tape.constant(x.clone()).linear(tape.param(&params, w), Some(tape.param(&params, b)));
//!     pred.mse_loss(tape.constant(y.clone()))
//! });
//! for id in [w, b] {
//!     let g = grads.get(id).unwrap().clone();
//!     params.get_mut(id).scaled_add(-0.01, &g);
//! }
//! let (after, _) = value_and_grad(|tape| {
//!     let pred = tape.constant(x.clone()).linear(tape.param(&params, w), Some(tape.param(&params, b)));
//!     pred.mse_loss(tape.constant(y.clone()))
//! });
//! assert!(after < loss);
//! ```

#[cfg(feature = "openblas")]
extern crate blas_src;

mod float;
mod gemm;
mod gradcheck;
mod gradients;
pub mod memory;
#[doc(hidden)]
pub mod mono;
pub mod ops;
mod params;
mod pool;
mod rule;
mod simd;
mod tape;
mod value_and_grad;

pub use float::{Float, add_to, all_finite};
pub use gemm::gemm;
pub use gradcheck::{
    GradcheckError, GradcheckOptions, gradcheck, gradcheck_params, gradcheck_with,
};
pub use gradients::Gradients;
pub use ops::loss::count_correct;
pub use params::{BufferId, DuplicateName, ImportError, NamedArrays, ParamId, ParamStore};
pub use tape::{Anomaly, NodeId, OperandGrads, Phase, Tape, Var};
pub use value_and_grad::{value_and_grad, value_and_grad_detect_anomaly, value_and_grad_with_aux};

pub use ndarray;
