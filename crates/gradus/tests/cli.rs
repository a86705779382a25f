//! The MNIST example's command line: every invalid value exits with status 2 and one clear
//! line, and an existing weights file is left untouched. (`cargo test` builds the examples.)

use std::path::PathBuf;
use std::process::Command;

fn example() -> PathBuf {
    // `cargo test` builds the examples; build again in case only this test was selected.
    let mut build = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    build.args(["build", "-q", "-p", "gradus-examples", "--example", "mnist"]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    assert!(build.status().unwrap().success(), "building the example");
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap(); // target/<profile>/deps -> target/<profile>
    dir.join("examples")
        .join(format!("mnist{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn invalid_values_exit_2_with_one_line_and_leave_weights_untouched() {
    let bin = example();
    assert!(bin.is_file(), "{} is built by cargo test", bin.display());
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.gradus");
    std::fs::write(&weights, b"previous good weights").unwrap();
    let unreadable = dir.path().join("empty-data");
    std::fs::create_dir(&unreadable).unwrap();
    let out = weights.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--lr", "-0.1"], "must be a finite number above 0"),
        (vec!["--lr", "nan"], "must be a finite number above 0"),
        (vec!["--batch-size", "0"], "--batch-size"),
        (vec!["--epochs", "0"], "--epochs"),
        (vec!["--hidden", "0"], "hidden sizes must be at least 1"),
        (vec!["--hidden", "64,abc"], "--hidden"),
        (vec!["--dropout", "1"], "must be in [0, 1)"),
        (
            vec!["--optimizer", "lbfgs"],
            "[possible values: sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw]",
        ),
        (vec!["--no-such-flag"], "--no-such-flag"),
        (
            vec!["--data-dir", "/nonexistent/mnist"],
            "not found. Looked in /nonexistent/mnist",
        ),
        (
            vec!["--data-dir", "/nonexistent/mnist"],
            "Pass --data-dir or set MNIST_DIR.",
        ),
        (
            vec!["--data-dir", unreadable.to_str().unwrap()],
            "not found",
        ),
        (
            vec!["--output", "/nonexistent/dir/w.gradus"],
            "cannot write the output",
        ),
        (
            vec!["--eval", "/nonexistent/w.gradus"],
            "/nonexistent/w.gradus",
        ),
        (vec!["--eval", out], "not a gradus weights file"),
        // Flags only training reads are refused with --eval, not ignored.
        (
            vec!["--eval", out, "--epochs", "3"],
            "'--eval <EVAL>' cannot be used with '--epochs <EPOCHS>'",
        ),
        (
            vec!["--eval", out, "--output", "other.gradus"],
            "cannot be used with '--output <OUTPUT>'",
        ),
        (vec!["--eval", out, "--workers", "2"], "cannot be used with"),
        // An export must not overwrite the weights it exports.
        (
            vec!["--eval", out, "--safetensors", out],
            "the weights --eval reads: it would overwrite them",
        ),
    ];
    for (args, expected) in cases {
        let mut cmd = Command::new(&bin);
        cmd.args(&args).arg("--quiet").env_remove("MNIST_DIR");
        if !args.contains(&"--output") && !args.contains(&"--eval") {
            cmd.args(["--output", out]);
        }
        let result = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {stderr}"
        );
        assert_eq!(
            std::fs::read(&weights).unwrap(),
            b"previous good weights",
            "{args:?}"
        );
    }
}

#[test]
fn every_optimizer_with_every_schedule_trains_a_few_batches() {
    let bin = example();
    let dir = tempfile::tempdir().unwrap();
    let optimizers = [
        "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw",
    ];
    for optimizer in optimizers {
        for schedule in ["constant", "cosine", "onecycle"] {
            let out = dir.path().join(format!("{optimizer}-{schedule}.gradus"));
            // 256 images in batches of 64: four steps, then the test set is evaluated.
            let result = Command::new(&bin)
                .args(["--optimizer", optimizer, "--schedule", schedule])
                .args(["--epochs", "1", "--train-limit", "256", "--hidden", "32"])
                .arg("--quiet")
                .arg("--output")
                .arg(&out)
                .env_remove("MNIST_DIR")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&result.stdout);
            let stderr = String::from_utf8_lossy(&result.stderr);
            assert!(
                result.status.success(),
                "{optimizer} x {schedule}: {stdout}{stderr}"
            );
            assert!(
                stdout.contains("test accuracy"),
                "{optimizer} x {schedule}: {stdout}"
            );
            assert!(out.is_file(), "{optimizer} x {schedule} saved its weights");
        }
    }
}

#[test]
fn an_epoch_count_whose_steps_overflow_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let result = Command::new(example())
        .args(["--epochs", "20000000000000000", "--quiet", "--output"])
        .arg(dir.path().join("w.gradus"))
        .env_remove("MNIST_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--epochs 20000000000000000 is too many"),
        "{stderr}"
    );
}

