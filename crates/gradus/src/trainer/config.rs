//! The trainer's settings, what it records, and how it fails: plain data, serialisable, with
//! PyTorch- and Keras-like defaults documented on [`TrainerConfig::default`].

use std::path::PathBuf;

use gradus_autograd::{Float, NamedArrays};
use gradus_optim::{GradClip, NonFiniteNorm, OptimError, OptimizerState, Schedule};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::checkpoint::CheckpointError;
use crate::data::BatchSize;

/// A quantity to monitor for early stopping or best-model checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Metric {
    /// Mean training loss of the epoch (lower is better).
    TrainLoss,
    /// Training accuracy (higher is better).
    TrainAccuracy,
    /// Validation loss (lower is better).
    ValLoss,
    /// Validation accuracy (higher is better).
    ValAccuracy,
}

impl Metric {
    pub(crate) fn higher_is_better(self) -> bool {
        matches!(self, Metric::TrainAccuracy | Metric::ValAccuracy)
    }

    pub(crate) fn of(self, r: &EpochRecord) -> Option<f64> {
        match self {
            Metric::TrainLoss => Some(r.train_loss),
            Metric::TrainAccuracy => r.train_accuracy,
            Metric::ValLoss => r.val_loss,
            Metric::ValAccuracy => r.val_accuracy,
        }
    }
}

/// Stop when the monitored metric has not improved by `min_delta` for `patience` epochs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// What to watch.
    pub monitor: Metric,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    pub min_delta: f64,
    /// At the end of training, put back the weights of the best epoch.
    pub restore_best: bool,
}

/// When the trainer writes a resumable checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CheckpointWhen {
    /// After every epoch.
    EveryEpoch,
    /// After an epoch that improves the metric.
    Best(Metric),
}

/// Where and when to checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointConfig {
    /// The checkpoint file (replaced atomically each time).
    pub path: PathBuf,
    /// When to write it.
    pub when: CheckpointWhen,
}

/// What to do when a batch's loss or a gradient is NaN or infinite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NonFinite {
    /// Stop training with [`TrainError::NonFinite`] naming the epoch and batch (default).
    #[default]
    Stop,
    /// Skip the batch's update and count it in [`EpochRecord::skipped_batches`].
    SkipBatch,
}

/// What a [`Schedule`]'s step counts: optimizer steps (the default) or epochs.
///
/// PyTorch leaves this to the loop: `scheduler.step()` called after every batch or after
/// every epoch. With `Epoch`, `Schedule::Step { step_size: 30, gamma: 0.1 }` is the usual
/// "divide by 10 every 30 epochs", and the rate is constant within an epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduleUnit {
    /// The schedule advances after every optimizer step.
    #[default]
    Step,
    /// The schedule advances after every epoch (epoch `e`, from 0, uses `lr_at(base, e)`).
    Epoch,
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Progress {
    /// A live bar on a terminal, one line per epoch otherwise (default).
    #[default]
    Auto,
    /// Always a live bar.
    Bar,
    /// One line per epoch.
    Lines,
    /// Nothing.
    Quiet,
}

