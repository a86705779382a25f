//! Optimizers on problems with known answers, and the policies around a step.

use gradus_autograd::ndarray::{Array2, ArrayD, IxDyn, arr1};
use gradus_autograd::{ParamStore, value_and_grad};
use gradus_optim::{Adagrad, Adam, MissingGrad, OptimError, Optimizer, RmsProp, Sgd};

fn all_optimizers() -> Vec<(&'static str, Box<dyn Optimizer<f64>>)> {
    let mut centered = RmsProp::new(0.01);
    centered.centered = true;
    vec![
        ("gd", Box::new(Sgd::new(0.05))),
        ("momentum", Box::new(Sgd::new(0.02).momentum(0.9))),
        ("nesterov", Box::new(Sgd::new(0.02).nesterov(0.9))),
        ("adagrad", Box::new(Adagrad::new(0.3))),
        ("rmsprop", Box::new(RmsProp::new(0.01))),
        ("rmsprop_centered", Box::new(centered)),
        ("adam", Box::new(Adam::new(0.05))),
        ("adamw", Box::new(Adam::adamw(0.05))),
        ("amsgrad", Box::new(Adam::new(0.05).amsgrad(true))),
    ]
}

#[test]
fn every_optimizer_reduces_a_least_squares_loss() {
    // y = X w* with a fixed design; minimise mean((X w + b - y)^2).
    let x = Array2::from_shape_fn((32, 4), |(i, j)| ((i * 7 + j * 3) % 11) as f64 / 5.0 - 1.0)
        .into_dyn();
    let w_true = arr1(&[1.5, -2.0, 0.5, 1.0]);
    let y = x
        .view()
        .into_dimensionality::<gradus_autograd::ndarray::Ix2>()
        .unwrap()
        .dot(&w_true)
        .insert_axis(gradus_autograd::ndarray::Axis(1))
        .into_dyn();
    for (name, mut opt) in all_optimizers() {
        let mut params = ParamStore::<f64>::new();
        let w = params.insert("w", ArrayD::zeros(IxDyn(&[1, 4]))).unwrap();
        let b = params.insert("b", ArrayD::zeros(IxDyn(&[1]))).unwrap();
        let loss = |params: &ParamStore<f64>| {
            value_and_grad(|tape| {
                let pred = tape
                    .constant(x.clone())
                    .linear(tape.param(params, w), Some(tape.param(params, b)));
                pred.mse_loss(tape.constant(y.clone()))
            })
        };
        let (start, _) = loss(&params);
        let mut end = start;
        for _ in 0..300 {
            let (l, grads) = loss(&params);
            end = l;
            opt.step(&mut params, &grads).unwrap();
        }
        assert!(end < 0.05 * start, "{name}: loss {start} -> {end}");
    }
}

/// Steps to bring f(x, y) = (x^2 + 50 y^2) / 2 below `tol` from (10, 1).
fn steps_on_ill_conditioned_quadratic(mut opt: impl Optimizer<f64>, tol: f64) -> usize {
    let mut params = ParamStore::<f64>::new();
    let p = params.insert("p", arr1(&[10.0, 1.0]).into_dyn()).unwrap();
    let scale = arr1(&[0.5, 25.0]).into_dyn();
    for step in 0..10_000 {
        let (loss, grads) = value_and_grad(|tape| {
            (tape.param(&params, p).square() * tape.constant(scale.clone())).sum()
        });
        if loss < tol {
            return step;
        }
        opt.step(&mut params, &grads).unwrap();
    }
    usize::MAX
}

#[test]
fn momentum_beats_plain_gradient_descent_on_an_ill_conditioned_quadratic() {
    // GD is stable for lr < 2/50; heavy ball for lr * 50 < 2 (1 + mu); Nesterov for
    // lr * 50 < 2 (1 + mu) / (1 + 2 mu), so it gets a smaller rate.
    let gd = steps_on_ill_conditioned_quadratic(Sgd::new(0.035), 1e-6);
    let heavy_ball = steps_on_ill_conditioned_quadratic(Sgd::new(0.035).momentum(0.7), 1e-6);
    let nesterov = steps_on_ill_conditioned_quadratic(Sgd::new(0.025).nesterov(0.7), 1e-6);
    assert!(gd < usize::MAX, "GD converges");
    assert!(
        heavy_ball.saturating_mul(2) < gd,
        "momentum {heavy_ball} vs GD {gd}"
    );
    assert!(
        nesterov.saturating_mul(2) < gd,
        "nesterov {nesterov} vs GD {gd}"
    );
}