#[test]
fn the_cnn_trains_draws_its_filters_and_reloads_with_its_buffers() {
    // `--hidden 32`: the linear layers after the convolutions (128 by default).
    let bin = example();
    let dir = tempfile::tempdir().unwrap();
    let (out, png, st) = (
        dir.path().join("cnn.gradus"),
        dir.path().join("filters.png"),
        dir.path().join("cnn.safetensors"),
    );
    let train = Command::new(&bin)
        .args([
            "--model",
            "cnn",
            "--epochs",
            "1",
            "--train-limit",
            "256",
            "--hidden",
            "32",
            "--quiet",
        ])
        .arg("--output")
        .arg(&out)
        .arg("--plot-filters")
        .arg(&png)
        .arg("--safetensors")
        .arg(&st)
        .env_remove("MNIST_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&train.stdout);
    assert!(
        train.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&train.stderr)
    );
    let accuracy = |text: &str| {
        text.split("accuracy ")
            .nth(1)
            .and_then(|rest| rest.split('%').next())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let trained = accuracy(&stdout);
    assert!(!trained.is_empty(), "{stdout}");
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    assert!(st.is_file());
    // Evaluating exports the loaded weights too: the same safetensors, the same picture.
    let (png2, st2) = (dir.path().join("again.png"), dir.path().join("again.st"));
    let eval = Command::new(&bin)
        .args(["--model", "cnn", "--hidden", "32", "--eval"])
        .arg(&out)
        .arg("--plot-filters")
        .arg(&png2)
        .arg("--safetensors")
        .arg(&st2)
        .env_remove("MNIST_DIR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(eval.status.success(), "{text}");
    // The running statistics came back with the weights: the same accuracy.
    assert_eq!(accuracy(&text), trained, "{text}");
    assert_eq!(std::fs::read(&st2).unwrap(), std::fs::read(&st).unwrap());
    assert_eq!(std::fs::read(&png2).unwrap(), std::fs::read(&png).unwrap());
    // The default head (128) is another model: its weights do not load, naming the layer.
    let other = Command::new(&bin)
        .args(["--model", "cnn", "--quiet", "--eval"])
        .arg(&out)
        .env_remove("MNIST_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("shape of 10.weight: expected [128, 3136], found [32, 3136]"),
        "{stderr}"
    );

    let refused = Command::new(&bin)
        .args(["--plot-filters"])
        .arg(&png)
        .args(["--quiet"])
        .env_remove("MNIST_DIR")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("add --model cnn"));
}

#[test]
fn outputs_that_cannot_work_are_refused_before_training() {
    let bin = example();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.gradus");
    let slash = format!("{}/new/", dir.path().display());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--output".into(), slash], "is a directory"),
        (
            vec![
                "--output".into(),
                out.display().to_string(),
                "--safetensors".into(),
                out.display().to_string(),
            ],
            "--output and --safetensors name the same file",
        ),
        (
            vec!["--hidden".into(), "100000000".into()],
            "the model would have 79500000010 parameters",
        ),
        (
            vec!["--output".into(), "/dev/null".into()],
            "is not a regular file",
        ),
    ];
    for (args, expected) in cases {
        let result = Command::new(&bin)
            .args(&args)
            .arg("--quiet")
            .env_remove("MNIST_DIR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
    assert!(!out.exists());
}

#[test]
fn two_workers_train_to_the_same_accuracy_as_one() {
    let bin = example();
    let dir = tempfile::tempdir().unwrap();
    let run = |workers: &str| {
        let out = Command::new(&bin)
            .args(["--epochs", "1", "--train-limit", "2048", "--hidden", "64"])
            .args(["--workers", workers, "--quiet", "--output"])
            .arg(dir.path().join(format!("w{workers}.gradus")))
            .env_remove("MNIST_DIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let acc: f64 = text
            .split("accuracy ")
            .nth(1)
            .and_then(|r| r.split('%').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        acc
    };
    let (one, two) = (run("1"), run("2"));
    assert!(
        (one - two).abs() <= 0.3,
        "1 worker {one}%, 2 workers {two}%"
    );
    // By default an MLP gets at most a worker per 16 samples of a batch, whatever the cores.
    let small_batch = Command::new(&bin)
        .args(["--epochs", "1", "--train-limit", "64", "--hidden", "16"])
        .args(["--batch-size", "8", "--output"])
        .arg(dir.path().join("small-batch.gradus"))
        .env_remove("MNIST_DIR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&small_batch.stdout);
    assert!(small_batch.status.success(), "{text}");
    assert!(
        text.contains("batch 8 = mini-batch gradient descent, 1 worker(s)"),
        "{text}"
    );
    let bad = Command::new(&bin)
        .args(["--workers", "0", "--quiet"])
        .env_remove("MNIST_DIR")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_huge_image_in_a_tiny_file_is_a_usage_error_not_an_abort() {
    use std::io::Write;
    // One 5000x5000 image: 25 MB of zeros in about 25 KB of gzip.
    let dir = tempfile::tempdir().unwrap();
    let idx = |dims: &[u32], payload: usize| {
        let mut raw = vec![0u8, 0, 8, dims.len() as u8];
        for d in dims {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw.resize(raw.len() + payload, 0);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&raw).unwrap();
        gz.finish().unwrap()
    };
    for prefix in ["train", "t10k"] {
        std::fs::write(
            dir.path().join(format!("{prefix}-images-idx3-ubyte.gz")),
            idx(&[1, 5000, 5000], 25_000_000),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(format!("{prefix}-labels-idx1-ubyte.gz")),
            idx(&[1], 1),
        )
        .unwrap();
    }
    let out = dir.path().join("w.gradus");
    let result = Command::new(example())
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--output")
        .arg(&out)
        .arg("--quiet")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("images of 5000x5000 pixels"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}
