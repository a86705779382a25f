//! What the trainer minimises: the [`Objective`] trait, the three built-in losses and any
//! closure over a model's output and the batch's targets, plus the metrics each kind of task
//! reports (accuracy for classification, MAE and RMSE for regression).

use gradus_autograd::ndarray::ArrayD;
use gradus_autograd::{Float, Var, count_correct};
use serde::{Deserialize, Serialize};

use crate::data::Targets;

/// Which metrics a loss's task has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    /// Accuracy: the arg-max of the output against class labels, or for value targets in
    /// [0, 1] (binary, multi-label) a logit above 0 against a target above 0.5.
    Classification,
    /// Mean absolute error and root-mean-square error of the output against value targets.
    Regression,
    /// The loss only.
    LossOnly,
}

/// A loss over a model's output and a batch's targets, with the task it serves.
///
/// The built-in [`Loss`]es implement it, and [`loss_fn`] makes one from a closure.
pub trait Objective<T: Float> {
    /// The scalar loss of one batch, recorded on the output's tape.
    fn loss<'t>(&self, output: Var<'t, T>, targets: &Targets<T>) -> Var<'t, T>;

    /// Which metrics to report.
    fn task(&self) -> Task;

    /// Refuses targets the loss cannot take, saying which loss would fit them (checked by
    /// `fit` and `evaluate` before any batch).
    fn check_targets(&self, targets: &Targets<T>) -> Result<(), String> {
        let _ = targets;
        Ok(())
    }

    /// The loss's name, for messages.
    fn name(&self) -> String;
}

/// The built-in losses, all with mean reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Loss {
    /// Softmax cross-entropy of logits against class labels.
    CrossEntropy,
    /// Mean squared error against value targets.
    Mse,
    /// Binary cross-entropy of logits against targets in [0, 1].
    BceWithLogits,
}

impl<T: Float> Objective<T> for Loss {
    fn loss<'t>(&self, out: Var<'t, T>, targets: &Targets<T>) -> Var<'t, T> {
        let loss = self;
        gradus_autograd::monomorphic!(T; f32 => builtin_loss_f32, f64 => builtin_loss_f64; loss, out, targets);
        builtin_loss(loss, out, targets)
    }

    fn task(&self) -> Task {
        match self {
            Loss::CrossEntropy | Loss::BceWithLogits => Task::Classification,
            Loss::Mse => Task::Regression,
        }
    }

    fn check_targets(&self, targets: &Targets<T>) -> Result<(), String> {
        match (self, targets) {
            (Loss::CrossEntropy, Targets::Values(_)) => Err(
                "Mse or BceWithLogits for value targets (CrossEntropy needs class labels)".into(),
            ),
            (Loss::Mse | Loss::BceWithLogits, Targets::Classes(_)) => Err(format!(
                "CrossEntropy for class labels ({self:?} needs value targets)"
            )),
            _ => Ok(()),
        }
    }

    fn name(&self) -> String {
        format!("{self:?}")
    }
}

// The built-in losses, compiled here for f32 and f64 (see `gradus_autograd::mono`).
#[inline(never)]
fn builtin_loss_f32<'t>(loss: &Loss, out: Var<'t, f32>, targets: &Targets<f32>) -> Var<'t, f32> {
    builtin_loss(loss, out, targets)
}

#[inline(never)]
fn builtin_loss_f64<'t>(loss: &Loss, out: Var<'t, f64>, targets: &Targets<f64>) -> Var<'t, f64> {
    builtin_loss(loss, out, targets)
}

fn builtin_loss<'t, T: Float>(loss: &Loss, out: Var<'t, T>, targets: &Targets<T>) -> Var<'t, T> {
    let tape = out.tape();
    match (loss, targets) {
        (Loss::CrossEntropy, Targets::Classes(labels)) => out.cross_entropy_with_logits(labels),
        (Loss::Mse, Targets::Values(v)) => out.mse_loss(tape.constant(v.clone())),
        (Loss::BceWithLogits, Targets::Values(v)) => out.bce_with_logits(tape.constant(v.clone())),
        (loss, _) => panic!("{loss:?} does not apply to these targets"),
    }
}

/// A loss written as a closure over the output and the targets.
pub struct LossFn<F> {
    task: Task,
    f: F,
}

