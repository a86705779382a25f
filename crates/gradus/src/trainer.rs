//! The `Trainer`: shuffled mini-batches through forward, loss, backward, optimizer update
//! and schedule step, in that order; evaluation without a backward graph; history,
//! progress, early stopping, checkpoints and exact resume.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use gradus_autograd::ndarray::{ArrayD, Axis};
use gradus_autograd::{
    Float, NamedArrays, ParamStore, Tape, Var, all_finite, count_correct, pool, value_and_grad,
    value_and_grad_detect_anomaly,
};
use gradus_layers::{Mode, Module};
use gradus_optim::{GradClip, NonFiniteNorm, OptimError, Optimizer, OptimizerState, Schedule};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::checkpoint::{self, CheckpointError, FileKind};
use crate::data::{BatchSize, Dataset, Targets, epoch_chunks};

/// The loss a trainer minimises (all with mean reduction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Loss {
    /// Softmax cross-entropy of logits against class labels.
    CrossEntropy,
    /// Mean squared error against value targets.
    Mse,
    /// Binary cross-entropy of logits against targets in [0, 1].
    BceWithLogits,
}

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
    fn higher_is_better(self) -> bool {
        matches!(self, Metric::TrainAccuracy | Metric::ValAccuracy)
    }

    fn of(self, r: &EpochRecord) -> Option<f64> {
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
    /// The loss (default cross-entropy).
    pub loss: Loss,
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
            loss: Loss::CrossEntropy,
            non_finite: NonFinite::Stop,
            progress: Progress::Auto,
            early_stopping: None,
            checkpoint: None,
            eval_batch_size: 1000,
            detect_anomaly: false,
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
    /// Validation loss, if there is a validation set.
    pub val_loss: Option<f64>,
    /// Validation accuracy, if there is a validation set and it is classification.
    pub val_accuracy: Option<f64>,
    /// Learning rate of the epoch's last step (the rate it was taken with).
    pub lr: f64,
    /// Training throughput (forward, backward, update), excluding evaluation.
    pub samples_per_sec: f64,
    /// Wall time of the whole epoch, evaluation included.
    pub wall_time_secs: f64,
    /// Batches skipped under [`NonFinite::SkipBatch`].
    pub skipped_batches: usize,
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

/// Loss and accuracy of a model on a dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f64,
    /// Accuracy, for classification.
    pub accuracy: Option<f64>,
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
        /// 0-based batch within the epoch.
        batch: usize,
        /// `loss (NaN)` or `gradient of 0.weight`.
        what: String,
    },
    /// Anomaly mode found the op that produced the first NaN or infinity.
    #[error("epoch {epoch}, batch {batch}: {anomaly}")]
    Anomaly {
        /// 1-based epoch.
        epoch: usize,
        /// 0-based batch within the epoch.
        batch: usize,
        /// The op, phase and shapes.
        anomaly: gradus_autograd::Anomaly,
    },
    /// The optimizer refused a step.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// Clipping found a non-finite norm and was configured to fail.
    #[error(transparent)]
    Clip(#[from] NonFiniteNorm),
    /// Writing or reading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
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

/// Trains a [`Module`] with an [`Optimizer`].
///
/// ```
/// use gradus::{BatchSize, Dataset, Progress, Sequential, Trainer, TrainerConfig};
/// use gradus::optim::Adam;
/// use gradus::ndarray::{Array2, ArrayD};
///
/// // Two Gaussian-ish blobs, labelled by the sign of x0 + x1.
/// let x = Array2::from_shape_fn((200, 2), |(i, j)| ((i * 37 + j * 11) % 101) as f32 / 50.0 - 1.0);
/// let labels: Vec<usize> = x.rows().into_iter().map(|r| (r[0] + r[1] > 0.0) as usize).collect();
/// let data = Dataset::classification(x.into_dyn(), labels).unwrap();
///
/// let (model, mut params) = Sequential::<f32>::new().linear(2, 16).relu().linear(16, 2).build(0).unwrap();
/// let config = TrainerConfig { epochs: 30, batch_size: BatchSize::Mini(20), progress: Progress::Quiet, ..Default::default() };
/// let mut trainer = Trainer::new(config, Adam::new(0.01));
/// let history = trainer.fit(&model, &mut params, &data, None).unwrap();
/// assert!(history.epochs.last().unwrap().train_accuracy.unwrap() > 0.95);
/// ```
pub struct Trainer<T: Float = f32> {
    /// The settings.
    pub config: TrainerConfig,
    optimizer: Box<dyn Optimizer<T>>,
    state: TrainingState<T>,
}

impl<T: Float> Trainer<T> {
    /// A trainer; the optimizer's current learning rate is the schedule's base rate.
    pub fn new(config: TrainerConfig, optimizer: impl Optimizer<T> + 'static) -> Self {
        let base_lr = optimizer.lr();
        let state = TrainingState {
            epoch: 0,
            step: 0,
            base_lr,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            optimizer: optimizer.state(),
            history: History::default(),
            best: None,
            wait: 0,
            best_weights: None,
        };
        Self {
            config,
            optimizer: Box::new(optimizer),
            state,
        }
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &dyn Optimizer<T> {
        &*self.optimizer
    }

    /// Epochs completed so far (after a resume, those of the checkpoint).
    pub fn epochs_done(&self) -> usize {
        self.state.epoch
    }

    /// The history so far.
    pub fn history(&self) -> &History {
        &self.state.history
    }

    fn check_config(&self, train: &Dataset<T>) -> Result<(), TrainError> {
        let c = &self.config;
        let bad = |field, expected: &str, found: String| {
            Err(TrainError::Config {
                field,
                expected: expected.into(),
                found,
            })
        };
        if c.epochs == 0 {
            return bad("epochs", "at least 1", "0".into());
        }
        if c.batch_size == BatchSize::Mini(0) {
            return bad("batch_size", "at least 1", "0".into());
        }
        if c.eval_batch_size == 0 {
            return bad("eval_batch_size", "at least 1", "0".into());
        }
        if !(0.0..1.0).contains(&c.validation_split) {
            return bad(
                "validation_split",
                "in [0, 1)",
                c.validation_split.to_string(),
            );
        }
        if !(self.optimizer.lr().is_finite() && self.optimizer.lr() >= 0.0) {
            return bad(
                "learning rate",
                "finite and non-negative",
                self.optimizer.lr().to_string(),
            );
        }
        if train.is_empty() {
            return Err(DataError::Invalid("the training set is empty".into()).into());
        }
        match (c.loss, train.targets()) {
            (Loss::CrossEntropy, Targets::Values(_)) => bad(
                "loss",
                "Mse or BceWithLogits for value targets",
                "CrossEntropy".into(),
            ),
            (Loss::Mse | Loss::BceWithLogits, Targets::Classes(_)) => bad(
                "loss",
                "CrossEntropy for class labels",
                format!("{:?}", c.loss),
            ),
            _ => Ok(()),
        }
    }

    /// Trains until `config.epochs` epochs are done (continuing after a [`Trainer::resume`]),
    /// or early stopping ends it. Each batch runs forward, loss, backward, clipping,
    /// optimizer update and schedule step; each epoch ends with an evaluation on the
    /// validation set, if any.
    pub fn fit<M: Module<T> + ?Sized>(
        &mut self,
        model: &M,
        params: &mut ParamStore<T>,
        train: &Dataset<T>,
        validation: Option<&Dataset<T>>,
    ) -> Result<History, TrainError> {
        self.check_config(train)?;
        let split;
        let (train, validation) = match validation {
            Some(v) => (train, Some(v)),
            None if self.config.validation_split > 0.0 => {
                split = train.split(self.config.validation_split, self.config.seed ^ 0x5EED_5A11);
                (&split.0, Some(&split.1))
            }
            None => (train, None),
        };
        let show_bar = match self.config.progress {
            Progress::Bar => true,
            Progress::Auto => std::io::stderr().is_terminal(),
            Progress::Lines | Progress::Quiet => false,
        };
        self.apply_schedule()?;
        while self.state.epoch < self.config.epochs && self.state.history.stopped_early.is_none() {
            let record = self.run_epoch(model, params, train, validation, show_bar)?;
            if self.config.progress != Progress::Quiet && !show_bar {
                println!("{}", describe(&record, self.config.epochs));
            }
            self.state.epoch = record.epoch;
            self.state.history.epochs.push(record);
            if self.config.schedule_unit == ScheduleUnit::Epoch {
                self.apply_schedule()?;
            }
            let improved = self.track_best(params);
            if let Some(c) = &self.config.checkpoint {
                let due = match c.when {
                    CheckpointWhen::EveryEpoch => true,
                    CheckpointWhen::Best(m) => self.is_best(m),
                };
                if due {
                    self.save_checkpoint(&c.path, params)?;
                }
            }
            if let Some(es) = self.config.early_stopping
                && !improved
                && self.state.wait >= es.patience
            {
                self.state.history.stopped_early = Some(self.state.epoch);
            }
        }
        if let (Some(es), Some(best)) = (self.config.early_stopping, &self.state.best_weights)
            && es.restore_best
        {
            params
                .import(best)
                .expect("best weights come from this model");
        }
        Ok(self.state.history.clone())
    }

    /// Sets the schedule's learning rate (and momentum, for OneCycle's momentum cycle) at
    /// the trainer's position (steps or epochs taken).
    fn apply_schedule(&mut self) -> Result<(), TrainError> {
        let position = match self.config.schedule_unit {
            ScheduleUnit::Step => self.state.step,
            ScheduleUnit::Epoch => self.state.epoch as u64,
        };
        let schedule = &self.config.schedule;
        self.optimizer
            .set_lr(schedule.lr_at(self.state.base_lr, position));
        if let Some(m) = schedule.momentum_at(position)
            && !self.optimizer.set_momentum(m)
        {
            return Err(TrainError::Config {
                field: "schedule",
                expected: "an optimizer with a momentum or betas (SGD, RMSprop, Adam) for \
                           OneCycle's momentum cycle, or OneCycle with `momentum: None`"
                    .into(),
                found: format!("{} with momentum cycling", self.optimizer.name()),
            });
        }
        Ok(())
    }

    fn run_epoch<M: Module<T> + ?Sized>(
        &mut self,
        model: &M,
        params: &mut ParamStore<T>,
        train: &Dataset<T>,
        validation: Option<&Dataset<T>>,
        show_bar: bool,
    ) -> Result<EpochRecord, TrainError> {
        let epoch = self.state.epoch + 1;
        let start = Instant::now();
        // The schedule's position is already right for this epoch (set at the start of
        // `fit` and after every step or epoch).
        let mut last_lr = self.optimizer.lr();
        let order = {
            let rng = self
                .config
                .shuffle
                .then_some(&mut self.state.rng as &mut dyn rand::RngCore);
            train.epoch_order(rng)
        };
        let batches = epoch_chunks(&order, self.config.batch_size, self.config.drop_last);
        let bar = show_bar
            .then(|| progress_bar(batches.clone().count() as u64, epoch, self.config.epochs));
        let (mut loss_sum, mut seen, mut correct, mut skipped) = (0.0, 0usize, 0usize, 0usize);
        for (b, indices) in batches.enumerate() {
            let batch = train.batch(indices);
            let mut logits = None;
            let rng = &mut self.state.rng;
            let loss_kind = self.config.loss;
            let record = higher_ranked(|tape| {
                let out = model.forward(params, tape.constant(batch.inputs), &mut Mode::Train(rng));
                logits = Some(out.value());
                loss_on(loss_kind, out, &batch.targets)
            });
            let (loss, mut grads) = if self.config.detect_anomaly {
                value_and_grad_detect_anomaly(record).map_err(|anomaly| TrainError::Anomaly {
                    epoch,
                    batch: b,
                    anomaly,
                })?
            } else {
                value_and_grad(record)
            };
            let loss = loss.as_f64();
            let bad = if !loss.is_finite() {
                Some(format!("loss ({loss})"))
            } else {
                grads
                    .iter()
                    .find(|(_, g)| match g.as_slice_memory_order() {
                        Some(s) => !all_finite(s),
                        None => g.iter().any(|v| !v.is_finite()),
                    })
                    .map(|(id, _)| format!("gradient of {}", params.name(id)))
            };
            if let Some(what) = bad {
                match self.config.non_finite {
                    NonFinite::Stop => {
                        return Err(TrainError::NonFinite {
                            epoch,
                            batch: b,
                            what,
                        });
                    }
                    NonFinite::SkipBatch => {
                        skipped += 1;
                        continue;
                    }
                }
            }
            if let Some(clip) = &self.config.clip {
                clip.apply(&mut grads)?;
            }
            last_lr = self.optimizer.lr();
            self.optimizer.step(params, &grads)?;
            self.state.step += 1;
            if self.config.schedule_unit == ScheduleUnit::Step {
                self.apply_schedule()?;
            }
            loss_sum += loss * indices.len() as f64;
            seen += indices.len();
            if let Some(l) = logits.take() {
                correct += accuracy_count(&l, &batch.targets).unwrap_or(0);
                pool::recycle_shared(l);
            }
            if let Some(bar) = &bar {
                bar.set_message(format!(
                    "loss {:.4}  {:.0} samples/s",
                    loss_sum / seen as f64,
                    seen as f64 / start.elapsed().as_secs_f64()
                ));
                bar.inc(1);
            }
        }
        let train_secs = start.elapsed().as_secs_f64();
        let classification = matches!(train.targets(), Targets::Classes(_))
            || self.config.loss == Loss::BceWithLogits;
        let eval = validation.map(|v| self.evaluate(model, params, v));
        let record = EpochRecord {
            epoch,
            train_loss: if seen > 0 {
                loss_sum / seen as f64
            } else {
                f64::NAN
            },
            train_accuracy: (classification && seen > 0).then(|| correct as f64 / seen as f64),
            val_loss: eval.map(|e| e.loss),
            val_accuracy: eval.and_then(|e| e.accuracy),
            lr: last_lr,
            samples_per_sec: seen as f64 / train_secs.max(1e-9),
            wall_time_secs: start.elapsed().as_secs_f64(),
            skipped_batches: skipped,
        };
        if let Some(bar) = bar {
            bar.finish_with_message(describe(&record, self.config.epochs));
            eprintln!(); // keep the finished bar, with the epoch's figures, on its own line
        }
        Ok(record)
    }

    fn is_best(&self, metric: Metric) -> bool {
        let history = &self.state.history.epochs;
        let Some(last) = history.last().and_then(|r| metric.of(r)) else {
            return false;
        };
        history[..history.len() - 1]
            .iter()
            .filter_map(|r| metric.of(r))
            .all(|v| {
                if metric.higher_is_better() {
                    last > v
                } else {
                    last < v
                }
            })
    }

    /// Updates the early-stopping bookkeeping; true if the epoch improved the metric.
    fn track_best(&mut self, params: &ParamStore<T>) -> bool {
        let Some(es) = self.config.early_stopping else {
            return false;
        };
        let record = self
            .state
            .history
            .epochs
            .last()
            .expect("an epoch was just recorded");
        let Some(value) = es.monitor.of(record) else {
            return false;
        };
        let improved = match self.state.best {
            None => true,
            Some((best, _)) if es.monitor.higher_is_better() => value > best + es.min_delta,
            Some((best, _)) => value < best - es.min_delta,
        };
        if improved {
            self.state.best = Some((value, record.epoch));
            self.state.history.best_epoch = Some(record.epoch);
            self.state.wait = 0;
            if es.restore_best {
                self.state.best_weights = Some(params.export());
            }
        } else {
            self.state.wait += 1;
        }
        improved
    }

    /// Loss and accuracy on `data`, in batches of `eval_batch_size`, with no backward graph.
    pub fn evaluate<M: Module<T> + ?Sized>(
        &self,
        model: &M,
        params: &ParamStore<T>,
        data: &Dataset<T>,
    ) -> Evaluation {
        let n = data.len();
        let (mut loss_sum, mut correct, mut has_acc) = (0.0, 0usize, false);
        let chunk = self.config.eval_batch_size.max(1);
        for start in (0..n).step_by(chunk) {
            let indices: Vec<usize> = (start..(start + chunk).min(n)).collect();
            let batch = data.batch(&indices);
            let tape = Tape::no_grad();
            let out = model.forward(params, tape.constant(batch.inputs), &mut Mode::Eval);
            loss_sum += loss_on(self.config.loss, out, &batch.targets)
                .item()
                .as_f64()
                * indices.len() as f64;
            if let Some(c) = accuracy_count(&out.value(), &batch.targets) {
                correct += c;
                has_acc = true;
            }
        }
        let n = n.max(1) as f64;
        Evaluation {
            loss: loss_sum / n,
            accuracy: has_acc.then(|| correct as f64 / n),
        }
    }

    /// The model's outputs for `inputs`, in batches of `eval_batch_size`.
    pub fn predict<M: Module<T> + ?Sized>(
        &self,
        model: &M,
        params: &ParamStore<T>,
        inputs: &ArrayD<T>,
    ) -> ArrayD<T> {
        predict(model, params, inputs, self.config.eval_batch_size)
    }

    /// The state that a checkpoint holds.
    pub fn training_state(&self) -> TrainingState<T> {
        TrainingState {
            optimizer: self.optimizer.state(),
            ..self.state.clone()
        }
    }

    /// Writes a resumable checkpoint (weights and training state) atomically.
    pub fn save_checkpoint(
        &self,
        path: impl AsRef<Path>,
        params: &ParamStore<T>,
    ) -> Result<(), TrainError> {
        let bytes = checkpoint::encode(&params.export(), Some(&self.training_state()));
        Ok(checkpoint::write_atomically(path.as_ref(), &bytes)?)
    }

    /// Restores weights and training state from a checkpoint; the next `fit` continues
    /// where it left off and ends with the weights an uninterrupted run would have.
    pub fn resume(
        &mut self,
        path: impl AsRef<Path>,
        params: &mut ParamStore<T>,
    ) -> Result<(), TrainError> {
        let path = path.as_ref();
        let decoded = checkpoint::decode::<T>(&checkpoint::read(path)?, path, false)?;
        if decoded.header.kind != FileKind::Checkpoint {
            return Err(CheckpointError::Kind {
                path: path.into(),
                expected: FileKind::Checkpoint,
                found: decoded.header.kind,
            }
            .into());
        }
        let state: TrainingState<T> = checkpoint::decode_state(&decoded.state, path)?;
        let mut staged = params.clone();
        staged
            .import(&decoded.tensors)
            .map_err(|diff| CheckpointError::Mismatch {
                path: path.into(),
                diff,
            })?;
        self.optimizer.load_state(state.optimizer.clone())?;
        *params = staged;
        self.state = state;
        Ok(())
    }
}

/// The model's outputs for `inputs` in batches of `batch` rows, with no backward graph.
pub fn predict<T: Float, M: Module<T> + ?Sized>(
    model: &M,
    params: &ParamStore<T>,
    inputs: &ArrayD<T>,
    batch: usize,
) -> ArrayD<T> {
    let n = inputs.shape()[0];
    let mut parts = Vec::new();
    for start in (0..n).step_by(batch.max(1)) {
        let rows = inputs
            .slice_axis(Axis(0), (start..(start + batch).min(n)).into())
            .to_owned();
        parts.push(model.predict(params, rows));
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    gradus_autograd::ndarray::concatenate(Axis(0), &views)
        .expect("outputs of one model agree in shape")
}

/// Pins a closure to the higher-ranked signature `value_and_grad` takes.
fn higher_ranked<T: Float, F: for<'t> FnOnce(&'t Tape<T>) -> Var<'t, T>>(f: F) -> F {
    f
}

fn loss_on<'t, T: Float>(loss: Loss, out: Var<'t, T>, targets: &Targets<T>) -> Var<'t, T> {
    let tape = out.tape();
    match (loss, targets) {
        (Loss::CrossEntropy, Targets::Classes(labels)) => out.cross_entropy_with_logits(labels),
        (Loss::Mse, Targets::Values(v)) => out.mse_loss(tape.constant(v.clone())),
        (Loss::BceWithLogits, Targets::Values(v)) => out.bce_with_logits(tape.constant(v.clone())),
        (loss, _) => panic!("{loss:?} does not apply to these targets (checked by fit)"),
    }
}

