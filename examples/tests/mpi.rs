//! The MNIST example over MPI (`--features mpi`, run under `mpirun -n 2`): two ranks of one
//! worker each give the same weights, bit for bit, as one process with two workers (an MLP
//! with dropout, and a CNN with BatchNorm), with either reduction, and four ranks those of
//! four workers; the accuracy of one worker; a failing rank ends
//! the job; an interrupted job resumes bit-identically (`mpi_resume`); the throughput runner
//! reports what the allreduce costs. Without `mpirun`
//! (MPICH: apt-get install mpich libmpich-dev) they skip, saying so.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

fn example() -> PathBuf {
    built("mnist")
}

/// Builds the example `name` with the `mpi` feature; its path.
fn built(name: &str) -> PathBuf {
    common::built(name, &["mpi"])
}

fn have_mpirun() -> bool {
    let found = Command::new("mpirun").arg("--version").output().is_ok();
    if !found {
        eprintln!("skipped: no mpirun (apt-get install mpich libmpich-dev)");
    }
    found
}

/// Runs `cmd`, requires it to fail, and returns its standard error.
fn failure(cmd: &mut Command) -> String {
    let output = cmd.output().unwrap();
    assert!(!output.status.success(), "{cmd:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn run(ranks: Option<usize>, args: &[&str], out: &Path) -> Output {
    run_with(ranks, args, out, &[])
}

/// `run` with environment variables set for every rank.
fn run_with(ranks: Option<usize>, args: &[&str], out: &Path, env: &[(&str, &str)]) -> Output {
    let bin = example();
    let out = out.to_str().unwrap();
    let mut cmd = match ranks {
        Some(n) => {
            let mut c = Command::new("mpirun");
            c.args(["-n", &n.to_string()]).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.args(args)
        .args(["--quiet", "--output", out])
        .envs(env.iter().copied());
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The test accuracy the example reports, in percent.
/// `mpirun -n 2` of the MNIST example: one quiet epoch of the first `limit` training
/// images, the weights to `out`.
fn two_ranks_quietly(limit: &str, out: &Path) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-n", "2"]).arg(example()).args([
        "--epochs",
        "1",
        "--train-limit",
        limit,
        "--quiet",
        "--output",
    ]);
    cmd.arg(out);
    cmd
}

fn accuracy(output: &Output) -> f64 {
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("test accuracy"))
        .unwrap_or_else(|| panic!("no accuracy line in {text}"));
    line.split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap()
}

#[test]
fn two_ranks_give_the_weights_of_two_workers_bit_for_bit() {
    if !have_mpirun() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in [
        (
            "mlp",
            &["--epochs", "1", "--train-limit", "6000", "--dropout", "0.2"][..],
        ),
        (
            "cnn",
            &["--model", "cnn", "--epochs", "1", "--train-limit", "600"][..],
        ),
    ] {
        let threads = dir.path().join(format!("{name}-threads.gradus"));
        let a = run(None, &[args, &["--workers", "2"]].concat(), &threads);
        // The default (a shared-memory window) and one MPI_Allreduce over the ranks.
        for reduction in ["shared", "allreduce"] {
            let ranks = dir.path().join(format!("{name}-ranks-{reduction}.gradus"));
            let b = run_with(
                Some(2),
                &[args, &["--workers", "1"]].concat(),
                &ranks,
                &[("GRADUS_MPI_REDUCE", reduction)],
            );
            assert_eq!(accuracy(&a), accuracy(&b), "{name}, {reduction}");
            assert!(
                std::fs::read(&threads).unwrap() == std::fs::read(&ranks).unwrap(),
                "{name}, {reduction}: the weights of 2 ranks differ from those of 2 workers"
            );
            // Only rank 0 reports.
            let text = String::from_utf8_lossy(&b.stdout);
            assert_eq!(text.matches("test accuracy").count(), 1, "{text}");
        }
    }
}

