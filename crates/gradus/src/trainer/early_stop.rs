//! Early stopping's bookkeeping: whether an epoch improved the monitored metric, and the
//! weights of the best epoch.

use gradus_autograd::{Float, ParamStore};

use super::{Metric, Trainer};

impl<T: Float> Trainer<T> {
    pub(super) fn is_best(&self, metric: Metric) -> bool {
        let history = &self.state.history.epochs;
        let Some(last) = history.last().and_then(|r| metric.of(r)) else {
            return false;
        };
        history[..history.len() - 1]
            .iter()
            .filter_map(|r| metric.of(r))
            .all(|v| {
                if metric.higher_is_better() {
                    last > v
                } else {
                    last < v
                }
            })
    }

    /// Updates the early-stopping bookkeeping; true if the epoch improved the metric.
    pub(super) fn track_best(&mut self, params: &ParamStore<T>) -> bool {
        let Some(es) = self.config.early_stopping else {
            return false;
        };
        let record = self
            .state
            .history
            .epochs
            .last()
            .expect("an epoch was just recorded");
        let Some(value) = es.monitor.of(record) else {
            return false;
        };
        let improved = match self.state.best {
            None => true,
            Some((best, _)) if es.monitor.higher_is_better() => value > best + es.min_delta,
            Some((best, _)) => value < best - es.min_delta,
        };
        if improved {
            self.state.best = Some((value, record.epoch));
            self.state.history.best_epoch = Some(record.epoch);
            self.state.wait = 0;
            if es.restore_best {
                self.state.best_weights = Some(params.export());
            }
        } else {
            self.state.wait += 1;
        }
        improved
    }
}
