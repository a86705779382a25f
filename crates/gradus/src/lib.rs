//! # gradus
//!
//! A small, fast and dependable neural-network framework in pure Rust: define a network in
//! Rust code, train it on a CPU with any member of the gradient-descent family, save it.
//!
//! This facade re-exports the parts ([`autograd`], [`layers`], [`optim`]) and adds the
//! [`Trainer`], [`data`] loading (datasets, batches, IDX / MNIST) and [`checkpoint`] I/O.
//!
//! ```
//! use gradus::{Dataset, Progress, Sequential, Trainer, TrainerConfig, BatchSize};
//! use gradus::optim::Sgd;
//! use gradus::ndarray::arr2;
//!
//! // XOR with a small MLP and momentum SGD.
//! let x = arr2(&[[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).into_dyn();
//! let data = Dataset::classification(x, vec![0, 1, 1, 0]).unwrap();
//! let (model, mut params) = Sequential::<f32>::new().linear(2, 8).tanh().linear(8, 2).build(1).unwrap();
//! let config = TrainerConfig { epochs: 300, batch_size: BatchSize::Full, progress: Progress::Quiet, ..Default::default() };
//! let mut trainer = Trainer::new(config, Sgd::new(0.5).momentum(0.9));
//! trainer.fit(&model, &mut params, &data, None).unwrap();
//! assert_eq!(trainer.evaluate(&model, &params, &data).unwrap().accuracy, Some(1.0));
//! ```

pub mod checkpoint;
pub mod data;
#[cfg(feature = "mpi")]
pub mod distributed;
mod error;
mod trainer;

#[doc(inline)]
pub use gradus_autograd as autograd;
pub use gradus_autograd::ndarray;
#[doc(inline)]
pub use gradus_layers as layers;
#[doc(inline)]
pub use gradus_optim as optim;

pub use checkpoint::CheckpointError;
pub use data::mnist::Mnist;
pub use data::{Batch, BatchSize, Dataset, Targets};
pub use error::DataError;
#[doc(inline)]
pub use gradus_autograd::{
    BufferId, Gradients, ParamId, ParamStore, Tape, Var, gradcheck, value_and_grad,
    value_and_grad_with_aux,
};
#[doc(inline)]
pub use gradus_layers::{ForwardCtx, Init, Linear, Module, ParamBuilder, Sequential};
/// The rand crate gradus uses (its RNG traits), so user code never names a clashing version.
pub use rand;
/// The ChaCha RNG gradus seeds everything from.
pub use rand_chacha;
pub use trainer::{
    BatchEnd, Callback, CheckpointConfig, CheckpointWhen, EarlyStopping, EpochRecord, Evaluation,
    History, Loss, LossFn, Metric, NonFinite, Objective, PROFILE_ADVICE, Progress, ScheduleUnit,
    StepTimes, Task, TrainError, Trainer, TrainerConfig, TrainingState, compiled_opt_level,
    evaluate, is_unoptimised, loss_fn, predict, predict_classes,
};

/// The README's code blocks, compiled (and the runnable ones run) by `cargo test`.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// docs/guide.md's code blocks, compiled and run by `cargo test`.
#[doc = include_str!("../../../docs/guide.md")]
#[cfg(doctest)]
pub struct GuideDoctests;
