//! One training step's forward and backward: the seam where a data-parallel trainer splits a
//! batch. Everything here is a function of the model, the parameters, the batch and the RNG.

use gradus_autograd::{
    Anomaly, Float, Gradients, ParamStore, add_to, all_finite, value_and_grad_with_aux,
};
use gradus_layers::{BufferUpdates, ForwardCtx, Module};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smallvec::SmallVec;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::objective::{MetricSums, Objective};
use super::workers::WorkerThreads;
use crate::data::{Batch, Dataset};

/// What forward and backward of one batch produce.
pub(crate) struct StepOutcome<T: Float> {
    pub loss: f64,
    pub grads: Gradients<T>,
    pub metrics: MetricSums,
    pub updates: BufferUpdates<T>,
    /// Whether every gradient is known to be finite (checked while the workers' gradients
    /// were summed); `false` leaves the check to [`non_finite`].
    pub finite: bool,
    /// Seconds spent summing the workers' gradients (0 for one worker).
    pub reduce_secs: f64,
}

/// Forward in training mode, the loss, the batch's metrics (computed on the tape, returned
/// as the auxiliary output) and backward, for a shard that holds `share` of the batch (1 for
/// the whole batch): the gradients come out already weighted by `share` (the loss is scaled
/// on the tape, so backward carries the weight instead of a pass over every gradient
/// afterwards), and so does the returned loss.
pub(crate) fn forward_backward<T: Float, M: Module<T> + ?Sized>(
    model: &M,
    params: &ParamStore<T>,
    batch: Batch<T>,
    objective: &dyn Objective<T>,
    rng: &mut dyn RngCore,
    detect_anomaly: bool,
    share: f64,
) -> Result<StepOutcome<T>, Anomaly> {
    let Batch { inputs, targets } = batch;
    let task = objective.task();
    let (_, grads, (metrics, updates, loss)) = value_and_grad_with_aux(detect_anomaly, |tape| {
        let mut ctx = ForwardCtx::train(rng);
        let out = model.forward(params, tape.constant(inputs), &mut ctx);
        let metrics = MetricSums::of(task, &out.value(), &targets);
        let loss = objective.loss(out, &targets);
        // The shard's own mean loss, before the weight: what the step reports.
        let value = loss.value().iter().next().map_or(f64::NAN, |v| v.as_f64());
        let weighted = if share == 1.0 {
            loss
        } else {
            loss.mul_scalar(T::of(share))
        };
        (weighted, (metrics, ctx.take_updates(), value))
    })?;
    Ok(StepOutcome {
        loss: loss * share,
        grads,
        metrics,
        updates,
        finite: false,
        reduce_secs: 0.0,
    })
}

/// The shard of `n` samples that worker `i` of `workers` takes: contiguous, sizes differing
/// by at most one.
pub(crate) fn shard(n: usize, workers: usize, i: usize) -> std::ops::Range<usize> {
    i * n / workers..(i + 1) * n / workers
}

/// SplitMix64's finaliser: spreads a counter into an unrelated-looking 64-bit seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Which of a step's data-parallel workers this process runs: `local` workers from
/// `first`, of `total` in the whole job (several processes under MPI, or this one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Workers {
    pub first: usize,
    pub local: usize,
    pub total: usize,
}

