//! Every optimizer and variant against PyTorch, step by step, in f64.
//!
//! The numbers in `golden.json` come from `scripts/optim_golden.py` (torch.optim): the same
//! initial parameters and the same fixed gradient sequence go through both implementations.

use gradus_autograd::ndarray::{ArrayD, IxDyn};
use gradus_autograd::{Gradients, ParamStore};
use gradus_optim::{
    Adagrad, Adam, Anneal, GradClip, MomentumCycle, Optimizer, RmsProp, Schedule, Sgd, WeightDecay,
    clip_grad_norm,
};
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(include_str!("golden.json")).expect("golden.json parses")
}

fn array(v: &Value) -> ArrayD<f64> {
    fn flatten(v: &Value, shape: &mut Vec<usize>, depth: usize, out: &mut Vec<f64>) {
        match v {
            Value::Array(items) => {
                if shape.len() == depth {
                    shape.push(items.len());
                }
                for item in items {
                    flatten(item, shape, depth + 1, out);
                }
            }
            Value::Number(n) => out.push(n.as_f64().unwrap()),
            other => panic!("not a number: {other}"),
        }
    }
    let (mut shape, mut data) = (Vec::new(), Vec::new());
    flatten(v, &mut shape, 0, &mut data);
    ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap()
}

fn kw(case: &Value, key: &str) -> Option<f64> {
    case["kwargs"].get(key).map(|v| {
        v.as_f64()
            .unwrap_or_else(|| v.as_bool().map(f64::from).unwrap())
    })
}

fn optimizer_for(case: &Value) -> Box<dyn Optimizer<f64>> {
    let lr = kw(case, "lr").unwrap();
    let wd = kw(case, "weight_decay").unwrap_or(0.0);
    match case["optimizer"].as_str().unwrap() {
        "SGD" => {
            let momentum = kw(case, "momentum").unwrap_or(0.0);
            let opt = Sgd::new(lr).weight_decay(wd);
            Box::new(if kw(case, "nesterov") == Some(1.0) {
                opt.nesterov(momentum)
            } else if momentum > 0.0 {
                opt.momentum(momentum)
                    .dampening(kw(case, "dampening").unwrap_or(0.0))
            } else {
                opt
            })
        }
        "Adagrad" => {
            let mut opt = Adagrad::new(lr);
            opt.weight_decay = wd;
            opt.lr_decay = kw(case, "lr_decay").unwrap_or(0.0);
            opt.initial_accumulator_value = kw(case, "initial_accumulator_value").unwrap_or(0.0);
            opt.eps = kw(case, "eps").unwrap_or(1e-10);
            Box::new(opt)
        }
        "RMSprop" => {
            let mut opt = RmsProp::new(lr);
            opt.weight_decay = wd;
            opt.alpha = kw(case, "alpha").unwrap_or(0.99);
            opt.momentum = kw(case, "momentum").unwrap_or(0.0);
            opt.centered = kw(case, "centered") == Some(1.0);
            Box::new(opt)
        }
        name @ ("Adam" | "AdamW") => {
            let mut opt = if name == "Adam" {
                Adam::new(lr).weight_decay_mode(WeightDecay::L2(wd))
            } else {
                Adam::adamw(lr).weight_decay_mode(WeightDecay::Decoupled(
                    kw(case, "weight_decay").unwrap_or(0.01),
                ))
            };
            if let Some(b) = case["kwargs"].get("betas") {
                opt = opt.betas(b[0].as_f64().unwrap(), b[1].as_f64().unwrap());
            }
            opt = opt
                .eps(kw(case, "eps").unwrap_or(1e-8))
                .amsgrad(kw(case, "amsgrad") == Some(1.0));
            Box::new(opt)
        }
        other => panic!("unknown optimizer {other}"),
    }
}

fn setup(g: &Value) -> (ParamStore<f64>, Vec<Gradients<f64>>) {
    let mut params = ParamStore::new();
    let a = params.insert("a", array(&g["initial"]["a"])).unwrap();
    let b = params.insert("b", array(&g["initial"]["b"])).unwrap();
    let grads = g["grads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            let mut grads = Gradients::default();
            grads.insert(a, array(&step["a"]));
            grads.insert(b, array(&step["b"]));
            grads
        })
        .collect();
    (params, grads)
}

fn assert_rel(name: &str, step: usize, got: &ArrayD<f64>, want: &ArrayD<f64>, tol: f64) {
    assert_eq!(got.shape(), want.shape());
    for (x, y) in got.iter().zip(want.iter()) {
        let rel = (x - y).abs() / y.abs().max(1e-12);
        assert!(
            rel <= tol || (x - y).abs() < 1e-15,
            "{name} step {step}: {got} vs torch {want}"
        );
    }
}

