//! Weight files: round trips, damaged files, mismatched models, atomic replacement,
//! safetensors.

use gradus::checkpoint::{self, CheckpointError, FORMAT_VERSION};
use gradus::ndarray::ArrayD;
use gradus::optim::Sgd;
use gradus::{Module, ParamStore, Sequential, Trainer, TrainerConfig};

fn mlp(seed: u64) -> (Sequential<f32>, gradus::ParamStore<f32>) {
    Sequential::<f32>::new()
        .linear(6, 5)
        .relu()
        .linear(5, 3)
        .build(seed)
        .unwrap()
}

fn inputs() -> ArrayD<f32> {
    ArrayD::from_shape_fn(vec![4, 6], |ix| (ix[0] * 6 + ix[1]) as f32 / 10.0 - 1.0)
}

#[test]
fn save_and_load_give_identical_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.gradus");
    let (model, params) = mlp(1);
    checkpoint::save_weights(&path, &params).unwrap();
    let (_, mut loaded) = mlp(2);
    assert_ne!(
        model.predict(&loaded, inputs()),
        model.predict(&params, inputs())
    );
    checkpoint::load_weights(&path, &mut loaded).unwrap();
    assert_eq!(
        model.predict(&loaded, inputs()),
        model.predict(&params, inputs())
    );
    // f64 models too.
    let (m64, p64) = Sequential::<f64>::new().linear(2, 2).build(3).unwrap();
    checkpoint::save_weights(&path, &p64).unwrap();
    let (_, mut q64) = Sequential::<f64>::new().linear(2, 2).build(4).unwrap();
    checkpoint::load_weights(&path, &mut q64).unwrap();
    let x = ArrayD::<f64>::ones(vec![1, 2]);
    assert_eq!(m64.predict(&q64, x.clone()), m64.predict(&p64, x));
}