#[test]
fn four_ranks_give_the_weights_of_four_workers_bit_for_bit() {
    if !have_mpirun() {
        return;
    }
    // Summed in rank order in shared memory, four ranks add their gradients as four
    // workers of one process do, (((g0 + g1) + g2) + g3): the same weights, bit for bit.
    // (MPICH's MPI_Allreduce of four ranks sums (g0 + g1) + (g2 + g3), and its weights
    // differ in the last bits.)
    let dir = tempfile::tempdir().unwrap();
    let args = ["--epochs", "1", "--train-limit", "3000", "--dropout", "0.2"];
    let threads = dir.path().join("threads.gradus");
    let ranks = dir.path().join("ranks.gradus");
    run(None, &[&args[..], &["--workers", "4"]].concat(), &threads);
    run(Some(4), &[&args[..], &["--workers", "1"]].concat(), &ranks);
    assert!(
        std::fs::read(&threads).unwrap() == std::fs::read(&ranks).unwrap(),
        "the weights of 4 ranks differ from those of 4 workers"
    );
}

#[test]
fn ranks_on_two_machines_sum_across_them() {
    if !have_mpirun() {
        return;
    }
    // MPICH's MPIR_CVAR_NUM_CLIQUES=2 splits the ranks of this machine into two groups that
    // share no memory, as two machines would (odd and even ranks): each sums its ranks in
    // its shared window, and the groups' first ranks add the two sums with MPI_Allreduce.
    let cliques = [("MPIR_CVAR_NUM_CLIQUES", "2")];
    let dir = tempfile::tempdir().unwrap();
    let args = ["--epochs", "1", "--train-limit", "3000", "--dropout", "0.2"];
    // One rank per machine: g0 + g1, as two workers.
    let threads = dir.path().join("threads.gradus");
    let ranks = dir.path().join("ranks.gradus");
    let a = run(None, &[&args[..], &["--workers", "2"]].concat(), &threads);
    let b = run_with(
        Some(2),
        &[&args[..], &["--workers", "1"]].concat(),
        &ranks,
        &cliques,
    );
    assert_eq!(accuracy(&a), accuracy(&b));
    assert!(
        std::fs::read(&threads).unwrap() == std::fs::read(&ranks).unwrap(),
        "the weights of 2 ranks on 2 machines differ from those of 2 workers"
    );
    // Two ranks per machine: (g0 + g2) + (g1 + g3), the accuracy of four workers.
    let a = run(None, &[&args[..], &["--workers", "4"]].concat(), &threads);
    let b = run_with(
        Some(4),
        &[&args[..], &["--workers", "1"]].concat(),
        &ranks,
        &cliques,
    );
    let (one, four) = (accuracy(&a), accuracy(&b));
    assert!(
        (one - four).abs() <= 0.3,
        "4 workers {one}%, 4 ranks on 2 machines {four}%"
    );
}

#[test]
fn a_gradient_that_is_not_finite_ends_the_job_at_its_batch() {
    if !have_mpirun() {
        return;
    }
    // The loss is 0 and finite; the summed gradients are NaN, checked as they are copied out
    // of the reduction (a missed check would stop a batch later, at a NaN loss).
    for reduction in ["shared", "allreduce"] {
        let stderr = failure(
            Command::new("mpirun")
                .args(["-n", "2"])
                .arg(built("mpi_non_finite"))
                .env("GRADUS_MPI_REDUCE", reduction),
        );
        assert!(
            stderr.contains("epoch 1, batch 1") && stderr.contains("gradient of"),
            "{reduction}: {stderr}"
        );
    }
}

#[test]
fn an_unknown_reduction_ends_the_job_naming_the_variable() {
    if !have_mpirun() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.gradus");
    let stderr = failure(two_ranks_quietly("600", &out).env("GRADUS_MPI_REDUCE", "ring"));
    assert!(
        stderr.contains("GRADUS_MPI_REDUCE is `ring`: expected `shared` or `allreduce`"),
        "{stderr}"
    );
    assert!(!out.exists(), "no weights are written");
}

#[test]
fn two_ranks_reach_the_accuracy_of_one_worker() {
    if !have_mpirun() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = ["--epochs", "1", "--workers", "1"];
    let one = accuracy(&run(None, &args, &dir.path().join("one.gradus")));
    let two = accuracy(&run(Some(2), &args, &dir.path().join("two.gradus")));
    assert!((one - two).abs() <= 0.3, "1 worker {one}%, 2 ranks {two}%");
}

