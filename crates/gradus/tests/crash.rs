//! Crash safety: child processes saving checkpoints, or training with checkpoints, are
//! killed with SIGKILL at random moments. The file on disk must always load and hold the
//! previous or the new complete state, temporaries must not pile up, and a killed training
//! run resumed from its checkpoint must end with the weights of an uninterrupted run.
//!
//! The children are the `#[ignore]`d tests below, run by re-executing this test binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gradus::ndarray::{Array2, ArrayD};
use gradus::optim::{Adam, Schedule};
use gradus::{
    BatchSize, CheckpointConfig, CheckpointWhen, Dataset, ParamStore, Progress, Sequential,
    Trainer, TrainerConfig, checkpoint,
};

const DIR_VAR: &str = "GRADUS_CRASH_TEST_DIR";

fn spawn_child(test: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", test, "--test-threads", "1"])
        .env(DIR_VAR, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A deterministic sequence of delays (an LCG), so failures can be replayed.
fn delays(seed: u64) -> impl Iterator<Item = Duration> {
    let mut s = seed;
    std::iter::from_fn(move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Some(Duration::from_millis(5 + (s >> 33) % 150))
    })
}

fn temporaries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-")
        })
        .count()
}

fn big_params(value: f32) -> ParamStore<f32> {
    let mut p = ParamStore::new();
    p.insert("0.weight", ArrayD::from_elem(vec![600, 500], value))
        .unwrap();
    p.insert("0.bias", ArrayD::from_elem(vec![600], value))
        .unwrap();
    p
}

/// Child: continue the counter from whatever is on disk, saving 1.2 MB files forever.
#[test]
#[ignore = "child process of saves_killed_at_random_moments_leave_a_complete_file"]
fn child_saves_in_a_loop() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let path = PathBuf::from(dir).join("w.gradus");
    let mut k = checkpoint::read_weights::<f32>(&path)
        .map(|w| w["0.bias"][0])
        .unwrap_or(0.0);
    loop {
        k += 1.0;
        checkpoint::save_weights(&path, &big_params(k)).unwrap();
    }
}

#[test]
fn saves_killed_at_random_moments_leave_a_complete_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.gradus");
    let mut last = 0.0f32;
    let (mut kills, mut mid_save) = (0, 0);
    for delay in delays(1).take(40) {
        let mut child = spawn_child("child_saves_in_a_loop", dir.path());
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        if !path.exists() {
            continue; // killed before its first save
        }
        let w = checkpoint::read_weights::<f32>(&path).expect("the file on disk always loads");
        let k = w["0.bias"][0];
        assert!(
            w.values().all(|a| a.iter().all(|&v| v == k)),
            "a file mixes two saves"
        );
        assert!(k >= last, "the file went back from {last} to {k}");
        last = k;
        let temps = temporaries(dir.path());
        assert!(temps <= 1, "temporary files pile up");
        mid_save += temps;
    }
    eprintln!(
        "{kills} kills, {mid_save} of them mid-save (a temporary file was left), last save {last}"
    );
    assert_eq!(kills, 40);
    assert!(mid_save > 0, "some kill lands inside a save");
    assert!(last > 0.0, "the children saved something");
    checkpoint::save_weights(&path, &big_params(0.5)).unwrap();
    assert_eq!(temporaries(dir.path()), 0, "the next save cleans up");
}

fn training_data() -> Dataset<f32> {
    let x = Array2::from_shape_fn((3000, 8), |(i, j)| {
        (((i * 31 + j * 17) % 97) as f32 / 48.0 - 1.0) * if j % 2 == 0 { 1.0 } else { -0.5 }
    });
    let labels = x
        .rows()
        .into_iter()
        .map(|r| ((r[0] + r[1] - r[2] * r[3]).abs() * 2.0) as usize % 3)
        .collect();
    Dataset::classification(x.into_dyn(), labels).unwrap()
}

fn training_config(dir: &Path) -> TrainerConfig {
    TrainerConfig {
        epochs: 12,
        batch_size: BatchSize::Mini(32),
        seed: 3,
        schedule: Schedule::CosineAnnealing {
            t_max: 12 * 94,
            eta_min: 0.0,
        },
        progress: Progress::Quiet,
        checkpoint: Some(CheckpointConfig {
            path: dir.join("run.ckpt"),
            when: CheckpointWhen::EveryEpoch,
        }),
        ..Default::default()
    }
}

fn training_model() -> (Sequential<f32>, ParamStore<f32>) {
    Sequential::<f32>::new()
        .linear(8, 256)
        .relu()
        .dropout(0.1)
        .linear(256, 3)
        .build(5)
        .unwrap()
}

/// Child: train, resuming from the checkpoint if there is one, and save the final weights.
#[test]
#[ignore = "child process of a_killed_training_run_resumes_to_the_uninterrupted_result"]
fn child_trains_with_checkpoints() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let (model, mut params) = training_model();
    let mut trainer = Trainer::new(training_config(&dir), Adam::new(3e-3));
    if dir.join("run.ckpt").exists() {
        trainer.resume(dir.join("run.ckpt"), &mut params).unwrap();
    }
    trainer
        .fit(&model, &mut params, &training_data(), None)
        .unwrap();
    checkpoint::save_weights(dir.join("final.gradus"), &params).unwrap();
}

#[test]
fn a_killed_training_run_resumes_to_the_uninterrupted_result() {
    let reference_dir = tempfile::tempdir().unwrap();
    let (model, mut reference) = training_model();
    let started = std::time::Instant::now();
    Trainer::new(training_config(reference_dir.path()), Adam::new(3e-3))
        .fit(&model, &mut reference, &training_data(), None)
        .unwrap();
    let full_run = started.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let mut epochs_at_kill = Vec::new();
    let mut done = 0;
    for fraction in [0.3, 0.5, 0.4, 0.6] {
        // Aim inside what is left of the run (children start from the last checkpoint).
        let left = full_run.mul_f64(1.0 - done as f64 / 12.0);
        let mut child = spawn_child("child_trains_with_checkpoints", dir.path());
        std::thread::sleep(Duration::from_millis(20) + left.mul_f64(fraction));
        child.kill().unwrap();
        child.wait().unwrap();
        let mut probe = Trainer::new(training_config(dir.path()), Adam::new(3e-3));
        let (_, mut p) = training_model();
        match probe.resume(dir.path().join("run.ckpt"), &mut p) {
            Ok(()) => {
                done = probe.epochs_done();
                epochs_at_kill.push(done);
            }
            Err(e) => assert!(
                !dir.path().join("run.ckpt").exists(),
                "checkpoint on disk does not load: {e}"
            ),
        }
    }
    eprintln!("epochs done at each kill: {epochs_at_kill:?}");
    assert!(
        epochs_at_kill.iter().any(|&e| e > 0 && e < 12),
        "at least one kill lands mid-run: {epochs_at_kill:?}"
    );
    let status = spawn_child("child_trains_with_checkpoints", dir.path())
        .wait()
        .unwrap();
    assert!(status.success());
    let final_weights = checkpoint::read_weights::<f32>(dir.path().join("final.gradus")).unwrap();
    assert_eq!(
        final_weights,
        reference.export(),
        "bit-identical to the uninterrupted run"
    );
}
