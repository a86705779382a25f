//! Resuming an MPI job (built with `--features mpi`, run under `mpirun`): trains 3 epochs
//! uninterrupted, then 2 epochs with a checkpoint written by rank 0, resumes every rank from
//! it in a fresh trainer and trains the third epoch; rank 0 compares the two results and exits
//! with status 1 unless they are bit-identical.
//!
//! `mpirun -n 2 target/debug/examples/mpi_resume DIR` (`examples/tests/mpi.rs` runs it).

use std::process::ExitCode;
use std::sync::Arc;

use gradus::distributed::Mpi;
use gradus::optim::Adam;
use gradus::{
    BatchSize, CheckpointConfig, CheckpointWhen, Mnist, ParamStore, Progress, Sequential, Trainer,
    TrainerConfig,
};

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: mpi_resume DIR (a directory every rank can read)");
        return ExitCode::from(2);
    };
    let mpi = Arc::new(Mpi::init().expect("MPI initialises"));
    let mnist = Mnist::load_default().unwrap_or_else(|e| mpi.abort(e, 2));
    let train = mnist.train.take(3000);
    let model = || {
        Sequential::<f32>::new()
            .linear(784, 32)
            .relu()
            .dropout(0.2)
            .linear(32, 10)
            .build(0)
            .expect("valid sizes")
    };
    let trainer = |epochs, checkpoint| {
        let config = TrainerConfig {
            epochs,
            batch_size: BatchSize::Mini(64),
            progress: Progress::Quiet,
            checkpoint,
            ..TrainerConfig::default()
        };
        Trainer::new(config, Adam::new(1e-3)).distributed(mpi.clone())
    };
    let fit = |t: &mut Trainer<f32>, net: &Sequential<f32>, params: &mut ParamStore<f32>| {
        t.fit(net, params, &train, None).expect("training runs");
    };

    let (net, mut whole) = model();
    fit(&mut trainer(3, None), &net, &mut whole);

    let path = std::path::Path::new(&dir).join("job.checkpoint");
    let (_, mut first) = model();
    let every_epoch = CheckpointConfig {
        path: path.clone(),
        when: CheckpointWhen::EveryEpoch,
    };
    fit(&mut trainer(2, Some(every_epoch)), &net, &mut first);
    // Rank 0 wrote the checkpoint inside `fit`; the others read it only after that.
    mpi.barrier();
    let (_, mut resumed) = model();
    let mut again = trainer(3, None);
    again
        .resume(&path, &mut resumed)
        .unwrap_or_else(|e| mpi.abort(e, 1));
    fit(&mut again, &net, &mut resumed);

    if mpi.rank() != 0 {
        return ExitCode::SUCCESS;
    }
    let same = resumed.export() == whole.export();
    println!(
        "{} ranks: resumed run bit-identical to the uninterrupted one: {same}",
        mpi.size()
    );
    if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
