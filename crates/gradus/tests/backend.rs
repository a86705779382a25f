//! The same W1-style training run reaches the same loss with every matmul backend (the
//! default matrixmultiply, or OpenBLAS with `--features openblas`): only rounding differs.

use std::path::Path;

use gradus::data::mnist::Mnist;
use gradus::optim::Sgd;
use gradus::{BatchSize, Progress, Sequential, Trainer, TrainerConfig};

/// The final training loss with the default backend (matrixmultiply), recorded once.
const REFERENCE_LOSS: f64 = 0.228787264;

#[test]
fn w1_with_a_fixed_seed_reaches_the_reference_loss_with_this_backend() {
    let mnist =
        Mnist::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")).unwrap();
    let train = mnist.train.take(6_400);
    let (model, mut params) = Sequential::<f32>::new()
        .linear(784, 128)
        .relu()
        .linear(128, 10)
        .build(0)
        .unwrap();
    let config = TrainerConfig {
        epochs: 2,
        batch_size: BatchSize::Mini(64),
        progress: Progress::Quiet,
        ..Default::default()
    };
    let mut trainer = Trainer::new(config, Sgd::new(0.1).momentum(0.9));
    let history = trainer.fit(&model, &mut params, &train, None).unwrap();
    let loss = history.epochs.last().unwrap().train_loss;
    println!("final training loss {loss:.9}");
    assert!(
        (loss - REFERENCE_LOSS).abs() <= 1e-3 * REFERENCE_LOSS,
        "loss {loss} vs reference {REFERENCE_LOSS}"
    );
}
