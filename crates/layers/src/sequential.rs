//! `Sequential` and the builder that reads like the network it makes, checking at build time
//! that layer sizes chain.

use gradus_autograd::{DuplicateName, Float, ParamStore, Var};

use crate::{Activation, Dropout, Flatten, ForwardCtx, LinearConfig, Module, ParamBuilder};

/// Why a network could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayerError {
    /// A layer's input size differs from what the layer before it produces.
    #[error(
        "layer {layer} ({layer_desc}) expects {expected} input features but layer {previous} \
         ({previous_desc}) produces {found}"
    )]
    SizeMismatch {
        /// Index of the layer that does not fit.
        layer: usize,
        /// Its description.
        layer_desc: String,
        /// The input size it expects.
        expected: usize,
        /// Index of the layer before it that sets the size.
        previous: usize,
        /// Its description.
        previous_desc: String,
        /// The size that layer produces.
        found: usize,
    },
    /// A layer's configuration is invalid.
    #[error("layer {layer} ({layer_desc}): {message}")]
    Invalid {
        /// Index of the layer.
        layer: usize,
        /// Its description.
        layer_desc: String,
        /// What is wrong.
        message: String,
    },
    /// Two parameters got the same name.
    #[error(transparent)]
    Duplicate(#[from] DuplicateName),
}

#[derive(Clone, Debug)]
enum Spec {
    Linear(LinearConfig),
    Activation(Activation),
    Dropout(f64),
    Flatten,
}

impl Spec {
    fn describe(&self) -> String {
        match self {
            Spec::Linear(c) => format!("Linear({} -> {})", c.in_features, c.out_features),
            Spec::Activation(a) => format!("{a:?}"),
            Spec::Dropout(p) => format!("Dropout({p})"),
            Spec::Flatten => "Flatten".into(),
        }
    }
}

/// Layers applied one after the other; parameters are named `{index}.weight` etc., as in
/// PyTorch's `nn.Sequential`.
///
/// ```
/// use gradus_layers::{Module, Sequential};
/// let (model, params) = Sequential::<f32>::new()
///     .linear(784, 256)
///     .relu()
///     .dropout(0.2)
///     .linear(256, 10)
///     .build(42)
///     .unwrap();
/// assert_eq!(params.num_elements(), 784 * 256 + 256 + 256 * 10 + 10);
/// assert_eq!(model.len(), 4);
///
/// // Sizes that do not chain are refused, naming both layers.
/// let err = Sequential::<f32>::new().linear(784, 256).relu().linear(128, 10).build(0).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "layer 2 (Linear(128 -> 10)) expects 128 input features but layer 0 (Linear(784 -> 256)) produces 256"
/// );
/// ```
pub struct Sequential<T: Float = f32> {
    layers: Vec<Box<dyn Module<T> + Send + Sync>>,
}

impl<T: Float> std::fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.layers.iter().map(|l| l.describe()))
            .finish()
    }
}

/// Builds a [`Sequential`]; made by [`Sequential::new`].
#[derive(Clone, Debug, Default)]
pub struct SequentialBuilder<T: Float = f32> {
    specs: Vec<Spec>,
    _t: std::marker::PhantomData<T>,
}

impl<T: Float> Sequential<T> {
    /// Starts a builder.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> SequentialBuilder<T> {
        SequentialBuilder {
            specs: Vec::new(),
            _t: std::marker::PhantomData,
        }
    }

    /// An empty network, to fill with [`Sequential::push`].
    pub fn empty() -> Self {
        Self { layers: Vec::new() }
    }

    /// Appends a module (a custom layer whose parameters are already in the store).
    pub fn push(&mut self, layer: impl Module<T> + Send + Sync + 'static) {
        self.layers.push(Box::new(layer));
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when there is no layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// One line per layer with its parameter count (the parameters named `{index}.*`, or
    /// `{prefix}.{index}.*` for a network built under a prefix), and the total.
    pub fn summary(&self, params: &ParamStore<T>) -> String {
        let mut out = String::new();
        let mut total = 0;
        for (i, layer) in self.layers.iter().enumerate() {
            let own = format!("{i}.");
            let nested = format!(".{i}.");
            let n: usize = params
                .iter()
                .filter(|(_, name, _)| name.starts_with(&own) || name.contains(&nested))
                .map(|(_, _, v)| v.len())
                .sum();
            total += n;
            out.push_str(&format!(
                "{i:>3}  {:<28} {n:>10} parameters\n",
                layer.describe()
            ));
        }
        out.push_str(&format!("     {:<28} {total:>10} parameters", "total"));
        out
    }
}

impl<T: Float> Module<T> for Sequential<T> {
    fn forward<'t>(
        &self,
        params: &ParamStore<T>,
        x: Var<'t, T>,
        ctx: &mut ForwardCtx<'_, T>,
    ) -> Var<'t, T> {
        self.layers
            .iter()
            .fold(x, |x, layer| layer.forward(params, x, ctx))
    }

    fn describe(&self) -> String {
        let inner: Vec<String> = self.layers.iter().map(|l| l.describe()).collect();
        format!("Sequential[{}]", inner.join(", "))
    }
}

