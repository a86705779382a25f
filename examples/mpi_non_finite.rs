//! A gradient that is not finite under a finite loss, over MPI (built with `--features mpi`,
//! run under `mpirun`): `sqrt(mean(out - out))` is 0, but its gradient is `inf * 0 = NaN`.
//! Every rank must find it in the summed gradients at the first batch, and the job must end
//! naming it (a rank's `fit` error ends the whole job with status 1).
//!
//! `mpirun -n 2 target/debug/examples/mpi_non_finite` (`examples/tests/mpi.rs` runs it).

use std::sync::Arc;

use gradus::distributed::Mpi;
use gradus::ndarray::Array2;
use gradus::optim::Sgd;
use gradus::{
    BatchSize, Dataset, Progress, Sequential, Targets, Task, Trainer, TrainerConfig, loss_fn,
};

fn main() {
    let mpi = Arc::new(Mpi::init().expect("MPI initialises"));
    let n = 64;
    let inputs = Array2::from_shape_fn((n, 4), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 11.0);
    let labels = (0..n).map(|i| i % 3).collect();
    let data = Dataset::classification(inputs.into_dyn(), labels).expect("a valid dataset");
    let (model, mut params) = Sequential::<f32>::new()
        .linear(4, 16)
        .relu()
        .linear(16, 3)
        .build(0)
        .expect("valid sizes");
    let config = TrainerConfig {
        epochs: 1,
        batch_size: BatchSize::Mini(32),
        progress: Progress::Quiet,
        ..TrainerConfig::default()
    };
    #[allow(clippy::eq_op)] // `out - out` on purpose: 0, whose square root has no gradient
    let nan_gradient = loss_fn::<f32, _>(Task::Classification, |out, _: &Targets<f32>| {
        (out - out).mean().sqrt()
    });
    let mut trainer = Trainer::new(config, Sgd::new(0.1))
        .loss(nan_gradient)
        .distributed(mpi);
    // Under more than one rank an error ends the job inside `fit`, naming the batch.
    trainer
        .fit(&model, &mut params, &data, None)
        .expect("not reached: the gradients are NaN");
}
