//! Once warm, a training step allocates a fixed handful of times, however many ops the model
//! has: values and gradients come from the buffer pool, backward rules are kept inside the
//! tape's nodes (not boxed), and the optimizer updates its state in place.
//!
//! The matrix products' own packing buffers (matrixmultiply allocates them per product,
//! 32- or 64-byte aligned) are counted apart: they belong to the GEMM library.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use gradus::autograd::{memory, value_and_grad};
use gradus::data::{Dataset, Targets};
use gradus::layers::SequentialBuilder;
use gradus::layers::{ForwardCtx, Module};
use gradus::ndarray::ArrayD;
use gradus::optim::{Optimizer, Sgd};
use gradus::rand::SeedableRng;
use gradus::{Sequential, Trainer, TrainerConfig};

type Builder = SequentialBuilder<f32>;
type Act = fn(Builder) -> Builder;

struct Counting;

thread_local! {
    static OWN: Cell<u64> = const { Cell::new(0) };
    static GEMM: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let counter = if layout.align() >= 32 { &GEMM } else { &OWN };
        let _ = counter.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn counts() -> (u64, u64) {
    (OWN.with(Cell::get), GEMM.with(Cell::get))
}

fn data(n: usize) -> Dataset<f32> {
    let x = ArrayD::from_shape_fn(vec![n, 20], |ix| {
        ((ix[0] * 7 + ix[1] * 3) % 11) as f32 / 11.0
    });
    Dataset::classification(x, (0..n).map(|i| i % 4).collect()).unwrap()
}

/// Own and GEMM allocations of the fifth step of a hand-written loop over an MLP with
/// `hidden` hidden layers, each followed by `act`.
fn step_allocations(hidden: usize, act: Act) -> (u64, u64) {
    let mut builder = act(Sequential::<f32>::new().linear(20, 16));
    for _ in 1..hidden {
        builder = act(builder.linear(16, 16));
    }
    let (model, mut params) = builder.linear(16, 4).build(0).unwrap();
    let mut opt = Sgd::new(0.1).momentum(0.9);
    let train = data(32);
    let indices: Vec<usize> = (0..32).collect();
    // A training step trains: the forward pass gets the training context with its RNG.
    let mut rng = gradus::rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut measured = (0, 0);
    for step in 0..5 {
        let before = counts();
        let batch = train.batch(&indices);
        let Targets::Classes(labels) = &batch.targets else {
            unreachable!()
        };
        let (loss, grads) = value_and_grad(|tape| {
            model
                .forward(
                    &params,
                    tape.constant(batch.inputs),
                    &mut ForwardCtx::train(&mut rng),
                )
                .cross_entropy_with_logits(labels)
        });
        assert!(loss.is_finite());
        opt.step(&mut params, &grads).unwrap();
        drop(grads);
        let after = counts();
        if step == 4 {
            measured = (after.0 - before.0, after.1 - before.1);
        }
    }
    measured
}

#[test]
fn a_warm_step_allocates_the_same_few_times_at_any_depth() {
    memory::empty_cache::<f32>();
    let (shallow, shallow_gemm) = step_allocations(1, |b| b.relu());
    let (deep, deep_gemm) = step_allocations(6, |b| b.relu());
    // The batch's labels and the loss's saved copy of them (its rule is kept in the node).
    assert!(
        shallow <= 2,
        "a warm 2-layer step made {shallow} allocations"
    );
    assert_eq!(
        deep, shallow,
        "a 7-layer step allocates more than a 2-layer one: {deep} vs {shallow}"
    );
    // Without the pool each op's value, gradient, Arc and rule would allocate: dozens.
    // The GEMM library's packing buffers: at most one per product (3 per linear layer, the
    // first layer's input gradient is not computed). Zero with OpenBLAS.
    assert!(
        shallow_gemm <= 5 && deep_gemm <= 20,
        "{shallow_gemm} {deep_gemm}"
    );
}

#[test]
fn element_wise_activations_allocate_nothing_per_layer_either() {
    memory::empty_cache::<f32>();
    let relu = step_allocations(1, |b| b.relu()).0;
    let activations: [(&str, Act); 3] = [
        ("sigmoid", |b| b.sigmoid()),
        ("tanh", |b| b.tanh()),
        ("gelu", |b| b.gelu()),
    ];
    for (name, act) in activations {
        let deep = step_allocations(6, act).0;
        assert_eq!(
            deep, relu,
            "{name}: a 7-layer step makes {deep} allocations, not {relu}"
        );
    }
}

#[test]
fn the_trainer_reuses_its_buffers_across_epochs() {
    memory::empty_cache::<f32>();
    let (model, mut params) = Sequential::<f32>::new()
        .linear(20, 16)
        .relu()
        .linear(16, 4)
        .build(0)
        .unwrap();
    let train = data(320);
    let config = TrainerConfig {
        epochs: 2,
        batch_size: gradus::BatchSize::Mini(32),
        progress: gradus::Progress::Quiet,
        ..TrainerConfig::default()
    };
    let mut trainer = Trainer::new(config, Sgd::new(0.1).momentum(0.9));
    trainer.fit(&model, &mut params, &train, None).unwrap();
    trainer.config.epochs = 3;
    let before = counts().0;
    trainer.fit(&model, &mut params, &train, None).unwrap();
    let per_step = (counts().0 - before) as f64 / 10.0;
    // Two per step (the batch's labels and the loss's saved copy) and a few per epoch (the
    // shuffled order, the history record, the progress line).
    assert!(per_step <= 5.0, "{per_step} allocations per step");
    let (buffers, bytes) = memory::cached::<f32>();
    assert!(
        buffers > 0 && bytes < 1 << 20,
        "{buffers} buffers, {bytes} bytes"
    );
}

#[test]
fn a_warm_cnn_step_allocates_as_little_as_the_mlp() {
    memory::empty_cache::<f32>();
    let (model, mut params) = Sequential::<f32>::new()
        .input(&[144])
        .reshape(&[1, 12, 12])
        .conv2d(1, 4, 3)
        .relu()
        .max_pool2d(2)
        .conv2d(4, 8, 3)
        .relu()
        .max_pool2d(2)
        .flatten()
        .linear(8, 4) // 12 -> 10 -> 5 -> 3 -> 1
        .build(0)
        .unwrap();
    let x = ArrayD::from_shape_fn(vec![16, 144], |ix| ((ix[0] * 5 + ix[1]) % 13) as f32 / 13.0);
    let train = Dataset::classification(x, (0..16).map(|i| i % 4).collect()).unwrap();
    let indices: Vec<usize> = (0..16).collect();
    let mut opt = gradus::optim::Adam::new(1e-3);
    let mut rng = gradus::rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut measured = 0;
    for _ in 0..5 {
        let before = counts().0;
        let batch = train.batch(&indices);
        let Targets::Classes(labels) = &batch.targets else {
            unreachable!()
        };
        let (_, grads) = value_and_grad(|tape| {
            model
                .forward(
                    &params,
                    tape.constant(batch.inputs),
                    &mut ForwardCtx::train(&mut rng),
                )
                .cross_entropy_with_logits(labels)
        });
        opt.step(&mut params, &grads).unwrap();
        drop(grads);
        measured = counts().0 - before; // the fifth step's, once warm
    }
    // The MLP's 2 (the batch's labels and the loss's copy of them): the convolutions' and
    // max pools' backward rules, which keep their geometry and argmax, are kept in the
    // tape's nodes, and the values, gradients, im2col blocks and argmax buffers come from
    // the pools. It was 35 before they did, and 8 while those rules were boxed.
    assert!(measured <= 2, "a warm CNN step made {measured} allocations");
}
