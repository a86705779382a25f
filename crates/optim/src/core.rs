//! What every optimizer shares: the trait, the per-parameter state (keyed by parameter name,
//! serialisable), the missing-gradient policy and the errors.

use smallvec::SmallVec;
use std::collections::BTreeMap;

use gradus_autograd::ndarray::ArrayD;
use gradus_autograd::{Float, Gradients, ParamStore};
use serde::{Deserialize, Serialize};

/// What to do with a parameter that received no gradient in a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissingGrad {
    /// Refuse the step with [`OptimError::MissingGradient`] naming every such parameter
    /// (the default: a parameter the loss does not reach is usually a bug).
    #[default]
    Error,
    /// Leave the parameter and its state untouched, as PyTorch does for `grad is None`
    /// (for frozen or conditionally used parameters).
    Skip,
}

/// Why an optimizer step or a state restore was refused. Nothing is changed when it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimError {
    /// Parameters without a gradient under [`MissingGrad::Error`].
    #[error(
        "no gradient for parameter(s) {names:?}: the loss does not depend on them (use MissingGrad::Skip to leave them unchanged)"
    )]
    MissingGradient {
        /// Their names.
        names: Vec<String>,
    },
    /// A gradient whose shape is not its parameter's.
    #[error("gradient of `{name}` has shape {found:?}, the parameter has {expected:?}")]
    ShapeMismatch {
        /// Parameter name.
        name: String,
        /// Parameter shape.
        expected: Vec<usize>,
        /// Gradient shape.
        found: Vec<usize>,
    },
    /// Restored state belongs to another optimizer or another model.
    #[error("optimizer state does not fit: {0}")]
    State(String),
}

/// One parameter's optimizer state, with PyTorch's buffer names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum ParamState<T: Float> {
    /// SGD: the momentum buffer once momentum has been applied.
    Sgd {
        /// `momentum_buffer`.
        momentum_buffer: Option<ArrayD<T>>,
    },
    /// Adagrad.
    Adagrad {
        /// Steps taken.
        step: u64,
        /// `sum` of squared gradients.
        sum: ArrayD<T>,
    },
    /// RMSprop.
    RmsProp {
        /// Steps taken.
        step: u64,
        /// `square_avg`.
        square_avg: ArrayD<T>,
        /// `grad_avg` (centered only).
        grad_avg: Option<ArrayD<T>>,
        /// `momentum_buffer` (momentum > 0 only).
        momentum_buffer: Option<ArrayD<T>>,
    },
    /// Adam and AdamW.
    Adam {
        /// Steps taken.
        step: u64,
        /// `exp_avg`, the first moment.
        exp_avg: ArrayD<T>,
        /// `exp_avg_sq`, the second moment.
        exp_avg_sq: ArrayD<T>,
        /// `max_exp_avg_sq` (amsgrad only).
        max_exp_avg_sq: Option<ArrayD<T>>,
    },
    /// The state of an optimizer defined outside this crate, as PyTorch's per-parameter
    /// state dict: a step count and named tensors. Saved in checkpoints like the others.
    Named {
        /// Steps taken.
        step: u64,
        /// Named tensors (`"velocity"`, `"square_avg"`, ...).
        tensors: BTreeMap<String, ArrayD<T>>,
    },
}

/// A serialisable snapshot of an optimizer: its kind, current learning rate and the state
/// of every parameter by name. Restoring it makes a resumed run continue exactly. An
/// optimizer written outside gradus keeps its state as [`ParamState::Named`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct OptimizerState<T: Float> {
    /// The optimizer's [`name`](Optimizer::name): `"Sgd"`, `"Adagrad"`, `"RmsProp"`, `"Adam"`,
    /// `"AdamW"`, or a custom optimizer's.
    pub optimizer: String,
    /// The learning rate at the time of the snapshot.
    pub lr: f64,
    /// Per-parameter state by parameter name.
    pub params: BTreeMap<String, ParamState<T>>,
}

