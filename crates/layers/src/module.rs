//! The `Module` trait and the forward context: training or evaluation, the RNG dropout draws
//! from, and the buffer updates a training forward makes (passed explicitly, no global flag).

use gradus_autograd::ndarray::ArrayD;
use gradus_autograd::{BufferId, Float, ParamStore, Tape, Var};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

enum Rng<'a> {
    None,
    Borrowed(&'a mut dyn RngCore),
    Owned(Box<ChaCha8Rng>),
}

/// What a forward pass may depend on and change besides its input: whether it trains, the RNG
/// that dropout draws its masks from, and new values for buffers (BatchNorm's running
/// statistics), which are collected here and written to the store by [`BufferUpdates::apply`]
/// once the pass is done. Evaluation has no RNG and cannot update buffers.
///
/// ```
/// use gradus_layers::{ForwardCtx, Module, Sequential};
/// use gradus_autograd::{Tape, ndarray::ArrayD};
///
/// let (model, params) = Sequential::<f32>::new().linear(4, 4).dropout(0.5).build(0).unwrap();
/// let tape = Tape::no_grad();
/// let x = tape.constant(ArrayD::ones(vec![2, 4]));
/// let train = model.forward(&params, x, &mut ForwardCtx::train_seeded(1));
/// let eval = model.forward(&params, x, &mut ForwardCtx::eval());
/// assert_ne!(*train.value(), *eval.value()); // dropout is active only in training
/// ```
pub struct ForwardCtx<'a, T: Float = f32> {
    training: bool,
    rng: Rng<'a>,
    updates: BufferUpdates<T>,
}

impl<T: Float> std::fmt::Debug for ForwardCtx<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardCtx")
            .field("training", &self.training)
            .field("buffer_updates", &self.updates.len())
            .finish()
    }
}

impl<'a, T: Float> ForwardCtx<'a, T> {
    /// Evaluation: dropout is the identity, normalisation uses running statistics, and
    /// nothing is updated.
    pub fn eval() -> Self {
        Self {
            training: false,
            rng: Rng::None,
            updates: BufferUpdates::default(),
        }
    }

    /// Training, drawing dropout masks from `rng`.
    pub fn train(rng: &'a mut dyn RngCore) -> Self {
        Self {
            training: true,
            rng: Rng::Borrowed(rng),
            updates: BufferUpdates::default(),
        }
    }

    /// Training with its own ChaCha8 RNG seeded with `seed`, for code that has no RNG.
    pub fn train_seeded(seed: u64) -> Self {
        Self {
            training: true,
            rng: Rng::Owned(Box::new(ChaCha8Rng::seed_from_u64(seed))),
            updates: BufferUpdates::default(),
        }
    }

    /// True in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The training RNG; `None` in evaluation.
    pub fn rng(&mut self) -> Option<&mut dyn RngCore> {
        match &mut self.rng {
            Rng::None => None,
            Rng::Borrowed(r) => Some(&mut **r),
            Rng::Owned(r) => Some(&mut **r),
        }
    }

    /// Records a new value for a buffer, written to the store when the pass is done.
    /// Panics in evaluation, which must not change state.
    pub fn update_buffer(&mut self, id: BufferId, value: ArrayD<T>) {
        assert!(
            self.training,
            "update_buffer: an evaluation forward pass cannot update buffers"
        );
        self.updates.0.push((id, value));
    }

    /// Takes the buffer updates recorded so far, to [`apply`](BufferUpdates::apply) them.
    pub fn take_updates(&mut self) -> BufferUpdates<T> {
        std::mem::take(&mut self.updates)
    }
}

/// New buffer values from a training forward pass, in the order they were made.
#[derive(Clone, Debug, Default)]
pub struct BufferUpdates<T: Float = f32>(Vec<(BufferId, ArrayD<T>)>);

impl<T: Float> BufferUpdates<T> {
    /// Writes every update to the store (a later update of the same buffer wins).
    pub fn apply(self, params: &mut ParamStore<T>) {
        for (id, value) in self.0 {
            params.set_buffer(id, value);
        }
    }

    /// The new values, mutable, in the order the forward pass made them: what a reduction
    /// across processes averages.
    ///
    /// ```
    /// use gradus_layers::{ForwardCtx, Module, Sequential};
    /// use gradus_autograd::{Tape, ndarray::Array2};
    /// let (model, params) = Sequential::<f32>::new().batch_norm1d(2).build(0).unwrap();
    /// let tape = Tape::no_grad();
    /// let mut ctx = ForwardCtx::train_seeded(0);
    /// model.forward(&params, tape.constant(Array2::ones((4, 2)).into_dyn()), &mut ctx);
    /// let mut updates = ctx.take_updates();
    /// assert!(updates.arrays_mut().count() >= 2); // running mean and variance
    /// ```
    pub fn arrays_mut(&mut self) -> impl Iterator<Item = &mut ArrayD<T>> {
        self.0.iter_mut().map(|(_, value)| value)
    }

