//! The builder behind `Sequential::new()`: the layer specifications, the shape checks that
//! run before anything is allocated, and the errors that name the layer and both shapes.

use gradus_autograd::{DuplicateName, Float, ParamStore};

use super::Sequential;
use super::limits;
use crate::{
    Activation, BatchNorm, Conv2dConfig, Dropout, Flatten, LinearConfig, Module, Pair,
    ParamBuilder, Pool2d, Reshape,
};

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
    /// A layer cannot take the shape of the samples that reach it.
    #[error(transparent)]
    ShapeMismatch(Box<ShapeMismatch>),
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

/// A layer that cannot take the shape of the samples that reach it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "layer {layer} ({layer_desc}) expects {expected} per sample but {source_desc} produces \
     {found:?}{hint}"
)]
pub struct ShapeMismatch {
    /// Index of the layer that does not fit.
    pub layer: usize,
    /// Its description.
    pub layer_desc: String,
    /// What it takes, e.g. `[784]` or `[1, h, w]`.
    pub expected: String,
    /// `the input` or the layer before it, with its index.
    pub source_desc: String,
    /// The per-sample shape that reaches it.
    pub found: Vec<usize>,
    /// How to fix it, if there is an obvious way (`: add .flatten() before it`).
    pub hint: String,
}

#[derive(Clone, Debug)]
pub(super) enum Spec {
    Linear(LinearConfig),
    Activation(Activation),
    Dropout(f64),
    Flatten,
    Conv2d(Conv2dConfig),
    Pool(Pool2d),
    BatchNorm { channels: usize, two_d: bool },
    Reshape(Vec<usize>),
}

type BoxedLayer<T> = Box<dyn Module<T> + Send + Sync>;

/// The layer a spec describes, its parameters registered with `b` under `name`. Its `f32`
/// and `f64` forms are compiled here, so a model built from a crate at opt-level 0 still
/// runs gradus's optimised layers (see `gradus_autograd::mono`).
fn layer<T: Float>(
    spec: Spec,
    b: &mut ParamBuilder<T>,
    name: &str,
) -> Result<BoxedLayer<T>, LayerError> {
    gradus_autograd::monomorphic!(T; f32 => layer_f32, f64 => layer_f64; spec, b, name);
    layer_generic(spec, b, name)
}

#[inline(never)]
fn layer_f32(
    spec: Spec,
    b: &mut ParamBuilder<f32>,
    name: &str,
) -> Result<BoxedLayer<f32>, LayerError> {
    layer_generic(spec, b, name)
}

#[inline(never)]
fn layer_f64(
    spec: Spec,
    b: &mut ParamBuilder<f64>,
    name: &str,
) -> Result<BoxedLayer<f64>, LayerError> {
    layer_generic(spec, b, name)
}

fn layer_generic<T: Float>(
    spec: Spec,
    b: &mut ParamBuilder<T>,
    name: &str,
) -> Result<BoxedLayer<T>, LayerError> {
    Ok(match spec {
        Spec::Linear(c) => Box::new(c.init(b, name)?),
        Spec::Activation(a) => Box::new(a),
        Spec::Dropout(p) => Box::new(Dropout(p)),
        Spec::Flatten => Box::new(Flatten),
        Spec::Conv2d(c) => Box::new(c.init(b, name)?),
        Spec::Pool(p) => Box::new(p),
        Spec::BatchNorm { channels, .. } => Box::new(BatchNorm::new(b, name, channels)?),
        Spec::Reshape(r) => Box::new(Reshape(r)),
    })
}

impl Spec {
    fn describe(&self) -> String {
        match self {
            Spec::Linear(c) => format!("Linear({} -> {})", c.in_features, c.out_features),
            Spec::Activation(a) => format!("{a:?}"),
            Spec::Dropout(p) => format!("Dropout({p})"),
            Spec::Flatten => "Flatten".into(),
            Spec::Conv2d(c) => format!(
                "Conv2d({} -> {}, {}x{})",
                c.in_channels, c.out_channels, c.kernel_size.0, c.kernel_size.1
            ),
            Spec::Pool(p) => Module::<f32>::describe(p),
            Spec::BatchNorm { channels, two_d } => {
                format!("BatchNorm{}d({channels})", if *two_d { 2 } else { 1 })
            }
            Spec::Reshape(r) => format!("Reshape({r:?})"),
        }
    }
}

/// Builds a [`Sequential`]; made by [`Sequential::new`].
#[derive(Clone, Debug, Default)]
pub struct SequentialBuilder<T: Float = f32> {
    specs: Vec<Spec>,
    input: Option<Vec<usize>>,
    _t: std::marker::PhantomData<T>,
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