/// An update rule over the parameters of a store, from the gradients of one step.
///
/// ```
/// use gradus_autograd::{value_and_grad, ParamStore, ndarray::arr1};
/// use gradus_optim::{Optimizer, Sgd};
///
/// let mut params = ParamStore::<f64>::new();
/// let w = params.insert("w", arr1(&[1.0, -2.0]).into_dyn()).unwrap();
/// let mut opt = Sgd::new(0.1);
/// let (_, grads) = value_and_grad(|tape| tape.param(&params, w).square().sum());
/// opt.step(&mut params, &grads).unwrap();
/// assert_eq!(params.get(w).as_slice().unwrap(), &[0.8, -1.6]); // w - 0.1 * 2w
/// ```
pub trait Optimizer<T: Float> {
    /// Updates every parameter of `params` in place.
    fn step(&mut self, params: &mut ParamStore<T>, grads: &Gradients<T>) -> Result<(), OptimError>;
    /// The current learning rate.
    fn lr(&self) -> f64;
    /// Sets the learning rate (what a schedule does between steps).
    fn set_lr(&mut self, lr: f64);
    /// Sets the momentum coefficient (what OneCycle's momentum cycling does between steps,
    /// as PyTorch's `OneCycleLR(cycle_momentum=True)`): SGD's and RMSprop's `momentum`,
    /// Adam's `beta1`. Returns false for an optimizer without one (Adagrad), for which
    /// PyTorch refuses momentum cycling too. As in PyTorch, setting it on SGD or RMSprop
    /// without momentum turns momentum on.
    fn set_momentum(&mut self, momentum: f64) -> bool {
        let _ = momentum;
        false
    }
    /// The momentum coefficient [`Optimizer::set_momentum`] sets, if the optimizer has one
    /// in use (`None` for SGD without momentum and for Adagrad).
    fn momentum(&self) -> Option<f64> {
        None
    }
    /// The optimizer's name, as in [`OptimizerState::optimizer`].
    fn name(&self) -> &'static str;
    /// A snapshot of the state.
    fn state(&self) -> OptimizerState<T>;
    /// Restores a snapshot taken by [`Optimizer::state`] of the same kind of optimizer.
    fn load_state(&mut self, state: OptimizerState<T>) -> Result<(), OptimError>;
}