impl<T: Float> SequentialBuilder<T> {
    fn with(mut self, spec: Spec) -> Self {
        self.specs.push(spec);
        self
    }

    /// A fully connected layer with PyTorch's default initialisation.
    pub fn linear(self, in_features: usize, out_features: usize) -> Self {
        self.with(Spec::Linear(LinearConfig::new(in_features, out_features)))
    }

    /// A fully connected layer with an explicit configuration.
    pub fn linear_with(self, config: LinearConfig) -> Self {
        self.with(Spec::Linear(config))
    }

    /// ReLU.
    pub fn relu(self) -> Self {
        self.with(Spec::Activation(Activation::Relu))
    }

    /// Leaky ReLU with the given negative slope.
    pub fn leaky_relu(self, slope: f64) -> Self {
        self.with(Spec::Activation(Activation::LeakyRelu(slope)))
    }

    /// Sigmoid.
    pub fn sigmoid(self) -> Self {
        self.with(Spec::Activation(Activation::Sigmoid))
    }

    /// Tanh.
    pub fn tanh(self) -> Self {
        self.with(Spec::Activation(Activation::Tanh))
    }

    /// Exact GELU.
    pub fn gelu(self) -> Self {
        self.with(Spec::Activation(Activation::Gelu))
    }

    /// Softmax over the features (axis 1).
    pub fn softmax(self) -> Self {
        self.with(Spec::Activation(Activation::Softmax(1)))
    }

    /// Log-softmax over the features (axis 1).
    pub fn log_softmax(self) -> Self {
        self.with(Spec::Activation(Activation::LogSoftmax(1)))
    }

    /// Dropout with probability `p`.
    pub fn dropout(self, p: f64) -> Self {
        self.with(Spec::Dropout(p))
    }

    /// Flattens all axes after the batch axis.
    pub fn flatten(self) -> Self {
        self.with(Spec::Flatten)
    }

    /// Checks the layers and initialises the parameters from a ChaCha8 RNG seeded with `seed`.
    pub fn build(self, seed: u64) -> Result<(Sequential<T>, ParamStore<T>), LayerError> {
        let mut b = ParamBuilder::new(seed);
        let model = self.build_into(&mut b, "")?;
        Ok((model, b.finish()))
    }

    /// Checks the layers and registers their parameters with `b` under `prefix`
    /// (`"{prefix}.{index}.weight"`, or `"{index}.weight"` with an empty prefix): a
    /// `Sequential` as one part of a custom model.
    ///
    /// ```
    /// use gradus_layers::{ParamBuilder, Sequential};
    /// let mut b = ParamBuilder::<f32>::new(0);
    /// let body = Sequential::new().linear(4, 8).relu().build_into(&mut b, "body").unwrap();
    /// let head = b.linear("head", 8, 2).unwrap();
    /// let params = b.finish();
    /// assert_eq!(params.name(head.weight), "head.weight");
    /// assert!(params.id("body.0.weight").is_some());
    /// # let _ = body;
    /// ```
    pub fn build_into(
        self,
        b: &mut ParamBuilder<T>,
        prefix: &str,
    ) -> Result<Sequential<T>, LayerError> {
        self.check()?;
        let mut layers: Vec<Box<dyn Module<T> + Send + Sync>> = Vec::new();
        for (i, spec) in self.specs.into_iter().enumerate() {
            let name = if prefix.is_empty() {
                i.to_string()
            } else {
                format!("{prefix}.{i}")
            };
            match spec {
                Spec::Linear(c) => layers.push(Box::new(c.init(b, &name)?)),
                Spec::Activation(a) => layers.push(Box::new(a)),
                Spec::Dropout(p) => layers.push(Box::new(Dropout(p))),
                Spec::Flatten => layers.push(Box::new(Flatten)),
            }
        }
        Ok(Sequential { layers })
    }

    fn check(&self) -> Result<(), LayerError> {
        let mut features: Option<(usize, usize)> = None; // (size, layer that set it)
        for (i, spec) in self.specs.iter().enumerate() {
            let invalid = |message: String| LayerError::Invalid {
                layer: i,
                layer_desc: spec.describe(),
                message,
            };
            match spec {
                Spec::Linear(c) => {
                    if c.in_features == 0 || c.out_features == 0 {
                        return Err(invalid(
                            "in_features and out_features must be at least 1".into(),
                        ));
                    }
                    if let Some((found, previous)) = features
                        && found != c.in_features
                    {
                        return Err(LayerError::SizeMismatch {
                            layer: i,
                            layer_desc: spec.describe(),
                            expected: c.in_features,
                            previous,
                            previous_desc: self.specs[previous].describe(),
                            found,
                        });
                    }
                    features = Some((c.out_features, i));
                }
                Spec::Dropout(p) if !(0.0..1.0).contains(p) => {
                    return Err(invalid(format!("probability {p} is not in [0, 1)")));
                }
                Spec::Flatten => features = None,
                _ => {}
            }
        }
        Ok(())
    }
}