fn accuracy_count<T: Float>(out: &ArrayD<T>, targets: &Targets<T>) -> Option<usize> {
    match targets {
        Targets::Classes(labels) => Some(count_correct(out, labels)),
        Targets::Values(v) if v.shape() == out.shape() => {
            // Binary targets: a logit above 0 predicts 1. Counted per sample (all outputs right).
            let half = T::of(0.5);
            Some(
                out.outer_iter()
                    .zip(v.outer_iter())
                    .filter(|(o, t)| {
                        o.iter()
                            .zip(t.iter())
                            .all(|(&o, &t)| (o > T::zero()) == (t > half))
                    })
                    .count(),
            )
        }
        Targets::Values(_) => None,
    }
}

fn describe(r: &EpochRecord, epochs: usize) -> String {
    let mut s = format!("epoch {:>3}/{epochs}  loss {:.4}", r.epoch, r.train_loss);
    if let Some(a) = r.train_accuracy {
        s.push_str(&format!("  acc {:.2}%", 100.0 * a));
    }
    if let Some(l) = r.val_loss {
        s.push_str(&format!("  val_loss {l:.4}"));
    }
    if let Some(a) = r.val_accuracy {
        s.push_str(&format!("  val_acc {:.2}%", 100.0 * a));
    }
    s.push_str(&format!(
        "  lr {:.3e}  {:.0} samples/s  {:.1}s",
        r.lr, r.samples_per_sec, r.wall_time_secs
    ));
    if r.skipped_batches > 0 {
        s.push_str(&format!("  ({} batches skipped)", r.skipped_batches));
    }
    s
}

fn progress_bar(len: u64, epoch: usize, epochs: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}
