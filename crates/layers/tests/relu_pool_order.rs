//! `Sequential` runs a ReLU followed by a max pooling as the pooling first, then the ReLU:
//! the values and gradients must be bit for bit those of the order as written, ties and
//! windows of no positive value included.

use gradus_autograd::ndarray::ArrayD;
use gradus_autograd::{ParamStore, Var, value_and_grad};
use gradus_layers::{ForwardCtx, Module, Sequential};

/// Small integers, so that convolution outputs tie, are 0 and fill whole windows with
/// negative values.
fn integers(shape: &[usize], seed: usize) -> ArrayD<f32> {
    let n = shape.iter().product::<usize>();
    let values = (0..n)
        .map(|i| ((i * 7 + seed * 3) % 5) as f32 - 2.0)
        .collect();
    ArrayD::from_shape_vec(shape.to_vec(), values).unwrap()
}

#[test]
fn relu_then_max_pool_equals_the_written_order_bit_for_bit() {
    let (model, mut params) = Sequential::<f32>::new()
        .input(&[2, 7, 7])
        .conv2d(2, 3, 3) // [3, 5, 5]
        .relu()
        .max_pool2d(2) // [3, 2, 2]
        .flatten()
        .linear(12, 4)
        .build(5)
        .unwrap();
    let id = |p: &ParamStore<f32>, name: &str| p.id(name).unwrap();
    let (w0, b0) = (id(&params, "0.weight"), id(&params, "0.bias"));
    let (w4, b4) = (id(&params, "4.weight"), id(&params, "4.bias"));
    *params.get_mut(w0) = integers(&[3, 2, 3, 3], 1);
    params.get_mut(b0).fill(0.0);
    let x = params.insert("x", integers(&[6, 2, 7, 7], 2)).unwrap();
    let labels = [0, 1, 2, 3, 1, 0];

    let mut pooled = None;
    let (by_model, model_grads) = value_and_grad(|tape| {
        let y = model.forward(&params, tape.param(&params, x), &mut ForwardCtx::eval());
        y.cross_entropy_with_logits(&labels)
    });
    let (by_hand, hand_grads) = value_and_grad(|tape| {
        let p = |id| tape.param(&params, id);
        let h: Var<'_, f32> = p(x).conv2d(p(w0), Some(p(b0)), 1, 0, 1, 1).relu();
        let h = h.max_pool2d(2, 2, 0);
        pooled = Some(h.value().as_ref().clone());
        h.reshape(&[6, 12])
            .linear(p(w4), Some(p(b4)))
            .cross_entropy_with_logits(&labels)
    });
    // The case is one the exchange could get wrong: windows whose largest value is 0, and
    // windows of no positive value.
    let pooled = pooled.unwrap();
    assert!(
        pooled.iter().filter(|&&v| v == 0.0).count() >= 4,
        "{pooled:?}"
    );
    assert!(pooled.iter().any(|&v| v > 0.0));

    assert_eq!(by_model.to_bits(), by_hand.to_bits());
    for (name, id) in [("x", x), ("0.weight", w0), ("0.bias", b0), ("4.weight", w4)] {
        let (a, b) = (model_grads.get(id).unwrap(), hand_grads.get(id).unwrap());
        assert!(
            a.iter()
                .zip(b.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: {a:?} vs {b:?}"
        );
        assert!(a.iter().any(|&v| v != 0.0), "{name} has a gradient");
    }
}
