//! The `Module` trait and the train/eval mode, passed explicitly (no global flag).

use gradus_autograd::ndarray::ArrayD;
use gradus_autograd::{Float, ParamId, ParamStore, Tape, Var};
use rand::RngCore;

/// Training or evaluation, passed to every forward call. Training carries the RNG that
/// dropout draws its masks from.
pub enum Mode<'a> {
    /// Training: dropout is active and draws from this RNG.
    Train(&'a mut dyn RngCore),
    /// Evaluation: dropout is the identity.
    Eval,
}

impl std::fmt::Debug for Mode<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_train() { "Train" } else { "Eval" })
    }
}

impl Mode<'_> {
    /// True in training mode.
    pub fn is_train(&self) -> bool {
        matches!(self, Mode::Train(_))
    }
}

/// A piece of a network: a forward function over parameters held in a [`ParamStore`].
///
/// ```
/// use gradus_layers::{Module, Mode, Sequential};
/// use gradus_autograd::ndarray::ArrayD;
///
/// let (model, params) = Sequential::<f32>::new().linear(4, 3).relu().linear(3, 2).build(0).unwrap();
/// let y = model.predict(&params, ArrayD::zeros(vec![5, 4]));
/// assert_eq!(y.shape(), &[5, 2]);
/// let mut names = Vec::new();
/// model.visit_params(&mut |id| names.push(params.name(id).to_string()));
/// assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// ```
pub trait Module<T: Float> {
    /// Applies the module to `x`, recording on `x`'s tape.
    fn forward<'t>(&self, params: &ParamStore<T>, x: Var<'t, T>, mode: &mut Mode<'_>)
    -> Var<'t, T>;

    /// Calls `f` with the id of every parameter the module uses, in order.
    fn visit_params(&self, f: &mut dyn FnMut(ParamId));

    /// A short description, e.g. `Linear(784 -> 128)`.
    fn describe(&self) -> String;

    /// Evaluates on a batch without recording a backward graph.
    fn predict(&self, params: &ParamStore<T>, x: ArrayD<T>) -> ArrayD<T> {
        let tape = Tape::no_grad();
        let y = self
            .forward(params, tape.constant(x), &mut Mode::Eval)
            .value();
        std::sync::Arc::try_unwrap(y).unwrap_or_else(|shared| (*shared).clone())
    }
}
