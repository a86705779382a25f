//! The Trainer on small problems: learning, early stopping, non-finite policies, resume.

use gradus::ndarray::{Array2, ArrayD};
use gradus::optim::{Adam, GradClip, Schedule, Sgd};
use gradus::{
    BatchSize, CheckpointConfig, CheckpointWhen, Dataset, EarlyStopping, Loss, Metric, NonFinite,
    Progress, ScheduleUnit, Sequential, Targets, Task, TrainError, Trainer, TrainerConfig, loss_fn,
};

/// Three classes in the plane, separable by angle; a fixed pseudo-random cloud.
fn spiral_ish(n: usize) -> Dataset<f32> {
    let x = Array2::from_shape_fn((n, 2), |(i, j)| {
        let t = (i as f32 * 0.618_034).fract() * std::f32::consts::TAU;
        let r = 0.3 + (i as f32 * 0.414_213).fract();
        if j == 0 { r * t.cos() } else { r * t.sin() }
    });
    let labels = x
        .rows()
        .into_iter()
        .map(|r| {
            (((r[1].atan2(r[0]) + std::f32::consts::PI) / std::f32::consts::TAU * 3.0) as usize)
                .min(2)
        })
        .collect();
    Dataset::classification(x.into_dyn(), labels).unwrap()
}

/// 2-8-3, for tests about the loop rather than the learning.
fn small_mlp() -> (Sequential<f32>, gradus::ParamStore<f32>) {
    Sequential::<f32>::new()
        .linear(2, 8)
        .relu()
        .linear(8, 3)
        .build(0)
        .unwrap()
}

fn quiet(epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        batch_size: BatchSize::Mini(32),
        progress: Progress::Quiet,
        ..Default::default()
    }
}

#[test]
fn learns_a_synthetic_classification_problem_and_reports_history() {
    let data = spiral_ish(600);
    let (train, valid) = data.split(0.2, 1);
    let (model, mut params) = Sequential::<f32>::new()
        .linear(2, 32)
        .relu()
        .linear(32, 3)
        .build(0)
        .unwrap();
    let mut trainer = Trainer::new(quiet(40), Adam::new(0.01));
    let h = trainer
        .fit(&model, &mut params, &train, Some(&valid))
        .unwrap();
    assert_eq!(h.epochs.len(), 40);
    let (first, last) = (&h.epochs[0], h.epochs.last().unwrap());
    assert!(
        last.train_loss < 0.5 * first.train_loss,
        "{} -> {}",
        first.train_loss,
        last.train_loss
    );
    assert!(last.val_accuracy.unwrap() > 0.9, "{last:?}");
    assert!(last.samples_per_sec > 0.0 && last.wall_time_secs > 0.0 && last.lr == 0.01);
    let eval = trainer.evaluate(&model, &params, &valid).unwrap();
    assert_eq!(Some(eval.accuracy.unwrap()), last.val_accuracy);
    let out = trainer.predict(&model, &params, valid.inputs());
    assert_eq!(out.shape(), &[valid.len(), 3]);
}

#[test]
fn regression_with_mse_and_a_validation_split() {
    let x = Array2::from_shape_fn((256, 3), |(i, j)| {
        ((i * 13 + j * 7) % 17) as f32 / 8.0 - 1.0
    });
    let y = x
        .map_axis(gradus::ndarray::Axis(1), |r| 0.5 * r[0] - r[1] + 2.0 * r[2])
        .insert_axis(gradus::ndarray::Axis(1));
    let data = Dataset::regression(x.into_dyn(), y.into_dyn()).unwrap();
    let (model, mut params) = Sequential::<f32>::new().linear(3, 1).build(0).unwrap();
    let config = TrainerConfig {
        validation_split: 0.25,
        ..quiet(60)
    };
    let mut trainer = Trainer::new(config, Sgd::new(0.1)).loss(Loss::Mse);
    let h = trainer.fit(&model, &mut params, &data, None).unwrap();
    let last = h.epochs.last().unwrap();
    assert!(last.val_loss.unwrap() < 1e-4, "{last:?}");
    // Regression reports MAE and RMSE, never an accuracy.
    assert_eq!((last.train_accuracy, last.val_accuracy), (None, None));
    let (mae, rmse) = (last.val_mae.unwrap(), last.val_rmse.unwrap());
    assert!(
        mae <= rmse && rmse * rmse <= last.val_loss.unwrap() * 1.0001,
        "{last:?}"
    );
    // A loss that does not fit the targets is refused up front.
    let mut wrong = Trainer::new(quiet(1), Sgd::new(0.1));
    let err = wrong.fit(&model, &mut params, &data, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("loss must be Mse or BceWithLogits"),
        "{err}"
    );
}