#[test]
fn every_optimizer_and_variant_matches_pytorch_step_by_step() {
    let g = golden();
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 19);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (mut params, grads) = setup(&g);
        let mut opt = optimizer_for(case);
        let expected = case["expected"].as_array().unwrap();
        assert!(expected.len() >= 5);
        for (step, (grad, want)) in grads.iter().zip(expected).enumerate() {
            opt.step(&mut params, grad).unwrap();
            for p in ["a", "b"] {
                assert_rel(
                    name,
                    step,
                    params.get(params.id(p).unwrap()),
                    &array(&want[p]),
                    1e-6,
                );
            }
        }
    }
}

#[test]
fn one_cycle_cycles_momentum_and_beta1_as_pytorch() {
    let g = golden();
    let cases = g["cycled"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let sk = &case["schedule"];
        let get = |key: &str, default: f64| sk.get(key).and_then(Value::as_f64).unwrap_or(default);
        let schedule = Schedule::OneCycle {
            max_lr: get("max_lr", f64::NAN),
            total_steps: sk["total_steps"].as_u64().unwrap(),
            pct_start: get("pct_start", 0.3),
            anneal: match sk.get("anneal_strategy").and_then(Value::as_str) {
                Some("linear") => Anneal::Linear,
                _ => Anneal::Cos,
            },
            div_factor: get("div_factor", 25.0),
            final_div_factor: get("final_div_factor", 1e4),
            momentum: Some(MomentumCycle {
                base: get("base_momentum", 0.85),
                max: get("max_momentum", 0.95),
            }),
        };
        let (mut params, grads) = setup(&g);
        let mut opt = optimizer_for(case);
        let expected = case["expected"].as_array().unwrap();
        for (t, (grad, want)) in grads.iter().zip(expected).enumerate() {
            let lr = schedule.lr_at(opt.lr(), t as u64);
            let m = schedule.momentum_at(t as u64).unwrap();
            let (want_lr, want_m) = (
                case["lrs"][t].as_f64().unwrap(),
                case["momenta"][t].as_f64().unwrap(),
            );
            assert!(
                (lr - want_lr).abs() < 1e-12,
                "{name} step {t}: lr {lr} vs {want_lr}"
            );
            assert!(
                (m - want_m).abs() < 1e-12,
                "{name} step {t}: momentum {m} vs {want_m}"
            );
            opt.set_lr(lr);
            assert!(opt.set_momentum(m), "{name}");
            opt.step(&mut params, grad).unwrap();
            for p in ["a", "b"] {
                assert_rel(
                    name,
                    t,
                    params.get(params.id(p).unwrap()),
                    &array(&want[p]),
                    1e-6,
                );
            }
        }
    }
    // Adagrad has neither a momentum nor betas: PyTorch refuses momentum cycling for it.
    assert!(!Adagrad::<f64>::new(0.1).set_momentum(0.9));
}

#[test]
fn optimizer_state_round_trips_and_resumes_exactly() {
    let g = golden();
    for case in g["cases"].as_array().unwrap() {
        let (mut params, grads) = setup(&g);
        let mut straight = optimizer_for(case);
        let mut straight_params = params.clone();
        for grad in &grads {
            straight.step(&mut straight_params, grad).unwrap();
        }
        // Three steps, snapshot through bincode, a fresh optimizer, three more steps.
        let mut first = optimizer_for(case);
        for grad in &grads[..3] {
            first.step(&mut params, grad).unwrap();
        }
        let bytes =
            bincode::serde::encode_to_vec(first.state(), bincode::config::standard()).unwrap();
        let (state, _): (gradus_optim::OptimizerState<f64>, _) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        let mut resumed = optimizer_for(case);
        resumed.load_state(state).unwrap();
        for grad in &grads[3..] {
            resumed.step(&mut params, grad).unwrap();
        }
        assert_eq!(
            params.export(),
            straight_params.export(),
            "{}",
            case["name"]
        );
    }
}

