//! Layers: gradients through Linear and Sequential, dropout in both modes, seeds, export/import.

use gradus_autograd::ndarray::{ArrayD, IxDyn};
use gradus_autograd::{ParamStore, gradcheck_params};
use gradus_layers::{
    Activation, Dropout, ForwardCtx, LinearConfig, Module, ParamBuilder, Sequential,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn batch(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    gradus_layers::Init::Normal {
        mean: 0.0,
        std: 1.0,
    }
    .array(shape, &mut rng)
}

#[test]
fn gradcheck_through_linear_with_and_without_bias() {
    for bias in [true, false] {
        let mut b = ParamBuilder::<f64>::new(0);
        let config = LinearConfig {
            bias,
            ..LinearConfig::new(3, 4)
        };
        let layer = config.init(&mut b, "fc").unwrap();
        let params = b.finish();
        let x = batch(&[5, 3], 1);
        gradcheck_params(&params, |tape, p| {
            layer
                .forward(p, tape.constant(x.clone()), &mut ForwardCtx::eval())
                .tanh()
                .sum()
        })
        .unwrap();
    }
}

#[test]
fn gradcheck_through_a_sequential_mlp_with_every_activation() {
    let (model, params) = Sequential::<f64>::new()
        .linear(4, 6)
        .tanh()
        .linear(6, 6)
        .sigmoid()
        .linear(6, 5)
        .gelu()
        .linear(5, 5)
        .leaky_relu(0.1)
        .linear(5, 3)
        .build(3)
        .unwrap();
    let x = batch(&[7, 4], 2);
    let labels = [0, 2, 1, 1, 0, 2, 2];
    gradcheck_params(&params, |tape, p| {
        model
            .forward(p, tape.constant(x.clone()), &mut ForwardCtx::eval())
            .cross_entropy_with_logits(&labels)
    })
    .unwrap();
    // And through dropout with a fixed mask (the rng is reseeded on every evaluation).
    let (model, params) = Sequential::<f64>::new()
        .linear(4, 8)
        .relu()
        .dropout(0.5)
        .linear(8, 3)
        .build(4)
        .unwrap();
    gradcheck_params(&params, |tape, p| {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        model
            .forward(
                p,
                tape.constant(x.clone()),
                &mut ForwardCtx::train(&mut rng),
            )
            .log_softmax(1)
            .mean()
    })
    .unwrap();
}

#[test]
fn dropout_scales_in_training_and_is_the_identity_in_eval() {
    let params = ParamStore::<f32>::new();
    let x = ArrayD::<f32>::ones(IxDyn(&[200, 500]));
    let tape = gradus_autograd::Tape::no_grad();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let y = Dropout(0.4)
        .forward(
            &params,
            tape.constant(x.clone()),
            &mut ForwardCtx::train(&mut rng),
        )
        .value();
    let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / y.len() as f64;
    assert!((kept - 0.6).abs() < 0.01, "kept {kept}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.6).abs() < 1e-6));
    let z = Dropout(0.4)
        .forward(&params, tape.constant(x.clone()), &mut ForwardCtx::eval())
        .value();
    assert_eq!(*z, x);
}

#[test]
fn same_seed_same_network_other_seed_other_network() {
    let build = |seed| {
        Sequential::<f32>::new()
            .linear(10, 5)
            .relu()
            .linear(5, 2)
            .build(seed)
            .unwrap()
            .1
    };
    assert_eq!(build(7).export(), build(7).export());
    assert_ne!(build(7).export(), build(8).export());
    // f32 and f64 networks from one seed hold the same values (drawn in f64, then rounded).
    let a = build(11);
    let (_, b) = Sequential::<f64>::new()
        .linear(10, 5)
        .relu()
        .linear(5, 2)
        .build(11)
        .unwrap();
    for ((_, _, x), (_, _, y)) in a.iter().zip(b.iter()) {
        assert!(x.iter().zip(y.iter()).all(|(&x, &y)| x == y as f32));
    }
}

#[test]
fn linear_default_init_is_pytorchs() {
    let (_, params) = Sequential::<f64>::new().linear(400, 300).build(0).unwrap();
    let bound = 1.0 / 400f64.sqrt();
    for name in ["0.weight", "0.bias"] {
        let a = params.get(params.id(name).unwrap());
        assert!(a.iter().all(|v| v.abs() <= bound), "{name}");
        let var = a.mapv(|v| v * v).mean().unwrap();
        let tol = if name == "0.weight" { 0.03 } else { 0.3 };
        assert!(
            (var - bound * bound / 3.0).abs() < tol * bound * bound / 3.0,
            "{name}: {var}"
        );
    }
}

#[test]
fn export_and_import_report_every_difference() {
    let (_, mut a) = Sequential::<f32>::new()
        .linear(4, 3)
        .relu()
        .linear(3, 2)
        .build(0)
        .unwrap();
    let (_, b) = Sequential::<f32>::new()
        .linear(4, 3)
        .relu()
        .linear(3, 2)
        .build(1)
        .unwrap();
    a.import(&b.export()).unwrap();
    assert_eq!(a.export(), b.export());

    let (_, other) = Sequential::<f32>::new()
        .linear(4, 5)
        .relu()
        .linear(5, 2)
        .tanh()
        .linear(2, 2)
        .build(0)
        .unwrap();
    let err = a.import(&other.export()).unwrap_err();
    assert_eq!(err.missing, Vec::<String>::new());
    assert_eq!(
        err.unexpected,
        vec!["4.bias".to_string(), "4.weight".to_string()]
    );
    assert_eq!(
        err.mismatched,
        vec![
            ("0.weight".to_string(), vec![3, 4], vec![5, 4]),
            ("0.bias".to_string(), vec![3], vec![5]),
            ("2.weight".to_string(), vec![2, 3], vec![2, 5]),
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains("unexpected: 4.weight")
            && text.contains("shape of 0.weight: expected [3, 4], found [5, 4]")
    );
    // Nothing was changed by the failed import.
    assert_eq!(a.export(), b.export());
    let mut partial = b.export();
    partial.remove("2.bias");
    assert_eq!(
        a.import(&partial).unwrap_err().missing,
        vec!["2.bias".to_string()]
    );
}

#[test]
fn builder_rejects_bad_layers() {
    let err = Sequential::<f32>::new().linear(3, 0).build(0).unwrap_err();
    assert!(
        err.to_string().contains("layer 0 (Linear(3 -> 0))"),
        "{err}"
    );
    let err = Sequential::<f32>::new()
        .linear(3, 3)
        .dropout(1.5)
        .build(0)
        .unwrap_err();
    assert!(err.to_string().contains("probability 1.5"), "{err}");
    // Flatten keeps a known size: a Linear after it is checked too.
    let err = Sequential::<f32>::new()
        .linear(3, 4)
        .flatten()
        .linear(12, 2)
        .build(0)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer 2 (Linear(12 -> 2)) expects 12 input features but layer 1 (Flatten) produces 4"
    );
    // Without an input shape, what comes before the first sized layer is not checked.
    assert!(
        Sequential::<f32>::new()
            .flatten()
            .linear(12, 2)
            .build(0)
            .is_ok()
    );
}

#[test]
fn softmax_layers_and_summary() {
    let (model, params) = Sequential::<f32>::new()
        .linear(3, 2)
        .softmax()
        .build(0)
        .unwrap();
    let y = model.predict(&params, ArrayD::ones(IxDyn(&[4, 3])));
    for row in y.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-6);
    }
    let summary = model.summary(&params);
    assert!(
        summary.contains("Linear(3 -> 2)") && summary.contains("8 parameters"),
        "{summary}"
    );
    let lsm: f32 = Module::<f32>::forward(
        &Activation::LogSoftmax(1),
        &params,
        gradus_autograd::Tape::no_grad().constant(ArrayD::zeros(IxDyn(&[1, 4]))),
        &mut ForwardCtx::eval(),
    )
    .value()[[0, 0]];
    assert!((lsm + 4f32.ln()).abs() < 1e-6);
}

