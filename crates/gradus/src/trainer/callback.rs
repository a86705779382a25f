//! Callbacks: code of the user's that the trainer runs after every batch and every epoch, for
//! custom metrics, logging or stopping (Keras's `Callback`, burn's metrics).

use gradus_autograd::{Float, ParamStore};

use super::EpochRecord;

/// Where training is when a batch ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchEnd {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based batch within the epoch (as the epoch is 1-based).
    pub batch: usize,
    /// Optimizer steps taken so far, this one included.
    pub step: u64,
    /// Samples in this batch.
    pub batch_size: usize,
    /// The batch's loss.
    pub loss: f64,
    /// The learning rate the step was taken with.
    pub lr: f64,
}

/// Hooks the trainer calls; every method has a default that does nothing.
///
/// ```
/// use gradus::{Callback, EpochRecord, ParamStore};
///
/// /// Records the squared norm of the weights after every epoch.
/// struct WeightNorm;
/// impl Callback<f32> for WeightNorm {
///     fn on_epoch_end(&mut self, record: &mut EpochRecord, params: &ParamStore<f32>) -> Result<(), String> {
///         let sq: f32 = params.iter().map(|(_, _, w)| w.iter().map(|v| v * v).sum::<f32>()).sum();
///         record.extra.insert("weight_norm2".into(), sq as f64);
///         Ok(())
///     }
/// }
/// ```
pub trait Callback<T: Float> {
    /// After every optimizer step (not after a skipped batch).
    fn on_batch_end(&mut self, info: &BatchEnd, params: &ParamStore<T>) {
        let _ = (info, params);
    }

    /// After every epoch, before it is printed, checkpointed or checked for early stopping:
    /// the callback may add metrics to `record.extra` (they are printed and kept in the
    /// history). An error stops training with [`TrainError::Callback`](crate::TrainError).
    fn on_epoch_end(
        &mut self,
        record: &mut EpochRecord,
        params: &ParamStore<T>,
    ) -> Result<(), String> {
        let _ = (record, params);
        Ok(())
    }
}

/// A closure run after every epoch, as a [`Callback`].
pub(crate) struct EpochFn<F>(pub F);

impl<T: Float, F: FnMut(&mut EpochRecord, &ParamStore<T>) -> Result<(), String>> Callback<T>
    for EpochFn<F>
{
    fn on_epoch_end(
        &mut self,
        record: &mut EpochRecord,
        params: &ParamStore<T>,
    ) -> Result<(), String> {
        (self.0)(record, params)
    }
}