/// The trainer's settings. [`TrainerConfig::default`] documents each default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerConfig {
    /// Passes over the training set (default 10).
    pub epochs: usize,
    /// Samples per step, and so the GD variant (default `Mini(32)`).
    pub batch_size: BatchSize,
    /// Reshuffle the training set every epoch (default true).
    pub shuffle: bool,
    /// Drop a final partial batch (default false).
    pub drop_last: bool,
    /// Seeds shuffling, dropout and the validation split (default 0).
    pub seed: u64,
    /// Learning rate relative to the optimizer's initial rate (default constant).
    pub schedule: Schedule,
    /// Whether the schedule counts optimizer steps or epochs (default steps).
    #[serde(default)]
    pub schedule_unit: ScheduleUnit,
    /// Gradient clipping before each update (default none).
    pub clip: Option<GradClip>,
    /// Fraction of the training set held out for validation when `fit` gets no validation
    /// set; a seeded random split (default 0).
    pub validation_split: f64,
    /// Policy for NaN / infinite losses and gradients (default stop).
    pub non_finite: NonFinite,
    /// Progress display (default auto).
    pub progress: Progress,
    /// Early stopping (default none).
    pub early_stopping: Option<EarlyStopping>,
    /// Checkpointing (default none).
    pub checkpoint: Option<CheckpointConfig>,
    /// Samples per forward pass in evaluation (default 1000).
    pub eval_batch_size: usize,
    /// Check every op's output and every gradient for NaN / infinity and fail with the first
    /// op that produced one (default false: it costs a pass over every value).
    pub detect_anomaly: bool,
    /// Data-parallel workers (default 1): each step's batch is split into this many shards,
    /// each worker thread runs forward and backward on its own, and the gradients are summed
    /// in a fixed order, weighted by shard size, so the update is the whole batch's mean.
    /// Workers draw dropout from streams derived from the seed; BatchNorm computes statistics
    /// per worker and the running statistics are the workers' mean. Set
    /// `MATMUL_NUM_THREADS=1` with several workers, so the matrix products do not also split.
    #[serde(default = "one")]
    pub workers: usize,
}

fn one() -> usize {
    1
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: BatchSize::Mini(32),
            shuffle: true,
            drop_last: false,
            seed: 0,
            schedule: Schedule::Constant,
            schedule_unit: ScheduleUnit::Step,
            clip: None,
            validation_split: 0.0,
            non_finite: NonFinite::Stop,
            progress: Progress::Auto,
            early_stopping: None,
            checkpoint: None,
            eval_batch_size: 1000,
            detect_anomaly: false,
            workers: 1,
        }
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (weighted by batch size).
    pub train_loss: f64,
    /// Training accuracy, for classification.
    pub train_accuracy: Option<f64>,
    /// Training mean absolute error, for regression.
    #[serde(default)]
    pub train_mae: Option<f64>,
    /// Training root-mean-square error, for regression.
    #[serde(default)]
    pub train_rmse: Option<f64>,
    /// Validation loss, if there is a validation set.
    pub val_loss: Option<f64>,
    /// Validation accuracy, if there is a validation set and it is classification.
    pub val_accuracy: Option<f64>,
    /// Validation mean absolute error, for regression.
    #[serde(default)]
    pub val_mae: Option<f64>,
    /// Validation root-mean-square error, for regression.
    #[serde(default)]
    pub val_rmse: Option<f64>,
    /// Metrics added by callbacks ([`Callback::on_epoch_end`](crate::Callback::on_epoch_end)).
    #[serde(default)]
    pub extra: std::collections::BTreeMap<String, f64>,
    /// Learning rate of the epoch's last step (the rate it was taken with).
    pub lr: f64,
    /// Training throughput (forward, backward, update), excluding evaluation.
    pub samples_per_sec: f64,
    /// Wall time of the whole epoch, evaluation included.
    pub wall_time_secs: f64,
    /// Batches skipped under [`NonFinite::SkipBatch`].
    pub skipped_batches: usize,
    /// Where the training time of the epoch went, phase by phase. Not saved with the
    /// history (in checkpoints): it describes the run that measured it, and leaving it out
    /// keeps the checkpoints of earlier versions readable.
    #[serde(skip)]
    pub step_times: StepTimes,
}

