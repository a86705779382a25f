//! The race on MNIST: the same network from the same initial weights, trained on the same
//! samples by every optimizer for the same number of samples seen.

use std::time::{Duration, Instant};

use gradus::autograd::{ParamStore, Tape, count_correct, value_and_grad};
use gradus::layers::{Mode, Module, Sequential};
use gradus::{BatchSize, Dataset};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

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
        let out = model.forward(params, tape.constant(batch.inputs), &mut Mode::Eval);
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

/// Trains a copy of the initial weights with `kind` for the race's budget.
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
    let mut opt = kind.build::<f32>(lr);
    let batch = kind.batch(train.len());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut curve = vec![(0, Duration::ZERO, dataset_loss(model, &params, train).0)];
    let (mut seen, mut next_log, mut training) = (0usize, log_every, Duration::ZERO);
    let labels = train.labels().expect("classification");
    let started = Instant::now();
    for _ in 0..epochs {
        // Every contender sees the same sample order: the shuffle depends on the seed only.
        let order = train.epoch_batches(BatchSize::Mini(batch), Some(&mut rng), false);
        for idx in order {
            let t = Instant::now();
            let batch_data = train.batch(&idx);
            let batch_labels: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
            let (_, grads) = value_and_grad(|tape| {
                model
                    .forward(&params, tape.constant(batch_data.inputs), &mut Mode::Eval)
                    .cross_entropy_with_logits(&batch_labels)
            });
            opt.step(&mut params, &grads)
                .expect("every parameter has a gradient");
            training += t.elapsed();
            seen += idx.len();
            if seen >= next_log {
                curve.push((seen, training, dataset_loss(model, &params, train).0));
                while next_log <= seen {
                    next_log += log_every;
                }
            }
        }
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
        total_time: started.elapsed(),
    }
}
