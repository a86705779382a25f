//! The `Trainer`: shuffled mini-batches through forward, loss, backward, optimizer update
//! and schedule step, in that order; history, progress, callbacks, early stopping,
//! checkpoints and exact resume. The parts: [`config`](self) types, the [`Objective`]s, one
//! step's forward and backward (`step`), evaluation (`eval`), callbacks and progress.

mod callback;
mod config;
mod early_stop;
mod eval;
mod objective;
mod progress;
mod resume;
mod step;
mod workers;

use std::io::IsTerminal;
use std::time::Instant;

use gradus_autograd::ndarray::ArrayD;
use gradus_autograd::{Float, ParamStore};
use gradus_layers::Module;
use gradus_optim::Optimizer;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use callback::{BatchEnd, Callback};
pub use config::{
    CheckpointConfig, CheckpointWhen, EarlyStopping, EpochRecord, Evaluation, History, Metric,
    NonFinite, Progress, ScheduleUnit, StepTimes, TrainError, TrainerConfig, TrainingState,
};
pub use eval::{evaluate, predict, predict_classes};
pub use objective::{Loss, LossFn, Objective, Task, loss_fn};

use crate::DataError;

use crate::data::{BatchSize, Dataset, epoch_chunks};
use callback::EpochFn;
pub(crate) use objective::MetricSums;
use progress::{describe, progress_bar};
use step::StepOutcome;

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
    objective: Box<dyn Objective<T> + Send + Sync>,
    callbacks: Vec<Box<dyn Callback<T>>>,
    state: TrainingState<T>,
    /// The data-parallel workers' threads, made once (for `config.workers > 1`).
    workers: Option<workers::WorkerThreads>,
    /// Whether a `fit` of this trainer has run (a resume clears it).
    fitted: bool,
    /// The MPI job this trainer is one rank of, and its reduction buffers.
    #[cfg(feature = "mpi")]
    mpi: Option<(
        std::sync::Arc<crate::distributed::Mpi>,
        crate::distributed::Reducer<T>,
    )>,
}

