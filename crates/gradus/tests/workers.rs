//! Data-parallel workers in one process: the same update as one worker (the shards are
//! weighted by their size), bit-identical run to run, and BatchNorm statistics combined.

use gradus::ndarray::Array2;
use gradus::optim::{Adam, Sgd};
use gradus::{BatchSize, Dataset, Progress, Sequential, Trainer, TrainerConfig};

fn data(n: usize) -> Dataset<f32> {
    let x = Array2::from_shape_fn((n, 6), |(i, j)| {
        ((i * 37 + j * 11) % 23) as f32 / 11.0 - 1.0
    });
    let labels = x
        .rows()
        .into_iter()
        .map(|r| usize::from(r[0] + r[1] - r[2] > 0.0) + usize::from(r[3] > 0.3))
        .collect();
    Dataset::classification(x.into_dyn(), labels).unwrap()
}

fn config(workers: usize, epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        // 70 samples in batches of 16: the last batch has 6, split 3 + 3 (or 2 + 2 + 2).
        batch_size: BatchSize::Mini(16),
        seed: 5,
        workers,
        progress: Progress::Quiet,
        ..TrainerConfig::default()
    }
}

fn mlp() -> (Sequential<f32>, gradus::ParamStore<f32>) {
    Sequential::<f32>::new()
        .linear(6, 16)
        .tanh()
        .linear(16, 3)
        .build(1)
        .unwrap()
}

#[test]
fn any_worker_count_matches_one_worker_at_the_same_global_batch() {
    let train = data(70);
    let (model, init) = mlp();
    let mut one = init.clone();
    // Two epochs of 5 steps: 10 steps.
    Trainer::new(config(1, 2), Sgd::new(0.2).momentum(0.9))
        .fit(&model, &mut one, &train, None)
        .unwrap();
    for workers in [2, 3, 4] {
        let mut many = init.clone();
        Trainer::new(config(workers, 2), Sgd::new(0.2).momentum(0.9))
            .fit(&model, &mut many, &train, None)
            .unwrap();
        for ((name, a), (_, b)) in one.export().iter().zip(many.export().iter()) {
            for (x, y) in a.iter().zip(b.iter()) {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                    "{workers} workers, {name}: {x} vs {y}"
                );
            }
        }
    }
}

#[test]
fn the_same_seed_and_worker_count_give_bit_identical_weights() {
    let train = data(70);
    let (model, init) = Sequential::<f32>::new()
        .linear(6, 16)
        .relu()
        .dropout(0.3)
        .linear(16, 3)
        .build(1)
        .unwrap();
    let run = || {
        let mut p = init.clone();
        let h = Trainer::new(config(2, 3), Adam::new(0.01))
            .fit(&model, &mut p, &train, None)
            .unwrap();
        (p.export(), h.epochs.last().unwrap().train_loss)
    };
    assert_eq!(run(), run());
}

#[test]
fn batch_norm_statistics_are_per_worker_and_averaged() {
    let train = data(64);
    let (model, init) = Sequential::<f32>::new()
        .linear(6, 8)
        .batch_norm1d(8)
        .relu()
        .linear(8, 3)
        .build(2)
        .unwrap();
    let mut p = init.clone();
    let mut t = Trainer::new(
        TrainerConfig {
            shuffle: false,
            ..config(2, 1)
        },
        Sgd::new(0.0),
    );
    t.fit(&model, &mut p, &train, None).unwrap();
    // With a zero learning rate the weights stay, so the running mean after 4 batches can be
    // computed by hand: each step averages the two workers' updates of the same buffer.
    let w = init.get(init.id("0.weight").unwrap()).clone();
    let b = init.get(init.id("0.bias").unwrap()).clone();
    let x = train
        .inputs()
        .clone()
        .into_dimensionality::<gradus::ndarray::Ix2>()
        .unwrap();
    let h = x.dot(&w.into_dimensionality::<gradus::ndarray::Ix2>().unwrap().t()) + &b;
    let mut running = gradus::ndarray::Array1::<f32>::zeros(8);
    for step in 0..4 {
        let mut next = gradus::ndarray::Array1::<f32>::zeros(8);
        for worker in 0..2 {
            let rows = h.slice(gradus::ndarray::s![
                step * 16 + worker * 8..step * 16 + worker * 8 + 8,
                ..
            ]);
            let mean = rows.mean_axis(gradus::ndarray::Axis(0)).unwrap();
            next = next + (&running * 0.9 + &mean * 0.1) / 2.0;
        }
        running = next;
    }
    let got = p.buffer(p.buffer_id("1.running_mean").unwrap());
    for (g, e) in got.iter().zip(running.iter()) {
        assert!((g - e).abs() < 1e-5, "{got} vs {running}");
    }
    assert_eq!(
        p.buffer(p.buffer_id("1.num_batches_tracked").unwrap())[[]],
        4.0
    );
}

#[test]
fn a_run_with_workers_resumes_bit_identically() {
    let train = data(70);
    let (model, init) = Sequential::<f32>::new()
        .linear(6, 16)
        .relu()
        .dropout(0.2)
        .linear(16, 3)
        .build(1)
        .unwrap();
    let mut straight = init.clone();
    Trainer::new(config(2, 4), Adam::new(0.01))
        .fit(&model, &mut straight, &train, None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.ckpt");
    let mut first = init.clone();
    let mut t = Trainer::new(config(2, 2), Adam::new(0.01));
    t.fit(&model, &mut first, &train, None).unwrap();
    t.save_checkpoint(&path, &first).unwrap();
    let mut resumed = init.clone();
    let mut t = Trainer::new(config(2, 4), Adam::new(0.01));
    t.resume(&path, &mut resumed).unwrap();
    t.fit(&model, &mut resumed, &train, None).unwrap();
    assert_eq!(resumed.export(), straight.export());
}
