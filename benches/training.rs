//! Criterion benchmarks of the training path: one step of W1, W2 and W3, each optimizer's update
//! on a 1M-parameter model, the MNIST IDX load, gathering a shuffled batch, and saving /
//! loading W2's weights.
//!
//! W3's step uses SGD with momentum like the others (the comparison with PyTorch, in
//! benches/compare, uses Adam as W3 specifies); the optimizer is a small part of a CNN step.
//!
//! Run: `cargo bench -p gradus --bench training` (numbers go to target/criterion/).

use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize as CriterionBatch, Criterion, criterion_group, criterion_main};
use gradus::autograd::{Gradients, ParamStore, value_and_grad};
use gradus::checkpoint;
use gradus::data::mnist::Mnist;
use gradus::layers::{ForwardCtx, Init, Module, Sequential};
use gradus::optim::{Adagrad, Adam, Optimizer, RmsProp, Sgd};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn data_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist"))
}

fn mlp(hidden: &[usize]) -> (Sequential<f32>, ParamStore<f32>) {
    let mut b = Sequential::<f32>::new();
    let mut width = 784;
    for &h in hidden {
        b = b.linear(width, h).relu();
        width = h;
    }
    b.linear(width, 10).build(0).unwrap()
}

/// W3: conv(1->32, 3x3) -> ReLU -> maxpool 2 -> conv(32->64, 3x3) -> ReLU -> maxpool 2 ->
/// flatten -> linear(1600 -> 128) -> ReLU -> linear(10).
fn w3() -> (Sequential<f32>, ParamStore<f32>) {
    Sequential::<f32>::new()
        .input(&[784])
        .reshape(&[1, 28, 28])
        .conv2d(1, 32, 3)
        .relu()
        .max_pool2d(2)
        .conv2d(32, 64, 3)
        .relu()
        .max_pool2d(2)
        .flatten()
        .linear(1600, 128)
        .relu()
        .linear(128, 10)
        .build(0)
        .unwrap()
}

fn training_steps(c: &mut Criterion) {
    let mnist = Mnist::load(data_dir()).unwrap();
    for (name, hidden, batch) in [
        ("w1_step_784_128_10_b64", &[128][..], 64usize),
        ("w2_step_784_512_512_10_b256", &[512, 512][..], 256),
        ("w3_step_cnn_b64", &[][..], 64),
    ] {
        let (model, mut params) = if hidden.is_empty() { w3() } else { mlp(hidden) };
        let mut opt = Sgd::new(0.1).momentum(0.9);
        let idx: Vec<usize> = (0..batch).collect();
        let b = mnist.train.batch(&idx);
        let labels: Vec<usize> = mnist.train.labels().unwrap()[..batch].to_vec();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        c.bench_function(name, |bench| {
            bench.iter(|| {
                let (loss, grads) = value_and_grad(|tape| {
                    model
                        .forward(
                            &params,
                            tape.constant(b.inputs.clone()),
                            &mut ForwardCtx::train(&mut rng),
                        )
                        .cross_entropy_with_logits(&labels)
                });
                opt.step(&mut params, &grads).unwrap();
                black_box(loss)
            })
        });
    }
}

fn optimizer_updates(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut params = ParamStore::<f32>::new();
    let w = params
        .insert(
            "w",
            Init::Normal {
                mean: 0.0,
                std: 1.0,
            }
            .array(&[1000, 1000], &mut rng),
        )
        .unwrap();
    let mut grads = Gradients::default();
    grads.insert(
        w,
        Init::Normal {
            mean: 0.0,
            std: 1.0,
        }
        .array(&[1000, 1000], &mut rng),
    );
    let optimizers: Vec<(&str, Box<dyn Optimizer<f32>>)> = vec![
        ("sgd", Box::new(Sgd::new(0.01))),
        ("momentum", Box::new(Sgd::new(0.01).momentum(0.9))),
        ("nesterov", Box::new(Sgd::new(0.01).nesterov(0.9))),
        ("adagrad", Box::new(Adagrad::new(0.01))),
        ("rmsprop", Box::new(RmsProp::new(0.01))),
        ("adam", Box::new(Adam::new(1e-3))),
        ("adamw", Box::new(Adam::adamw(1e-3))),
    ];
    let mut group = c.benchmark_group("optimizer_update_1M_params");
    for (name, mut opt) in optimizers {
        opt.step(&mut params, &grads).unwrap(); // state allocated: measure the steady state
        group.bench_function(name, |bench| {
            bench.iter(|| opt.step(&mut params, &grads).unwrap())
        });
    }
    group.finish();
}

fn io(c: &mut Criterion) {
    c.bench_function("mnist_idx_load_gz", |bench| {
        bench.iter(|| black_box(Mnist::load(data_dir()).unwrap()))
    });
    // A training batch: 64 rows of the shuffled 60,000 (188 MB in f32, far past the caches),
    // copied into one array, batch after batch through an epoch's order.
    let mnist = Mnist::load(data_dir()).unwrap();
    let mut order: Vec<usize> = (0..mnist.train.len()).collect();
    rand::seq::SliceRandom::shuffle(&mut order[..], &mut ChaCha8Rng::seed_from_u64(1));
    let mut batches = order.chunks_exact(64).cycle();
    c.bench_function("batch_of_64_shuffled_rows", |bench| {
        bench.iter(|| black_box(mnist.train.batch(batches.next().unwrap())))
    });
    let (_, params) = mlp(&[512, 512]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w2.gradus");
    c.bench_function("w2_weights_save", |bench| {
        bench.iter(|| checkpoint::save_weights(&path, &params).unwrap())
    });
    c.bench_function("w2_weights_load", |bench| {
        bench.iter_batched(
            || params.clone(),
            |mut p| checkpoint::load_weights(&path, &mut p).unwrap(),
            CriterionBatch::LargeInput,
        )
    });
}

criterion_group!(benches, training_steps, optimizer_updates, io);
criterion_main!(benches);
