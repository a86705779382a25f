//! A model gradus does not ship, built from the open core: a custom module with a buffer, a
//! custom op with its own backward rule, a custom loss and an optimizer written here, trained
//! on real MNIST digits by the Trainer, saved, reloaded and resumed bit-identically.
//!
//! ```text
//! cargo run --example custom_model
//! ```
//!
//! `cargo test` runs the same steps (see the test at the bottom) and checks every claim.

use std::collections::BTreeMap;
use std::path::Path;

use gradus::autograd::ndarray::{ArrayD, Axis, IxDyn};
use gradus::checkpoint;
use gradus::optim::{
    MissingGrad, OptimError, Optimizer, OptimizerState, ParamState, check_state, for_each_param,
};
use gradus::{
    BatchSize, BufferId, Dataset, ForwardCtx, Gradients, Linear, Mnist, Module, ParamBuilder,
    ParamStore, Progress, Targets, Task, Trainer, TrainerConfig, Var, loss_fn,
};

/// Subtracts the per-feature mean: the batch's while training, a running mean (a buffer,
/// updated by training forward passes only) in evaluation, as BatchNorm does.
struct Center {
    running_mean: BufferId,
    num_batches_tracked: BufferId,
    momentum: f32,
}

impl Module<f32> for Center {
    fn forward<'t>(
        &self,
        p: &ParamStore<f32>,
        x: Var<'t, f32>,
        ctx: &mut ForwardCtx<'_, f32>,
    ) -> Var<'t, f32> {
        if !ctx.is_training() {
            return x - x.tape().buffer(p, self.running_mean);
        }
        let mean = x.mean_axis(0, false);
        let m = self.momentum;
        let running = p.buffer(self.running_mean) * (1.0 - m) + &*mean.value() * m;
        ctx.update_buffer(self.running_mean, running);
        let seen = p.buffer(self.num_batches_tracked).mapv(|n| n + 1.0);
        ctx.update_buffer(self.num_batches_tracked, seen);
        x - mean
    }
}

/// softplus(x) = ln(1 + e^x), stable for large |x|, with its derivative sigmoid(x): a custom
/// op, i.e. a value and a backward rule.
fn softplus(x: Var<'_, f32>) -> Var<'_, f32> {
    let value = x.value().mapv(|v| v.max(0.0) + (-v.abs()).exp().ln_1p());
    x.tape()
        .custom_op("softplus", &[x], value, |grad, _out, operands| {
            let sigmoid = operands[0].mapv(|v| 1.0 / (1.0 + (-v).exp()));
            vec![Some(grad * &sigmoid)]
        })
}

/// A residual MLP: center -> fc1 -> softplus -> (+ block(h)) -> out.
struct ResidualMlp {
    center: Center,
    fc1: Linear,
    block: Linear,
    out: Linear,
}

impl ResidualMlp {
    fn new(inputs: usize, hidden: usize, classes: usize, seed: u64) -> (Self, ParamStore<f32>) {
        let mut b = ParamBuilder::new(seed);
        let model = ResidualMlp {
            center: Center {
                running_mean: b
                    .buffer("center.running_mean", ArrayD::zeros(vec![inputs]))
                    .unwrap(),
                num_batches_tracked: b
                    .buffer("center.num_batches_tracked", ArrayD::zeros(vec![]))
                    .unwrap(),
                momentum: 0.1,
            },
            fc1: b.linear("fc1", inputs, hidden).unwrap(),
            block: b.linear("block", hidden, hidden).unwrap(),
            out: b.linear("out", hidden, classes).unwrap(),
        };
        (model, b.finish())
    }
}

impl Module<f32> for ResidualMlp {
    fn forward<'t>(
        &self,
        p: &ParamStore<f32>,
        x: Var<'t, f32>,
        ctx: &mut ForwardCtx<'_, f32>,
    ) -> Var<'t, f32> {
        let x = self.center.forward(p, x, ctx);
        let h = softplus(self.fc1.forward(p, x, ctx));
        let h = h + softplus(self.block.forward(p, h, ctx));
        self.out.forward(p, h, ctx)
    }
}

/// Cross-entropy with label smoothing: the target puts `1 - eps` on the label and spreads
/// `eps` over all classes (PyTorch's `CrossEntropyLoss(label_smoothing=eps)`).
fn smoothed_targets(labels: &[usize], classes: usize, eps: f32) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&[labels.len(), classes]), |i| {
        eps / classes as f32 + if labels[i[0]] == i[1] { 1.0 - eps } else { 0.0 }
    })
}

/// Sign descent with momentum (signSGD / Lion's core): `m = beta m + (1 - beta) g`,
/// `p -= lr sign(m)`. Its state is a `Named` entry, so checkpoints keep it.
struct SignMomentum {
    lr: f64,
    beta: f32,
    state: BTreeMap<String, ParamState<f32>>,
}

impl Optimizer<f32> for SignMomentum {
    fn step(
        &mut self,
        params: &mut ParamStore<f32>,
        grads: &Gradients<f32>,
    ) -> Result<(), OptimError> {
        let (lr, beta) = (self.lr as f32, self.beta);
        for_each_param(
            params,
            grads,
            MissingGrad::Error,
            &mut self.state,
            |p, g, shape, slot| {
                if slot.is_none() {
                    *slot = Some(ParamState::Named {
                        step: 0,
                        tensors: BTreeMap::from([("momentum".to_string(), ArrayD::zeros(shape))]),
                    });
                }
                let Some(ParamState::Named { step, tensors }) = slot else {
                    unreachable!()
                };
                *step += 1;
                let m = tensors.get_mut("momentum").expect("created above");
                let m = m.as_slice_mut().expect("contiguous");
                for ((p, &g), m) in p.iter_mut().zip(g).zip(m) {
                    *m = beta * *m + (1.0 - beta) * g;
                    *p -= lr * m.signum();
                }
            },
        )
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn name(&self) -> &'static str {
        "SignMomentum"
    }
    fn state(&self) -> OptimizerState<f32> {
        OptimizerState {
            optimizer: self.name().into(),
            lr: self.lr,
            params: self.state.clone(),
        }
    }
    fn load_state(&mut self, state: OptimizerState<f32>) -> Result<(), OptimError> {
        check_state(self.name(), &state, |s| {
            matches!(s, ParamState::Named { .. })
        })?;
        self.lr = state.lr;
        self.state = state.params;
        Ok(())
    }
}

