//! See gradient descent at work: every variant races on MNIST from the same start, and
//! draws its path on two 2-D test functions. Writes PNG and SVG charts.
//!
//! ```text
//! cargo run --example optimizers                        # the full race, a few minutes
//! cargo run --example optimizers -- --quick             # a short run (what CI does)
//! cargo run --example optimizers -- --optimizers sgd,momentum,adam --out-dir /tmp/race
//! ```
//!
//! The learning rates are in `contenders.rs` (MNIST) and `surfaces.rs` (2-D functions);
//! docs/gradient-descent.md explains each rule and shows the charts.

mod charts;
mod contenders;
mod race;
mod surfaces;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use gradus::data::mnist::Mnist;
use gradus::layers::Sequential;

use charts::Series;
use contenders::Kind;
use surfaces::Surface;

#[derive(Parser, Debug)]
#[command(
    about = "Race every gradient-descent variant on MNIST and draw their paths on 2-D functions"
)]
struct Args {
    /// Where the charts go.
    #[arg(long, default_value = "optimizer-charts")]
    out_dir: PathBuf,
    /// Which optimizers, comma-separated (default: all nine).
    #[arg(long, value_delimiter = ',', value_parser = Kind::parse)]
    optimizers: Option<Vec<Kind>>,
    /// Steps on the 2-D functions (default: 150 on the quadratic, 4000 on Rosenbrock).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    steps: Option<u64>,
    /// Training samples used from MNIST (a subset keeps the race to a few minutes).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    train_samples: u64,
    /// Passes over those samples: every optimizer sees the same number of samples.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    epochs: u64,
    /// The loss whose first crossing the table reports.
    #[arg(long, default_value_t = 0.5)]
    target_loss: f64,
    /// Seed for the initial weights and the sample order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory with the MNIST files.
    #[arg(long, env = "MNIST_DIR")]
    data_dir: Option<PathBuf>,
    /// A short run: 2,000 samples, one epoch, fewer 2-D steps.
    #[arg(long)]
    quick: bool,
    /// Skip the MNIST race (only the 2-D functions).
    #[arg(long)]
    no_race: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let kinds = args
        .optimizers
        .clone()
        .unwrap_or_else(|| contenders::ALL.to_vec());
    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.out_dir.display()))?;
    let mut written = Vec::new();

    if !args.no_race {
        let (samples, epochs) = if args.quick {
            (2000, 1)
        } else {
            (args.train_samples as usize, args.epochs as usize)
        };
        let dir = args.data_dir.clone().unwrap_or_else(Mnist::default_dir);
        let mnist = Mnist::load(&dir).map_err(|e| e.to_string())?;
        let train = mnist.train.take(samples);
        let (model, init) = Sequential::<f32>::new()
            .linear(784, 64)
            .relu()
            .linear(64, 10)
            .build(args.seed)
            .map_err(|e| e.to_string())?;
        println!(
            "MNIST race: 784-64-10 MLP, same initial weights (seed {}), {} training samples x {} epochs, {} test samples",
            args.seed,
            train.len(),
            epochs,
            mnist.test.len()
        );
        let setup = race::Race {
            model: &model,
            init: &init,
            train: &train,
            test: &mnist.test,
            epochs,
            log_every: (train.len() / 20).max(1),
            seed: args.seed,
        };
        let mut results = Vec::new();
        for &kind in &kinds {
            let r = race::run(kind, &setup);
            println!(
                "  {:<13} done in {:.1}s",
                kind.name(),
                r.total_time.as_secs_f64()
            );
            results.push(r);
        }
        println!();
        println!(
            "| optimizer | batch | lr | final train loss | test accuracy | samples to loss {t} | training time to loss {t} | training time | wall time with evaluations |",
            t = args.target_loss
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for r in &results {
            let (samples, time) = match r.reached(args.target_loss) {
                Some((s, t)) => (s.to_string(), format!("{:.2}s", t.as_secs_f64())),
                None => ("not reached".into(), "-".into()),
            };
            println!(
                "| {} | {} | {} | {:.4} | {:.2}% | {} | {} | {:.2}s | {:.2}s |",
                r.kind.name(),
                r.batch,
                r.lr,
                r.final_loss(),
                100.0 * r.test_accuracy,
                samples,
                time,
                r.curve.last().map_or(0.0, |c| c.1.as_secs_f64()),
                r.total_time.as_secs_f64()
            );
        }
        let by_samples: Vec<Series> = results
            .iter()
            .map(|r| Series {
                name: r.kind.name().into(),
                points: r.curve.iter().map(|c| (c.0 as f64, c.2)).collect(),
            })
            .collect();
        let by_time: Vec<Series> = results
            .iter()
            .map(|r| Series {
                name: r.kind.name().into(),
                points: r.curve.iter().map(|c| (c.1.as_secs_f64(), c.2)).collect(),
            })
            .collect();
        written.extend(charts::line_chart(
            &args.out_dir.join("loss_vs_samples"),
            "MNIST training loss against samples seen",
            "samples seen",
            "training loss (log scale)",
            &by_samples,
        )?);
        written.extend(charts::line_chart(
            &args.out_dir.join("loss_vs_time"),
            "MNIST training loss against training time",
            "seconds of training",
            "training loss (log scale)",
            &by_time,
        )?);
    }

    // On a deterministic function batch, stochastic and mini-batch GD are one update: draw it once.
    let surface_kinds: Vec<Kind> = kinds
        .iter()
        .copied()
        .filter(|k| {
            !matches!(k, Kind::StochasticGd | Kind::MiniBatchGd) || !kinds.contains(&Kind::BatchGd)
        })
        .collect();
    println!();
    for surface in [Surface::Quadratic, Surface::Rosenbrock] {
        let steps = args.steps.map(|s| s as usize).unwrap_or_else(|| {
            if args.quick {
                surface.default_steps() / 2
            } else {
                surface.default_steps()
            }
        });
        let started = Instant::now();
        let mut paths = Vec::new();
        println!(
            "{} ({steps} steps): distance from the minimum at the end",
            surface.name()
        );
        for &kind in &surface_kinds {
            let path = surfaces::trajectory(surface, kind, steps);
            let end = *path.last().expect("the start at least");
            let name = if kind == Kind::BatchGd {
                "gd".to_string()
            } else {
                kind.name().to_string()
            };
            println!(
                "  {:<10} lr {:<8} {:.2e}",
                name,
                surface.lr(kind),
                surfaces::distance_to_minimum(surface, end)
            );
            paths.push(Series {
                name: format!("{name} (lr {})", surface.lr(kind)),
                points: path.iter().map(|p| (p[0], p[1])).collect(),
            });
        }
        written.extend(charts::trajectories(
            &args.out_dir.join(surface.name()),
            surface,
            &paths,
        )?);
        println!("  ({:.1}s)", started.elapsed().as_secs_f64());
    }
    println!();
    println!("charts written to {}:", args.out_dir.display());
    for p in written {
        println!("  {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_optimizer_ends_near_the_minimum_of_both_surfaces() {
        for surface in [Surface::Quadratic, Surface::Rosenbrock] {
            for kind in contenders::ALL {
                let budget = surface.default_steps() * 4;
                let path = surfaces::trajectory(surface, kind, budget);
                let start = surfaces::distance_to_minimum(surface, path[0]);
                let end = surfaces::distance_to_minimum(surface, *path.last().unwrap());
                assert!(
                    end < 0.05,
                    "{} on {}: {start} -> {end} after {budget} steps",
                    kind.name(),
                    surface.name()
                );
            }
        }
    }

    #[test]
    fn the_known_behaviours_show_in_the_paths() {
        let q = Surface::Quadratic;
        // Plain GD zig-zags across the narrow direction: y changes sign at every step.
        let gd = surfaces::trajectory(q, Kind::BatchGd, 20);
        assert!(
            gd.windows(2).all(|w| w[0][1] * w[1][1] < 0.0),
            "GD zig-zags in y"
        );
        // Momentum overshoots the minimum along x, then settles.
        let m = surfaces::trajectory(q, Kind::Momentum, 150);
        assert!(
            m.iter().any(|p| p[0] > 0.5),
            "momentum overshoots past x = 0"
        );
        assert!(surfaces::distance_to_minimum(q, *m.last().unwrap()) < 0.1);
        // Adagrad's steps shrink: the late steps are much shorter than the early ones.
        let a = surfaces::trajectory(Surface::Rosenbrock, Kind::Adagrad, 400);
        let step =
            |i: usize| ((a[i + 1][0] - a[i][0]).powi(2) + (a[i + 1][1] - a[i][1]).powi(2)).sqrt();
        assert!(
            step(300) < 0.2 * step(0),
            "adagrad: {} vs {}",
            step(300),
            step(0)
        );
        // Adam's early steps are all close to the learning rate per coordinate.
        let adam = surfaces::trajectory(q, Kind::Adam, 10);
        for w in adam.windows(2) {
            let dx = (w[1][0] - w[0][0]).abs();
            assert!((dx - 0.3).abs() < 0.05, "adam x-step {dx}");
        }
    }

    #[test]
    fn charts_are_written_as_valid_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let series = vec![
            Series {
                name: "a".into(),
                points: vec![(0.0, 2.0), (1.0, 1.0), (2.0, 0.5)],
            },
            Series {
                name: "b".into(),
                points: vec![(0.0, 2.0), (2.0, 0.1)],
            },
        ];
        let mut files =
            charts::line_chart(&dir.path().join("loss"), "t", "x", "y", &series).unwrap();
        let path = surfaces::trajectory(Surface::Quadratic, Kind::Adam, 30);
        let paths = vec![Series {
            name: "adam".into(),
            points: path.iter().map(|p| (p[0], p[1])).collect(),
        }];
        files.extend(
            charts::trajectories(&dir.path().join("quadratic"), Surface::Quadratic, &paths)
                .unwrap(),
        );
        assert_eq!(files.len(), 4);
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                bytes.len() > 1000,
                "{} is {} bytes",
                f.display(),
                bytes.len()
            );
            match f.extension().unwrap().to_str().unwrap() {
                "png" => assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", f.display()),
                _ => {
                    let text = String::from_utf8(bytes).unwrap();
                    assert!(
                        text.contains("<svg") && text.trim_end().ends_with("</svg>"),
                        "{}",
                        f.display()
                    );
                }
            }
        }
    }
}