#[test]
fn an_error_on_a_rank_ends_the_whole_job() {
    if !have_mpirun() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.gradus");
    // A last batch of one sample cannot feed two ranks: every rank fails, and the job ends
    // (instead of one rank waiting for the others) with the reason and a failure status.
    let start = std::time::Instant::now();
    let stderr = failure(&mut two_ranks_quietly("6017", &out));
    assert!(
        stderr.contains("at least one sample per worker of the job"),
        "{stderr}"
    );
    assert!(!out.exists(), "no weights are written");
    assert!(start.elapsed().as_secs() < 120, "the job ended");
}

#[test]
fn ranks_configured_differently_are_refused_naming_the_field() {
    if !have_mpirun() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.gradus");
    // Two programs in one job (MPMD), one worker against two: the ranks would take shards of
    // a 2-worker and a 3-worker job and silently skip samples; the job ends before training.
    let bin = example();
    let rank = |workers: &'static str| {
        [
            "-n",
            "1",
            bin.to_str().unwrap(),
            "--workers",
            workers,
            "--epochs",
            "1",
            "--train-limit",
            "600",
            "--quiet",
            "--output",
            out.to_str().unwrap(),
        ]
        .map(str::to_string)
    };
    let stderr = failure(
        Command::new("mpirun")
            .args(rank("1"))
            .arg(":")
            .args(rank("2")),
    );
    assert!(
        stderr.contains("`workers` differs across the ranks (rank 0, 1, ...: [1, 2])"),
        "{stderr}"
    );
    assert!(!out.exists(), "no weights are written");
    // One rank summing in shared memory and the other with MPI_Allreduce would each wait
    // in a different call.
    let stderr = failure(
        Command::new("mpirun")
            .args(rank("1"))
            .arg(":")
            .args(["-env", "GRADUS_MPI_REDUCE", "allreduce"])
            .args(rank("1")),
    );
    assert!(
        stderr.contains(
            "`reduction (GRADUS_MPI_REDUCE)` differs across the ranks (rank 0, 1, ...: [0, 1])"
        ),
        "{stderr}"
    );
    assert!(!out.exists(), "no weights are written");
    // Models of different sizes would sum unrelated gradients.
    let stderr = failure(
        Command::new("mpirun")
            .args(rank("1"))
            .arg(":")
            .args(rank("1"))
            .args(["--hidden", "64"]),
    );
    assert!(
        stderr.contains("`parameters` differs across the ranks (rank 0, 1, ...: [235146, 50890])"),
        "{stderr}"
    );
}

#[test]
fn an_interrupted_job_resumes_bit_identically() {
    if !have_mpirun() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stdout = common::stdout_of(
        Command::new("mpirun")
            .args(["-n", "2"])
            .arg(built("mpi_resume"))
            .arg(dir.path()),
    );
    assert!(
        stdout.contains("2 ranks: resumed run bit-identical to the uninterrupted one: true"),
        "{stdout}"
    );
}

#[test]
fn the_throughput_runner_reports_what_the_allreduce_costs() {
    if !have_mpirun() {
        return;
    }
    // One step per epoch: the whole training set as one batch, half on each rank.
    let text = common::stdout_of(
        Command::new("mpirun")
            .args(["-n", "2"])
            .arg(built("throughput"))
            .arg("w1")
            .env("BATCH", "60000")
            .env("SKIP_ACCURACY", "1")
            .env("MATMUL_NUM_THREADS", "1")
            .env_remove("MNIST_DIR"),
    );
    // Rank 0 alone prints, one line.
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let field = |name: &str| -> f64 { common::field(lines[0], name).parse().unwrap() };
    assert!(lines[0].contains("\"impl\": \"gradus-mpi2\""), "{text}");
    // W1's parameters: 784 x 128 + 128 + 128 x 10 + 10.
    assert_eq!(field("allreduce_values"), 101_770.0);
    assert!(field("allreduce_ms_per_step") > 0.0, "{text}");
    assert!(field("copy_ms_per_step") > 0.0, "{text}");
    // The trainer's own timing puts the ranks' sum (and the wait for the other rank) in
    // the step's reduce phase, which one worker in one process leaves at 0.
    assert!(field("reduce") > 0.0, "{text}");
}