#[test]
#[should_panic(
    expected = "parameter #0 belongs to another ParamStore: this store holds `body.weight` there"
)]
fn a_parameter_id_used_with_another_models_store_panics_instead_of_misreading() {
    let mut a = ParamBuilder::<f32>::new(0);
    let fc = a.linear("fc", 2, 2).unwrap();
    let mut b = ParamBuilder::<f32>::new(0);
    b.linear("body", 2, 2).unwrap();
    let other = b.finish();
    let _ = other.get(fc.weight);
}

#[test]
fn ids_work_with_a_store_built_the_same_way() {
    let (model, a) = Sequential::<f32>::new().linear(3, 2).build(1).unwrap();
    let (_, b) = Sequential::<f32>::new().linear(3, 2).build(2).unwrap();
    let x = gradus_autograd::ndarray::ArrayD::ones(vec![1, 3]);
    assert_ne!(model.predict(&a, x.clone()), model.predict(&b, x));
}

#[test]
#[should_panic(expected = "update_buffer: an evaluation forward pass cannot update buffers")]
fn evaluation_cannot_update_buffers() {
    let mut b = ParamBuilder::<f32>::new(0);
    let n = b
        .buffer("n", gradus_autograd::ndarray::ArrayD::zeros(vec![]))
        .unwrap();
    ForwardCtx::<f32>::eval().update_buffer(n, gradus_autograd::ndarray::ArrayD::zeros(vec![]));
}

#[test]
fn training_buffer_updates_reach_the_store_only_when_applied() {
    let mut b = ParamBuilder::<f32>::new(0);
    let n = b
        .buffer("n", gradus_autograd::ndarray::ArrayD::zeros(vec![]))
        .unwrap();
    let mut params = b.finish();
    let mut ctx = ForwardCtx::<f32>::train_seeded(0);
    assert!(ctx.is_training() && ctx.rng().is_some());
    ctx.update_buffer(n, gradus_autograd::ndarray::ArrayD::from_elem(vec![], 3.0));
    assert_eq!(params.buffer(n)[[]], 0.0);
    ctx.take_updates().apply(&mut params);
    assert_eq!(params.buffer(n)[[]], 3.0);
    assert!(ForwardCtx::<f32>::eval().rng().is_none());
}

#[test]
fn import_errors_escape_hostile_names_and_cap_the_listing() {
    let (_, mut params) = Sequential::<f32>::new().linear(2, 2).build(0).unwrap();
    let mut map = params.export();
    map.insert(
        "evil\nerror: forged line\u{1b}[2J".into(),
        gradus_autograd::ndarray::ArrayD::zeros(vec![1]),
    );
    for i in 0..1000 {
        map.insert(
            format!("x{i}"),
            gradus_autograd::ndarray::ArrayD::zeros(vec![1]),
        );
    }
    let text = params.import(&map).unwrap_err().to_string();
    assert!(
        text.contains(r"evil\nerror: forged line\u{1b}[2J"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'));
    assert!(text.ends_with("... and 981 more unexpected"), "{text}");
    assert_eq!(text.lines().count(), 1 + 20 + 1);
}