#[test]
fn defaults_equal_pytorchs() {
    let d = &golden()["defaults"];
    let sgd = Sgd::<f32>::default();
    assert_eq!(sgd.lr, d["SGD"]["lr"].as_f64().unwrap());
    assert_eq!(sgd.momentum, gradus_optim::Momentum::None);
    assert_eq!(sgd.weight_decay, d["SGD"]["weight_decay"].as_f64().unwrap());
    let ada = Adagrad::<f32>::default();
    let t = &d["Adagrad"];
    assert_eq!(
        (
            ada.lr,
            ada.lr_decay,
            ada.eps,
            ada.weight_decay,
            ada.initial_accumulator_value
        ),
        (
            t["lr"].as_f64().unwrap(),
            t["lr_decay"].as_f64().unwrap(),
            t["eps"].as_f64().unwrap(),
            t["weight_decay"].as_f64().unwrap(),
            t["initial_accumulator_value"].as_f64().unwrap()
        )
    );
    let rms = RmsProp::<f32>::default();
    let t = &d["RMSprop"];
    assert_eq!(
        (
            rms.lr,
            rms.alpha,
            rms.eps,
            rms.weight_decay,
            rms.momentum,
            rms.centered
        ),
        (
            t["lr"].as_f64().unwrap(),
            t["alpha"].as_f64().unwrap(),
            t["eps"].as_f64().unwrap(),
            t["weight_decay"].as_f64().unwrap(),
            t["momentum"].as_f64().unwrap(),
            t["centered"].as_bool().unwrap()
        )
    );
    for (ours, key, decay) in [
        (Adam::<f32>::default(), "Adam", WeightDecay::L2(0.0)),
        (
            Adam::<f32>::adamw(1e-3),
            "AdamW",
            WeightDecay::Decoupled(0.01),
        ),
    ] {
        let t = &d[key];
        assert_eq!(ours.lr, t["lr"].as_f64().unwrap());
        assert_eq!(
            ours.betas,
            (
                t["betas"][0].as_f64().unwrap(),
                t["betas"][1].as_f64().unwrap()
            )
        );
        assert_eq!(ours.eps, t["eps"].as_f64().unwrap());
        assert_eq!(ours.amsgrad, t["amsgrad"].as_bool().unwrap());
        let wd = t["weight_decay"].as_f64().unwrap();
        assert_eq!(ours.weight_decay, decay);
        match decay {
            WeightDecay::L2(v) | WeightDecay::Decoupled(v) => assert_eq!(v, wd),
        }
        assert_eq!(
            matches!(decay, WeightDecay::Decoupled(_)),
            t["decoupled_weight_decay"].as_bool().unwrap()
        );
    }
}

#[test]
fn schedules_match_pytorch() {
    let g = golden();
    let s = &g["schedules"];
    let check = |name: &str, schedule: Schedule| {
        let want: Vec<f64> = s[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (t, w) in want.iter().enumerate() {
            let got = schedule.lr_at(0.1, t as u64);
            assert!(
                (got - w).abs() <= 1e-9 * w.abs().max(1e-9),
                "{name} step {t}: {got} vs torch {w}"
            );
        }
    };
    check(
        "step",
        Schedule::Step {
            step_size: 3,
            gamma: 0.5,
        },
    );
    check("exponential", Schedule::Exponential { gamma: 0.9 });
    check(
        "cosine",
        Schedule::CosineAnnealing {
            t_max: 10,
            eta_min: 0.001,
        },
    );
    check(
        "linear_warmup",
        Schedule::warmup(4, 0.25, Schedule::Constant),
    );
    check("one_cycle", Schedule::one_cycle(0.5, 20, true));
    check(
        "one_cycle_linear",
        Schedule::OneCycle {
            max_lr: 0.5,
            total_steps: 15,
            pct_start: 0.4,
            anneal: Anneal::Linear,
            div_factor: 10.0,
            final_div_factor: 100.0,
            momentum: None,
        },
    );
}

#[test]
fn clipping_matches_pytorch() {
    let g = golden();
    let c = &g["clip"];
    let mut params = ParamStore::<f64>::new();
    let p1 = params.insert("p1", ArrayD::zeros(IxDyn(&[2, 2]))).unwrap();
    let p2 = params.insert("p2", ArrayD::zeros(IxDyn(&[2]))).unwrap();
    let fresh = || {
        let mut grads = Gradients::default();
        grads.insert(p1, array(&serde_json::json!([[3.0, -4.0], [1.0, 2.0]])));
        grads.insert(p2, array(&serde_json::json!([12.0, -1.0])));
        grads
    };
    let mut grads = fresh();
    let norm = GradClip::norm(5.0).apply(&mut grads).unwrap().unwrap();
    assert!((norm - c["norm"].as_f64().unwrap()).abs() < 1e-12);
    assert_rel(
        "clip_norm",
        0,
        grads.get(p1).unwrap(),
        &array(&c["clipped"][0]),
        1e-12,
    );
    assert_rel(
        "clip_norm",
        0,
        grads.get(p2).unwrap(),
        &array(&c["clipped"][1]),
        1e-12,
    );
    let mut grads = fresh();
    assert_eq!(GradClip::Value(2.5).apply(&mut grads).unwrap(), None);
    assert_eq!(grads.get(p1).unwrap(), &array(&c["valued"][0]));
    assert_eq!(grads.get(p2).unwrap(), &array(&c["valued"][1]));
    // Below the limit nothing changes; a non-finite norm fails only when asked to.
    let mut grads = fresh();
    clip_grad_norm(&mut grads, 100.0, 2.0, false).unwrap();
    assert_eq!(
        grads.get(p2).unwrap(),
        &array(&serde_json::json!([12.0, -1.0]))
    );
    grads.get_mut(p2).unwrap()[0] = f64::NAN;
    let err = clip_grad_norm(&mut grads, 1.0, 2.0, true).unwrap_err();
    assert!(err.norm.is_nan() && err.to_string().contains("non-finite"));
    let inf_norm = gradus_optim::grad_norm(&fresh(), f64::INFINITY);
    assert_eq!(inf_norm, 12.0);
}