fn trainer(epochs: usize) -> Trainer<f32> {
    let config = TrainerConfig {
        epochs,
        batch_size: BatchSize::Mini(64),
        seed: 7,
        progress: Progress::Quiet,
        ..TrainerConfig::default()
    };
    let optimizer = SignMomentum {
        lr: 1e-3,
        beta: 0.9,
        state: BTreeMap::new(),
    };
    Trainer::new(config, optimizer).loss(loss_fn(
        Task::Classification,
        |out: Var<'_, f32>, targets: &Targets<f32>| {
            let Targets::Classes(labels) = targets else {
                panic!("label smoothing needs class labels")
            };
            let classes = out.shape()[1];
            let soft = out.tape().constant(smoothed_targets(labels, classes, 0.1));
            -(out.log_softmax(1) * soft).sum_axis(1, false).mean()
        },
    ))
}

/// What the run found, for `main` to print and the test to check.
struct Report {
    accuracy: f64,
    reloaded_accuracy: f64,
    batches_tracked: f32,
    resumed_equal: bool,
}

fn run(
    data_dir: &Path,
    out_dir: &Path,
    train_samples: usize,
) -> Result<Report, Box<dyn std::error::Error>> {
    let mnist = Mnist::load(data_dir)?;
    let train: Dataset<f32> = mnist.train.take(train_samples);
    let test = mnist.test.take(2000);
    let inputs = train.inputs().len_of(Axis(1));

    // Two epochs straight.
    let (model, mut params) = ResidualMlp::new(inputs, 64, 10, 1);
    let mut straight = trainer(2);
    straight.fit(&model, &mut params, &train, Some(&test))?;
    let accuracy = straight
        .evaluate(&model, &params, &test)?
        .accuracy
        .unwrap_or(0.0);
    let batches_tracked = params.buffer(model.center.num_batches_tracked)[[]];

    // Saved and reloaded into a fresh model: buffers included, the same accuracy.
    let weights = out_dir.join("custom.gradus");
    checkpoint::save_weights(&weights, &params)?;
    let (_, mut reloaded) = ResidualMlp::new(inputs, 64, 10, 99);
    checkpoint::load_weights(&weights, &mut reloaded)?;
    let reloaded_accuracy = straight
        .evaluate(&model, &reloaded, &test)?
        .accuracy
        .unwrap_or(0.0);

    // One epoch, a checkpoint, a new process's worth of objects, and the second epoch.
    let ckpt = out_dir.join("custom.ckpt");
    let (_, mut first) = ResidualMlp::new(inputs, 64, 10, 1);
    let mut t1 = trainer(1);
    t1.fit(&model, &mut first, &train, Some(&test))?;
    t1.save_checkpoint(&ckpt, &first)?;
    let (_, mut resumed) = ResidualMlp::new(inputs, 64, 10, 5);
    let mut t2 = trainer(2);
    t2.resume(&ckpt, &mut resumed)?;
    t2.fit(&model, &mut resumed, &train, Some(&test))?;

    Ok(Report {
        accuracy,
        reloaded_accuracy,
        batches_tracked,
        resumed_equal: resumed.export() == params.export(),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = gradus::Mnist::default_dir();
    let out = tempfile::tempdir()?;
    let r = run(&data, out.path(), 10_000)?;
    println!(
        "residual MLP with a running-mean buffer, softplus (custom op), label smoothing \
         (custom loss) and sign momentum (custom optimizer): test accuracy {:.2}%; reloaded \
         {:.2}%; {} batches tracked; resumed run bit-identical: {}",
        100.0 * r.accuracy,
        100.0 * r.reloaded_accuracy,
        r.batches_tracked,
        r.resumed_equal
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradus::autograd::gradcheck;
    use gradus::autograd::ndarray::arr1;

    #[test]
    fn softplus_gradient_matches_finite_differences() {
        // In f64 through the same rule, as every op is checked.
        fn softplus64(x: Var<'_, f64>) -> Var<'_, f64> {
            let value = x.value().mapv(|v| v.max(0.0) + (-v.abs()).exp().ln_1p());
            x.tape().custom_op("softplus", &[x], value, |g, _, o| {
                vec![Some(g * &o[0].mapv(|v| 1.0 / (1.0 + (-v).exp())))]
            })
        }
        gradcheck(
            |v| softplus64(v[0]).sum(),
            &[arr1(&[-30.0, -1.0, 0.3, 2.0, 40.0]).into_dyn()],
        )
        .unwrap();
    }

    #[test]
    fn trains_saves_reloads_and_resumes_bit_identically() {
        let data = gradus::Mnist::default_dir();
        let out = tempfile::tempdir().unwrap();
        let r = run(&data, out.path(), 3000).unwrap();
        assert!(r.accuracy > 0.8, "test accuracy {}", r.accuracy);
        assert_eq!(r.reloaded_accuracy, r.accuracy);
        // 3000 samples in batches of 64: 47 batches an epoch, two epochs.
        assert_eq!(r.batches_tracked, 94.0);
        assert!(
            r.resumed_equal,
            "the resumed run ends with the same weights and buffers"
        );
    }
}
