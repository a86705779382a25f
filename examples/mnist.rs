//! Trains an MLP (or, with `--model cnn`, a convolutional network) on the real MNIST digits
//! and saves its weights.
//!
//! ```text
//! cargo run --example mnist                       # train with the defaults, save mnist-mlp.gradus
//! cargo run --example mnist -- --eval mnist-mlp.gradus
//! cargo run --example mnist -- --optimizer sgd --batch-size 1       # stochastic GD
//! cargo run --example mnist -- --data-dir /usr/share/datasets/fashion-mnist
//! cargo run --example mnist -- --model cnn --plot-filters filters.png   # a CNN, 3 epochs
//! cargo run --example mnist -- --model cnn --eval mnist-cnn.gradus
//! ```
//!
//! Bad flag values exit with status 2 and one line saying what is wrong.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use gradus::checkpoint;
use gradus::data::mnist::{Mnist, Provenance};
use gradus::layers::{Conv2dConfig, Sequential, SequentialBuilder};
use gradus::optim::{Adagrad, Adam, Optimizer, RmsProp, Schedule, Sgd};
use gradus::{BatchSize, Loss, Progress, Trainer, TrainerConfig, evaluate};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Opt {
    /// Plain gradient descent (batch, stochastic or mini-batch by --batch-size).
    Sgd,
    /// SGD with momentum 0.9.
    Momentum,
    /// SGD with Nesterov momentum 0.9.
    Nesterov,
    Adagrad,
    Rmsprop,
    Adam,
    Adamw,
}

impl Opt {
    fn default_lr(self) -> f64 {
        match self {
            Opt::Sgd => 0.1,
            Opt::Momentum | Opt::Nesterov => 0.05,
            Opt::Adagrad => 0.05,
            Opt::Rmsprop | Opt::Adam | Opt::Adamw => 1e-3,
        }
    }

    fn build(self, lr: f64) -> Box<dyn Optimizer<f32>> {
        match self {
            Opt::Sgd => Box::new(Sgd::new(lr)),
            Opt::Momentum => Box::new(Sgd::new(lr).momentum(0.9)),
            Opt::Nesterov => Box::new(Sgd::new(lr).nesterov(0.9)),
            Opt::Adagrad => Box::new(Adagrad::new(lr)),
            Opt::Rmsprop => Box::new(RmsProp::new(lr)),
            Opt::Adam => Box::new(Adam::new(lr)),
            Opt::Adamw => Box::new(Adam::adamw(lr)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Model {
    /// A multi-layer perceptron (--hidden sizes, --dropout).
    Mlp,
    /// A convolutional network: two conv-BN-ReLU-maxpool blocks, then linear layers
    /// (--hidden sizes, --dropout).
    Cnn,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Sched {
    /// The same learning rate throughout.
    Constant,
    /// Cosine annealing to 0 over the whole run.
    Cosine,
    /// OneCycle with the learning rate as its peak.
    Onecycle,
}

#[derive(Parser, Debug)]
#[command(about = "Train an MLP on MNIST (or Fashion-MNIST) with gradus and save its weights")]
struct Args {
    /// The network.
    #[arg(long, value_enum, default_value = "mlp")]
    model: Model,
    /// Update rule.
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: Opt,
    /// Learning rate (default: 0.1 sgd, 0.05 momentum/nesterov/adagrad, 1e-3 rmsprop/adam/adamw;
    /// 3e-3 for adam with --model cnn).
    #[arg(long, value_parser = positive_f64, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Learning-rate schedule over the run (default: cosine for the MLP, onecycle for the CNN).
    #[arg(long, value_enum)]
    schedule: Option<Sched>,
    /// Passes over the 60,000 training images (default: 8 for the MLP, 3 for the CNN).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    epochs: Option<u64>,
    /// Samples per step: 1 = stochastic GD, 60000 = batch GD, otherwise mini-batch GD.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Hidden layer sizes, comma-separated (default: 256,128 for the MLP; 128 for the CNN's
    /// linear layers after its convolutions).
    #[arg(long, value_parser = hidden_size, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Dropout after each hidden layer (0 for none).
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    dropout: f64,
    /// Seed for initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory with the four IDX files (raw or .gz).
    #[arg(long, env = "MNIST_DIR")]
    data_dir: Option<PathBuf>,
    /// Where to save the trained weights (default: mnist-mlp.gradus, or mnist-cnn.gradus).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Also export the weights as safetensors (loadable with safetensors.torch.load_file).
    #[arg(long)]
    safetensors: Option<PathBuf>,
    /// Load weights from this file and report the test accuracy instead of training (the
    /// model's flags must be the ones it was trained with; --safetensors and --plot-filters
    /// then export the loaded weights).
    #[arg(long, conflicts_with_all = TRAINING_ONLY)]
    eval: Option<PathBuf>,
    /// Draw the first convolution's learned filters into this PNG (--model cnn).
    #[arg(long)]
    plot_filters: Option<PathBuf>,
    /// Data-parallel workers: each batch is split over this many threads, each with
    /// single-threaded matrix products (default: every core, shared among the MPI ranks of
    /// this machine, and for the MLP at most one per 16 samples of a batch; on 2 cores 2
    /// workers ran W1 1.3-1.6x and W3 1.9x as fast as one).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    workers: Option<u64>,
    /// Train on only the first N training images (a quick run; 0 = all).
    #[arg(long, default_value_t = 0)]
    train_limit: usize,
    /// Print only the final result.
    #[arg(long)]
    quiet: bool,
}

/// The flags that only training reads: refused with --eval rather than ignored.
const TRAINING_ONLY: [&str; 8] = [
    "optimizer",
    "lr",
    "schedule",
    "epochs",
    "batch_size",
    "output",
    "workers",
    "train_limit",
];

impl Args {
    /// The hidden layers' sizes: the MLP's, or the CNN's linear layers after its
    /// convolutions.
    fn hidden(&self) -> Vec<usize> {
        self.hidden.clone().unwrap_or_else(|| match self.model {
            Model::Mlp => vec![256, 128],
            Model::Cnn => vec![128],
        })
    }
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number above 0, got {v}")),
        Err(e) => Err(e.to_string()),
    }
}

fn hidden_size(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("hidden sizes must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("`{s}`: {e}")),
    }
}

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("must be in [0, 1), got {v}")),
        Err(e) => Err(e.to_string()),
    }
}

/// A usage error: one line on stderr, exit status 2 (as clap's own errors).
fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Checks up front that the output can be written, so a long run cannot fail at the end.
fn check_writable(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') {
        return Err(format!("output {} is a directory", path.display()));
    }
    if let Ok(meta) = std::fs::metadata(path)
        && !meta.is_file()
    {
        return Err(format!("output {} is not a regular file", path.display()));
    }
    // An anonymous file (O_TMPFILE where the OS has it): nothing is left behind even if the
    // process is killed during the check.
    tempfile::tempfile_in(dir)
        .map(drop)
        .map_err(|e| format!("cannot write the output {}: {e}", path.display()))
}

