//! End to end on the real MNIST digits: a subset trains to over 90% test accuracy.

use std::path::Path;

use gradus::data::mnist::Mnist;
use gradus::optim::Adam;
use gradus::{BatchSize, Progress, Sequential, Trainer, TrainerConfig, checkpoint};

#[test]
fn an_mlp_trained_on_a_real_mnist_subset_exceeds_90_percent_and_survives_save_load() {
    let mnist =
        Mnist::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")).unwrap();
    let train = mnist.train.take(10_000);
    let (model, mut params) = Sequential::<f32>::new()
        .linear(784, 64)
        .relu()
        .linear(64, 10)
        .build(0)
        .unwrap();
    let config = TrainerConfig {
        epochs: 2,
        batch_size: BatchSize::Mini(64),
        progress: Progress::Quiet,
        ..Default::default()
    };
    let mut trainer = Trainer::new(config, Adam::new(2e-3));
    trainer.fit(&model, &mut params, &train, None).unwrap();
    let eval = trainer.evaluate(&model, &params, &mnist.test).unwrap();
    let accuracy = eval.accuracy.unwrap();
    assert!(accuracy > 0.90, "test accuracy {accuracy}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mnist.gradus");
    checkpoint::save_weights(&path, &params).unwrap();
    let (_, mut loaded) = Sequential::<f32>::new()
        .linear(784, 64)
        .relu()
        .linear(64, 10)
        .build(9)
        .unwrap();
    checkpoint::load_weights(&path, &mut loaded).unwrap();
    assert_eq!(
        trainer
            .evaluate(&model, &loaded, &mnist.test)
            .unwrap()
            .accuracy,
        Some(accuracy)
    );
}