#[test]
fn a_parameter_without_gradient_is_reported_or_skipped_never_zeroed() {
    let mut params = ParamStore::<f64>::new();
    let used = params.insert("used", arr1(&[1.0]).into_dyn()).unwrap();
    params.insert("unused", arr1(&[5.0]).into_dyn()).unwrap();
    let (_, grads) = value_and_grad(|tape| tape.param(&params, used).square().sum());
    let before = params.export();

    let mut opt = Adam::new(0.1);
    let err = opt.step(&mut params, &grads).unwrap_err();
    assert_eq!(
        err,
        OptimError::MissingGradient {
            names: vec!["unused".into()]
        }
    );
    assert!(err.to_string().contains("unused"));
    assert_eq!(params.export(), before, "a refused step changes nothing");

    let mut opt = Adam::new(0.1);
    opt.missing_grad = MissingGrad::Skip;
    opt.step(&mut params, &grads).unwrap();
    assert_eq!(params.get(params.id("unused").unwrap())[0], 5.0);
    assert!(params.get(used)[0] < 1.0);
    assert_eq!(opt.state().params.keys().collect::<Vec<_>>(), vec!["used"]);
}

#[test]
fn state_of_another_optimizer_is_refused() {
    let mut params = ParamStore::<f64>::new();
    let w = params.insert("w", arr1(&[1.0]).into_dyn()).unwrap();
    let (_, grads) = value_and_grad(|tape| tape.param(&params, w).square().sum());
    let mut adam = Adam::new(0.1);
    adam.step(&mut params, &grads).unwrap();
    let mut sgd = Sgd::new(0.1).momentum(0.9);
    let err = sgd.load_state(adam.state()).unwrap_err();
    assert!(
        err.to_string()
            .contains("snapshot is of Adam, this optimizer is Sgd"),
        "{err}"
    );
    let mut adamw = Adam::adamw(0.1);
    assert!(adamw.load_state(adam.state()).is_err());
    // A wrongly shaped gradient is refused by name.
    let mut bad = gradus_autograd::Gradients::default();
    bad.insert(w, arr1(&[1.0, 2.0]).into_dyn());
    let err = Sgd::new(0.1).step(&mut params, &bad).unwrap_err();
    assert!(matches!(err, OptimError::ShapeMismatch { .. }), "{err}");
}

#[test]
fn buffers_are_invisible_to_every_optimizer_and_to_clipping() {
    use gradus_optim::{Adagrad, Adam, GradClip, Optimizer, RmsProp, Sgd};
    let mut params = ParamStore::<f64>::new();
    let w = params
        .insert("w", gradus_autograd::ndarray::arr1(&[1.0, -2.0]).into_dyn())
        .unwrap();
    let running = params
        .insert_buffer(
            "running_mean",
            gradus_autograd::ndarray::arr1(&[7.0]).into_dyn(),
        )
        .unwrap();
    let optimizers: Vec<Box<dyn Optimizer<f64>>> = vec![
        Box::new(Sgd::new(0.1).momentum(0.9)),
        Box::new(Adagrad::new(0.1)),
        Box::new(RmsProp::new(0.1).centered(true)),
        Box::new(Adam::new(0.1)),
    ];
    for mut opt in optimizers {
        let (_, mut grads) = gradus_autograd::value_and_grad(|tape| {
            // The buffer takes part in the forward pass but gets no gradient.
            (tape.param(&params, w) * tape.buffer(&params, running)).sum()
        });
        GradClip::norm(1.0).apply(&mut grads).unwrap();
        // MissingGrad::Error is the default: a buffer must not count as a missing gradient.
        opt.step(&mut params, &grads).unwrap();
        assert_eq!(params.buffer(running)[[0]], 7.0, "{}", opt.name());
        assert!(!opt.state().params.contains_key("running_mean"));
    }
}

#[test]
fn sgd_dampening_without_momentum_is_plain_sgd_as_in_pytorch() {
    use gradus_optim::{Optimizer, Sgd};
    let run = |mut opt: Sgd<f64>| {
        let mut params = ParamStore::<f64>::new();
        let w = params
            .insert("w", gradus_autograd::ndarray::arr1(&[1.0, -2.0]).into_dyn())
            .unwrap();
        for _ in 0..3 {
            let (_, grads) =
                gradus_autograd::value_and_grad(|tape| tape.param(&params, w).square().sum());
            opt.step(&mut params, &grads).unwrap();
        }
        params.get(w).clone()
    };
    assert_eq!(run(Sgd::new(0.1).dampening(0.5)), run(Sgd::new(0.1)));
}