#[test]
fn damaged_files_give_the_right_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.gradus");
    let (_, params) = mlp(1);
    checkpoint::save_weights(&path, &params).unwrap();
    let good = std::fs::read(&path).unwrap();
    let load = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        let (_, mut p) = mlp(2);
        let before = p.export();
        let result = checkpoint::load_weights(&path, &mut p);
        if result.is_err() {
            assert_eq!(p.export(), before, "a failed load changes nothing");
        }
        result
    };
    // Truncated anywhere: damaged, never a panic.
    for cut in [0, 5, 12, 20, 40, good.len() / 2, good.len() - 1] {
        let err = load(&good[..cut]).unwrap_err();
        assert!(
            matches!(
                err,
                CheckpointError::Damaged { .. } | CheckpointError::NotGradus { .. }
            ),
            "cut {cut}: {err}"
        );
    }
    // A flipped byte in the payload: checksum mismatch.
    let mut flipped = good.clone();
    let i = good.len() - 100;
    flipped[i] ^= 0x40;
    let err = load(&flipped).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    // Not a gradus file.
    let err = load(b"PK\x03\x04 something else entirely......................").unwrap_err();
    assert!(matches!(err, CheckpointError::NotGradus { .. }), "{err}");
    // A newer format version (with a checksum that holds) is refused clearly.
    let mut newer = good.clone();
    newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let body = newer.len() - 32;
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&newer[..body]);
    newer[body..].copy_from_slice(&digest);
    let err = load(&newer).unwrap_err();
    assert!(
        matches!(err, CheckpointError::NewerVersion { found, .. } if found == FORMAT_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade gradus"), "{err}");
    // A bit flipped in the version field is damage: the checksum says so, first.
    let mut flipped = good.clone();
    flipped[10] ^= 0x01;
    let err = load(&flipped).unwrap_err();
    assert!(matches!(err, CheckpointError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    // The intact file still loads.
    load(&good).unwrap();
}

#[test]
fn another_architecture_gets_every_difference_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.gradus");
    let (_, params) = mlp(1);
    checkpoint::save_weights(&path, &params).unwrap();
    let (_, mut other) = Sequential::<f32>::new()
        .linear(6, 4)
        .relu()
        .linear(4, 3)
        .relu()
        .linear(3, 3)
        .build(0)
        .unwrap();
    match checkpoint::load_weights(&path, &mut other).unwrap_err() {
        CheckpointError::Mismatch { diff, .. } => {
            assert_eq!(
                diff.missing,
                vec!["4.weight".to_string(), "4.bias".to_string()]
            );
            assert_eq!(diff.mismatched.len(), 3, "{diff}");
            assert!(diff.unexpected.is_empty());
        }
        other => panic!("expected Mismatch, got {other}"),
    }
    // Weights cross element types (as PyTorch's load_state_dict): f32 into an f64 model
    // exactly, and back rounded to nearest.
    let (_, mut p64) = Sequential::<f64>::new()
        .linear(6, 5)
        .relu()
        .linear(5, 3)
        .build(0)
        .unwrap();
    checkpoint::load_weights(&path, &mut p64).unwrap();
    let saved = checkpoint::read_weights::<f32>(&path).unwrap();
    for (name, a) in &saved {
        let b = p64.get(p64.id(name).unwrap());
        assert!(
            a.iter().zip(b.iter()).all(|(&x, &y)| x as f64 == y),
            "{name}"
        );
    }
    let path64 = path.with_extension("f64");
    let shifted = p64
        .export()
        .into_iter()
        .map(|(n, a)| (n, a.mapv(|v| v + 1e-12)));
    let mut p64b = ParamStore::<f64>::new();
    for (n, a) in shifted {
        p64b.insert(&n, a).unwrap();
    }
    checkpoint::save_weights(&path64, &p64b).unwrap();
    let back = checkpoint::read_weights::<f32>(&path64).unwrap();
    for (name, a) in &back {
        let b = p64b.get(p64b.id(name).unwrap());
        assert!(
            a.iter().zip(b.iter()).all(|(&x, &y)| x == y as f32),
            "{name}"
        );
    }
}

#[test]
fn a_training_checkpoint_resumes_only_in_its_own_element_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ckpt");
    let (_, p32) = Sequential::<f32>::new().linear(2, 2).build(0).unwrap();
    let trainer = Trainer::new(TrainerConfig::default(), Sgd::new(0.1).momentum(0.9));
    trainer.save_checkpoint(&path, &p32).unwrap();
    let (_, mut p64) = Sequential::<f64>::new().linear(2, 2).build(0).unwrap();
    let mut t64 = Trainer::new(TrainerConfig::default(), Sgd::<f64>::new(0.1).momentum(0.9));
    let err = t64.resume(&path, &mut p64).unwrap_err();
    assert!(
        err.to_string()
            .contains("element type is f32, the model uses f64"),
        "{err}"
    );
    // Its weights alone do load.
    checkpoint::load_weights(&path, &mut p64).unwrap();
}

#[test]
fn saving_replaces_the_old_file_atomically_and_leaves_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.gradus");
    let (_, a) = mlp(1);
    let (_, b) = mlp(2);
    checkpoint::save_weights(&path, &a).unwrap();
    checkpoint::save_weights(&path, &b).unwrap();
    assert_eq!(checkpoint::read_weights::<f32>(&path).unwrap(), b.export());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("w.gradus")]);
    // A save into a missing directory fails and names the path.
    let err = checkpoint::save_weights(dir.path().join("no/such/dir/w.gradus"), &a).unwrap_err();
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}

#[test]
fn safetensors_round_trip_keeps_names_shapes_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let (model, params) = mlp(1);
    checkpoint::export_safetensors(&path, &params).unwrap();
    let tensors = checkpoint::read_safetensors::<f32>(&path).unwrap();
    assert_eq!(
        tensors.keys().collect::<Vec<_>>(),
        vec!["0.bias", "0.weight", "2.bias", "2.weight"]
    );
    assert_eq!(
        tensors["0.weight"].shape(),
        &[5, 6],
        "PyTorch's [out, in] layout"
    );
    let (_, mut loaded) = mlp(2);
    checkpoint::import_safetensors(&path, &mut loaded).unwrap();
    assert_eq!(
        model.predict(&loaded, inputs()),
        model.predict(&params, inputs())
    );
    std::fs::write(&path, b"garbage").unwrap();
    assert!(matches!(
        checkpoint::import_safetensors(&path, &mut loaded).unwrap_err(),
        CheckpointError::Safetensors { .. }
    ));
}