/// Where an epoch's training steps spent their time, in seconds summed over the steps: the
/// split PyTorch DDP logs as compute and communication time. What the training time
/// (`samples / samples_per_sec`) holds beside these three is the step's bookkeeping:
/// the epoch's shuffle, callbacks and the progress bar.
///
/// ```
/// use gradus::{Dataset, Sequential, Trainer, TrainerConfig, Progress};
/// use gradus::ndarray::Array2;
/// use gradus::optim::Sgd;
///
/// let x = Array2::from_shape_fn((64, 4), |(i, j)| ((i * 7 + j) % 5) as f32 / 5.0);
/// let data = Dataset::classification(x.into_dyn(), (0..64).map(|i| i % 2).collect()).unwrap();
/// let (model, mut params) = Sequential::<f32>::new().linear(4, 2).build(0).unwrap();
/// let config = TrainerConfig { epochs: 1, workers: 2, progress: Progress::Quiet, ..Default::default() };
/// let history = Trainer::new(config, Sgd::new(0.1))
///     .fit(&model, &mut params, &data, None)
///     .unwrap();
/// let t = history.epochs[0].step_times;
/// assert!(t.forward_backward_secs > 0.0 && t.reduce_secs > 0.0 && t.update_secs > 0.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTimes {
    /// Gathering the batch, and forward and backward on every worker of this process, up
    /// to the slowest.
    pub forward_backward_secs: f64,
    /// Summing the workers' gradients, and under MPI the ranks' (waiting for the slowest
    /// rank included); 0 for one worker in one process.
    pub reduce_secs: f64,
    /// Clipping, the optimizer's update and the layers' buffer updates.
    pub update_secs: f64,
}

/// What `fit` returns: a record per epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One record per completed epoch.
    pub epochs: Vec<EpochRecord>,
    /// The epoch after which early stopping ended training.
    pub stopped_early: Option<usize>,
    /// The best epoch by the early-stopping metric, if monitored.
    pub best_epoch: Option<usize>,
}

/// Loss and the task's metrics of a model on a dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f64,
    /// Accuracy, for classification.
    pub accuracy: Option<f64>,
    /// Mean absolute error, for regression.
    pub mae: Option<f64>,
    /// Root-mean-square error, for regression.
    pub rmse: Option<f64>,
}

/// Training failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration value is invalid.
    #[error("trainer configuration: {field} must be {expected}, found {found}")]
    Config {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: String,
        /// What it is.
        found: String,
    },
    /// The data cannot be trained on.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A NaN or infinite loss or gradient under [`NonFinite::Stop`].
    #[error(
        "non-finite {what} in epoch {epoch}, batch {batch}: lower the learning rate, clip gradients or set NonFinite::SkipBatch"
    )]
    NonFinite {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based batch within the epoch (as the epoch is 1-based).
        batch: usize,
        /// `loss (NaN)` or `gradient of 0.weight`.
        what: String,
    },
    /// Anomaly mode found the op that produced the first NaN or infinity.
    #[error("epoch {epoch}, batch {batch}: {anomaly}")]
    Anomaly {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based batch within the epoch (as the epoch is 1-based).
        batch: usize,
        /// The op, phase and shapes.
        anomaly: gradus_autograd::Anomaly,
    },
    /// The optimizer refused a step.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// Ranks of an MPI job disagree (the `distributed` module of the `mpi` feature).
    #[error("distributed training: {0}")]
    Distributed(String),
    /// Clipping found a non-finite norm and was configured to fail.
    #[error(transparent)]
    Clip(#[from] NonFiniteNorm),
    /// Writing or reading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The data does not fit the model: the samples' shape, a label without an output, or
    /// targets of another width; says which layer and what it expects.
    #[error("the model does not fit the data: {0}")]
    Model(String),
    /// A callback stopped training with an error.
    #[error("callback: {0}")]
    Callback(String),
}

/// Everything needed to resume training exactly: saved in checkpoints.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct TrainingState<T: Float> {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken: the schedule's position.
    pub step: u64,
    /// The optimizer's learning rate before any schedule.
    pub base_lr: f64,
    /// Shuffling and dropout RNG.
    pub rng: ChaCha8Rng,
    /// Optimizer state.
    pub optimizer: OptimizerState<T>,
    /// History so far.
    pub history: History,
    /// Best monitored value and its epoch.
    pub best: Option<(f64, usize)>,
    /// Epochs since the best.
    pub wait: usize,
    /// Weights of the best epoch, when early stopping restores them.
    pub best_weights: Option<NamedArrays<T>>,
}
