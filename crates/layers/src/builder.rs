//! `ParamBuilder`: where a model's parameters and buffers are registered, under their names,
//! initialised from one seeded RNG (so no user code names a rand crate).

use gradus_autograd::ndarray::ArrayD;
use gradus_autograd::{BufferId, DuplicateName, Float, ParamId, ParamStore};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{Init, Linear, LinearConfig};

/// Registers parameters and buffers in a new [`ParamStore`], initialising them from a
/// ChaCha8 RNG seeded once: the same seed and the same order of registration give the same
/// weights. Names are PyTorch's `state_dict` keys (`fc1.weight`, `bn.running_mean`).
///
/// ```
/// use gradus_layers::{Init, ParamBuilder};
/// use gradus_autograd::ndarray::ArrayD;
///
/// let mut b = ParamBuilder::<f32>::new(42);
/// let fc = b.linear("fc", 3, 2)?;
/// let scale = b.param("scale", &[2], Init::Constant(1.0))?;
/// let seen = b.buffer("seen", ArrayD::zeros(vec![]))?;
/// let params = b.finish();
/// assert_eq!(params.name(fc.weight), "fc.weight");
/// assert_eq!(params.get(scale).as_slice().unwrap(), &[1.0, 1.0]);
/// assert_eq!(params.buffer_name(seen), "seen");
/// assert!(ParamBuilder::<f32>::new(0).linear("a", 1, 1).is_ok());
/// # Ok::<(), gradus_autograd::DuplicateName>(())
/// ```
#[derive(Debug)]
pub struct ParamBuilder<T: Float = f32> {
    params: ParamStore<T>,
    rng: ChaCha8Rng,
}

impl<T: Float> ParamBuilder<T> {
    /// An empty store and an RNG seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            params: ParamStore::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// A trainable parameter of `shape` drawn from `init`.
    pub fn param(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        init: Init,
    ) -> Result<ParamId, DuplicateName> {
        let value = init.array::<T>(shape, &mut self.rng);
        self.params.insert(name, value)
    }

    /// A buffer: saved and loaded with the weights, never trained.
    pub fn buffer(
        &mut self,
        name: impl Into<String>,
        value: ArrayD<T>,
    ) -> Result<BufferId, DuplicateName> {
        self.params.insert_buffer(name, value)
    }

    /// A fully connected layer with PyTorch's defaults, as `{name}.weight` and `{name}.bias`.
    pub fn linear(
        &mut self,
        name: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<Linear, DuplicateName> {
        LinearConfig::new(in_features, out_features).init(self, name)
    }

    /// The RNG, for an initialiser of one's own.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// What is registered so far.
    pub fn params(&self) -> &ParamStore<T> {
        &self.params
    }

    /// The finished store.
    pub fn finish(self) -> ParamStore<T> {
        self.params
    }
}