    /// The element-wise mean of several passes' updates of each buffer, in the order buffers
    /// first appear: how data-parallel workers, each with its own batch statistics, combine
    /// their running statistics (as averaging the replicas' buffers would).
    ///
    /// ```
    /// use gradus_layers::{BufferUpdates, ForwardCtx, ParamBuilder};
    /// use gradus_autograd::ndarray::{ArrayD, arr1};
    /// let mut b = ParamBuilder::<f32>::new(0);
    /// let m = b.buffer("m", ArrayD::zeros(vec![2])).unwrap();
    /// let mut params = b.finish();
    /// let parts: Vec<BufferUpdates<f32>> = [1.0, 3.0]
    ///     .into_iter()
    ///     .map(|v| {
    ///         let mut ctx = ForwardCtx::train_seeded(0);
    ///         ctx.update_buffer(m, ArrayD::from_elem(vec![2], v));
    ///         ctx.take_updates()
    ///     })
    ///     .collect();
    /// BufferUpdates::mean_of(parts).apply(&mut params);
    /// assert_eq!(params.buffer(m), &arr1(&[2.0, 2.0]).into_dyn());
    /// ```
    pub fn mean_of(parts: Vec<BufferUpdates<T>>) -> BufferUpdates<T> {
        let n = parts.len();
        if n <= 1 {
            return parts.into_iter().next().unwrap_or_default();
        }
        let mut out: Vec<(BufferId, ArrayD<T>, usize)> = Vec::new();
        // Within one pass the last update of a buffer is its new value.
        let last = parts.into_iter().flat_map(|p| {
            let mut own: Vec<(BufferId, ArrayD<T>)> = Vec::new();
            for (id, value) in p.0 {
                match own.iter_mut().find(|(i, _)| *i == id) {
                    Some(slot) => slot.1 = value,
                    None => own.push((id, value)),
                }
            }
            own
        });
        for (id, value) in last {
            match out.iter_mut().find(|(i, _, _)| *i == id) {
                Some((_, sum, count)) => {
                    *sum += &value;
                    *count += 1;
                }
                None => out.push((id, value, 1)),
            }
        }
        BufferUpdates(
            out.into_iter()
                .map(|(id, sum, count)| (id, sum.mapv(|v| v / T::of(count as f64))))
                .collect(),
        )
    }

    /// Number of updates.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the pass updated nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The updates, as `(buffer, new value)`.
    pub fn iter(&self) -> impl Iterator<Item = &(BufferId, ArrayD<T>)> {
        self.0.iter()
    }
}

/// A piece of a network: one forward function over parameters and buffers held in a
/// [`ParamStore`]. A custom model is a struct of layers with this one method; its parameters
/// are whatever its layers registered in the store (see [`ParamBuilder`](crate::ParamBuilder)).
///
/// ```
/// use gradus_layers::{ForwardCtx, Linear, Module, ParamBuilder};
/// use gradus_autograd::{ParamStore, Var, ndarray::ArrayD};
///
/// /// y = fc2(relu(fc1(x))) + x
/// struct Residual { fc1: Linear, fc2: Linear }
///
/// impl Module<f32> for Residual {
///     fn forward<'t>(&self, p: &ParamStore<f32>, x: Var<'t, f32>, ctx: &mut ForwardCtx<'_, f32>) -> Var<'t, f32> {
///         let h = self.fc1.forward(p, x, ctx).relu();
///         self.fc2.forward(p, h, ctx) + x
///     }
/// }
///
/// let mut b = ParamBuilder::<f32>::new(0);
/// let model = Residual { fc1: b.linear("fc1", 4, 8)?, fc2: b.linear("fc2", 8, 4)? };
/// let params = b.finish();
/// assert_eq!(model.predict(&params, ArrayD::zeros(vec![3, 4])).shape(), &[3, 4]);
/// assert_eq!(params.len(), 4); // fc1.weight, fc1.bias, fc2.weight, fc2.bias
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Module<T: Float> {
    /// Applies the module to `x`, recording on `x`'s tape.
    fn forward<'t>(
        &self,
        params: &ParamStore<T>,
        x: Var<'t, T>,
        ctx: &mut ForwardCtx<'_, T>,
    ) -> Var<'t, T>;

    /// A short description, e.g. `Linear(784 -> 128)`; by default the type's name.
    fn describe(&self) -> String {
        let name = std::any::type_name::<Self>();
        let base = name.split('<').next().unwrap_or(name);
        base.rsplit("::").next().unwrap_or(base).to_string()
    }

    /// Checks the shape of one sample (without the batch axis) before any is fed, saying
    /// which layer cannot take it and what it expects; `fit` calls it on the first batch.
    /// The default accepts anything (a custom module's ops panic with both shapes instead).
    fn check_input(&self, sample: &[usize]) -> Result<(), String> {
        let _ = sample;
        Ok(())
    }

    /// The shape of one output sample, where the module knows it (`[10]` for a classifier of
    /// ten classes); `fit` checks the labels or targets against it.
    fn output_shape(&self) -> Option<Vec<usize>> {
        None
    }

    /// Evaluates on a batch without recording a backward graph.
    fn predict(&self, params: &ParamStore<T>, x: ArrayD<T>) -> ArrayD<T> {
        let tape = Tape::no_grad();
        let y = self
            .forward(params, tape.constant(x), &mut ForwardCtx::eval())
            .value();
        std::sync::Arc::try_unwrap(y).unwrap_or_else(|shared| (*shared).clone())
    }
}