impl<T: Float> Trainer<T> {
    /// A trainer minimising cross-entropy (see [`Trainer::loss`]); the optimizer's current
    /// learning rate is the schedule's base rate. Any [`Optimizer`], one written outside
    /// gradus or a `Box<dyn Optimizer<T>>` included.
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
            objective: Box::new(Loss::CrossEntropy),
            callbacks: Vec::new(),
            state,
            workers: None,
            fitted: false,
            #[cfg(feature = "mpi")]
            mpi: None,
        }
    }

    /// Makes this trainer one rank of an MPI job (see [`crate::distributed`]): every rank
    /// runs the same program with the same configuration; each takes its shard of every
    /// batch, and the gradients are summed across ranks before the one identical update.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use gradus::{Trainer, TrainerConfig, distributed::Mpi};
    /// let mpi = Arc::new(Mpi::init().unwrap());
    /// let trainer = Trainer::<f32>::new(TrainerConfig::default(), gradus::optim::Sgd::new(0.1))
    ///     .distributed(mpi);
    /// # let _ = trainer;
    /// ```
    #[cfg(feature = "mpi")]
    pub fn distributed(mut self, mpi: std::sync::Arc<crate::distributed::Mpi>) -> Self {
        self.mpi = Some((mpi, crate::distributed::Reducer::default()));
        self
    }

    /// `(rank, ranks)` of the job this trainer is part of: `(0, 1)` unless it is
    /// `distributed` (with the `mpi` feature).
    ///
    /// ```
    /// let trainer = gradus::Trainer::<f32>::new(Default::default(), gradus::optim::Sgd::new(0.1));
    /// assert_eq!(trainer.rank(), (0, 1));
    /// ```
    pub fn rank(&self) -> (usize, usize) {
        #[cfg(feature = "mpi")]
        if let Some((mpi, _)) = &self.mpi {
            return (mpi.rank(), mpi.size());
        }
        (0, 1)
    }

    /// Sets what `fit` minimises: a built-in [`Loss`] or any [`Objective`] (see
    /// [`loss_fn`](crate::loss_fn)).
    pub fn loss(mut self, objective: impl Objective<T> + Send + Sync + 'static) -> Self {
        self.objective = Box::new(objective);
        self
    }

    /// Adds a callback, run after every batch and epoch in the order added.
    pub fn callback(mut self, callback: impl Callback<T> + 'static) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// Adds a closure run after every epoch, which may add metrics to `record.extra` or stop
    /// training with an error.
    ///
    /// ```
    /// use gradus::{Trainer, TrainerConfig};
    /// use gradus::optim::Sgd;
    /// let trainer = Trainer::<f32>::new(TrainerConfig::default(), Sgd::new(0.1))
    ///     .on_epoch_end(|record, _params| {
    ///         record.extra.insert("twice_loss".into(), 2.0 * record.train_loss);
    ///         Ok(())
    ///     });
    /// # let _ = trainer;
    /// ```
    pub fn on_epoch_end(
        self,
        f: impl FnMut(&mut EpochRecord, &ParamStore<T>) -> Result<(), String> + 'static,
    ) -> Self {
        self.callback(EpochFn(f))
    }

    /// What `fit` minimises.
    pub fn objective(&self) -> &dyn Objective<T> {
        &*self.objective
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

    /// In a job of several ranks, every batch must give each of the job's workers a sample:
    /// a rank without one would have no gradients to add to the others'.
    fn check_shards(&self, len: usize, ranks: usize) -> Result<(), TrainError> {
        let total = ranks * self.config.workers;
        if ranks == 1 {
            return Ok(());
        }
        let size = self.config.batch_size.samples(len);
        let last = if self.config.drop_last || len.is_multiple_of(size) {
            size
        } else {
            len % size
        };
        if size.min(last) < total {
            return Err(TrainError::Config {
                field: "batch_size",
                expected: format!(
                    "at least one sample per worker of the job ({ranks} ranks x {} workers = \
                     {total}) in every batch, the last included (or drop_last)",
                    self.config.workers
                ),
                found: format!("batches of {size} over {len} samples, the last of {last}"),
            });
        }
        Ok(())
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
        if c.workers == 0 {
            return bad("workers", "at least 1", "0".into());
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
        self.objective
            .check_targets(train.targets())
            .map_err(|expected| TrainError::Config {
                field: "loss",
                expected,
                found: self.objective.name(),
            })
    }

    /// Trains until `config.epochs` epochs are done in total (continuing after a
    /// [`Trainer::resume`] or an earlier `fit`), or early stopping ends it. Each batch runs
    /// forward, loss, backward, clipping, optimizer update and schedule step; each epoch ends
    /// with an evaluation on the validation set, if any.
    ///
    /// `config.epochs` counts the whole run, as a checkpoint's resume needs: to train more
    /// after a `fit`, raise it (`trainer.config.epochs += 5`) and call `fit` again. A second
    /// `fit` with no epoch left, or after early stopping, is an error rather than a silent
    /// no-op; after a [`Trainer::resume`] of a finished run, `fit` returns its history.
    pub fn fit<M: Module<T> + Sync + ?Sized>(
        &mut self,
        model: &M,
        params: &mut ParamStore<T>,
        train: &Dataset<T>,
        validation: Option<&Dataset<T>>,
    ) -> Result<History, TrainError> {
        let result = self.fit_inner(model, params, train, validation);
        // The other ranks would wait for this one in their next reduction: end the job.
        #[cfg(feature = "mpi")]
        if let (Err(e), Some((mpi, _))) = (&result, &self.mpi)
            && mpi.size() > 1
        {
            mpi.abort(e, 1);
        }
        result
    }

    fn fit_inner<M: Module<T> + Sync + ?Sized>(
        &mut self,
        model: &M,
        params: &mut ParamStore<T>,
        train: &Dataset<T>,
        validation: Option<&Dataset<T>>,
    ) -> Result<History, TrainError> {
        warn_if_unoptimised();
        self.check_config(train)?;
        let finished =
            self.state.epoch >= self.config.epochs || self.state.history.stopped_early.is_some();
        // A second `fit` on this trainer with nothing left to do is a mistake worth an
        // error; resuming a finished run (a training script run again) is not.
        if finished && self.fitted {
            let why = match self.state.history.stopped_early {
                Some(e) => format!("early stopping ended training after epoch {e}"),
                None => format!("{} epochs are already done", self.state.epoch),
            };
            return Err(TrainError::Config {
                field: "epochs",
                expected: format!(
                    "more than the {} epochs done: it counts the whole run; raise it to train more",
                    self.state.epoch
                ),
                found: format!("{} ({why})", self.config.epochs),
            });
        }
        let split;
        let (train, validation) = match validation {
            Some(v) => (train, Some(v)),
            None if self.config.validation_split > 0.0 => {
                split = train.split(self.config.validation_split, self.config.seed ^ 0x5EED_5A11);
                (&split.0, Some(&split.1))
            }
            None => (train, None),
        };
        if train.is_empty() {
            return Err(DataError::Invalid(format!(
                "validation_split {} leaves no training samples",
                self.config.validation_split
            ))
            .into());
        }
        if validation.is_some_and(|v| v.is_empty()) {
            return Err(DataError::Invalid("the validation set is empty".into()).into());
        }
        eval::check_fits(model, train)?;
        if let Some(v) = validation {
            eval::check_fits(model, v)?;
        }
        let (rank, ranks) = self.rank();
        #[cfg(feature = "mpi")]
        if let Some((mpi, _)) = &self.mpi
            && ranks > 1
        {
            // Each rank takes its workers' shards by the job's worker count and batch size:
            // ranks configured differently would skip or repeat samples without diverging.
            let c = &self.config;
            crate::distributed::check_same(
                mpi,
                &[
                    ("workers", c.workers as u64),
                    ("batch_size", c.batch_size.samples(train.len()) as u64),
                    ("training samples", train.len() as u64),
                    ("seed", c.seed),
                    ("epochs", c.epochs as u64),
                    ("shuffle", u64::from(c.shuffle)),
                    ("drop_last", u64::from(c.drop_last)),
                    ("reduction (GRADUS_MPI_REDUCE)", mpi.reduction() as u64),
                    (
                        "parameters",
                        params.iter().map(|(_, _, a)| a.len() as u64).sum(),
                    ),
                ],
            )
            .map_err(TrainError::Distributed)?;
        }
        self.check_shards(train.len(), ranks)?;
        // Only rank 0 of a job reports and writes checkpoints.
        let progress = if rank == 0 {
            self.config.progress
        } else {
            Progress::Quiet
        };
        let show_bar = match progress {
            Progress::Bar => true,
            Progress::Auto => std::io::stderr().is_terminal(),
            Progress::Lines | Progress::Quiet => false,
        };
        self.apply_schedule()?;
        self.fitted = true;
        while self.state.epoch < self.config.epochs && self.state.history.stopped_early.is_none() {
            let mut record = self.run_epoch(model, params, train, validation, show_bar)?;
            #[cfg(feature = "mpi")]
            if let Some((mpi, _)) = &self.mpi
                && mpi.size() > 1
            {
                crate::distributed::check_in_step(mpi, params).map_err(|why| {
                    TrainError::Distributed(format!("after epoch {}: {why}", record.epoch))
                })?;
            }
            for cb in &mut self.callbacks {
                cb.on_epoch_end(&mut record, params)
                    .map_err(TrainError::Callback)?;
            }
            if progress != Progress::Quiet && !show_bar {
                println!("{}", describe(&record, self.config.epochs));
            }
            self.state.epoch = record.epoch;
            self.state.history.epochs.push(record);
            if self.config.schedule_unit == ScheduleUnit::Epoch {
                self.apply_schedule()?;
            }
            let improved = self.track_best(params);
            if let Some(c) = &self.config.checkpoint
                && rank == 0
            {
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

    fn run_epoch<M: Module<T> + Sync + ?Sized>(
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
        let task = self.objective.task();
        let (mut loss_sum, mut seen, mut skipped) = (0.0, 0usize, 0usize);
        let mut sums = MetricSums::default();
        let mut times = StepTimes::default();
        let workers = self.config.workers;
        if workers > 1 && self.workers.as_ref().is_none_or(|t| t.len() != workers) {
            let threads = workers::WorkerThreads::new(workers).map_err(|e| TrainError::Config {
                field: "workers",
                expected: "a number of threads the OS can start".into(),
                found: format!("{workers} ({e})"),
            })?;
            self.workers = Some(threads);
        }
        let (rank, ranks) = self.rank();
        for (b, indices) in batches.enumerate() {
            let threads = self.workers.as_ref();
            let step_start = Instant::now();
            let outcome = match (ranks, workers) {
                (1, 1) => step::forward_backward(
                    model,
                    params,
                    train.batch(indices),
                    &*self.objective,
                    &mut self.state.rng,
                    self.config.detect_anomaly,
                    1.0,
                ),
                // One process: workers beyond the batch's size would have nothing to do.
                (1, _) => {
                    let local = workers.min(indices.len().max(1));
                    let shards = step::Workers {
                        first: 0,
                        local,
                        total: local,
                    };
                    step::forward_backward_sharded(
                        model,
                        params,
                        train,
                        indices,
                        &*self.objective,
                        (self.config.seed, self.state.step),
                        shards,
                        threads,
                        self.config.detect_anomaly,
                    )
                }
                // A rank of a job: its workers' shards of the job's (`check_shards` saw
                // that every batch has a sample for each).
                _ => step::forward_backward_sharded(
                    model,
                    params,
                    train,
                    indices,
                    &*self.objective,
                    (self.config.seed, self.state.step),
                    step::Workers {
                        first: rank * workers,
                        local: workers,
                        total: ranks * workers,
                    },
                    threads,
                    self.config.detect_anomaly,
                ),
            }
            .map_err(|anomaly| TrainError::Anomaly {
                epoch,
                batch: b + 1,
                anomaly,
            })?;
            #[cfg_attr(not(feature = "mpi"), allow(unused_mut))]
            let StepOutcome {
                mut loss,
                mut grads,
                mut metrics,
                mut updates,
                mut finite,
                reduce_secs,
            } = outcome;
            times.forward_backward_secs += step_start.elapsed().as_secs_f64() - reduce_secs;
            times.reduce_secs += reduce_secs;
            // Summed across ranks, the gradients are new: checked as they are copied out.
            #[cfg(feature = "mpi")]
            if let Some((mpi, reducer)) = &mut self.mpi
                && mpi.size() > 1
            {
                let reduce_start = Instant::now();
                finite =
                    reducer.reduce_step(mpi, &mut grads, &mut loss, &mut metrics, &mut updates);
                times.reduce_secs += reduce_start.elapsed().as_secs_f64();
            }
            if let Some(what) = step::non_finite(loss, &grads, finite, params) {
                match self.config.non_finite {
                    NonFinite::Stop => {
                        return Err(TrainError::NonFinite {
                            epoch,
                            batch: b + 1,
                            what,
                        });
                    }
                    NonFinite::SkipBatch => {
                        skipped += 1;
                        continue;
                    }
                }
            }
            let update_start = Instant::now();
            if let Some(clip) = &self.config.clip {
                clip.apply(&mut grads)?;
            }
            last_lr = self.optimizer.lr();
            match &self.workers {
                Some(threads) if workers > 1 => {
                    gradus_optim::with_parallel(threads, || self.optimizer.step(params, &grads))?
                }
                _ => self.optimizer.step(params, &grads)?,
            }
            drop(grads);
            updates.apply(params);
            times.update_secs += update_start.elapsed().as_secs_f64();
            self.state.step += 1;
            if self.config.schedule_unit == ScheduleUnit::Step {
                self.apply_schedule()?;
            }
            loss_sum += loss * indices.len() as f64;
            seen += indices.len();
            sums.add(metrics);
            if !self.callbacks.is_empty() {
                let info = BatchEnd {
                    epoch,
                    batch: b + 1,
                    step: self.state.step,
                    batch_size: indices.len(),
                    loss,
                    lr: last_lr,
                };
                for cb in &mut self.callbacks {
                    cb.on_batch_end(&info, params);
                }
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
        let eval = validation
            .map(|v| {
                evaluate(
                    model,
                    params,
                    v,
                    &*self.objective,
                    self.config.eval_batch_size,
                )
            })
            .transpose()?;
        let record = EpochRecord {
            epoch,
            train_loss: if seen > 0 {
                loss_sum / seen as f64
            } else {
                f64::NAN
            },
            train_accuracy: sums.accuracy(task),
            train_mae: sums.mae(task),
            train_rmse: sums.rmse(task),
            val_loss: eval.map(|e| e.loss),
            val_accuracy: eval.and_then(|e| e.accuracy),
            val_mae: eval.and_then(|e| e.mae),
            val_rmse: eval.and_then(|e| e.rmse),
            extra: Default::default(),
            lr: last_lr,
            samples_per_sec: seen as f64 / train_secs.max(1e-9),
            wall_time_secs: start.elapsed().as_secs_f64(),
            skipped_batches: skipped,
            step_times: times,
        };
        if let Some(bar) = bar {
            bar.finish_with_message(describe(&record, self.config.epochs));
            eprintln!(); // keep the finished bar, with the epoch's figures, on its own line
        }
        Ok(record)
    }

    /// Loss and the task's metrics on `data` with this trainer's objective, in batches of
    /// `eval_batch_size`, in evaluation mode. The same as the free [`evaluate`].
    pub fn evaluate<M: Module<T> + ?Sized>(
        &self,
        model: &M,
        params: &ParamStore<T>,
        data: &Dataset<T>,
    ) -> Result<Evaluation, TrainError> {
        evaluate(
            model,
            params,
            data,
            &*self.objective,
            self.config.eval_batch_size,
        )
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
}

/// How to make an unoptimised build of gradus fast: the advice `fit` prints, once, to
/// standard error when gradus was compiled at opt-level 0 or 1 ([`is_unoptimised`]).
///
/// ```
/// assert!(gradus::PROFILE_ADVICE.contains("[profile.dev.package.\"*\"]"));
/// ```
pub const PROFILE_ADVICE: &str = "gradus was compiled without optimisation, so training runs \
about 50x slower than it can. Add to your Cargo.toml:\n\n[profile.dev.package.\"*\"]\n\
opt-level = 3\n\n(it optimises the dependencies only; your own crate still builds quickly).";

/// The opt-level gradus was compiled at, as Cargo gave it (`"0"` to `"3"`, `"s"`, `"z"`).
///
/// ```
/// // The workspace's dev and test profiles optimise gradus.
/// assert!(matches!(gradus::compiled_opt_level(), "2" | "3"));
/// ```
pub fn compiled_opt_level() -> &'static str {
    env!("GRADUS_OPT_LEVEL")
}

/// Whether gradus was compiled at opt-level 0 or 1 (the dev profile's default for a
/// dependency), in which case the first `fit` prints [`PROFILE_ADVICE`].
///
/// ```
/// assert!(!gradus::is_unoptimised());
/// ```
pub fn is_unoptimised() -> bool {
    matches!(compiled_opt_level(), "0" | "1")
}

fn warn_if_unoptimised() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if is_unoptimised() {
        ONCE.call_once(|| eprintln!("warning: {PROFILE_ADVICE}"));
    }
}