/// Whether two paths name one file: the same text, or the same file once resolved (where
/// both exist).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// The most parameters a model of this example may have (1 GiB of f32 weights): sizes from
/// flags or from the data's image size are checked against it before anything is allocated.
const MAX_PARAMETERS: u64 = 1 << 28;

/// The model's parameter count, computed with checked arithmetic before it is built.
fn parameter_count(args: &Args, (rows, cols): (usize, usize)) -> Option<u64> {
    let linear = |i: u64, o: u64| i.checked_mul(o)?.checked_add(o);
    let (rows, cols) = (rows as u64, cols as u64);
    let (mut width, mut total) = if args.model == Model::Cnn {
        // Both convolutions and their BatchNorms' weights and biases.
        let convs = 9 * 32 + 2 * 32 + 32 * 9 * 64 + 2 * 64;
        (64u64.checked_mul(rows / 4)?.checked_mul(cols / 4)?, convs)
    } else {
        (rows.checked_mul(cols)?, 0u64)
    };
    for &h in &args.hidden() {
        total = total.checked_add(linear(width, h as u64)?)?;
        width = h as u64;
    }
    total.checked_add(linear(width, 10)?)
}

fn build_model(
    args: &Args,
    (rows, cols): (usize, usize),
) -> Result<(Sequential<f32>, gradus::ParamStore<f32>), String> {
    let inputs = rows * cols;
    if args.model == Model::Cnn {
        // The flat rows become 1-channel images; "same" padding keeps 28x28 -> 14x14 -> 7x7.
        let conv = |i, o| Conv2dConfig {
            padding: 1.into(),
            bias: false, // BatchNorm's shift makes a bias redundant
            ..Conv2dConfig::new(i, o, 3)
        };
        let (h, w) = (rows / 4, cols / 4);
        let builder = Sequential::<f32>::new()
            .input(&[inputs])
            .reshape(&[1, rows, cols])
            .conv2d_with(conv(1, 32))
            .batch_norm2d(32)
            .relu()
            .max_pool2d(2)
            .conv2d_with(conv(32, 64))
            .batch_norm2d(64)
            .relu()
            .max_pool2d(2)
            .flatten();
        return dense(builder, 64 * h * w, args)
            .build(args.seed)
            .map_err(|e| e.to_string());
    }
    dense(Sequential::<f32>::new(), inputs, args)
        .build(args.seed)
        .map_err(|e| e.to_string())
}

