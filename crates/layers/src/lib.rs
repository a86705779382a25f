//! # gradus-layers
//!
//! How a network is defined in Rust code: the [`Module`] trait and its [`ForwardCtx`],
//! [`Linear`], the [`Activation`]s, [`Dropout`], [`Flatten`], [`Sequential`] and its builder,
//! [`ParamBuilder`] for custom models, and the initialisers in [`Init`]. Parameters and
//! buffers live in a [`ParamStore`](gradus_autograd::ParamStore); modules hold only their ids.
//!
//! ```
//! use gradus_layers::{ForwardCtx, Module, Sequential};
//! use gradus_autograd::{value_and_grad, ndarray::ArrayD};
//!
//! let (model, params) = Sequential::<f32>::new().linear(2, 8).tanh().linear(8, 2).build(0).unwrap();
//! let x = ArrayD::<f32>::ones(vec![4, 2]);
//! let (loss, grads) = value_and_grad(|tape| {
//!     let logits = model.forward(&params, tape.constant(x.clone()), &mut ForwardCtx::train_seeded(1));
//!     logits.cross_entropy_with_logits(&[0, 1, 0, 1])
//! });
//! assert!(loss > 0.0);
//! assert_eq!(grads.len(), 4);
//! ```

mod builder;
mod conv;
mod init;
mod layers;
mod module;
mod sequential;

pub use builder::ParamBuilder;
pub use conv::{BatchNorm, Conv2d, Conv2dConfig, Pool2d, Reshape};
pub use gradus_autograd::ops::conv::Pair;
pub use init::{FanMode, Init, Nonlinearity};
pub use layers::{Activation, Dropout, Flatten, Linear, LinearConfig};
pub use module::{BufferUpdates, ForwardCtx, Module};
pub use sequential::{LayerError, Sequential, SequentialBuilder, ShapeMismatch};