#[test]
fn batch_size_picks_the_gradient_descent_variant() {
    let data = spiral_ish(100);
    for (bs, steps) in [
        (BatchSize::Full, 1),
        (BatchSize::Stochastic, 100),
        (BatchSize::Mini(30), 4),
    ] {
        let (model, mut params) = Sequential::<f32>::new().linear(2, 3).build(0).unwrap();
        let config = TrainerConfig {
            batch_size: bs,
            ..quiet(1)
        };
        let mut trainer = Trainer::new(config, Sgd::new(0.01).momentum(0.9));
        trainer.fit(&model, &mut params, &data, None).unwrap();
        assert_eq!(trainer.training_state().step, steps, "{bs:?}");
    }
}

#[test]
fn early_stopping_stops_after_patience_and_restores_the_best_weights() {
    let data = spiral_ish(300);
    let (train, valid) = data.split(0.3, 2);
    let (model, mut params) = Sequential::<f32>::new()
        .linear(2, 64)
        .relu()
        .linear(64, 3)
        .build(0)
        .unwrap();
    // A huge min_delta makes every epoch after the first count as no improvement.
    let es = EarlyStopping {
        monitor: Metric::ValLoss,
        patience: 3,
        min_delta: 1e9,
        restore_best: true,
    };
    let config = TrainerConfig {
        early_stopping: Some(es),
        ..quiet(50)
    };
    let mut trainer = Trainer::new(config, Adam::new(0.01));
    let h = trainer
        .fit(&model, &mut params, &train, Some(&valid))
        .unwrap();
    assert_eq!(h.epochs.len(), 4);
    assert_eq!(h.stopped_early, Some(4));
    assert_eq!(h.best_epoch, Some(1));
    // The restored weights give epoch 1's validation loss.
    let eval = trainer.evaluate(&model, &params, &valid).unwrap();
    assert!(
        (eval.loss - h.epochs[0].val_loss.unwrap()).abs() < 1e-9,
        "{} vs {}",
        eval.loss,
        h.epochs[0].val_loss.unwrap()
    );
}

#[test]
fn a_gradient_that_is_not_finite_under_a_finite_loss_is_caught_with_any_worker_count() {
    // sqrt(mean(out - out)) is 0, but its gradient is inf * 0 = NaN: only the check of the
    // gradients can catch it, at the first batch (with several workers, the one made while
    // their gradients are summed).
    let data = spiral_ish(200);
    for workers in [1, 2, 3] {
        let (model, mut params) = Sequential::<f32>::new()
            .linear(2, 12_000)
            .relu()
            .linear(12_000, 3) // 36,000 weights: the sum splits over the threads
            .build(0)
            .unwrap();
        let config = TrainerConfig {
            workers,
            ..quiet(1)
        };
        let nan_grad = loss_fn::<f32, _>(Task::Classification, |out, _: &Targets<f32>| {
            (out - out).mean().sqrt()
        });
        let mut trainer = Trainer::new(config, Sgd::new(0.1)).loss(nan_grad);
        match trainer.fit(&model, &mut params, &data, None).unwrap_err() {
            TrainError::NonFinite { epoch, batch, what } => {
                assert_eq!((epoch, batch), (1, 1), "{workers} workers");
                assert!(what.starts_with("gradient of"), "{workers} workers: {what}");
            }
            other => panic!("{workers} workers: expected NonFinite, got {other}"),
        }
    }
}