/// The hidden linear layers (ReLU, then dropout if asked) from `inputs` features, and the
/// output layer of 10 classes.
fn dense(
    mut builder: SequentialBuilder<f32>,
    inputs: usize,
    args: &Args,
) -> SequentialBuilder<f32> {
    let mut width = inputs;
    for h in args.hidden() {
        builder = builder.linear(width, h).relu();
        if args.dropout > 0.0 {
            builder = builder.dropout(args.dropout);
        }
        width = h;
    }
    builder.linear(width, 10)
}

/// The MPI job this process is a rank of (`--features mpi`), or nothing.
#[cfg(feature = "mpi")]
type Job = std::sync::Arc<gradus::distributed::Mpi>;
#[cfg(not(feature = "mpi"))]
type Job = ();

#[cfg(feature = "mpi")]
fn main() -> ExitCode {
    let Some(mpi) = gradus::distributed::Mpi::init() else {
        return usage_error("MPI could not be initialised");
    };
    let mpi = std::sync::Arc::new(mpi);
    let code = run(mpi.clone());
    if code != ExitCode::SUCCESS && mpi.size() > 1 {
        // The other ranks may be waiting for this one in a collective call: end the job.
        mpi.abort("this rank failed (see above); ending the job", 1);
    }
    code
}

#[cfg(not(feature = "mpi"))]
fn main() -> ExitCode {
    run(())
}

/// `(rank, ranks, ranks on this machine)` of this process.
#[cfg(feature = "mpi")]
fn rank_of(job: &Job) -> (usize, usize, usize) {
    (job.rank(), job.size(), job.local_size())
}

#[cfg(not(feature = "mpi"))]
fn rank_of(_: &Job) -> (usize, usize, usize) {
    (0, 1, 1)
}