/// Data-parallel forward and backward: the batch `indices` split into one shard per worker
/// of the job, this process running its `workers` (worker 0 on this thread, the others on
/// `threads`), each with its own tape, storage cache and dropout stream (seeded from the
/// training seed, the step and the worker's index in the job, so the shuffling stream is the
/// one a single worker uses); each shard's gradients weighted by its share of the batch and
/// summed in worker order, so that summed over the job they are the whole batch's mean, the
/// same on every run.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_backward_sharded<T: Float, M: Module<T> + Sync + ?Sized>(
    model: &M,
    params: &ParamStore<T>,
    data: &Dataset<T>,
    indices: &[usize],
    objective: &(dyn Objective<T> + Send + Sync),
    (seed, step): (u64, u64),
    workers: Workers,
    threads: Option<&WorkerThreads>,
    detect_anomaly: bool,
) -> Result<StepOutcome<T>, Anomaly> {
    let n = indices.len();
    let Workers {
        first,
        local,
        total,
    } = workers;
    let run = |i: usize| {
        let g = first + i;
        let rows = &indices[shard(n, total, g)];
        let mut worker_rng = ChaCha8Rng::seed_from_u64(mix(mix(mix(seed) ^ step) ^ g as u64));
        forward_backward(
            model,
            params,
            data.batch(rows),
            objective,
            &mut worker_rng,
            detect_anomaly,
            rows.len() as f64 / n as f64,
        )
    };
    type Slot<T> = Mutex<Option<Result<StepOutcome<T>, Anomaly>>>;
    let threads = threads.filter(|t| local > 1 && t.len() >= local);
    let parts: Vec<Result<StepOutcome<T>, Anomaly>> = match threads {
        Some(threads) => {
            let slots: SmallVec<[Slot<T>; 4]> = (0..local).map(|_| Mutex::new(None)).collect();
            threads.run(&|i| {
                if let Some(slot) = slots.get(i) {
                    *slot.lock().expect("each slot has one writer") = Some(run(i));
                }
            });
            slots
                .into_iter()
                .map(|s| {
                    s.into_inner()
                        .expect("no panic held it")
                        .expect("every worker ran")
                })
                .collect()
        }
        None => (0..local).map(run).collect(),
    };
    let reduce_start = std::time::Instant::now();
    let mut parts = parts.into_iter().collect::<Result<Vec<_>, _>>()?;
    // The sum in worker order into worker 0's gradients, which this thread made: `(g0 + g1)
    // + g2 ...`. Each other worker's buffers then go back to the thread that made them,
    // whose storage cache the next step takes them from (dropped here, they would pile up
    // in this thread's cache while the workers allocated afresh).
    let mut rest = parts.split_off(1);
    let mut outcome = parts.pop().expect("at least one worker");
    let mut updates = Vec::with_capacity(local);
    updates.push(std::mem::take(&mut outcome.updates));
    outcome.finite = match threads {
        Some(threads) => {
            gradus_optim::with_parallel(threads, || sum_into(&mut outcome.grads, &rest))
        }
        None => sum_into(&mut outcome.grads, &rest),
    };
    for part in &mut rest {
        outcome.loss += part.loss;
        outcome.metrics.add(part.metrics);
        updates.push(std::mem::take(&mut part.updates));
    }
    if updates.len() > 1 {
        outcome.updates = BufferUpdates::mean_of(updates);
    } else {
        outcome.updates = updates.pop().unwrap_or_default();
    }
    if let Some(threads) = threads {
        let leftovers: SmallVec<[Mutex<Option<StepOutcome<T>>>; 4]> =
            rest.into_iter().map(|p| Mutex::new(Some(p))).collect();
        threads.run(&|i| {
            if let Some(mine) = i.checked_sub(1).and_then(|j| leftovers.get(j)) {
                drop(mine.lock().expect("one owner").take());
            }
        });
    }
    if local > 1 {
        outcome.reduce_secs = reduce_start.elapsed().as_secs_f64();
    }
    Ok(outcome)
}

/// Adds the other workers' gradients into worker 0's, in worker order; when every worker has
/// the same parameters' gradients (the usual case) each array is split over the threads
/// lent by `gradus_optim::with_parallel` (the sum of each element is the same), and each
/// thread checks that its part of the sums is finite while it is in its cache: the return
/// value says whether that check ran and found every gradient finite (the trainer's own
/// check, on one thread, then has nothing left to do).
fn sum_into<T: Float>(acc: &mut Gradients<T>, rest: &[StepOutcome<T>]) -> bool {
    let count = acc.iter().count();
    let aligned = acc.iter().all(|(_, g)| g.is_standard_layout())
        && rest.iter().all(|p| {
            p.grads.iter().count() == count
                && acc.iter().all(|(id, g)| {
                    p.grads
                        .get(id)
                        .is_some_and(|h| h.shape() == g.shape() && h.is_standard_layout())
                })
        });
    if !aligned {
        for part in rest {
            acc.accumulate(&part.grads);
        }
        return false;
    }
    let infinite = AtomicBool::new(false);
    for (id, a) in acc.iter_mut() {
        let others: SmallVec<[&[T]; 4]> = rest
            .iter()
            .filter_map(|p| p.grads.get(id).and_then(|g| g.as_slice()))
            .collect();
        let a = a.as_slice_mut().expect("standard layout, checked above");
        gradus_optim::split_mut(a.len(), [a], |[a], r| {
            for o in &others {
                add_to(a, &o[r.clone()]);
            }
            if !all_finite(a) {
                infinite.store(true, Ordering::Relaxed);
            }
        });
    }
    !infinite.into_inner()
}

/// What is not finite in a step's loss or gradients, if anything; `grads_finite` says the
/// gradients were already found finite.
pub(crate) fn non_finite<T: Float>(
    loss: f64,
    grads: &Gradients<T>,
    grads_finite: bool,
    params: &ParamStore<T>,
) -> Option<String> {
    if !loss.is_finite() {
        return Some(format!("loss ({loss})"));
    }
    if grads_finite {
        return None;
    }
    grads
        .iter()
        .find(|(_, g)| match g.as_slice_memory_order() {
            Some(s) => !all_finite(s),
            None => g.iter().any(|v| !v.is_finite()),
        })
        .map(|(id, _)| format!("gradient of {}", params.name(id)))
}
