//! # gradus-layers
//!
//! How a network is defined in Rust code: the [`Module`] trait, [`Linear`], the
//! [`Activation`]s, [`Dropout`], [`Flatten`], [`Sequential`] and its builder, and the
//! initialisers in [`Init`]. Parameters live in a [`ParamStore`](gradus_autograd::ParamStore);
//! modules hold only their ids.
//!
//! ```
//! use gradus_layers::{Module, Mode, Sequential};
//! use gradus_autograd::{value_and_grad, ndarray::ArrayD};
//! use rand::SeedableRng;
//!
//! let (model, params) = Sequential::<f32>::new().linear(2, 8).tanh().linear(8, 2).build(0).unwrap();
//! let x = ArrayD::<f32>::ones(vec![4, 2]);
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
//! let (loss, grads) = value_and_grad(|tape| {
//!     let logits = model.forward(&params, tape.constant(x.clone()), &mut Mode::Train(&mut rng));
//!     logits.cross_entropy_with_logits(&[0, 1, 0, 1])
//! });
//! assert!(loss > 0.0);
//! assert_eq!(grads.len(), 4);
//! ```

mod init;
mod layers;
mod module;
mod sequential;

pub use init::{FanMode, Init, Nonlinearity};
pub use layers::{Activation, Dropout, Flatten, Linear, LinearConfig};
pub use module::{Mode, Module};
pub use sequential::{LayerError, Sequential, SequentialBuilder};