    /// The shape of one input sample (without the batch axis), e.g. `[1, 28, 28]`: the
    /// builder then checks every layer against the shape that reaches it and infers the
    /// shapes through convolutions, pooling and flatten.
    ///
    /// ```
    /// use gradus_layers::Sequential;
    /// let (model, _) = Sequential::<f32>::new()
    ///     .input(&[1, 28, 28])
    ///     .conv2d(1, 32, 3).relu().max_pool2d(2)
    ///     .conv2d(32, 64, 3).relu().max_pool2d(2)
    ///     .flatten().linear(1600, 128).relu().linear(128, 10)
    ///     .build(0)?;
    /// assert_eq!(model.output_shape(), Some(&[10][..]));
    ///
    /// // A size error names the layer and both shapes.
    /// let err = Sequential::<f32>::new().input(&[1, 28, 28]).conv2d(1, 8, 3).linear(5408, 10).build(0).unwrap_err();
    /// assert_eq!(err.to_string(), "layer 1 (Linear(5408 -> 10)) expects [5408] per sample but \
    ///     layer 0 (Conv2d(1 -> 8, 3x3)) produces [8, 26, 26]: add .flatten() before it");
    /// # Ok::<(), gradus_layers::LayerError>(())
    /// ```
    pub fn input(mut self, shape: &[usize]) -> Self {
        self.input = Some(shape.to_vec());
        self
    }

    /// A 2-D convolution with PyTorch's defaults (stride 1, no padding).
    pub fn conv2d(
        self,
        in_channels: usize,
        out_channels: usize,
        kernel_size: impl Into<Pair>,
    ) -> Self {
        self.with(Spec::Conv2d(Conv2dConfig::new(
            in_channels,
            out_channels,
            kernel_size,
        )))
    }

    /// A 2-D convolution with an explicit configuration.
    pub fn conv2d_with(self, config: Conv2dConfig) -> Self {
        self.with(Spec::Conv2d(config))
    }

    /// Max pooling with stride = kernel and no padding (PyTorch's defaults).
    pub fn max_pool2d(self, kernel: impl Into<Pair>) -> Self {
        let kernel = kernel.into();
        self.max_pool2d_with(kernel, kernel, 0)
    }

    /// Max pooling with an explicit stride and padding.
    pub fn max_pool2d_with(
        self,
        kernel: impl Into<Pair>,
        stride: impl Into<Pair>,
        padding: impl Into<Pair>,
    ) -> Self {
        self.with(Spec::Pool(Pool2d::Max {
            kernel: kernel.into(),
            stride: stride.into(),
            padding: padding.into(),
        }))
    }

    /// Average pooling with stride = kernel and no padding.
    pub fn avg_pool2d(self, kernel: impl Into<Pair>) -> Self {
        let kernel = kernel.into();
        self.avg_pool2d_with(kernel, kernel, 0)
    }

    /// Average pooling with an explicit stride and padding (counted in the divisor).
    pub fn avg_pool2d_with(
        self,
        kernel: impl Into<Pair>,
        stride: impl Into<Pair>,
        padding: impl Into<Pair>,
    ) -> Self {
        self.with(Spec::Pool(Pool2d::Avg {
            kernel: kernel.into(),
            stride: stride.into(),
            padding: padding.into(),
        }))
    }

    /// Average pooling to a fixed `output` grid (`1` is global average pooling).
    pub fn adaptive_avg_pool2d(self, output: impl Into<Pair>) -> Self {
        self.with(Spec::Pool(Pool2d::AdaptiveAvg {
            output: output.into(),
        }))
    }

    /// Batch normalisation over `[n, c]` or `[n, c, l]` (PyTorch's `BatchNorm1d`).
    pub fn batch_norm1d(self, channels: usize) -> Self {
        self.with(Spec::BatchNorm {
            channels,
            two_d: false,
        })
    }

    /// Batch normalisation over `[n, c, h, w]` (PyTorch's `BatchNorm2d`).
    pub fn batch_norm2d(self, channels: usize) -> Self {
        self.with(Spec::BatchNorm {
            channels,
            two_d: true,
        })
    }

