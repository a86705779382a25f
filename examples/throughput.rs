//! The standard throughput workloads, run through gradus's Trainer exactly as a user would.
//!
//! W1: MLP 784-128-10, batch 64; W2: MLP 784-512-512-10, batch 256. Both: ReLU, softmax
//! cross-entropy (mean), SGD lr 0.1 momentum 0.9. W3: conv(1->32, 3x3) -> ReLU -> maxpool 2 ->
//! conv(32->64, 3x3) -> ReLU -> maxpool 2 -> flatten (1600) -> linear(128) -> ReLU ->
//! linear(10), Adam lr 1e-3, batch 64. All: f32, the 60,000 MNIST training images
//! reshuffled every epoch. Prints one JSON line: the median samples/s of epochs 2-4 (epoch
//! 1 is warm-up), the test accuracy after 3 epochs, and `step_us`: the µs per step spent in
//! forward and backward, in summing the workers' (and ranks') gradients, and in the update. Threads: `MATMUL_NUM_THREADS`.
//!
//! `cargo run --release --example throughput -- w1` (benches/compare/run.sh runs it);
//! `WORKERS=2 MATMUL_NUM_THREADS=1 ...` for two data-parallel workers; `-- gemm` prints the
//! machine's GEMM figure (GFLOP/s of one 512x512x512 f32 product); `SKIP_ACCURACY=1` skips
//! the 3 epochs that measure the accuracy; `BATCH=n` changes the batch size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use gradus::data::mnist::Mnist;
use gradus::optim::{Adam, Optimizer, Sgd};
use gradus::{BatchSize, Progress, Sequential, Trainer, TrainerConfig};

