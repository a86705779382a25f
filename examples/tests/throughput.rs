//! The throughput runner's switches (benches/compare runs it): `WORKERS`, `BATCH` and
//! `SKIP_ACCURACY` each change what it runs and prints, with the step's phases timed; an
//! unknown workload is refused.
//! One step per epoch (`BATCH=60000`) keeps each run to a few seconds.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::field;

fn example() -> PathBuf {
    common::built("throughput", &[])
}

/// The JSON line of one run, as `field: value` text.
fn run(env: &[(&str, &str)]) -> String {
    common::stdout_of(
        Command::new(example())
            .arg("w1")
            .env("BATCH", "60000")
            .env("MATMUL_NUM_THREADS", "1")
            .env_remove("MNIST_DIR")
            .envs(env.iter().copied()),
    )
}

#[test]
fn workers_batch_and_skip_accuracy_change_the_run() {
    let full = run(&[]);
    assert_eq!(field(&full, "impl"), "gradus");
    let accuracy: f64 = field(&full, "test_accuracy").parse().unwrap();
    assert!((0.0..=1.0).contains(&accuracy), "{full}");
    let gemm = |line: &str| -> f64 { field(line, "gemm_allocations_per_step").parse().unwrap() };
    assert!(gemm(&full) > 0.0, "{full}");
    // Where a step's time went, in µs: one worker has no sum to make.
    let us = |line: &str, phase: &str| -> f64 { field(line, phase).parse().unwrap() };
    assert!(
        us(&full, "forward_backward") > 0.0 && us(&full, "update") > 0.0,
        "{full}"
    );
    assert_eq!(us(&full, "reduce"), 0.0, "{full}");

    let quick = run(&[("SKIP_ACCURACY", "1"), ("WORKERS", "2")]);
    assert_eq!(field(&quick, "impl"), "gradus-2workers");
    assert_eq!(field(&quick, "test_accuracy"), "null");
    // Each worker makes the same matrix products (each packing buffers once), so a step of
    // two workers makes twice one worker's GEMM allocations: counted over the four timed
    // epochs and divided by their four steps, not by one epoch's.
    assert_eq!(gemm(&quick), 2.0 * gemm(&full), "{full}{quick}");
    assert!(us(&quick, "reduce") > 0.0, "{quick}");
}

#[test]
fn an_unknown_workload_exits_2() {
    let out = Command::new(example()).arg("w9").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload `w9`"));
}