    /// Gives every sample the shape `shape` (e.g. `[1, 28, 28]` for flat MNIST rows).
    pub fn reshape(self, shape: &[usize]) -> Self {
        self.with(Spec::Reshape(shape.to_vec()))
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
        let shapes = self.check()?;
        let expects = self.expects();
        let pool_first = (0..self.specs.len())
            .map(|i| {
                matches!(
                    (&self.specs[i], self.specs.get(i + 1)),
                    (
                        Spec::Activation(Activation::Relu),
                        Some(Spec::Pool(Pool2d::Max { .. }))
                    )
                )
            })
            .collect();
        let mut layers: Vec<BoxedLayer<T>> = Vec::new();
        for (i, spec) in self.specs.into_iter().enumerate() {
            let name = if prefix.is_empty() {
                i.to_string()
            } else {
                format!("{prefix}.{i}")
            };
            layers.push(layer(spec, b, &name)?);
        }
        Ok(Sequential {
            layers,
            input: self.input,
            shapes,
            expects,
            pool_first,
        })
    }

    /// What one sample must look like: the input shape given to the builder, or what the
    /// first layer with a size takes when only shape-keeping layers come before it.
    fn expects(&self) -> Option<(String, Vec<usize>)> {
        if let Some(input) = &self.input {
            return Some(("the model's input shape".into(), input.clone()));
        }
        for (i, spec) in self.specs.iter().enumerate() {
            let who = format!("layer {i} ({})", spec.describe());
            match spec {
                Spec::Linear(c) => return Some((who, vec![c.in_features])),
                Spec::Activation(_) | Spec::Dropout(_) => {}
                _ => return None,
            }
        }
        None
    }

