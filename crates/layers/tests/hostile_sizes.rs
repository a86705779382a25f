//! Absurd sizes (huge padding, channels, kernels, shapes) are refused by the builder with an
//! error naming the layer, never an arithmetic overflow or an aborted allocation.

use gradus_autograd::ops::conv::Pair;
use gradus_layers::{Conv2dConfig, LayerError, Sequential, SequentialBuilder};

fn refused(builder: SequentialBuilder<f32>) -> String {
    match builder.build(0) {
        Err(e @ LayerError::Invalid { .. }) => e.to_string(),
        Err(e) => panic!("refused as another kind of error: {e}"),
        Ok(_) => panic!("built"),
    }
}

fn mnist() -> SequentialBuilder<f32> {
    Sequential::<f32>::new().input(&[1, 28, 28])
}

#[test]
fn huge_padding_or_dilation_is_refused_naming_the_layer() {
    let padding = Conv2dConfig {
        padding: Pair(usize::MAX / 2, 1),
        ..Conv2dConfig::new(1, 2, 3)
    };
    assert_eq!(
        refused(mnist().conv2d_with(padding)),
        format!(
            "layer 0 (Conv2d(1 -> 2, 3x3)): padding Pair({}, 1) and dilation Pair(1, 1) overflow \
             with a 28x28 input",
            usize::MAX / 2
        )
    );
    // Padding that does not overflow but makes a sample's output too large to address.
    let wide = Conv2dConfig {
        padding: Pair(usize::MAX / 8, usize::MAX / 8),
        ..Conv2dConfig::new(1, 2, 3)
    };
    assert!(refused(mnist().conv2d_with(wide)).contains("more values than memory can address"));
    let dilation = Conv2dConfig {
        dilation: Pair(1, usize::MAX),
        ..Conv2dConfig::new(1, 2, 3)
    };
    assert!(refused(mnist().conv2d_with(dilation)).contains("overflow with a 28x28 input"));
    let pool = mnist().avg_pool2d_with(usize::MAX, 1, usize::MAX / 2);
    assert!(refused(pool).starts_with("layer 0 (AvgPool2d("));
    // Twice the padding past usize used to overflow the half-kernel check itself.
    let pool = mnist().max_pool2d_with(3, 1, usize::MAX / 2 + 1);
    assert!(refused(pool).contains("padding at most half the kernel"));
}

#[test]
fn parameters_no_machine_can_hold_are_refused_before_allocating() {
    let message = refused(mnist().conv2d(1, 1 << 40, 3));
    assert!(
        message.starts_with(
            "layer 0 (Conv2d(1 -> 1099511627776, 3x3)): its 10995116277760 parameters"
        ) && message.ends_with("cannot be allocated"),
        "{message}"
    );
    assert_eq!(
        refused(Sequential::<f32>::new().linear(1 << 40, 1 << 40)),
        "layer 0 (Linear(1099511627776 -> 1099511627776)): its parameters have more values than \
         memory can address"
    );
    assert!(refused(Sequential::<f32>::new().conv2d(1, 2, usize::MAX)).contains("more values"));
    // A sample's output past usize (adaptive pooling to a huge grid).
    assert!(refused(mnist().adaptive_avg_pool2d(usize::MAX)).contains("[1, 18446744073709551615"));
}

#[test]
fn shapes_past_usize_are_refused_not_overflowed() {
    let flat = Sequential::<f32>::new()
        .input(&[usize::MAX, 2, 2])
        .flatten()
        .linear(4, 2);
    assert_eq!(
        refused(flat),
        "layer 0 (Flatten): its input [18446744073709551615, 2, 2] has more values than usize \
         holds"
    );
    let reshape = Sequential::<f32>::new()
        .input(&[4])
        .reshape(&[usize::MAX, 2]);
    assert!(refused(reshape).starts_with("layer 0 (Reshape([18446744073709551615, 2]))"));
}

