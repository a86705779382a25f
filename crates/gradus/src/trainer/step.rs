//! One training step's forward and backward: the seam where a data-parallel trainer splits a
//! batch. Everything here is a function of the model, the parameters, the batch and the RNG.

use gradus_autograd::{Anomaly, Float, Gradients, ParamStore, all_finite, value_and_grad_with_aux};
use gradus_layers::{BufferUpdates, ForwardCtx, Module};
use rand::RngCore;

use super::objective::{MetricSums, Objective};
use crate::data::Batch;

/// What forward and backward of one batch produce.
pub(crate) struct StepOutcome<T: Float> {
    pub loss: f64,
    pub grads: Gradients<T>,
    pub metrics: MetricSums,
    pub updates: BufferUpdates<T>,
}

/// Forward in training mode, the loss, the batch's metrics (computed on the tape, returned
/// as the auxiliary output) and backward.
pub(crate) fn forward_backward<T: Float, M: Module<T> + ?Sized>(
    model: &M,
    params: &ParamStore<T>,
    batch: Batch<T>,
    objective: &dyn Objective<T>,
    rng: &mut dyn RngCore,
    detect_anomaly: bool,
) -> Result<StepOutcome<T>, Anomaly> {
    let Batch { inputs, targets } = batch;
    let task = objective.task();
    let (loss, grads, (metrics, updates)) = value_and_grad_with_aux(detect_anomaly, |tape| {
        let mut ctx = ForwardCtx::train(rng);
        let out = model.forward(params, tape.constant(inputs), &mut ctx);
        let metrics = MetricSums::of(task, &out.value(), &targets);
        (objective.loss(out, &targets), (metrics, ctx.take_updates()))
    })?;
    Ok(StepOutcome {
        loss: loss.as_f64(),
        grads,
        metrics,
        updates,
    })
}

/// What is not finite in a step's loss or gradients, if anything.
pub(crate) fn non_finite<T: Float>(
    loss: f64,
    grads: &Gradients<T>,
    params: &ParamStore<T>,
) -> Option<String> {
    if !loss.is_finite() {
        return Some(format!("loss ({loss})"));
    }
    grads
        .iter()
        .find(|(_, g)| match g.as_slice_memory_order() {
            Some(s) => !all_finite(s),
            None => g.iter().any(|v| !v.is_finite()),
        })
        .map(|(id, _)| format!("gradient of {}", params.name(id)))
}