#[test]
fn the_same_weights_export_to_the_same_safetensors_bytes() {
    // Each export builds its metadata afresh (a new hash seed each time): with more than one
    // metadata entry their order, and so the file, varied between exports.
    let dir = tempfile::tempdir().unwrap();
    let (_, params) = mlp(1);
    let export = |i: usize| {
        let path = dir.path().join(format!("w{i}.safetensors"));
        checkpoint::export_safetensors(&path, &params).unwrap();
        std::fs::read(path).unwrap()
    };
    let first = export(0);
    for i in 1..20 {
        assert_eq!(export(i), first, "export {i} differs from the first");
    }
}

#[test]
fn special_files_are_refused_by_type_before_any_read() {
    let (_, mut params) = mlp(1);
    // /dev/zero never ends: reading it would grow until allocation fails.
    let err = checkpoint::load_weights("/dev/zero", &mut params).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = checkpoint::import_safetensors("/dev/zero", &mut params).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    // A FIFO with no writer would block a reader forever: refused before it is opened.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("weights.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let err = checkpoint::load_weights(&fifo, &mut params).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}

#[test]
fn saving_never_replaces_what_is_not_a_regular_file() {
    let (_, params) = mlp(1);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let err = checkpoint::save_weights(&fifo, &params).unwrap_err();
        assert!(err.to_string().contains("refusing to replace it"), "{err}");
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(
            std::os::unix::fs::FileTypeExt::is_fifo(&kind),
            "the FIFO is still there"
        );
    }
    let err = checkpoint::save_weights(dir.path(), &params).unwrap_err();
    assert!(err.to_string().contains("refusing to replace it"), "{err}");
    let err = checkpoint::export_safetensors("/dev/null", &params).unwrap_err();
    assert!(err.to_string().contains("refusing to replace it"), "{err}");
}

#[test]
fn non_finite_weights_are_refused_on_loading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.gradus");
    let (_, mut params) = mlp(1);
    let w = params.id("0.weight").unwrap();
    params.get_mut(w)[[0, 0]] = f32::NAN;
    checkpoint::save_weights(&path, &params).unwrap();
    let (_, mut target) = mlp(2);
    let err = checkpoint::load_weights(&path, &mut target).unwrap_err();
    assert!(
        err.to_string()
            .contains("tensor 0.weight: 1 of its 30 values are NaN or infinite"),
        "{err}"
    );
    // An f64 beyond f32's range becomes infinite when read as f32.
    let (_, mut p64) = Sequential::<f64>::new().linear(6, 5).build(0).unwrap();
    let w = p64.id("0.weight").unwrap();
    p64.get_mut(w)[[1, 1]] = 1e300;
    checkpoint::save_weights(&path, &p64).unwrap();
    let err = checkpoint::read_weights::<f32>(&path).unwrap_err();
    assert!(
        err.to_string().contains("beyond the model's f32 range"),
        "{err}"
    );
    assert!(checkpoint::read_weights::<f64>(&path).is_ok());
}

#[test]
fn the_safetensors_importer_says_what_a_gradus_file_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.gradus");
    let (_, mut params) = mlp(1);
    checkpoint::save_weights(&path, &params).unwrap();
    let err = checkpoint::import_safetensors(&path, &mut params).unwrap_err();
    assert!(
        err.to_string()
            .contains("this is a gradus weights file, not safetensors"),
        "{err}"
    );
}

#[test]
fn a_save_sweeps_dead_writers_temporaries_but_not_a_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.gradus");
    // A live process (a child that sleeps) and a dead one (a child that has exited).
    let mut live = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    let live_tmp = dir
        .path()
        .join(format!(".w.gradus.tmp-{}-abc123", live.id()));
    let dead_tmp = dir
        .path()
        .join(format!(".w.gradus.tmp-{}-def456", dead.id()));
    std::fs::write(&live_tmp, b"a save in progress").unwrap();
    std::fs::write(&dead_tmp, b"left by a killed writer").unwrap();
    let (_, params) = mlp(1);
    checkpoint::save_weights(&path, &params).unwrap();
    let live_kept = live_tmp.exists();
    let _ = live.kill();
    let _ = live.wait();
    assert!(
        live_kept,
        "another process's save in progress is left alone"
    );
    assert!(!dead_tmp.exists(), "a dead writer's temporary is removed");
}
