//! Evaluation and prediction: forward passes in evaluation mode with no backward graph, in
//! batches, needing no optimizer.

use gradus_autograd::ndarray::{ArrayD, Axis};
use gradus_autograd::{Float, ParamStore, Tape};
use gradus_layers::{ForwardCtx, Module};

use super::objective::{MetricSums, Objective};
use super::{Evaluation, TrainError};
use crate::DataError;
use crate::data::{Dataset, Targets};

/// Checks that `data`'s samples and targets fit `model` before anything runs: the input
/// shape the model declares (naming the layer) and, for classification, that every label
/// has an output.
pub(crate) fn check_fits<T: Float, M: Module<T> + ?Sized>(
    model: &M,
    data: &Dataset<T>,
) -> Result<(), TrainError> {
    let sample = &data.inputs().shape()[1..];
    model.check_input(sample).map_err(TrainError::Model)?;
    let Some(out) = model.output_shape() else {
        return Ok(());
    };
    match data.targets() {
        Targets::Classes(labels) => {
            if let ([k], Some(&max)) = (out.as_slice(), labels.iter().max())
                && max >= *k
            {
                return Err(TrainError::Model(format!(
                    "the labels go up to {max} but the model has {k} outputs (classes 0 to {}): \
                     give its last layer {} outputs",
                    k - 1,
                    max + 1
                )));
            }
        }
        Targets::Values(v) => {
            if v.shape()[1..] != out[..] {
                return Err(TrainError::Model(format!(
                    "the targets are {:?} per sample but the model's outputs are {out:?}",
                    &v.shape()[1..]
                )));
            }
        }
    }
    Ok(())
}

/// The mean loss and the task's metrics of `model` on `data`, in batches of `batch_size`,
/// in evaluation mode (no dropout, running statistics, no buffer updates).
///
/// ```
/// use gradus::{Dataset, Loss, Sequential, evaluate};
/// use gradus::ndarray::arr2;
///
/// let data = Dataset::classification(arr2(&[[1.0f32, 0.0], [0.0, 1.0]]).into_dyn(), vec![0, 1])?;
/// let (model, params) = Sequential::<f32>::new().linear(2, 2).build(0)?;
/// let e = evaluate(&model, &params, &data, &Loss::CrossEntropy, 1000)?;
/// assert!(e.loss > 0.0 && e.accuracy.is_some() && e.mae.is_none());
/// assert!(evaluate(&model, &params, &data, &Loss::Mse, 1000).is_err()); // labels, not values
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn evaluate<T: Float, M: Module<T> + ?Sized>(
    model: &M,
    params: &ParamStore<T>,
    data: &Dataset<T>,
    objective: &dyn Objective<T>,
    batch_size: usize,
) -> Result<Evaluation, TrainError> {
    if data.is_empty() {
        return Err(DataError::Invalid("the evaluation set is empty".into()).into());
    }
    check_fits(model, data)?;
    objective
        .check_targets(data.targets())
        .map_err(|expected| TrainError::Config {
            field: "loss",
            expected,
            found: objective.name(),
        })?;
    let task = objective.task();
    let n = data.len();
    let (mut loss_sum, mut sums) = (0.0, MetricSums::default());
    let chunk = batch_size.max(1);
    for start in (0..n).step_by(chunk) {
        let indices: Vec<usize> = (start..(start + chunk).min(n)).collect();
        let batch = data.batch(&indices);
        let tape = Tape::no_grad();
        let out = model.forward(params, tape.constant(batch.inputs), &mut ForwardCtx::eval());
        let loss = objective.loss(out, &batch.targets).item().as_f64();
        loss_sum += loss * indices.len() as f64;
        sums.add(MetricSums::of(task, &out.value(), &batch.targets));
    }
    Ok(Evaluation {
        loss: loss_sum / n as f64,
        accuracy: sums.accuracy(task),
        mae: sums.mae(task),
        rmse: sums.rmse(task),
    })
}

/// The model's outputs for `inputs` in batches of `batch` rows, with no backward graph.
pub fn predict<T: Float, M: Module<T> + ?Sized>(
    model: &M,
    params: &ParamStore<T>,
    inputs: &ArrayD<T>,
    batch: usize,
) -> ArrayD<T> {
    let n = inputs.shape()[0];
    let mut parts = Vec::new();
    for start in (0..n).step_by(batch.max(1)) {
        let rows = inputs
            .slice_axis(Axis(0), (start..(start + batch).min(n)).into())
            .to_owned();
        parts.push(model.predict(params, rows));
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    gradus_autograd::ndarray::concatenate(Axis(0), &views)
        .expect("outputs of one model agree in shape")
}

/// The class each row of `inputs` is predicted to be: the arg-max of the model's output.
///
/// ```
/// use gradus::{Sequential, predict_classes};
/// use gradus::ndarray::ArrayD;
/// let (model, params) = Sequential::<f32>::new().linear(3, 4).build(0).unwrap();
/// let classes = predict_classes(&model, &params, &ArrayD::zeros(vec![5, 3]), 2);
/// assert_eq!(classes.len(), 5);
/// assert!(classes.iter().all(|&c| c < 4));
/// ```
pub fn predict_classes<T: Float, M: Module<T> + ?Sized>(
    model: &M,
    params: &ParamStore<T>,
    inputs: &ArrayD<T>,
    batch: usize,
) -> Vec<usize> {
    let out = predict(model, params, inputs, batch);
    out.outer_iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, T::neg_infinity()), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0
        })
        .collect()
}
