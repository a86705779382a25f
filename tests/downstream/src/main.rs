//! The README's MLP trained from a user's own crate: prints samples/s, and fails if the
//! network does not learn.

use gradus::optim::Adam;
use gradus::{BatchSize, Mnist, Sequential, Trainer, TrainerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Arguments: the number of training images (default 19,200: 300 steps of 64), and
    // `--no-check` to skip the accuracy check (a run too short to learn).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = !args.iter().any(|a| a == "--no-check");
    let images: usize = match args.iter().find(|a| *a != "--no-check") {
        Some(n) => n.parse()?,
        None => 19_200,
    };
    let mnist = Mnist::load_default()?;
    let train = mnist.train.take(images);
    let (model, mut params) = Sequential::<f32>::new()
        .linear(784, 256)
        .relu()
        .linear(256, 10)
        .build(42)?;
    let config = TrainerConfig {
        epochs: 1,
        batch_size: BatchSize::Mini(64),
        ..Default::default()
    };
    let mut trainer = Trainer::new(config, Adam::new(1e-3));
    let history = trainer.fit(&model, &mut params, &train, Some(&mnist.test))?;
    let record = &history.epochs[0];
    let accuracy = record.val_accuracy.unwrap_or(0.0);
    // The line benches/downstream.sh reads.
    println!(
        "downstream: {} steps, {:.0} samples/s, test accuracy {:.2}%",
        train.len().div_ceil(64),
        record.samples_per_sec,
        100.0 * accuracy
    );
    if check && accuracy < 0.85 {
        return Err(format!(
            "the MLP did not learn: {:.2}% test accuracy",
            100.0 * accuracy
        )
        .into());
    }
    Ok(())
}