/// Makes an [`Objective`] from a closure: any loss the ops can express.
///
/// ```
/// use gradus::{Targets, Task, loss_fn};
///
/// // Mean absolute error.
/// let mae = loss_fn::<f32, _>(Task::Regression, |out, targets| match targets {
///     Targets::Values(v) => (out - out.tape().constant(v.clone())).abs().mean(),
///     Targets::Classes(_) => panic!("MAE needs value targets"),
/// });
/// # let _ = mae;
/// ```
pub fn loss_fn<T, F>(task: Task, f: F) -> LossFn<F>
where
    T: Float,
    F: for<'t> Fn(Var<'t, T>, &Targets<T>) -> Var<'t, T>,
{
    LossFn { task, f }
}

impl<T, F> Objective<T> for LossFn<F>
where
    T: Float,
    F: for<'t> Fn(Var<'t, T>, &Targets<T>) -> Var<'t, T>,
{
    fn loss<'t>(&self, output: Var<'t, T>, targets: &Targets<T>) -> Var<'t, T> {
        (self.f)(output, targets)
    }

    fn task(&self) -> Task {
        self.task
    }

    fn check_targets(&self, targets: &Targets<T>) -> Result<(), String> {
        match (self.task, targets) {
            (Task::Regression, Targets::Classes(_)) => {
                Err("a classification loss for class labels (this one is for regression)".into())
            }
            _ => Ok(()),
        }
    }

    fn name(&self) -> String {
        "custom loss".into()
    }
}

/// Running sums of a task's metrics over batches.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct MetricSums {
    pub samples: usize,
    pub correct: usize,
    pub abs_err: f64,
    pub sq_err: f64,
    /// Scalars compared (for MAE and RMSE: every output element).
    pub elements: usize,
}

impl MetricSums {
    /// The metrics of one batch's output.
    pub fn of<T: Float>(task: Task, out: &ArrayD<T>, targets: &Targets<T>) -> Self {
        gradus_autograd::monomorphic!(T; f32 => MetricSums::of_f32, f64 => MetricSums::of_f64; task, out, targets);
        Self::of_generic(task, out, targets)
    }

    #[inline(never)]
    fn of_f32(task: Task, out: &ArrayD<f32>, targets: &Targets<f32>) -> Self {
        Self::of_generic(task, out, targets)
    }

    #[inline(never)]
    fn of_f64(task: Task, out: &ArrayD<f64>, targets: &Targets<f64>) -> Self {
        Self::of_generic(task, out, targets)
    }

    fn of_generic<T: Float>(task: Task, out: &ArrayD<T>, targets: &Targets<T>) -> Self {
        let samples = out.shape().first().copied().unwrap_or(1);
        let mut m = MetricSums {
            samples,
            ..Default::default()
        };
        match (task, targets) {
            (Task::Classification, Targets::Classes(labels)) => {
                m.correct = count_correct(out, labels);
            }
            (Task::Classification, Targets::Values(v)) if v.shape() == out.shape() => {
                // Binary targets: a logit above 0 predicts 1; a sample is right when all its
                // outputs are.
                let half = T::of(0.5);
                m.correct = out
                    .outer_iter()
                    .zip(v.outer_iter())
                    .filter(|(o, t)| {
                        o.iter()
                            .zip(t.iter())
                            .all(|(&o, &t)| (o > T::zero()) == (t > half))
                    })
                    .count();
            }
            (Task::Regression, Targets::Values(v)) if v.shape() == out.shape() => {
                for (&o, &t) in out.iter().zip(v.iter()) {
                    let e = (o - t).as_f64();
                    m.abs_err += e.abs();
                    m.sq_err += e * e;
                }
                m.elements = out.len();
            }
            _ => {}
        }
        m
    }

    pub fn add(&mut self, other: MetricSums) {
        self.samples += other.samples;
        self.correct += other.correct;
        self.abs_err += other.abs_err;
        self.sq_err += other.sq_err;
        self.elements += other.elements;
    }

    pub fn accuracy(&self, task: Task) -> Option<f64> {
        (task == Task::Classification && self.samples > 0)
            .then(|| self.correct as f64 / self.samples as f64)
    }

    pub fn mae(&self, task: Task) -> Option<f64> {
        (task == Task::Regression && self.elements > 0).then(|| self.abs_err / self.elements as f64)
    }

    pub fn rmse(&self, task: Task) -> Option<f64> {
        (task == Task::Regression && self.elements > 0)
            .then(|| (self.sq_err / self.elements as f64).sqrt())
    }
}