/// Counts heap allocations, to report how many one training step makes.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static GEMM_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// matrixmultiply allocates its packing buffers for every product, aligned to 32 or 64
/// bytes; nothing in gradus asks for more than 16-byte alignment, so they are told apart.
const GEMM_ALIGN: usize = 32;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() >= GEMM_ALIGN {
            GEMM_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        } else {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let workload = std::env::args().nth(1).unwrap_or_else(|| "w1".into());
    if workload == "gemm" {
        return gemm();
    }
    let (hidden, batch): (&[usize], usize) = match workload.as_str() {
        "w1" => (&[128], 64),
        "w2" => (&[512, 512], 256),
        "w3" => (&[], 64),
        other => {
            eprintln!("error: unknown workload `{other}`, expected w1, w2 or w3");
            std::process::exit(2);
        }
    };
    // `BATCH=n` overrides the workload's batch size (to see how a shard's size alone
    // changes the speed of one worker).
    let batch = std::env::var("BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(batch);
    let mnist = Mnist::load_default().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    let (model, mut params) = if workload == "w3" {
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
            .expect("valid sizes")
    } else {
        let mut builder = Sequential::<f32>::new();
        let mut width = 784;
        for &h in hidden {
            builder = builder.linear(width, h).relu();
            width = h;
        }
        builder.linear(width, 10).build(0).expect("valid sizes")
    };
    // Data-parallel workers (`WORKERS`, default 1); run them with MATMUL_NUM_THREADS=1.
    let workers: usize = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    let config = TrainerConfig {
        workers,
        epochs: 3,
        batch_size: BatchSize::Mini(batch),
        progress: Progress::Quiet,
        seed: 0,
        ..TrainerConfig::default()
    };
    let optimizer: Box<dyn Optimizer<f32>> = if workload == "w3" {
        Box::new(Adam::new(1e-3))
    } else {
        Box::new(Sgd::new(0.1).momentum(0.9))
    };
    let mut trainer = Trainer::new(config, optimizer);
    // Under `mpirun -n N` (built with `--features mpi`): N ranks train together; rank 0
    // prints the job's samples/s.
    #[cfg(feature = "mpi")]
    let mpi = std::sync::Arc::new(gradus::distributed::Mpi::init().expect("MPI initialises"));
    #[cfg(feature = "mpi")]
    if mpi.size() > 1 {
        trainer = trainer.distributed(mpi.clone());
    }
    let (rank, ranks) = trainer.rank();
    // `SKIP_ACCURACY=1` times the 4 epochs only (for a short lease on a borrowed machine);
    // the accuracy is then reported as null.
    let accuracy = if std::env::var("SKIP_ACCURACY").is_ok_and(|v| v == "1") {
        None
    } else {
        trainer
            .fit(&model, &mut params, &mnist.train, None)
            .expect("training runs");
        let evaluation = trainer
            .evaluate(&model, &params, &mnist.test)
            .expect("the test set fits the model");
        Some(evaluation.accuracy.unwrap_or(0.0))
    };
    let accuracy = accuracy.map_or("null".to_string(), |a| format!("{a:.4}"));
    let epochs_before = trainer.history().epochs.len();
    trainer.config.epochs = 4;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let gemm_before = GEMM_ALLOCATIONS.load(Ordering::Relaxed);
    #[cfg(feature = "mpi")]
    let reduce_before = mpi.reduce_stats();
    let history = trainer
        .fit(&model, &mut params, &mnist.train, None)
        .expect("training runs");
    // Over the whole epochs of this fit (the 4th, or all 4 with SKIP_ACCURACY=1, the first
    // one warming up), so the per-epoch allocations (the shuffled order, the history
    // record) are included, spread over their steps.
    let epochs_timed = (history.epochs.len() - epochs_before) as u64;
    let steps = mnist.train.len().div_ceil(batch) as u64 * epochs_timed;
    let allocations_per_step = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / steps as f64;
    let gemm_allocations_per_step =
        (GEMM_ALLOCATIONS.load(Ordering::Relaxed) - gemm_before) as f64 / steps as f64;
    // Where a step's time went (`EpochRecord::step_times`), in µs per step over the epochs
    // whose rates are reported.
    let timed = &history.epochs[1..];
    let per_step = |f: fn(&gradus::StepTimes) -> f64| {
        let steps_timed = mnist.train.len().div_ceil(batch) * timed.len();
        1e6 * timed.iter().map(|e| f(&e.step_times)).sum::<f64>() / steps_timed.max(1) as f64
    };
    let step_us = format!(
        ", \"step_us\": {{\"forward_backward\": {:.1}, \"reduce\": {:.1}, \"update\": {:.1}}}",
        per_step(|t| t.forward_backward_secs),
        per_step(|t| t.reduce_secs),
        per_step(|t| t.update_secs),
    );
    let mut rates: Vec<f64> = history.epochs[1..]
        .iter()
        .map(|e| e.samples_per_sec)
        .collect();
    rates.sort_by(f64::total_cmp);
    // Under MPI: what the timed epochs spent summing the gradients across the ranks
    // (waiting for the slowest rank included) and in copying to and from the flat buffer,
    // per step, and how they were summed (`GRADUS_MPI_REDUCE`).
    #[cfg(feature = "mpi")]
    let reduce = {
        let s = mpi.reduce_stats();
        let (steps, ms) = ((s.steps - reduce_before.steps) as f64, |secs: f64| {
            1e3 * secs
        });
        if s.steps > reduce_before.steps {
            format!(
                ", \"allreduce_ms_per_step\": {:.3}, \"copy_ms_per_step\": {:.3}, \"allreduce_values\": {}, \"reduction\": \"{}\"",
                ms(s.allreduce_secs - reduce_before.allreduce_secs) / steps,
                ms(s.copy_secs - reduce_before.copy_secs) / steps,
                s.values,
                match mpi.reduction() {
                    gradus::distributed::Reduction::SharedMemory => "shared",
                    gradus::distributed::Reduction::Allreduce => "allreduce",
                }
            )
        } else {
            String::new()
        }
    };
    #[cfg(not(feature = "mpi"))]
    let reduce = "";
    if rank != 0 {
        return;
    }
    println!(
        "{{\"impl\": \"gradus{}{}{}\", \"workload\": \"{workload}\", \"threads\": \"{}\", \"samples_per_sec\": {:.0}, \"test_accuracy\": {}, \"allocations_per_step\": {allocations_per_step:.2}, \"gemm_allocations_per_step\": {gemm_allocations_per_step:.2}{step_us}{reduce}}}",
        if cfg!(feature = "openblas") {
            "+openblas"
        } else {
            ""
        },
        if workers > 1 {
            format!("-{workers}workers")
        } else {
            String::new()
        },
        if ranks > 1 {
            format!("-mpi{ranks}")
        } else {
            String::new()
        },
        std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        rates[1],
        accuracy
    );
}

/// The machine's GEMM figure printed beside every table: GFLOP/s of a 512x512x512 f32
/// product (matrixmultiply, `MATMUL_NUM_THREADS` threads), the median of 7 one-second runs.
fn gemm() {
    use gradus::ndarray::Array2;
    let n = 512;
    let a = Array2::from_shape_fn((n, n), |(i, j)| ((i * 7 + j * 13) % 17) as f32 / 17.0);
    let b = a.t().to_owned();
    let mut runs = Vec::new();
    for _ in 0..7 {
        let start = std::time::Instant::now();
        let mut products = 0u32;
        while start.elapsed().as_secs_f64() < 1.0 {
            std::hint::black_box(a.dot(&b));
            products += 1;
        }
        let flops = 2.0 * (n * n * n) as f64 * f64::from(products);
        runs.push(flops / start.elapsed().as_secs_f64() / 1e9);
    }
    runs.sort_by(f64::total_cmp);
    println!(
        "{{\"gemm\": \"sgemm 512x512x512\", \"threads\": \"{}\", \"gflops\": {:.1}}}",
        std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        runs[3]
    );
}