fn run(job: Job) -> ExitCode {
    let mut args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // clap's message on one line: the error, any possible values, no usage hint.
            let text = e.render().to_string();
            let parts: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("For more information")
                        && !l.starts_with("Usage:")
                })
                .collect();
            return usage_error(parts.join(" ").trim_start_matches("error: "));
        }
    };
    // Under `mpirun` (built with `--features mpi`), one rank of a job: only rank 0 reports
    // and writes files.
    let (rank, ranks, local_ranks) = rank_of(&job);
    if rank != 0 {
        if args.eval.is_some() {
            return ExitCode::SUCCESS; // rank 0 evaluates
        }
        args.quiet = true;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let workers = args
        .workers
        .unwrap_or_else(|| default_workers(&args, cores, (ranks as u64, local_ranks as u64)));
    if workers > 1 && std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // Workers bring the parallelism; products splitting too would oversubscribe the
        // cores. matrixmultiply reads this once, at its first product, which comes later.
        // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("MATMUL_NUM_THREADS", "1") };
    }
    let data_dir = args.data_dir.clone().unwrap_or_else(Mnist::default_dir);
    let output = args.output.clone().unwrap_or_else(|| {
        PathBuf::from(match args.model {
            Model::Mlp => "mnist-mlp.gradus",
            Model::Cnn => "mnist-cnn.gradus",
        })
    });
    if args.plot_filters.is_some() && args.model != Model::Cnn {
        return usage_error("--plot-filters draws a CNN's filters: add --model cnn");
    }
    // Every file this run writes (with --eval: the loaded weights' exports, never the file
    // it reads), checked up front so a long run cannot fail at the end.
    let written = [
        ("--output", args.eval.is_none().then_some(output.as_path())),
        ("--safetensors", args.safetensors.as_deref()),
        ("--plot-filters", args.plot_filters.as_deref()),
    ];
    let outputs: Vec<(&str, &Path)> = written
        .into_iter()
        .filter_map(|(flag, p)| p.map(|p| (flag, p)))
        .collect();
    for (i, (a, pa)) in outputs.iter().enumerate() {
        if let Some(read) = &args.eval
            && same_file(pa, read)
        {
            return usage_error(format!(
                "{a} names {}, the weights --eval reads: it would overwrite them",
                pa.display()
            ));
        }
        if let Some((b, _)) = outputs[i + 1..].iter().find(|(_, pb)| same_file(pa, pb)) {
            return usage_error(format!(
                "{a} and {b} name the same file {}: one would overwrite the other",
                pa.display()
            ));
        }
        if let Err(e) = check_writable(pa) {
            return usage_error(e);
        }
    }
    let t0 = Instant::now();
    let mut mnist = match Mnist::load(&data_dir) {
        Ok(m) => m,
        // The library's hint speaks to its callers; this program's users pass a flag.
        Err(e @ gradus::DataError::Missing { .. }) => {
            return usage_error(format!("{e} Pass --data-dir or set MNIST_DIR."));
        }
        Err(e) => return usage_error(e),
    };
    if args.train_limit > 0 && args.train_limit < mnist.train.len() {
        mnist.train = mnist.train.take(args.train_limit);
    }
    let (rows, cols) = mnist.image_size;
    if !args.quiet {
        let what = match &mnist.provenance {
            Provenance::Mnist => "MNIST (checksums verified)".to_string(),
            Provenance::FashionMnist => "Fashion-MNIST (checksums verified)".to_string(),
            Provenance::Unknown(notes) => format!("unrecognised IDX files ({})", notes.join("; ")),
        };
        println!(
            "data: {} from {}: {} train, {} test, {rows}x{cols} images, loaded in {:.1}s",
            what,
            data_dir.display(),
            mnist.train.len(),
            mnist.test.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    match parameter_count(&args, (rows, cols)) {
        Some(n) if n <= MAX_PARAMETERS => {}
        n => {
            let n = n.map_or("more than 2^64".into(), |n| n.to_string());
            return usage_error(format!(
                "the model would have {n} parameters for {rows}x{cols} images (at most \
                 {MAX_PARAMETERS}): use smaller --hidden sizes or images"
            ));
        }
    }
    if args.model == Model::Cnn && (rows < 4 || cols < 4) {
        return usage_error(format!(
            "--model cnn needs images of at least 4x4, found {rows}x{cols}"
        ));
    }
    let (model, mut params) = match build_model(&args, (rows, cols)) {
        Ok(m) => m,
        Err(e) => return usage_error(e),
    };

    if let Some(path) = &args.eval {
        if let Err(e) = checkpoint::load_weights(path, &mut params) {
            return usage_error(e);
        }
        let eval = match evaluate(&model, &params, &mnist.test, &Loss::CrossEntropy, 1000) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        println!(
            "{}: test loss {:.4}, test accuracy {:.2}%",
            path.display(),
            eval.loss,
            100.0 * eval.accuracy.unwrap_or(0.0)
        );
        return export(&args, &params);
    }

    let cnn = args.model == Model::Cnn;
    let lr = args.lr.unwrap_or_else(|| match args.optimizer {
        Opt::Adam if cnn => 3e-3,
        o => o.default_lr(),
    });
    let epochs = args.epochs.unwrap_or(if cnn { 3 } else { 8 });
    let sched = args
        .schedule
        .unwrap_or(if cnn { Sched::Onecycle } else { Sched::Cosine });
    let batch_size = BatchSize::from_count(args.batch_size as usize, mnist.train.len());
    let steps_per_epoch = mnist
        .train
        .len()
        .div_ceil(batch_size.samples(mnist.train.len())) as u64;
    let Some(total_steps) = steps_per_epoch.checked_mul(epochs) else {
        return usage_error(format!(
            "--epochs {} is too many: {steps_per_epoch} steps per epoch overflow a step count",
            epochs
        ));
    };
    let schedule = match sched {
        Sched::Constant => Schedule::Constant,
        Sched::Cosine => Schedule::CosineAnnealing {
            t_max: total_steps,
            eta_min: 0.0,
        },
        // PyTorch's cycle_momentum, for the optimizers that have a momentum or beta1.
        Sched::Onecycle => {
            Schedule::one_cycle(lr, total_steps, !matches!(args.optimizer, Opt::Adagrad))
        }
    };
    if !args.quiet {
        println!("model:\n{}", model.summary(&params));
        println!(
            "training: {:?} lr {lr} ({:?} schedule), {} epochs, batch {} = {}, {workers} worker(s){}, seed {}; validation = the 10,000 test images",
            args.optimizer,
            sched,
            epochs,
            args.batch_size,
            batch_size.variant(),
            if ranks > 1 {
                format!(" x {ranks} MPI ranks")
            } else {
                String::new()
            },
            args.seed
        );
    }
    let config = TrainerConfig {
        epochs: epochs as usize,
        workers: workers as usize,
        batch_size,
        seed: args.seed,
        schedule,
        progress: if args.quiet {
            Progress::Quiet
        } else {
            Progress::Auto
        },
        ..TrainerConfig::default()
    };
    let mut trainer = Trainer::new(config, args.optimizer.build(lr));
    #[cfg(feature = "mpi")]
    if ranks > 1 {
        trainer = trainer.distributed(job.clone());
    }
    let started = Instant::now();
    let history = match trainer.fit(&model, &mut params, &mnist.train, Some(&mnist.test)) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let train_secs = started.elapsed().as_secs_f64();
    let last = history.epochs.last().expect("at least one epoch");
    if rank != 0 {
        return ExitCode::SUCCESS; // rank 0 writes the files and reports
    }
    if let Err(e) = checkpoint::save_weights(&output, &params) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    if export(&args, &params) != ExitCode::SUCCESS {
        return ExitCode::from(1);
    }
    println!(
        "test accuracy {:.2}% (loss {:.4}) after {} epochs, {:.1}s of training; weights saved to {}",
        100.0 * last.val_accuracy.unwrap_or(0.0),
        last.val_loss.unwrap_or(f64::NAN),
        history.epochs.len(),
        train_secs,
        output.display()
    );
    ExitCode::SUCCESS
}

/// Writes what --safetensors and --plot-filters ask for from `params`.
fn export(args: &Args, params: &gradus::ParamStore<f32>) -> ExitCode {
    if let Some(st) = &args.safetensors {
        match checkpoint::export_safetensors(st, params) {
            Ok(()) if !args.quiet => println!("safetensors written to {}", st.display()),
            Ok(()) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if let Some(png) = &args.plot_filters {
        match plot_filters(png, params) {
            Ok(n) if !args.quiet => println!("{n} first-layer filters drawn to {}", png.display()),
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

/// Draws the first convolution's filters (`1.weight`, `[out, 1, kh, kw]`) as a grid of
/// grey-scale tiles, each scaled to its own range (dark = negative, light = positive), the
/// way the first layer of a CNN is usually shown. Returns the number of filters.
fn plot_filters(path: &Path, params: &gradus::ParamStore<f32>) -> Result<usize, String> {
    let id = params
        .id("1.weight")
        .ok_or("the model has no first convolution (1.weight)")?;
    let w = params.get(id);
    let &[n, _, kh, kw] = w.shape() else {
        return Err(format!(
            "1.weight has shape {:?}, not a convolution's",
            w.shape()
        ));
    };
    let (cols, cell, gap) = (8usize, 24usize, 4usize);
    let rows = n.div_ceil(cols);
    let (width, height) = (cols * (cell + gap) + gap, rows * (cell + gap) + gap);
    let mut pixels = vec![255u8; width * height]; // white background
    for f in 0..n {
        let filter = w.index_axis(gradus::ndarray::Axis(0), f);
        let (lo, hi) = filter
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        let (x0, y0) = (
            (f % cols) * (cell + gap) + gap,
            (f / cols) * (cell + gap) + gap,
        );
        for y in 0..cell {
            for x in 0..cell {
                let v = filter[[0, y * kh / cell, x * kw / cell]];
                pixels[(y0 + y) * width + x0 + x] = if hi > lo {
                    ((v - lo) / (hi - lo) * 255.0) as u8
                } else {
                    128
                };
            }
        }
    }
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(|e| fail(&e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| fail(&e))?;
    writer.write_image_data(&pixels).map_err(|e| fail(&e))?;
    writer.finish().map_err(|e| fail(&e))?;
    Ok(n)
}

/// The default number of workers: a core each, shared among the MPI ranks on this machine
/// (every rank must end with the same number: `fit` refuses a job where they differ).
/// An MLP gets at most one per 16 samples of a batch (of the whole job's): on a 16-core Xeon (docs/distributed.md)
/// W1 (batch 64) ran fastest with 4 workers and slower with 8 and 16, whose shards of 8 and 4
/// samples leave too little work between the steps' synchronisations, and W2 (batch 256)
/// fastest with 16; the CNN computes enough per sample to gain up to a worker per 4 samples
/// (W3, batch 64: 16 workers 2.8x as fast as 4).
fn default_workers(args: &Args, cores: u64, (ranks, local_ranks): (u64, u64)) -> u64 {
    let per_rank = (cores / local_ranks).max(1);
    match args.model {
        Model::Mlp => per_rank.min((args.batch_size / 16 / ranks).max(1)),
        Model::Cnn => per_rank,
    }
}
