//! The convolutional layers: `Conv2d`, the pooling layers and `BatchNorm` (1-D and 2-D),
//! with PyTorch's defaults, initialisation and `state_dict` names.

use gradus_autograd::ndarray::ArrayD;
use gradus_autograd::ops::conv::{Pair, window_output_len};
use gradus_autograd::{BufferId, DuplicateName, Float, ParamId, ParamStore, Var};

use crate::{ForwardCtx, Init, Module, ParamBuilder};

/// A 2-D convolution over NCHW inputs, PyTorch's `nn.Conv2d`: `weight [out, in / groups, kh,
/// kw]`, `bias [out]`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// The weight's id.
    pub weight: ParamId,
    /// The bias's id, if the layer has one.
    pub bias: Option<ParamId>,
    /// The settings it was made with.
    pub config: Conv2dConfig,
}

/// How to build a [`Conv2d`]; the defaults are PyTorch's (stride 1, no padding, dilation 1,
/// one group, a bias, kaiming-uniform with `a = sqrt(5)` and the bias bound `1/sqrt(fan_in)`).
///
/// ```
/// use gradus_layers::{Conv2dConfig, ParamBuilder};
/// let mut b = ParamBuilder::<f32>::new(0);
/// let conv = Conv2dConfig { padding: 1.into(), ..Conv2dConfig::new(3, 16, 3) }.init(&mut b, "conv").unwrap();
/// let params = b.finish();
/// assert_eq!(params.get(conv.weight).shape(), &[16, 3, 3, 3]);
/// assert_eq!(conv.config.output_size(32, 32), (32, 32));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size.
    pub kernel_size: Pair,
    /// Stride (default 1).
    pub stride: Pair,
    /// Zero padding on each side (default 0).
    pub padding: Pair,
    /// Spacing of the kernel's elements (default 1).
    pub dilation: Pair,
    /// Channel groups (default 1).
    pub groups: usize,
    /// Whether to add a bias (default true).
    pub bias: bool,
    /// Weight initialiser (default [`Init::PYTORCH_LINEAR`], as `nn.Conv2d`).
    pub weight_init: Init,
}

impl Conv2dConfig {
    /// PyTorch's defaults for `nn.Conv2d(in_channels, out_channels, kernel_size)`.
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: impl Into<Pair>) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel_size: kernel_size.into(),
            stride: Pair(1, 1),
            padding: Pair(0, 0),
            dilation: Pair(1, 1),
            groups: 1,
            bias: true,
            weight_init: Init::PYTORCH_LINEAR,
        }
    }

    /// The output's height and width for an input of `h x w`, or zeros when the kernel does
    /// not fit. Sizes past `usize` saturate (the builder refuses such a layer).
    ///
    /// ```
    /// use gradus_layers::{Conv2dConfig, Pair};
    /// let wide = Conv2dConfig { padding: Pair(usize::MAX / 2, 0), ..Conv2dConfig::new(1, 1, 3) };
    /// assert_eq!(wide.output_size(28, 28).1, 26);
    /// assert!(wide.output_size(28, 28).0 > usize::MAX / 2);
    /// assert_eq!(Conv2dConfig::new(1, 1, 5).output_size(4, 4), (0, 0));
    /// ```
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        // Saturating: an absurd padding gives an absurd size (refused by the builder), not a
        // wrapped-around plausible one.
        let out = |len: usize, k: usize, s: usize, p: usize, d: usize| {
            window_output_len(len, k, s, p, d).unwrap_or(usize::MAX)
        };
        (
            out(
                h,
                self.kernel_size.0,
                self.stride.0,
                self.padding.0,
                self.dilation.0,
            ),
            out(
                w,
                self.kernel_size.1,
                self.stride.1,
                self.padding.1,
                self.dilation.1,
            ),
        )
    }

    /// Registers `{prefix}.weight` and `{prefix}.bias`.
    pub fn init<T: Float>(
        &self,
        b: &mut ParamBuilder<T>,
        prefix: &str,
    ) -> Result<Conv2d, DuplicateName> {
        let per_group = self.in_channels / self.groups.max(1);
        let shape = [
            self.out_channels,
            per_group,
            self.kernel_size.0,
            self.kernel_size.1,
        ];
        let weight = b.param(format!("{prefix}.weight"), &shape, self.weight_init)?;
        let bias = if self.bias {
            let fan_in = per_group * self.kernel_size.0 * self.kernel_size.1;
            let init = Init::pytorch_bias(fan_in);
            Some(b.param(format!("{prefix}.bias"), &[self.out_channels], init)?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            config: *self,
        })
    }
}

