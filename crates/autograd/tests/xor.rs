//! A 2-layer network written against the raw autograd API learns XOR with plain gradient
//! descent; and several threads record their own tapes over one read-only parameter store.

use gradus_autograd::ndarray::{ArrayD, arr2};
use gradus_autograd::{ParamId, ParamStore, value_and_grad};

fn xor_data() -> (ArrayD<f64>, ArrayD<f64>) {
    let x = arr2(&[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).into_dyn();
    let y = arr2(&[[0.0], [1.0], [1.0], [0.0]]).into_dyn();
    (x, y)
}

fn init() -> (ParamStore<f64>, [ParamId; 4]) {
    let mut p = ParamStore::new();
    // Fixed, asymmetric start so the test is deterministic.
    let w1 = p
        .insert(
            "0.weight",
            arr2(&[[0.5, -0.4], [-0.3, 0.8], [0.7, 0.6], [-0.9, 0.2]]).into_dyn(),
        )
        .unwrap();
    let b1 = p.insert("0.bias", ArrayD::from_elem(vec![4], 0.1)).unwrap();
    let w2 = p
        .insert("2.weight", arr2(&[[0.3, -0.6, 0.5, 0.4]]).into_dyn())
        .unwrap();
    let b2 = p.insert("2.bias", ArrayD::zeros(vec![1])).unwrap();
    (p, [w1, b1, w2, b2])
}

#[test]
fn two_layer_network_learns_xor_with_plain_gradient_descent() {
    let (x, y) = xor_data();
    let (mut params, [w1, b1, w2, b2]) = init();
    let mut first = None;
    let mut last = f64::NAN;
    for _ in 0..2000 {
        let (loss, grads) = value_and_grad(|tape| {
            let h = tape
                .constant(x.clone())
                .linear(tape.param(&params, w1), Some(tape.param(&params, b1)))
                .tanh();
            let logits = h.linear(tape.param(&params, w2), Some(tape.param(&params, b2)));
            logits.bce_with_logits(tape.constant(y.clone()))
        });
        first.get_or_insert(loss);
        last = loss;
        for id in [w1, b1, w2, b2] {
            let g = grads
                .get(id)
                .expect("every parameter gets a gradient")
                .clone();
            params.get_mut(id).scaled_add(-0.5, &g);
        }
    }
    assert!(first.unwrap() > 0.6, "starts near chance: {first:?}");
    assert!(last < 0.02, "XOR not learned: final loss {last}");
    // Predictions have the right sign on every row.
    let tape = gradus_autograd::Tape::no_grad();
    let h = tape
        .constant(x)
        .linear(tape.param(&params, w1), Some(tape.param(&params, b1)))
        .tanh();
    let out = h
        .linear(tape.param(&params, w2), Some(tape.param(&params, b2)))
        .value();
    let signs: Vec<bool> = out.iter().map(|&v| v > 0.0).collect();
    assert_eq!(signs, vec![false, true, true, false]);
}

#[test]
fn threads_record_their_own_tapes_over_shared_parameters() {
    let (x, y) = xor_data();
    let (params, [w1, b1, w2, b2]) = init();
    let run = |rows: std::ops::Range<usize>| {
        value_and_grad(|tape| {
            let xs = tape.constant(x.clone()).slice_axis(0, rows.clone());
            let ys = tape.constant(y.clone()).slice_axis(0, rows.clone());
            let h = xs
                .linear(tape.param(&params, w1), Some(tape.param(&params, b1)))
                .tanh();
            h.linear(tape.param(&params, w2), Some(tape.param(&params, b2)))
                .mse_loss(ys)
        })
    };
    let (whole, whole_grads) = run(0..4);
    let (halves, parts) = std::thread::scope(|s| {
        let a = s.spawn(|| run(0..2));
        let b = s.spawn(|| run(2..4));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        ((a.0 + b.0) / 2.0, [a.1, b.1])
    });
    assert!((whole - halves).abs() < 1e-12);
    // The mean over the whole batch is the mean of the two half-batch gradients.
    for id in [w1, b1, w2, b2] {
        let avg = (parts[0].get(id).unwrap() + parts[1].get(id).unwrap()) / 2.0;
        let diff = (&avg - whole_grads.get(id).unwrap()).mapv(f64::abs);
        assert!(diff.iter().all(|&d| d < 1e-12), "{}", params.name(id));
    }
}
