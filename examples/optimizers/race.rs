//! The race on MNIST: the same network from the same initial weights, trained on the same
//! samples by every optimizer for the same number of samples seen.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use gradus::autograd::{ParamStore, Tape, count_correct};
use gradus::layers::{ForwardCtx, Module, Sequential};
use gradus::{BatchEnd, BatchSize, Callback, Dataset, Progress, Trainer, TrainerConfig};

use crate::contenders::Kind;

/// What one optimizer did.
pub struct RaceResult {
    pub kind: Kind,
    pub lr: f64,
    pub batch: usize,
    /// `(samples seen, training time, loss on the training set)`, from the start.
    pub curve: Vec<(usize, Duration, f64)>,
    pub test_accuracy: f64,
    pub total_time: Duration,
}

impl RaceResult {
    pub fn final_loss(&self) -> f64 {
        self.curve.last().map_or(f64::NAN, |c| c.2)
    }

    /// The first logged point at or below `target`.
    pub fn reached(&self, target: f64) -> Option<(usize, Duration)> {
        self.curve
            .iter()
            .find(|c| c.2 <= target)
            .map(|c| (c.0, c.1))
    }
}

/// Mean cross-entropy over a dataset, in chunks, without recording a backward graph.
fn dataset_loss(
    model: &Sequential<f32>,
    params: &ParamStore<f32>,
    data: &Dataset<f32>,
) -> (f64, usize) {
    let labels = data.labels().expect("classification");
    let (mut sum, mut correct) = (0.0, 0);
    for start in (0..data.len()).step_by(2000) {
        let idx: Vec<usize> = (start..(start + 2000).min(data.len())).collect();
        let batch = data.batch(&idx);
        let tape = Tape::no_grad();
        let out = model.forward(params, tape.constant(batch.inputs), &mut ForwardCtx::eval());
        sum += out
            .cross_entropy_with_logits(&labels[start..start + idx.len()])
            .item() as f64
            * idx.len() as f64;
        correct += count_correct(&out.value(), &labels[start..start + idx.len()]);
    }
    (sum / data.len() as f64, correct)
}

/// What every contender shares: the network, its initial weights, the data and the budget.
pub struct Race<'a> {
    pub model: &'a Sequential<f32>,
    pub init: &'a ParamStore<f32>,
    pub train: &'a Dataset<f32>,
    pub test: &'a Dataset<f32>,
    pub epochs: usize,
    /// Log the training-set loss every this many samples (and after every batch-GD step).
    pub log_every: usize,
    /// Seeds the sample order, the same for every contender.
    pub seed: u64,
}

/// Keeps a snapshot of the weights (shared arrays, copied only when the next step writes
/// them) every `log_every` samples, with the training time so far; the losses are computed
/// after training, so they cost the race's clock nothing.
/// `(samples seen, training time, weights)` at each log point.
type Taken = Rc<RefCell<Vec<(usize, Duration, ParamStore<f32>)>>>;

struct Snapshots {
    log_every: usize,
    next_log: usize,
    seen: usize,
    started: Instant,
    taken: Taken,
}

impl Callback<f32> for Snapshots {
    fn on_batch_end(&mut self, info: &BatchEnd, params: &ParamStore<f32>) {
        self.seen += info.batch_size;
        if self.seen >= self.next_log {
            self.taken
                .borrow_mut()
                .push((self.seen, self.started.elapsed(), params.clone()));
            while self.next_log <= self.seen {
                self.next_log += self.log_every;
            }
        }
    }
}

/// Trains a copy of the initial weights with `kind` for the race's budget, with the Trainer.
pub fn run(kind: Kind, race: &Race<'_>) -> RaceResult {
    let Race {
        model,
        init,
        train,
        test,
        epochs,
        log_every,
        seed,
    } = *race;
    let mut params = init.clone();
    let lr = kind.mnist_lr();
    let batch = kind.batch(train.len());
    let taken = Rc::new(RefCell::new(Vec::new()));
    let started = Instant::now();
    let config = TrainerConfig {
        epochs,
        batch_size: BatchSize::Mini(batch),
        // Every contender sees the same sample order: the shuffle depends on the seed only.
        seed,
        progress: Progress::Quiet,
        ..TrainerConfig::default()
    };
    let mut trainer = Trainer::new(config, kind.build::<f32>(lr)).callback(Snapshots {
        log_every,
        next_log: log_every,
        seen: 0,
        started,
        taken: Rc::clone(&taken),
    });
    trainer
        .fit(model, &mut params, train, None)
        .expect("the race's settings train");
    let total_time = started.elapsed();
    let history = trainer.history();
    let seen: usize = history.epochs.len() * train.len();
    let training: Duration = history
        .epochs
        .iter()
        .map(|e| Duration::from_secs_f64(e.wall_time_secs))
        .sum();
    let mut curve = vec![(0, Duration::ZERO, dataset_loss(model, init, train).0)];
    for (n, time, snapshot) in taken.borrow().iter() {
        curve.push((*n, *time, dataset_loss(model, snapshot, train).0));
    }
    if curve.last().map(|c| c.0) != Some(seen) {
        curve.push((seen, training, dataset_loss(model, &params, train).0));
    }
    let (_, correct) = dataset_loss(model, &params, test);
    RaceResult {
        kind,
        lr,
        batch,
        curve,
        test_accuracy: correct as f64 / test.len() as f64,
        total_time,
    }
}
