//! Anomaly mode names the first op that produced a NaN or an infinity, forward or backward.

use gradus_autograd::ndarray::arr1;
use gradus_autograd::{ParamStore, Phase, value_and_grad, value_and_grad_detect_anomaly};

#[test]
fn forward_anomaly_names_the_first_producing_op_and_shapes() {
    let err = value_and_grad_detect_anomaly(|tape| {
        let x = tape.input(arr1(&[1.0f64, 0.0, 2.0]).into_dyn());
        let y = x.log(); // -inf here first
        (y * y).exp().sum() // later ops are non-finite too, but log came first
    })
    .unwrap_err();
    assert_eq!(err.op, "log");
    assert_eq!(err.phase, Phase::Forward);
    assert_eq!(err.operand_shapes, vec![vec![3]]);
    assert!(err.to_string().contains("Forward of `log`"), "{err}");
}

#[test]
fn backward_anomaly_is_found_where_the_forward_pass_was_finite() {
    // sqrt(0) = 0 is finite, but its gradient 1 / (2 sqrt 0) is infinite.
    let err = value_and_grad_detect_anomaly(|tape| {
        let x = tape.input(arr1(&[4.0f64, 0.0]).into_dyn());
        x.sqrt().sum()
    })
    .unwrap_err();
    assert_eq!((err.op.as_str(), err.phase), ("sqrt", Phase::Backward));
}

#[test]
fn a_nan_parameter_is_reported_by_name_and_the_mode_is_off_by_default() {
    let mut params = ParamStore::<f32>::new();
    let w = params
        .insert("0.weight", arr1(&[1.0, f32::NAN]).into_dyn())
        .unwrap();
    let err = value_and_grad_detect_anomaly(|tape| tape.param(&params, w).sum()).unwrap_err();
    assert_eq!(err.op, "param 0.weight");
    // Off by default: the NaN simply propagates, as in PyTorch.
    let (loss, _) = value_and_grad(|tape| tape.param(&params, w).sum());
    assert!(loss.is_nan());
    // Finite computations pass in anomaly mode with the same results.
    let (a, ga) =
        value_and_grad_detect_anomaly(|tape| tape.input(arr1(&[2.0f64]).into_dyn()).square().sum())
            .unwrap();
    assert_eq!(a, 4.0);
    assert!(ga.is_empty());
}
