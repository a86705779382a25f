//! `EpochRecord::step_times`: each phase of a step is timed where it runs. A loss, an
//! optimizer and a callback that sleep put known lower bounds in known places: the loss's
//! sleep must show in forward/backward, the optimizer's in the update, and the callback's
//! in none of them (the three phases are parts of the epoch's training time, which holds
//! the callback too).

use std::time::Duration;

use gradus::autograd::{Gradients, ParamStore};
use gradus::ndarray::Array2;
use gradus::optim::{OptimError, Optimizer, OptimizerState, Sgd};
use gradus::{
    BatchEnd, BatchSize, Callback, Dataset, Loss, Objective, Progress, Sequential, Targets, Task,
    Trainer, TrainerConfig, loss_fn,
};

const LOSS_SLEEP: Duration = Duration::from_millis(1);
const UPDATE_SLEEP: Duration = Duration::from_millis(2);
const CALLBACK_SLEEP: Duration = Duration::from_millis(3);

/// SGD that sleeps before each step.
struct SlowSgd(Sgd<f32>);

impl Optimizer<f32> for SlowSgd {
    fn step(
        &mut self,
        params: &mut ParamStore<f32>,
        grads: &Gradients<f32>,
    ) -> Result<(), OptimError> {
        std::thread::sleep(UPDATE_SLEEP);
        self.0.step(params, grads)
    }
    fn lr(&self) -> f64 {
        self.0.lr()
    }
    fn set_lr(&mut self, lr: f64) {
        self.0.set_lr(lr)
    }
    fn name(&self) -> &'static str {
        "SlowSgd"
    }
    fn state(&self) -> OptimizerState<f32> {
        self.0.state()
    }
    fn load_state(&mut self, state: OptimizerState<f32>) -> Result<(), OptimError> {
        self.0.load_state(state)
    }
}

/// Sleeps after every batch.
struct SlowCallback;

impl Callback<f32> for SlowCallback {
    fn on_batch_end(&mut self, _: &BatchEnd, _: &ParamStore<f32>) {
        std::thread::sleep(CALLBACK_SLEEP);
    }
}

fn data() -> Dataset<f32> {
    let x = Array2::from_shape_fn((40, 5), |(i, j)| ((i * 13 + j * 7) % 11) as f32 / 5.0 - 1.0);
    let labels = x
        .rows()
        .into_iter()
        .map(|r| usize::from(r[0] > r[1]))
        .collect();
    Dataset::classification(x.into_dyn(), labels).unwrap()
}

#[test]
fn each_phase_holds_what_runs_in_it_and_nothing_else() {
    let train = data();
    // 40 samples in batches of 8: 5 steps an epoch.
    let steps = 5u32;
    for workers in [1, 2] {
        let (model, mut params) = Sequential::<f32>::new().linear(5, 2).build(0).unwrap();
        let config = TrainerConfig {
            epochs: 2,
            batch_size: BatchSize::Mini(8),
            workers,
            progress: Progress::Quiet,
            ..TrainerConfig::default()
        };
        // Every worker sleeps in its own shard's loss, at the same time.
        let slow_loss = loss_fn::<f32, _>(Task::Classification, |out, t: &Targets<f32>| {
            std::thread::sleep(LOSS_SLEEP);
            Objective::<f32>::loss(&Loss::CrossEntropy, out, t)
        });
        let history = Trainer::new(config, SlowSgd(Sgd::new(0.1)))
            .loss(slow_loss)
            .callback(SlowCallback)
            .fit(&model, &mut params, &train, None)
            .unwrap();
        for record in &history.epochs {
            let t = record.step_times;
            let train_secs = 40.0 / record.samples_per_sec;
            let what = format!("{workers} workers, epoch {}: {t:?}", record.epoch);
            assert!(
                t.forward_backward_secs >= (LOSS_SLEEP * steps).as_secs_f64(),
                "{what}"
            );
            assert!(
                t.update_secs >= (UPDATE_SLEEP * steps).as_secs_f64(),
                "{what}"
            );
            if workers == 1 {
                assert_eq!(t.reduce_secs, 0.0, "{what}");
            } else {
                assert!(t.reduce_secs > 0.0, "{what}");
            }
            // The callback's sleeps are in the training time but in no phase.
            let phases = t.forward_backward_secs + t.reduce_secs + t.update_secs;
            let outside = (CALLBACK_SLEEP * steps).as_secs_f64();
            assert!(
                phases <= train_secs - outside + 1e-9,
                "{what}: phases {phases} s of {train_secs} s, {outside} s in callbacks"
            );
        }
    }
}

#[test]
fn step_times_are_left_out_of_the_saved_history() {
    let train = data();
    let (model, mut params) = Sequential::<f32>::new().linear(5, 2).build(0).unwrap();
    let config = TrainerConfig {
        epochs: 1,
        progress: Progress::Quiet,
        ..TrainerConfig::default()
    };
    let history = Trainer::new(config, Sgd::new(0.1))
        .fit(&model, &mut params, &train, None)
        .unwrap();
    assert!(history.epochs[0].step_times.forward_backward_secs > 0.0);
    let json = serde_json::to_string(&history).unwrap();
    assert!(!json.contains("step_times"), "{json}");
    let read: gradus::History = serde_json::from_str(&json).unwrap();
    assert_eq!(read.epochs[0].step_times, gradus::StepTimes::default());
    assert_eq!(read.epochs[0].train_loss, history.epochs[0].train_loss);
}