impl<T: Float, O: Optimizer<T> + ?Sized> Optimizer<T> for Box<O> {
    fn step(&mut self, params: &mut ParamStore<T>, grads: &Gradients<T>) -> Result<(), OptimError> {
        (**self).step(params, grads)
    }
    fn lr(&self) -> f64 {
        (**self).lr()
    }
    fn set_lr(&mut self, lr: f64) {
        (**self).set_lr(lr)
    }
    fn set_momentum(&mut self, momentum: f64) -> bool {
        (**self).set_momentum(momentum)
    }
    fn momentum(&self) -> Option<f64> {
        (**self).momentum()
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn state(&self) -> OptimizerState<T> {
        (**self).state()
    }
    fn load_state(&mut self, state: OptimizerState<T>) -> Result<(), OptimError> {
        (**self).load_state(state)
    }
}

/// Checks every gradient first (so a refused step changes nothing), then calls `update`
/// with each parameter's elements, its gradient's elements (both in row-major order, as
/// plain slices so the update loops compile to vector code), the parameter's shape and its
/// state slot.
///
/// Public so that an optimizer written outside this crate gets the same checks (a refused
/// step changes nothing; buffers are never visited, as they are not parameters).
///
/// ```
/// use std::collections::BTreeMap;
/// use gradus_autograd::{value_and_grad, ParamStore, ndarray::arr1};
/// use gradus_optim::{for_each_param, MissingGrad, ParamState};
///
/// let mut params = ParamStore::<f64>::new();
/// let w = params.insert("w", arr1(&[1.0, -2.0]).into_dyn()).unwrap();
/// let (_, grads) = value_and_grad(|tape| tape.param(&params, w).square().sum());
/// let mut state = BTreeMap::new();
/// // Sign descent: p -= 0.5 * sign(g), counting steps in a Named state.
/// for_each_param(&mut params, &grads, MissingGrad::Error, &mut state, |p, g, _, slot| {
///     for (p, g) in p.iter_mut().zip(g) { *p -= 0.5 * g.signum(); }
///     let steps = match slot { Some(ParamState::Named { step, .. }) => *step + 1, _ => 1 };
///     *slot = Some(ParamState::Named { step: steps, tensors: BTreeMap::new() });
/// }).unwrap();
/// assert_eq!(params.get(w).as_slice().unwrap(), &[0.5, -1.5]);
/// ```
pub fn for_each_param<T: Float>(
    params: &mut ParamStore<T>,
    grads: &Gradients<T>,
    policy: MissingGrad,
    state: &mut BTreeMap<String, ParamState<T>>,
    mut update: impl FnMut(&mut [T], &[T], &[usize], &mut Option<ParamState<T>>),
) -> Result<(), OptimError> {
    let mut missing = Vec::new();
    for (id, name, value) in params.iter() {
        match grads.get(id) {
            None => missing.push(name.to_owned()),
            Some(g) if g.shape() != value.shape() => {
                return Err(OptimError::ShapeMismatch {
                    name: name.to_owned(),
                    expected: value.shape().to_vec(),
                    found: g.shape().to_vec(),
                });
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() && policy == MissingGrad::Error {
        return Err(OptimError::MissingGradient { names: missing });
    }
    // No allocation per parameter: the state is updated where it lies in the map.
    for index in 0..params.len() {
        let id = params.id_at(index).expect("index within the store");
        let Some(g) = grads.get(id) else { continue };
        let g = g.as_standard_layout();
        let g = g.as_slice().expect("standard layout");
        let (name, p) = params.name_and_value_mut(id);
        let shape: SmallVec<[usize; 4]> = p.shape().into();
        let mut existing = state.get_mut(name);
        let mut slot = existing.as_mut().map(|s| {
            let placeholder = ParamState::Sgd {
                momentum_buffer: None,
            };
            std::mem::replace(&mut **s, placeholder)
        });
        update(elements(p), g, &shape, &mut slot);
        match (existing, slot) {
            (Some(s), Some(v)) => *s = v,
            (Some(_), None) => {
                state.remove(name);
            }
            (None, Some(v)) => {
                state.insert(name.to_owned(), v);
            }
            (None, None) => {}
        }
    }
    Ok(())
}

/// The elements of an array in row-major order, as one mutable slice (made contiguous first
/// if it is not, which only arrays built by hand can be).
pub(crate) fn elements<T: Float>(a: &mut ArrayD<T>) -> &mut [T] {
    if !a.is_standard_layout() {
        *a = a.as_standard_layout().into_owned();
    }
    a.as_slice_mut().expect("standard layout")
}

/// An array of `shape` from row-major elements.
pub(crate) fn array<T: Float>(shape: &[usize], data: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(shape, data).expect("one element per position")
}

/// Checks that a snapshot is of the expected optimizer and that every entry has the
/// expected variant (for an optimizer's [`Optimizer::load_state`]).
pub fn check_state<T: Float>(
    expected: &str,
    state: &OptimizerState<T>,
    fits: impl Fn(&ParamState<T>) -> bool,
) -> Result<(), OptimError> {
    if state.optimizer != expected {
        return Err(OptimError::State(format!(
            "snapshot is of {}, this optimizer is {expected}",
            state.optimizer
        )));
    }
    if let Some((name, _)) = state.params.iter().find(|(_, s)| !fits(s)) {
        return Err(OptimError::State(format!(
            "state of `{name}` is not {expected} state"
        )));
    }
    Ok(())
}

/// The `Optimizer` methods every optimizer implements alike: the learning rate and the
/// state snapshot, for a struct with `lr: f64` and `state: BTreeMap<String, ParamState<T>>`
/// fields whose entries match `$variant`.
macro_rules! lr_and_state_methods {
    ($variant:pat) => {
        fn lr(&self) -> f64 {
            self.lr
        }

        fn set_lr(&mut self, lr: f64) {
            self.lr = lr;
        }

        fn state(&self) -> OptimizerState<T> {
            OptimizerState {
                optimizer: self.name().into(),
                lr: self.lr,
                params: self.state.clone(),
            }
        }

        fn load_state(&mut self, state: OptimizerState<T>) -> Result<(), OptimError> {
            crate::core::check_state(self.name(), &state, |s| matches!(s, $variant))?;
            self.lr = state.lr;
            self.state = state.params;
            Ok(())
        }
    };
}
pub(crate) use lr_and_state_methods;

/// The builder methods every optimizer with an L2 `weight_decay`, an `eps` and a
/// missing-gradient policy shares, with PyTorch's names.
macro_rules! shared_builders {
    () => {
        /// L2 weight decay (PyTorch's `weight_decay`: `d = g + wd * p`).
        pub fn weight_decay(mut self, weight_decay: f64) -> Self {
            self.weight_decay = weight_decay;
            self
        }

        /// Sets eps, added to the denominator.
        pub fn eps(mut self, eps: f64) -> Self {
            self.eps = eps;
            self
        }

        /// The missing-gradient policy.
        pub fn missing_grad(mut self, policy: MissingGrad) -> Self {
            self.missing_grad = policy;
            self
        }
    };
}
pub(crate) use shared_builders;

/// The `f32` and `f64` forms of an optimizer's `step_generic`, compiled in this crate so that
/// a caller's crate at opt-level 0 still runs the optimised update (see
/// `gradus_autograd::mono`); the trait's `step` routes to them with `monomorphic!`.
macro_rules! concrete_steps {
    ($opt:ident) => {
        impl $opt<f32> {
            #[inline(never)]
            fn step_f32(
                &mut self,
                params: &mut ParamStore<f32>,
                grads: &Gradients<f32>,
            ) -> Result<(), OptimError> {
                self.step_generic(params, grads)
            }
        }

        impl $opt<f64> {
            #[inline(never)]
            fn step_f64(
                &mut self,
                params: &mut ParamStore<f64>,
                grads: &Gradients<f64>,
            ) -> Result<(), OptimError> {
                self.step_generic(params, grads)
            }
        }
    };
}
pub(crate) use concrete_steps;
