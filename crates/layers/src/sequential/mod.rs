//! `Sequential` and the builder that reads like the network it makes, checking at build time
//! that layer sizes chain.

mod builder;
mod limits;

use gradus_autograd::{Float, ParamStore, Var};

use crate::{ForwardCtx, Module};

pub use builder::{LayerError, SequentialBuilder, ShapeMismatch};

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
    /// The per-sample input shape, when the builder was given one.
    input: Option<Vec<usize>>,
    /// Each layer's per-sample output shape, where known.
    shapes: Vec<Option<Vec<usize>>>,
    /// What a sample must look like, and who says so (the given input shape, or the first
    /// layer with a size).
    expects: Option<(String, Vec<usize>)>,
    /// The layers, by index, that are a ReLU the builder made right before a max pooling
    /// it made: the forward pools first (see [`Sequential`]'s `forward`).
    pool_first: Vec<bool>,
}

impl<T: Float> std::fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.layers.iter().map(|l| l.describe()))
            .finish()
    }
}

impl<T: Float> Sequential<T> {
    /// Starts a builder.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> SequentialBuilder<T> {
        SequentialBuilder::default()
    }

    /// An empty network, to fill with [`Sequential::push`].
    pub fn empty() -> Self {
        Self {
            layers: Vec::new(),
            input: None,
            shapes: Vec::new(),
            expects: None,
            pool_first: Vec::new(),
        }
    }

    /// Appends a module (a custom layer whose parameters are already in the store).
    pub fn push(&mut self, layer: impl Module<T> + Send + Sync + 'static) {
        self.layers.push(Box::new(layer));
        self.shapes.push(None);
        self.pool_first.push(false);
    }

    /// The per-sample input shape the builder was given ([`SequentialBuilder::input`]), or
    /// the input features of a first `Linear` layer.
    pub fn input_shape(&self) -> Option<&[usize]> {
        self.input.as_deref()
    }

    /// The per-sample output shape, where the builder could infer it.
    pub fn output_shape(&self) -> Option<&[usize]> {
        self.shapes.last().and_then(|s| s.as_deref())
    }

    /// The last layer's description, for messages.
    pub fn last_layer(&self) -> Option<String> {
        self.layers.last().map(|l| l.describe())
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
            let shape = match self.shapes.get(i) {
                Some(Some(s)) => format!("{s:?}"),
                _ => "?".into(),
            };
            out.push_str(&format!(
                "{i:>3}  {:<44} {shape:<16} {n:>10} parameters\n",
                layer.describe()
            ));
        }
        out.push_str(&format!(
            "     {:<44} {:<16} {total:>10} parameters",
            "total", ""
        ));
        out
    }
}

impl<T: Float> Module<T> for Sequential<T> {
    /// The layers in order, with one exchange: a ReLU followed by a max pooling (both made
    /// by the builder) runs as the pooling, then the ReLU. The two commute exactly: ReLU is
    /// the identity on positive values and maps the rest to 0, so the largest value of a
    /// window after it is the ReLU of the largest before it, and the gradient reaches the
    /// same element, or is 0 wherever the window's largest value is not positive (the
    /// ReLU's gradient at 0 is 0). Values and gradients are bit for bit those of the order
    /// as written (for inputs without NaN: pooling keeps a NaN as its window's maximum,
    /// which ReLU maps to 0), and the ReLU works on a quarter of the values after a 2x2
    /// pooling.
    fn forward<'t>(
        &self,
        params: &ParamStore<T>,
        mut x: Var<'t, T>,
        ctx: &mut ForwardCtx<'_, T>,
    ) -> Var<'t, T> {
        let mut i = 0;
        while let Some(layer) = self.layers.get(i) {
            if self.pool_first[i] {
                x = self.layers[i + 1].forward(params, x, ctx);
                x = layer.forward(params, x, ctx);
                i += 2;
            } else {
                x = layer.forward(params, x, ctx);
                i += 1;
            }
        }
        x
    }

    fn check_input(&self, sample: &[usize]) -> Result<(), String> {
        match &self.expects {
            Some((who, shape)) if shape.as_slice() != sample => {
                let hint = if shape.len() == 1
                    && sample.len() > 1
                    && sample.iter().product::<usize>() == shape[0]
                {
                    ": flatten the samples (add .flatten() first)"
                } else {
                    ""
                };
                Err(format!(
                    "{who} expects samples of shape {shape:?} but the data's are {sample:?}{hint}"
                ))
            }
            _ => Ok(()),
        }
    }

    fn output_shape(&self) -> Option<Vec<usize>> {
        self.shapes.last().cloned().flatten()
    }

    fn describe(&self) -> String {
        let inner: Vec<String> = self.layers.iter().map(|l| l.describe()).collect();
        format!("Sequential[{}]", inner.join(", "))
    }
}