impl<T: Float> Module<T> for Conv2d {
    fn forward<'t>(
        &self,
        params: &ParamStore<T>,
        x: Var<'t, T>,
        _: &mut ForwardCtx<'_, T>,
    ) -> Var<'t, T> {
        let tape = x.tape();
        let c = &self.config;
        x.conv2d(
            tape.param(params, self.weight),
            self.bias.map(|b| tape.param(params, b)),
            c.stride,
            c.padding,
            c.dilation,
            c.groups,
        )
    }

    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "Conv2d({} -> {}, kernel {}x{}, stride {}x{}, padding {}x{})",
            c.in_channels,
            c.out_channels,
            c.kernel_size.0,
            c.kernel_size.1,
            c.stride.0,
            c.stride.1,
            c.padding.0,
            c.padding.1
        )
    }
}

/// A pooling layer over NCHW inputs: `nn.MaxPool2d`, `nn.AvgPool2d` (padding counted in the
/// divisor) or `nn.AdaptiveAvgPool2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool2d {
    /// The maximum of every window.
    Max {
        /// Window size.
        kernel: Pair,
        /// Step between windows.
        stride: Pair,
        /// Padding (minus infinity) on each side.
        padding: Pair,
    },
    /// The mean of every window.
    Avg {
        /// Window size.
        kernel: Pair,
        /// Step between windows.
        stride: Pair,
        /// Zero padding on each side, counted in the divisor.
        padding: Pair,
    },
    /// The mean over an even split into `output` cells.
    AdaptiveAvg {
        /// Output height and width.
        output: Pair,
    },
}

impl Pool2d {
    /// The output's height and width for an input of `h x w` (zeros if the window does not fit).
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        match *self {
            Pool2d::Max {
                kernel,
                stride,
                padding,
            }
            | Pool2d::Avg {
                kernel,
                stride,
                padding,
            } => {
                let config = Conv2dConfig {
                    stride,
                    padding,
                    ..Conv2dConfig::new(1, 1, kernel)
                };
                config.output_size(h, w)
            }
            Pool2d::AdaptiveAvg { output } => (output.0, output.1),
        }
    }
}

impl<T: Float> Module<T> for Pool2d {
    fn forward<'t>(
        &self,
        _: &ParamStore<T>,
        x: Var<'t, T>,
        _: &mut ForwardCtx<'_, T>,
    ) -> Var<'t, T> {
        match *self {
            Pool2d::Max {
                kernel,
                stride,
                padding,
            } => x.max_pool2d(kernel, stride, padding),
            Pool2d::Avg {
                kernel,
                stride,
                padding,
            } => x.avg_pool2d(kernel, stride, padding),
            Pool2d::AdaptiveAvg { output } => x.adaptive_avg_pool2d(output),
        }
    }

    fn describe(&self) -> String {
        match *self {
            Pool2d::Max { kernel, stride, .. } => format!(
                "MaxPool2d({}x{}, stride {}x{})",
                kernel.0, kernel.1, stride.0, stride.1
            ),
            Pool2d::Avg { kernel, stride, .. } => format!(
                "AvgPool2d({}x{}, stride {}x{})",
                kernel.0, kernel.1, stride.0, stride.1
            ),
            Pool2d::AdaptiveAvg { output } => {
                format!("AdaptiveAvgPool2d({}x{})", output.0, output.1)
            }
        }
    }
}

