//! Convolutional networks end to end: PyTorch's names for the same `nn.Sequential`, BatchNorm
//! buffers through training, evaluation, checkpoints and a bit-identical resume.

use gradus::layers::Conv2dConfig;
use gradus::ndarray::{Array2, ArrayD};
use gradus::optim::Adam;
use gradus::{
    BatchSize, Dataset, Module, Progress, Sequential, Trainer, TrainerConfig, checkpoint,
};

/// The gradus twin of this PyTorch model (the source of the expected names below):
/// nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3, padding=1, bias=False),
///   nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU(),
///   nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
fn small_cnn(seed: u64) -> (Sequential<f32>, gradus::ParamStore<f32>) {
    Sequential::<f32>::new()
        .input(&[64])
        .reshape(&[1, 8, 8])
        .conv2d_with(Conv2dConfig {
            padding: 1.into(),
            bias: false,
            ..Conv2dConfig::new(1, 4, 3)
        })
        .batch_norm2d(4)
        .relu()
        .max_pool2d(2)
        .conv2d(4, 6, 3)
        .relu()
        .avg_pool2d(2)
        .flatten()
        .linear(6, 3)
        .batch_norm1d(3)
        .linear(3, 2)
        .build(seed)
        .unwrap()
}

/// 8x8 images: a bright square in the left or the right half.
fn data(n: usize) -> Dataset<f32> {
    let mut labels = Vec::new();
    let x = Array2::from_shape_fn((n, 64), |(i, j)| {
        let (r, c) = (j / 8, j % 8);
        let right = i % 2 == 1;
        let (r0, c0) = (
            1 + (i / 2) % 4,
            if right { 4 + (i / 3) % 2 } else { (i / 3) % 2 },
        );
        let on = (r0..r0 + 3).contains(&r) && (c0..c0 + 2).contains(&c);
        if on {
            1.0
        } else {
            ((i * 7 + j * 13) % 17) as f32 / 40.0
        }
    });
    labels.extend((0..n).map(|i| i % 2));
    Dataset::classification(x.into_dyn(), labels).unwrap()
}

fn trainer(epochs: usize) -> Trainer<f32> {
    let config = TrainerConfig {
        epochs,
        batch_size: BatchSize::Mini(16),
        seed: 3,
        progress: Progress::Quiet,
        ..TrainerConfig::default()
    };
    Trainer::new(config, Adam::new(0.01))
}

#[test]
fn state_dict_names_and_shapes_equal_pytorchs() {
    let (_, params) = small_cnn(0);
    let names: Vec<(String, Vec<usize>)> = params
        .export()
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec()))
        .collect();
    // From torch 2.15: [(k, list(v.shape)) for k, v in model.state_dict().items()], sorted.
    let mut expected = vec![
        ("1.weight", vec![4, 1, 3, 3]),
        ("2.weight", vec![4]),
        ("2.bias", vec![4]),
        ("2.running_mean", vec![4]),
        ("2.running_var", vec![4]),
        ("2.num_batches_tracked", vec![]),
        ("5.weight", vec![6, 4, 3, 3]),
        ("5.bias", vec![6]),
        ("9.weight", vec![3, 6]),
        ("9.bias", vec![3]),
        ("10.weight", vec![3]),
        ("10.bias", vec![3]),
        ("10.running_mean", vec![3]),
        ("10.running_var", vec![3]),
        ("10.num_batches_tracked", vec![]),
        ("11.weight", vec![2, 3]),
        ("11.bias", vec![2]),
    ];
    expected.sort();
    let expected: Vec<(String, Vec<usize>)> = expected
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect();
    assert_eq!(names, expected);
    // Buffers are not parameters: optimizers see 11 arrays, files 17.
    assert_eq!((params.len(), params.num_buffers()), (11, 6));
}

#[test]
fn trains_updates_running_statistics_and_evaluates_with_them() {
    let (model, mut params) = small_cnn(1);
    let train = data(96);
    let mut t = trainer(15);
    let h = t.fit(&model, &mut params, &train, None).unwrap();
    let last = h.epochs.last().unwrap();
    assert!(last.train_accuracy.unwrap() > 0.95, "{last:?}");
    let tracked = params.buffer(params.buffer_id("2.num_batches_tracked").unwrap())[[]];
    assert_eq!(tracked, 15.0 * 6.0, "one update per training batch");
    let rv = params.buffer(params.buffer_id("2.running_var").unwrap());
    assert!(
        rv.iter().all(|&v| v != 1.0),
        "running variance moved from its initial 1"
    );
    // Evaluation uses the running statistics and changes nothing.
    let before = params.export();
    let e = t.evaluate(&model, &params, &train).unwrap();
    assert!(e.accuracy.unwrap() > 0.95, "{e:?}");
    assert_eq!(params.export(), before);
    // One sample at a time gives the same outputs in evaluation (no batch statistics).
    let one = model.predict(
        &params,
        train
            .inputs()
            .slice_axis(gradus::ndarray::Axis(0), (0..1).into())
            .to_owned(),
    );
    let all = model.predict(&params, train.inputs().clone());
    for (a, b) in one.iter().zip(all.iter()) {
        assert!((a - b).abs() < 1e-5, "{one} vs {all}");
    }
}

#[test]
fn checkpoints_resume_bit_identically_batch_norm_buffers_included() {
    let train = data(64);
    let (model, mut straight) = small_cnn(2);
    trainer(4).fit(&model, &mut straight, &train, None).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cnn.ckpt");
    let (_, mut first) = small_cnn(2);
    let mut t = trainer(2);
    t.fit(&model, &mut first, &train, None).unwrap();
    t.save_checkpoint(&path, &first).unwrap();
    let (_, mut resumed) = small_cnn(9);
    let mut t = trainer(4);
    t.resume(&path, &mut resumed).unwrap();
    t.fit(&model, &mut resumed, &train, None).unwrap();
    assert_eq!(resumed.export(), straight.export());

    // And weights files carry the buffers too.
    let w = dir.path().join("cnn.gradus");
    checkpoint::save_weights(&w, &straight).unwrap();
    let (_, mut loaded) = small_cnn(5);
    checkpoint::load_weights(&w, &mut loaded).unwrap();
    let x = ArrayD::from_shape_fn(vec![3, 64], |i| (i[1] as f32 / 64.0) - 0.2);
    assert_eq!(
        model.predict(&loaded, x.clone()),
        model.predict(&straight, x)
    );
}

#[test]
fn a_size_error_names_the_layer_and_both_shapes() {
    let err = Sequential::<f32>::new()
        .input(&[1, 28, 28])
        .conv2d(3, 8, 3)
        .build(0)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer 0 (Conv2d(3 -> 8, 3x3)) expects [3, h, w] per sample but the input produces [1, 28, 28]"
    );
    let err = Sequential::<f32>::new()
        .input(&[1, 4, 4])
        .conv2d(1, 8, 5)
        .build(0)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the kernel does not fit a 4x4 input"),
        "{err}"
    );
    let err = Sequential::<f32>::new()
        .input(&[784])
        .conv2d(1, 8, 3)
        .build(0)
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("add .reshape(&[c, h, w]) before it"),
        "{err}"
    );
}