#[test]
fn a_diverging_learning_rate_stops_or_skips_per_policy() {
    let data = spiral_ish(200);
    let (model, params) = Sequential::<f32>::new()
        .linear(2, 16)
        .relu()
        .linear(16, 3)
        .build(0)
        .unwrap();
    let mut p = params.clone();
    let mut trainer = Trainer::new(quiet(20), Sgd::new(1e12));
    match trainer.fit(&model, &mut p, &data, None).unwrap_err() {
        TrainError::NonFinite { epoch, batch, what } => {
            assert!(
                epoch >= 1 && (what.contains("loss") || what.contains("gradient of")),
                "{epoch} {batch} {what}"
            );
        }
        other => panic!("expected NonFinite, got {other}"),
    }
    let mut p = params.clone();
    let config = TrainerConfig {
        non_finite: NonFinite::SkipBatch,
        ..quiet(3)
    };
    let mut trainer = Trainer::new(config, Sgd::new(1e12));
    let h = trainer.fit(&model, &mut p, &data, None).unwrap();
    let skipped: usize = h.epochs.iter().map(|r| r.skipped_batches).sum();
    assert!(skipped > 0, "{h:?}");
    // In anomaly mode the error names the op that first produced a non-finite value.
    let mut p = params.clone();
    let config = TrainerConfig {
        detect_anomaly: true,
        ..quiet(20)
    };
    let mut trainer = Trainer::new(config, Sgd::new(1e12));
    match trainer.fit(&model, &mut p, &data, None).unwrap_err() {
        TrainError::Anomaly { anomaly, .. } => assert!(!anomaly.op.is_empty(), "{anomaly}"),
        other => panic!("expected Anomaly, got {other}"),
    }
    // Clipping by norm keeps the same rate from blowing up on the first steps.
    let mut p = params.clone();
    let config = TrainerConfig {
        clip: Some(GradClip::norm(1.0)),
        ..quiet(1)
    };
    let mut trainer = Trainer::new(config, Sgd::new(0.5));
    assert!(trainer.fit(&model, &mut p, &data, None).is_ok());
}

#[test]
fn resuming_from_a_checkpoint_is_bit_identical_to_an_uninterrupted_run() {
    let data = spiral_ish(200);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("run.ckpt");
    // Dropout and a schedule make the RNG and the step count matter.
    let build = || {
        Sequential::<f32>::new()
            .linear(2, 16)
            .relu()
            .dropout(0.2)
            .linear(16, 3)
            .build(7)
            .unwrap()
    };
    let config = |epochs| TrainerConfig {
        seed: 11,
        schedule: Schedule::CosineAnnealing {
            t_max: 30,
            eta_min: 0.0,
        },
        checkpoint: Some(CheckpointConfig {
            path: ckpt.clone(),
            when: CheckpointWhen::EveryEpoch,
        }),
        ..quiet(epochs)
    };
    let (model, mut straight) = build();
    let mut t = Trainer::new(config(5), Adam::new(0.01));
    t.fit(&model, &mut straight, &data, None).unwrap();

    let (model, mut interrupted) = build();
    let mut t = Trainer::new(config(2), Adam::new(0.01));
    t.fit(&model, &mut interrupted, &data, None).unwrap();
    // A new process: fresh model and trainer, resumed from the file.
    let (model, mut resumed) = build();
    let mut t = Trainer::new(config(5), Adam::new(0.01));
    t.resume(&ckpt, &mut resumed).unwrap();
    assert_eq!(t.epochs_done(), 2);
    let h = t.fit(&model, &mut resumed, &data, None).unwrap();
    assert_eq!(h.epochs.len(), 5);
    assert_eq!(resumed.export(), straight.export(), "bit-identical weights");
    // A checkpoint of another optimizer is refused.
    let mut wrong = Trainer::new(config(5), Sgd::new(0.1));
    assert!(wrong.resume(&ckpt, &mut resumed).is_err());
}

#[test]
fn invalid_configuration_is_refused_with_the_field_name() {
    let data = spiral_ish(10);
    let (model, mut params) = Sequential::<f32>::new().linear(2, 3).build(0).unwrap();
    let err = Trainer::new(
        TrainerConfig {
            batch_size: BatchSize::Mini(0),
            ..quiet(1)
        },
        Sgd::new(0.1),
    )
    .fit(&model, &mut params, &data, None)
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "trainer configuration: batch_size must be at least 1, found 0"
    );
    let err = Trainer::new(quiet(1), Sgd::new(-1.0))
        .fit(&model, &mut params, &data, None)
        .unwrap_err();
    assert!(err.to_string().contains("learning rate"), "{err}");
    let empty = Dataset::<f32>::classification(ArrayD::zeros(vec![0, 2]), vec![]).unwrap();
    let err = Trainer::new(quiet(1), Sgd::new(0.1))
        .fit(&model, &mut params, &empty, None)
        .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    // A batch larger than the dataset is one full batch.
    let config = TrainerConfig {
        batch_size: BatchSize::Mini(1000),
        ..quiet(1)
    };
    let mut t = Trainer::new(config, Sgd::new(0.1));
    t.fit(&model, &mut params, &data, None).unwrap();
    assert_eq!(t.training_state().step, 1);
}

