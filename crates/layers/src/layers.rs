//! The built-in layers: `Linear`, the activations, `Dropout` and `Flatten`.

use gradus_autograd::{DuplicateName, Float, ParamId, ParamStore, Var};

use crate::{ForwardCtx, Init, Module, ParamBuilder};

/// A fully connected layer `y = x W^T + b`, PyTorch's layout: `weight [out, in]`, `bias [out]`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// The weight's id.
    pub weight: ParamId,
    /// The bias's id, if the layer has one.
    pub bias: Option<ParamId>,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
}

/// How to build a [`Linear`]; the defaults are PyTorch's.
///
/// ```
/// use gradus_layers::{Init, LinearConfig, ParamBuilder};
///
/// let mut b = ParamBuilder::<f32>::new(0);
/// let config = LinearConfig { weight_init: Init::XavierUniform { gain: 1.0 }, ..LinearConfig::new(3, 2) };
/// let layer = config.init(&mut b, "fc").unwrap();
/// let params = b.finish();
/// assert_eq!(params.get(layer.weight).shape(), &[2, 3]);
/// assert_eq!(params.name(layer.bias.unwrap()), "fc.bias");
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearConfig {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Whether to add a bias (default true).
    pub bias: bool,
    /// Weight initialiser (default [`Init::PYTORCH_LINEAR`]).
    pub weight_init: Init,
    /// Bias initialiser; `None` (default) is PyTorch's U(-1/sqrt(in), 1/sqrt(in)).
    pub bias_init: Option<Init>,
}

impl LinearConfig {
    /// PyTorch's defaults for `nn.Linear(in_features, out_features)`.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        Self {
            in_features,
            out_features,
            bias: true,
            weight_init: Init::PYTORCH_LINEAR,
            bias_init: None,
        }
    }

    /// Registers the parameters as `{prefix}.weight` and `{prefix}.bias`.
    pub fn init<T: Float>(
        &self,
        b: &mut ParamBuilder<T>,
        prefix: &str,
    ) -> Result<Linear, DuplicateName> {
        let weight = b.param(
            format!("{prefix}.weight"),
            &[self.out_features, self.in_features],
            self.weight_init,
        )?;
        let bias = if self.bias {
            let init = self
                .bias_init
                .unwrap_or(Init::pytorch_bias(self.in_features));
            Some(b.param(format!("{prefix}.bias"), &[self.out_features], init)?)
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            in_features: self.in_features,
            out_features: self.out_features,
        })
    }
}

impl<T: Float> Module<T> for Linear {
    fn forward<'t>(
        &self,
        params: &ParamStore<T>,
        x: Var<'t, T>,
        _: &mut ForwardCtx<'_, T>,
    ) -> Var<'t, T> {
        let tape = x.tape();
        let bias = self.bias.map(|b| tape.param(params, b));
        x.linear(tape.param(params, self.weight), bias)
    }

    fn describe(&self) -> String {
        let bias = if self.bias.is_some() { "" } else { ", no bias" };
        format!(
            "Linear({} -> {}{bias})",
            self.in_features, self.out_features
        )
    }
}

/// A parameter-free element-wise or row-wise function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x` or `slope * x` (PyTorch's default slope is 0.01).
    LeakyRelu(f64),
    /// The logistic function.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Exact GELU.
    Gelu,
    /// Softmax along an axis.
    Softmax(usize),
    /// Log-softmax along an axis.
    LogSoftmax(usize),
}

impl<T: Float> Module<T> for Activation {
    fn forward<'t>(
        &self,
        _: &ParamStore<T>,
        x: Var<'t, T>,
        _: &mut ForwardCtx<'_, T>,
    ) -> Var<'t, T> {
        match *self {
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(s) => x.leaky_relu(T::of(s)),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => x.gelu(),
            Activation::Softmax(axis) => x.softmax(axis),
            Activation::LogSoftmax(axis) => x.log_softmax(axis),
        }
    }

    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// Zeroes elements with probability `p` while training (scaling the rest by `1/(1-p)`);
/// the identity in evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout(pub f64);

impl<T: Float> Module<T> for Dropout {
    fn forward<'t>(
        &self,
        _: &ParamStore<T>,
        x: Var<'t, T>,
        ctx: &mut ForwardCtx<'_, T>,
    ) -> Var<'t, T> {
        match ctx.rng() {
            Some(rng) if self.0 > 0.0 => x.dropout(self.0, rng),
            _ => x,
        }
    }

    fn describe(&self) -> String {
        format!("Dropout({})", self.0)
    }
}

/// Flattens every axis after the first: `[n, a, b, ...] -> [n, a * b * ...]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flatten;

impl<T: Float> Module<T> for Flatten {
    fn forward<'t>(
        &self,
        _: &ParamStore<T>,
        x: Var<'t, T>,
        _: &mut ForwardCtx<'_, T>,
    ) -> Var<'t, T> {
        // The shape read in place: no allocation per step.
        let (n, rest, ndim) = {
            let value = x.value();
            let shape = value.shape();
            (
                shape.first().copied().unwrap_or(1),
                shape.iter().skip(1).product(),
                shape.len(),
            )
        };
        if ndim == 2 {
            return x;
        }
        x.reshape(&[n, rest])
    }

    fn describe(&self) -> String {
        "Flatten".into()
    }
}