    /// Checks every layer against the per-sample shape that reaches it (where known) and
    /// returns each layer's output shape.
    fn check(&self) -> Result<Vec<Option<Vec<usize>>>, LayerError> {
        // The per-sample shape so far and the layer that made it (None: the input).
        let mut shape: Option<(Vec<usize>, Option<usize>)> = self.input.clone().map(|s| (s, None));
        let mut shapes = Vec::with_capacity(self.specs.len());
        for (i, spec) in self.specs.iter().enumerate() {
            let invalid = |message: String| LayerError::Invalid {
                layer: i,
                layer_desc: spec.describe(),
                message,
            };
            let mismatch = |expected: String, found: &[usize], from: Option<usize>, hint: &str| {
                LayerError::ShapeMismatch(Box::new(ShapeMismatch {
                    layer: i,
                    layer_desc: spec.describe(),
                    expected,
                    source_desc: match from {
                        Some(p) => format!("layer {p} ({})", self.specs[p].describe()),
                        None => "the input".into(),
                    },
                    found: found.to_vec(),
                    hint: hint.into(),
                }))
            };
            let image =
                |channels: usize, what: &str| -> Result<Option<(usize, usize)>, LayerError> {
                    match &shape {
                        Some((s, from)) if s.len() != 3 || s[0] != channels => Err(mismatch(
                            format!("[{channels}, h, w]{what}"),
                            s,
                            *from,
                            if s.len() == 1 {
                                ": add .reshape(&[c, h, w]) before it"
                            } else {
                                ""
                            },
                        )),
                        Some((s, _)) => Ok(Some((s[1], s[2]))),
                        None => Ok(None),
                    }
                };
            let out: Option<Vec<usize>> = match spec {
                Spec::Linear(c) => {
                    if c.in_features == 0 || c.out_features == 0 {
                        return Err(invalid(
                            "in_features and out_features must be at least 1".into(),
                        ));
                    }
                    match &shape {
                        Some((s, Some(previous))) if s.len() == 1 && s[0] != c.in_features => {
                            return Err(LayerError::SizeMismatch {
                                layer: i,
                                layer_desc: spec.describe(),
                                expected: c.in_features,
                                previous: *previous,
                                previous_desc: self.specs[*previous].describe(),
                                found: s[0],
                            });
                        }
                        Some((s, from)) if s.len() != 1 || s[0] != c.in_features => {
                            let hint = if s.len() > 1 {
                                ": add .flatten() before it"
                            } else {
                                ""
                            };
                            return Err(mismatch(format!("[{}]", c.in_features), s, *from, hint));
                        }
                        _ => Some(vec![c.out_features]),
                    }
                }
                Spec::Conv2d(c) => {
                    if c.in_channels == 0
                        || c.out_channels == 0
                        || c.groups == 0
                        || c.in_channels % c.groups != 0
                        || c.out_channels % c.groups != 0
                    {
                        return Err(invalid(format!(
                            "channels {} -> {} must be at least 1 and divisible by groups {}",
                            c.in_channels, c.out_channels, c.groups
                        )));
                    }
                    let Pair(kh, kw) = c.kernel_size;
                    if kh == 0
                        || kw == 0
                        || c.stride.0 == 0
                        || c.stride.1 == 0
                        || c.dilation.0 == 0
                        || c.dilation.1 == 0
                    {
                        return Err(invalid(
                            "kernel, stride and dilation must be at least 1".into(),
                        ));
                    }
                    match image(c.in_channels, "")? {
                        Some((h, w))
                            if limits::window_overflows(
                                c.kernel_size,
                                c.padding,
                                c.dilation,
                                h,
                                w,
                            ) =>
                        {
                            return Err(invalid(format!(
                                "padding {:?} and dilation {:?} overflow with a {h}x{w} input",
                                c.padding, c.dilation
                            )));
                        }
                        Some((h, w)) => match c.output_size(h, w) {
                            (0, _) | (_, 0) => {
                                return Err(invalid(format!(
                                    "the kernel does not fit a {h}x{w} input"
                                )));
                            }
                            (oh, ow) => Some(vec![c.out_channels, oh, ow]),
                        },
                        None => None,
                    }
                }
                Spec::Pool(p) => {
                    if let Pool2d::Max {
                        kernel,
                        stride,
                        padding,
                    }
                    | Pool2d::Avg {
                        kernel,
                        stride,
                        padding,
                    } = p
                        && (kernel.0 == 0
                            || kernel.1 == 0
                            || stride.0 == 0
                            || stride.1 == 0
                            || padding.0 > kernel.0 / 2
                            || padding.1 > kernel.1 / 2)
                    {
                        return Err(invalid(
                            "kernel and stride must be at least 1, padding at most half the kernel"
                                .into(),
                        ));
                    }
                    match &shape {
                        Some((s, from)) if s.len() != 3 => {
                            return Err(mismatch("[c, h, w]".into(), s, *from, ""));
                        }
                        Some((s, _))
                            if matches!(p, Pool2d::Max { kernel, padding, .. }
                                | Pool2d::Avg { kernel, padding, .. }
                                if limits::window_overflows(*kernel, *padding, Pair(1, 1), s[1], s[2])) =>
                        {
                            return Err(invalid(format!(
                                "the window overflows with a {}x{} input",
                                s[1], s[2]
                            )));
                        }
                        Some((s, _)) => match p.output_size(s[1], s[2]) {
                            (0, _) | (_, 0) => {
                                return Err(invalid(format!(
                                    "the window does not fit a {}x{} input",
                                    s[1], s[2]
                                )));
                            }
                            (oh, ow) => Some(vec![s[0], oh, ow]),
                        },
                        None => None,
                    }
                }
                Spec::BatchNorm { channels, two_d } => {
                    if *channels == 0 {
                        return Err(invalid("channels must be at least 1".into()));
                    }
                    match &shape {
                        Some((s, from)) => {
                            let fits = s.first() == Some(channels)
                                && if *two_d { s.len() == 3 } else { s.len() <= 2 };
                            if !fits {
                                let expected = if *two_d {
                                    format!("[{channels}, h, w]")
                                } else {
                                    format!("[{channels}] or [{channels}, l]")
                                };
                                return Err(mismatch(expected, s, *from, ""));
                            }
                            Some(s.clone())
                        }
                        None => None,
                    }
                }
                Spec::Reshape(r) => {
                    let Some(values) = limits::values(r) else {
                        return Err(invalid(format!("{r:?} has more values than usize holds")));
                    };
                    if let Some((s, from)) = &shape
                        && limits::values(s) != Some(values)
                    {
                        return Err(mismatch(format!("{values} elements"), s, *from, ""));
                    }
                    Some(r.clone())
                }
                Spec::Flatten => match &shape {
                    Some((s, _)) => match limits::values(s) {
                        Some(values) => Some(vec![values]),
                        None => {
                            return Err(invalid(format!(
                                "its input {s:?} has more values than usize holds"
                            )));
                        }
                    },
                    None => None,
                },
                Spec::Dropout(p) if !(0.0..1.0).contains(p) => {
                    return Err(invalid(format!("probability {p} is not in [0, 1)")));
                }
                Spec::Dropout(_) | Spec::Activation(_) => shape.as_ref().map(|(s, _)| s.clone()),
            };
            if let Some(message) = limits::too_large::<T>(spec, out.as_deref()) {
                return Err(invalid(message));
            }
            // Layers that keep the shape keep its source too, so a mismatch names the layer
            // that set the size.
            let keeps = matches!(
                spec,
                Spec::Dropout(_) | Spec::Activation(_) | Spec::BatchNorm { .. }
            );
            shape = match out.clone() {
                Some(o) if keeps => shape.map(|(_, from)| (o, from)),
                Some(o) => Some((o, Some(i))),
                None => None,
            };
            shapes.push(out);
        }
        Ok(shapes)
    }
}
