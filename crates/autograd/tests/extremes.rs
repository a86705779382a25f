//! Extreme inputs through the losses: finite results where the mathematics is finite, and
//! clear errors (panics naming the op and shape) for misuse such as empty batches.

use gradus_autograd::ndarray::{ArrayD, arr1, arr2};
use gradus_autograd::{Tape, value_and_grad};

fn grads_of(
    x: ArrayD<f64>,
    f: impl for<'t> Fn(gradus_autograd::Var<'t, f64>) -> gradus_autograd::Var<'t, f64>,
) -> (f64, ArrayD<f64>) {
    let mut id = None;
    let (loss, grads) = value_and_grad(|tape| {
        let v = tape.input(x.clone());
        id = Some(v.id());
        f(v)
    });
    (loss, grads.input(id.unwrap()).unwrap().clone())
}

#[test]
fn cross_entropy_with_huge_and_infinite_logits() {
    for big in [1e30, f64::MAX, f64::INFINITY] {
        // The label's logit is the huge one: loss 0. Another class's -inf does no harm.
        let x = arr2(&[[big, 0.0, f64::NEG_INFINITY], [0.0, big, -big]]).into_dyn();
        let (loss, g) = grads_of(x, |v| v.cross_entropy_with_logits(&[0, 1]));
        assert_eq!(loss, 0.0, "{big}");
        assert!(g.iter().all(|v| v.is_finite()), "{big}: {g}");
    }
    // Wrong by a huge margin: a huge but finite loss, finite gradients.
    let (loss, g) = grads_of(arr2(&[[1e30, 0.0]]).into_dyn(), |v| {
        v.cross_entropy_with_logits(&[1])
    });
    assert_eq!(loss, 1e30);
    assert_eq!(g.as_slice().unwrap(), &[1.0, -1.0]);
}

#[test]
fn bce_with_infinite_logits_is_zero_or_infinite_never_nan() {
    let tape = Tape::<f64>::no_grad();
    let x = tape.constant(arr1(&[f64::INFINITY, f64::NEG_INFINITY, 1e308, -1e308]).into_dyn());
    let right = tape.constant(arr1(&[1.0, 0.0, 1.0, 0.0]).into_dyn());
    let wrong = tape.constant(arr1(&[0.0, 1.0, 0.0, 1.0]).into_dyn());
    assert_eq!(x.bce_with_logits(right).item(), 0.0);
    assert_eq!(x.bce_with_logits(wrong).item(), f64::INFINITY);
    let (_, g) = grads_of(arr1(&[f64::INFINITY, -1e308]).into_dyn(), |v| {
        v.bce_with_logits(v.tape().constant(arr1(&[1.0, 1.0]).into_dyn()))
    });
    assert_eq!(g.as_slice().unwrap(), &[0.0, -0.5]);
}

#[test]
fn log_of_zero_through_the_losses() {
    // log(0) = -inf, as in PyTorch; as a logit of a class that is not the label the loss is
    // finite. Its gradient is 0 / 0 = NaN, as in PyTorch: anomaly mode names the op.
    let (loss, _) = grads_of(arr2(&[[1.0, 0.0]]).into_dyn(), |v| {
        v.log().cross_entropy_with_logits(&[0])
    });
    assert_eq!(loss, 0.0);
    let err = gradus_autograd::value_and_grad_detect_anomaly(|tape| {
        tape.input(arr2(&[[1.0f64, 0.0]]).into_dyn())
            .exp()
            .log()
            .cross_entropy_with_logits(&[0])
    });
    assert!(err.is_ok(), "exp then log stays finite");
    let err = gradus_autograd::value_and_grad_detect_anomaly(|tape| {
        tape.input(arr2(&[[1.0f64, 0.0]]).into_dyn())
            .log()
            .cross_entropy_with_logits(&[0])
    })
    .unwrap_err();
    assert_eq!(err.op, "log");
    // Through a squared error it is an infinite loss: reported, not hidden (the trainer stops
    // on it with the epoch and batch, or names the op in anomaly mode).
    let tape = Tape::<f64>::no_grad();
    let p = tape.constant(arr1(&[0.0, 1.0]).into_dyn()).log();
    assert_eq!(
        p.mse_loss(tape.constant(arr1(&[0.0, 0.0]).into_dyn()))
            .item(),
        f64::INFINITY
    );
}

#[test]
#[should_panic(expected = "cross_entropy_with_logits: empty batch, logits [0, 10]")]
fn an_empty_batch_is_a_clear_error() {
    let tape = Tape::<f32>::no_grad();
    tape.constant(ArrayD::zeros(vec![0, 10]))
        .cross_entropy_with_logits(&[]);
}

#[test]
#[should_panic(expected = "mean: empty value of shape [0, 3]")]
fn the_mean_of_nothing_is_a_clear_error() {
    let tape = Tape::<f32>::no_grad();
    tape.constant(ArrayD::zeros(vec![0, 3])).mean();
}

fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(f).expect_err("the op panics");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn windows_past_usize_panic_naming_the_op_instead_of_wrapping_around() {
    let image = || ArrayD::<f32>::zeros(vec![1, 1, 4, 4]);
    let huge = usize::MAX / 2 + 1;
    let conv = panic_message(|| {
        let tape = Tape::<f32>::no_grad();
        let w = tape.constant(ArrayD::zeros(vec![1, 1, 3, 3]));
        tape.constant(image()).conv2d(w, None, 1, huge, 1, 1);
    });
    assert_eq!(
        conv,
        format!(
            "conv2d: padding Pair({huge}, {huge}) or dilation Pair(1, 1) overflows with input \
             [1, 1, 4, 4] and kernel Pair(3, 3)"
        )
    );
    let dilated = panic_message(|| {
        let tape = Tape::<f32>::no_grad();
        let w = tape.constant(ArrayD::zeros(vec![1, 1, 3, 3]));
        tape.constant(image())
            .conv2d(w, None, 1, 0, (1, usize::MAX), 1);
    });
    assert!(dilated.starts_with("conv2d: padding"), "{dilated}");
    // Twice this padding wraps around: the half-kernel check must not.
    let pool = panic_message(|| {
        Tape::<f32>::no_grad()
            .constant(image())
            .max_pool2d(3, 1, huge);
    });
    assert!(pool.starts_with("max_pool2d: padding"), "{pool}");
    let avg = panic_message(|| {
        Tape::<f32>::no_grad()
            .constant(image())
            .avg_pool2d(usize::MAX, 1, usize::MAX / 2);
    });
    assert!(avg.starts_with("avg_pool2d: padding"), "{avg}");
}
