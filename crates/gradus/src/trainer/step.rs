//! One training step's forward and backward: the seam where a data-parallel trainer splits a
//! batch. Everything here is a function of the model, the parameters, the batch and the RNG.

use gradus_autograd::{Anomaly, Float, Gradients, ParamStore, all_finite, value_and_grad_with_aux};
use gradus_layers::{BufferUpdates, ForwardCtx, Module};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::objective::{MetricSums, Objective};
use crate::data::{Batch, Dataset};

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
/// of the job, this process running its `workers` (on the threads of `pool`, when there is
/// more than one), each with its own tape, storage cache and dropout stream (seeded from the
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
    pool: Option<&rayon::ThreadPool>,
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
        let mut part = forward_backward(
            model,
            params,
            data.batch(rows),
            objective,
            &mut worker_rng,
            detect_anomaly,
        )?;
        let share = rows.len() as f64 / n as f64;
        part.grads.scale(T::of(share));
        part.loss *= share;
        Ok((rayon::current_thread_index(), part))
    };
    type Part<T> = Result<(Option<usize>, StepOutcome<T>), Anomaly>;
    let parts: Vec<Part<T>> = match pool {
        Some(pool) if local > 1 => pool.install(|| (0..local).into_par_iter().map(run).collect()),
        _ => (0..local).map(run).collect(),
    };
    let parts = parts.into_iter().collect::<Result<Vec<_>, _>>()?;
    if let [(_, _)] = parts[..] {
        let (_, only) = parts.into_iter().next().expect("one part");
        return Ok(only);
    }
    // The sum on this thread's storage, in worker order; each worker's own buffers then go
    // back to the thread that made them, whose pool the next step takes them from (dropped
    // here, they would pile up in this thread's pool while the workers allocated afresh).
    let grads = Gradients::sum_of(&parts.iter().map(|(_, p)| &p.grads).collect::<Vec<_>>());
    let mut outcome = StepOutcome {
        loss: 0.0,
        grads,
        metrics: MetricSums::default(),
        updates: BufferUpdates::default(),
    };
    let mut updates = Vec::with_capacity(parts.len());
    let mut leftovers: Vec<std::sync::Mutex<Vec<Gradients<T>>>> = Vec::new();
    for (thread, mut part) in parts {
        outcome.loss += part.loss;
        outcome.metrics.add(part.metrics);
        updates.push(std::mem::take(&mut part.updates));
        if let (Some(t), Some(_)) = (thread, pool) {
            leftovers.resize_with(leftovers.len().max(t + 1), Default::default);
            leftovers[t]
                .get_mut()
                .expect("not shared yet")
                .push(part.grads);
        }
    }
    outcome.updates = BufferUpdates::mean_of(updates);
    if let Some(pool) = pool.filter(|_| !leftovers.is_empty()) {
        pool.broadcast(|ctx| {
            if let Some(mine) = leftovers.get(ctx.index()) {
                drop(std::mem::take(
                    &mut *mine.lock().expect("no panic holds it"),
                ));
            }
        });
    }
    Ok(outcome)
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