/// Batch normalisation per channel, PyTorch's `nn.BatchNorm1d` (`[n, c]` or `[n, c, l]`) and
/// `nn.BatchNorm2d` (`[n, c, h, w]`): parameters `weight` (ones) and `bias` (zeros), buffers
/// `running_mean` (zeros), `running_var` (ones) and `num_batches_tracked`, updated by
/// training forward passes only.
///
/// ```
/// use gradus_layers::{BatchNorm, ForwardCtx, Module, ParamBuilder};
/// use gradus_autograd::{Tape, ndarray::arr2};
///
/// let mut b = ParamBuilder::<f32>::new(0);
/// let bn = BatchNorm::new(&mut b, "bn", 2).unwrap();
/// let mut params = b.finish();
/// let tape = Tape::no_grad();
/// let x = tape.constant(arr2(&[[1.0, 10.0], [3.0, 30.0]]).into_dyn());
/// let mut ctx = ForwardCtx::train_seeded(0);
/// bn.forward(&params, x, &mut ctx);
/// ctx.take_updates().apply(&mut params);
/// assert_eq!(params.buffer(bn.running_mean).as_slice().unwrap(), &[0.2, 2.0]);
/// assert_eq!(params.buffer(bn.num_batches_tracked)[[]], 1.0);
/// ```
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// `weight` (gamma).
    pub weight: ParamId,
    /// `bias` (beta).
    pub bias: ParamId,
    /// `running_mean`.
    pub running_mean: BufferId,
    /// `running_var`.
    pub running_var: BufferId,
    /// `num_batches_tracked`.
    pub num_batches_tracked: BufferId,
    /// Channels.
    pub channels: usize,
    /// Weight of the newest batch in the running statistics (PyTorch's 0.1).
    pub momentum: f64,
    /// Added to the variance (PyTorch's 1e-5).
    pub eps: f64,
}

impl BatchNorm {
    /// Registers `{prefix}.weight`, `.bias`, `.running_mean`, `.running_var` and
    /// `.num_batches_tracked` with PyTorch's initial values, momentum 0.1 and eps 1e-5.
    pub fn new<T: Float>(
        b: &mut ParamBuilder<T>,
        prefix: &str,
        channels: usize,
    ) -> Result<Self, DuplicateName> {
        Ok(Self {
            weight: b.param(format!("{prefix}.weight"), &[channels], Init::Constant(1.0))?,
            bias: b.param(format!("{prefix}.bias"), &[channels], Init::Zeros)?,
            running_mean: b.buffer(
                format!("{prefix}.running_mean"),
                ArrayD::zeros(vec![channels]),
            )?,
            running_var: b.buffer(
                format!("{prefix}.running_var"),
                ArrayD::ones(vec![channels]),
            )?,
            num_batches_tracked: b.buffer(
                format!("{prefix}.num_batches_tracked"),
                ArrayD::zeros(vec![]),
            )?,
            channels,
            momentum: 0.1,
            eps: 1e-5,
        })
    }
}

impl<T: Float> Module<T> for BatchNorm {
    fn forward<'t>(
        &self,
        params: &ParamStore<T>,
        x: Var<'t, T>,
        ctx: &mut ForwardCtx<'_, T>,
    ) -> Var<'t, T> {
        let tape = x.tape();
        let (y, stats) = x.batch_norm(
            params.buffer(self.running_mean),
            params.buffer(self.running_var),
            Some(tape.param(params, self.weight)),
            Some(tape.param(params, self.bias)),
            ctx.is_training(),
            self.momentum,
            self.eps,
        );
        if let Some(stats) = stats {
            ctx.update_buffer(self.running_mean, stats.mean);
            ctx.update_buffer(self.running_var, stats.var);
            let n = params
                .buffer(self.num_batches_tracked)
                .mapv(|n| n + T::one());
            ctx.update_buffer(self.num_batches_tracked, n);
        }
        y
    }

    fn describe(&self) -> String {
        format!("BatchNorm({})", self.channels)
    }
}

/// Gives every sample a new shape (`[n, ...] -> [n, shape...]`), as `nn.Unflatten(1, shape)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reshape(pub Vec<usize>);

impl<T: Float> Module<T> for Reshape {
    fn forward<'t>(
        &self,
        _: &ParamStore<T>,
        x: Var<'t, T>,
        _: &mut ForwardCtx<'_, T>,
    ) -> Var<'t, T> {
        let n = x.value().shape().first().copied().unwrap_or(1);
        // Built on the stack (no allocation per step) for up to 7 sample axes.
        let mut buf = [0usize; 8];
        if self.0.len() < buf.len() {
            buf[0] = n;
            buf[1..=self.0.len()].copy_from_slice(&self.0);
            return x.reshape(&buf[..=self.0.len()]);
        }
        let shape: Vec<usize> = std::iter::once(n).chain(self.0.iter().copied()).collect();
        x.reshape(&shape)
    }

    fn describe(&self) -> String {
        format!("Reshape({:?})", self.0)
    }
}