#[test]
fn best_metric_checkpoints_hold_the_best_epoch() {
    let data = spiral_ish(200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("best.ckpt");
    let (model, mut params) = Sequential::<f32>::new()
        .linear(2, 16)
        .relu()
        .linear(16, 3)
        .build(0)
        .unwrap();
    let config = TrainerConfig {
        checkpoint: Some(CheckpointConfig {
            path: path.clone(),
            when: CheckpointWhen::Best(Metric::TrainLoss),
        }),
        ..quiet(6)
    };
    let mut t = Trainer::new(config, Sgd::new(0.05));
    let h = t.fit(&model, &mut params, &data, None).unwrap();
    let best = h
        .epochs
        .iter()
        .min_by(|a, b| a.train_loss.total_cmp(&b.train_loss))
        .unwrap()
        .epoch;
    let mut resumed = Trainer::new(quiet(6), Sgd::new(0.05));
    let (_, mut p) = Sequential::<f32>::new()
        .linear(2, 16)
        .relu()
        .linear(16, 3)
        .build(1)
        .unwrap();
    resumed.resume(&path, &mut p).unwrap();
    assert_eq!(resumed.epochs_done(), best);
    // A weights-only file is not a checkpoint.
    let weights = dir.path().join("w.gradus");
    gradus::checkpoint::save_weights(&weights, &params).unwrap();
    let err = resumed.resume(&weights, &mut p).unwrap_err();
    assert!(err.to_string().contains("expected Checkpoint"), "{err}");
}

#[test]
fn a_schedule_counts_steps_or_epochs() {
    let data = spiral_ish(320); // 10 batches of 32 per epoch
    let run = |unit: ScheduleUnit, schedule: Schedule| {
        let (model, mut params) = small_mlp();
        let config = TrainerConfig {
            schedule,
            schedule_unit: unit,
            ..quiet(3)
        };
        let mut trainer = Trainer::new(config, Sgd::new(0.1));
        let h = trainer.fit(&model, &mut params, &data, None).unwrap();
        h.epochs.iter().map(|e| e.lr).collect::<Vec<_>>()
    };
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
    // PyTorch's StepLR stepped once per epoch: 0.1, 0.05, 0.025.
    let halving = Schedule::Step {
        step_size: 1,
        gamma: 0.5,
    };
    let per_epoch = run(ScheduleUnit::Epoch, halving.clone());
    assert!(close(&per_epoch, &[0.1, 0.05, 0.025]), "{per_epoch:?}");
    // Stepped per batch, the record holds the rate of each epoch's last step (steps 9, 19, 29).
    let per_step = run(ScheduleUnit::Step, Schedule::Exponential { gamma: 0.9 });
    let expected: Vec<f64> = [9, 19, 29].iter().map(|&t| 0.1 * 0.9f64.powi(t)).collect();
    assert!(close(&per_step, &expected), "{per_step:?} vs {expected:?}");
    // The default counts steps.
    assert_eq!(TrainerConfig::default().schedule_unit, ScheduleUnit::Step);
}

#[test]
fn one_cycle_cycles_the_momentum_and_refuses_an_optimizer_without_one() {
    use gradus::optim::Adagrad;
    let data = spiral_ish(320);
    let (model, mut params) = small_mlp();
    let config = TrainerConfig {
        schedule: Schedule::one_cycle(0.2, 30, true),
        ..quiet(3)
    };
    let mut trainer = Trainer::new(config.clone(), Sgd::new(0.1).momentum(0.9));
    trainer.fit(&model, &mut params, &data, None).unwrap();
    // After the 30th and last step the momentum is back at its maximum, 0.95.
    assert_eq!(trainer.optimizer().momentum(), Some(0.95));
    assert!(trainer.optimizer().lr() < 1e-5);
    let mut refused = Trainer::new(config, Adagrad::new(0.1));
    let err = refused.fit(&model, &mut params, &data, None).unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::Config {
                field: "schedule",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn data_that_does_not_fit_the_model_is_an_error_from_fit_naming_the_layer() {
    let (model, mut params) = small_mlp();
    let fit = |data: &Dataset<f32>, params: &mut gradus::ParamStore<f32>| {
        Trainer::new(quiet(1), Sgd::new(0.1))
            .fit(&model, params, data, None)
            .unwrap_err()
            .to_string()
    };
    // A wrong input width.
    let wide = Dataset::classification(ArrayD::zeros(vec![4, 5]), vec![0; 4]).unwrap();
    assert_eq!(
        fit(&wide, &mut params),
        "the model does not fit the data: layer 0 (Linear(2 -> 8)) expects samples of shape [2] but the data's are [5]"
    );
    // Images into a Linear layer: the fix is named.
    let images = Dataset::classification(ArrayD::zeros(vec![4, 1, 2]), vec![0; 4]).unwrap();
    assert!(
        fit(&images, &mut params).ends_with("flatten the samples (add .flatten() first)"),
        "{}",
        fit(&images, &mut params)
    );
    // A label without an output.
    let labels = Dataset::classification(ArrayD::zeros(vec![4, 2]), vec![0, 1, 2, 3]).unwrap();
    assert!(
        fit(&labels, &mut params).contains("the labels go up to 3 but the model has 3 outputs"),
        "{}",
        fit(&labels, &mut params)
    );
    // Regression targets of the wrong width.
    let targets =
        Dataset::regression(ArrayD::zeros(vec![4, 2]), ArrayD::zeros(vec![4, 2])).unwrap();
    let err = Trainer::new(quiet(1), Sgd::new(0.1))
        .loss(Loss::Mse)
        .fit(&model, &mut params, &targets, None)
        .unwrap_err();
    assert!(
        matches!(err, TrainError::Model(ref m) if m.contains("the targets are [2] per sample but the model's outputs are [3]")),
        "{err}"
    );
    // Evaluation checks the same.
    let err = gradus::evaluate(&model, &params, &wide, &Loss::CrossEntropy, 100).unwrap_err();
    assert!(matches!(err, TrainError::Model(_)), "{err}");
}

#[test]
fn empty_sets_are_errors_not_zero_losses() {
    let (model, mut params) = small_mlp();
    let data = spiral_ish(10);
    // A validation split that leaves no training samples.
    let config = TrainerConfig {
        validation_split: 0.99,
        ..quiet(1)
    };
    let err = Trainer::new(config, Sgd::new(0.1))
        .fit(&model, &mut params, &data, None)
        .unwrap_err();
    assert!(
        err.to_string().contains("leaves no training samples"),
        "{err}"
    );
    // An empty validation or evaluation set.
    let empty = data.take(0);
    let err = Trainer::new(quiet(1), Sgd::new(0.1))
        .fit(&model, &mut params, &data, Some(&empty))
        .unwrap_err();
    assert!(
        err.to_string().contains("the validation set is empty"),
        "{err}"
    );
    let err = gradus::evaluate(&model, &params, &empty, &Loss::CrossEntropy, 10).unwrap_err();
    assert!(
        err.to_string().contains("the evaluation set is empty"),
        "{err}"
    );
}

#[test]
fn a_non_finite_error_counts_batches_from_one_like_epochs() {
    let (model, mut params) = small_mlp();
    // NaN inputs: the very first batch's loss is NaN.
    let data =
        Dataset::classification(ArrayD::from_elem(vec![8, 2], f32::NAN), vec![0; 8]).unwrap();
    match Trainer::new(quiet(1), Sgd::new(0.1))
        .fit(&model, &mut params, &data, None)
        .unwrap_err()
    {
        TrainError::NonFinite { epoch, batch, .. } => assert_eq!((epoch, batch), (1, 1)),
        other => panic!("expected NonFinite, got {other}"),
    }
}

#[test]
fn a_second_fit_trains_only_when_epochs_are_raised() {
    let data = spiral_ish(60);
    let (model, mut params) = small_mlp();
    let mut trainer = Trainer::new(quiet(2), Sgd::new(0.1));
    trainer.fit(&model, &mut params, &data, None).unwrap();
    let err = trainer.fit(&model, &mut params, &data, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("epochs must be more than the 2 epochs done"),
        "{err}"
    );
    trainer.config.epochs += 3;
    let h = trainer.fit(&model, &mut params, &data, None).unwrap();
    assert_eq!(h.epochs.len(), 5);
    assert_eq!(trainer.epochs_done(), 5);
}