#[test]
fn ordinary_large_models_still_build() {
    // 784 -> 4096 -> 4096 -> 10 (about 20 M parameters) and a wide padded convolution.
    let mlp = Sequential::<f32>::new()
        .linear(784, 4096)
        .relu()
        .linear(4096, 4096)
        .linear(4096, 10);
    assert!(mlp.build(0).is_ok());
    let padded = Conv2dConfig {
        padding: Pair(100, 100),
        dilation: Pair(3, 3),
        ..Conv2dConfig::new(1, 8, 5)
    };
    let (model, _) = mnist().conv2d_with(padded).build(0).unwrap();
    assert_eq!(model.output_shape(), Some(&[8, 216, 216][..]));
}

/// For many random convolution and pooling settings, the builder's shape inference and the
/// ops agree: an accepted model's forward gives the inferred shape, and a refused window is
/// one the op refuses too.
#[test]
fn the_builders_shapes_are_the_ops_shapes() {
    use gradus_autograd::Tape;
    use gradus_autograd::ndarray::ArrayD;
    use gradus_layers::{ForwardCtx, Module, Pool2d};
    use rand::{Rng, SeedableRng};
    use std::panic::AssertUnwindSafe;

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (mut built, mut refused) = (0, 0);
    for case in 0..400 {
        let (c, h, w) = (
            rng.random_range(1..4),
            rng.random_range(1..12),
            rng.random_range(1..12),
        );
        let groups = if c % 2 == 0 {
            rng.random_range(1..3)
        } else {
            1
        };
        let conv = Conv2dConfig {
            stride: Pair(rng.random_range(1..4), rng.random_range(1..4)),
            padding: Pair(rng.random_range(0..3), rng.random_range(0..3)),
            dilation: Pair(rng.random_range(1..3), rng.random_range(1..3)),
            groups,
            ..Conv2dConfig::new(
                c,
                2 * groups,
                (rng.random_range(1..5), rng.random_range(1..5)),
            )
        };
        let kernel = rng.random_range(1..4);
        let pool_padding = rng.random_range(0..=kernel / 2);
        let stride = rng.random_range(1..3);
        let pool = match case % 3 {
            0 => Pool2d::Max {
                kernel: Pair(kernel, kernel),
                stride: Pair(stride, stride),
                padding: Pair(pool_padding, pool_padding),
            },
            1 => Pool2d::Avg {
                kernel: Pair(kernel, kernel),
                stride: Pair(stride, stride),
                padding: Pair(pool_padding, pool_padding),
            },
            _ => Pool2d::AdaptiveAvg {
                output: Pair(kernel, stride),
            },
        };
        let builder = Sequential::<f32>::new().input(&[c, h, w]).conv2d_with(conv);
        let builder = match pool {
            Pool2d::Max { .. } => builder.max_pool2d_with(kernel, stride, pool_padding),
            Pool2d::Avg { .. } => builder.avg_pool2d_with(kernel, stride, pool_padding),
            Pool2d::AdaptiveAvg { output } => builder.adaptive_avg_pool2d(output),
        };
        let x = ArrayD::<f32>::ones(vec![2, c, h, w]);
        let run = |model: &Sequential<f32>, params| {
            let tape = Tape::<f32>::no_grad();
            model
                .forward(params, tape.constant(x.clone()), &mut ForwardCtx::eval())
                .shape()
        };
        match builder.build(0) {
            Ok((model, params)) => {
                built += 1;
                let inferred = model
                    .output_shape()
                    .expect("the input shape is given")
                    .to_vec();
                assert_eq!(
                    run(&model, &params)[1..],
                    inferred[..],
                    "case {case}: {conv:?}"
                );
            }
            Err(e) => {
                refused += 1;
                // The same layers pushed without the builder's check: the ops refuse too.
                let mut model = Sequential::<f32>::empty();
                let mut b = gradus_layers::ParamBuilder::<f32>::new(0);
                model.push(conv.init(&mut b, "0").unwrap());
                model.push(pool);
                let params = b.finish();
                let runs = std::panic::catch_unwind(AssertUnwindSafe(|| run(&model, &params)));
                assert!(
                    runs.is_err(),
                    "case {case}: refused ({e}) but the layers run"
                );
            }
        }
    }
    assert!(
        built > 100 && refused > 20,
        "{built} built, {refused} refused"
    );
}
