//! The data-parallel workers' threads: the caller runs worker 0 and `n - 1` persistent helper
//! threads run the others.
//!
//! A training step hands its workers a job every few hundred microseconds (W1 at batch 64:
//! about 400 µs), and between two jobs the caller alone sums the gradients and updates the
//! parameters. A general-purpose pool (rayon) puts idle threads to sleep and the caller to
//! sleep while the pool works; each wake-up is a futex call and, on a virtual machine, an
//! interrupt between virtual CPUs, which cost as much as the step saved. So a helper spins
//! on the job counter for a while after each job (the caller's serial part is short), and
//! only then parks; the caller never sleeps: it runs worker 0's share itself.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks: longer than the caller's serial part of a
/// step (the bookkeeping between the gradient sum and the next step's shards), short
/// enough that a helper left idle (evaluation, the end of training) soon stops using a core.
const SPIN: Duration = Duration::from_millis(2);

/// A job: called with the worker's index, `1..n` on the helpers.
type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// Bumped once per job (and once to stop); a helper runs the job when it changes.
    generation: AtomicUsize,
    /// Helpers still running the current job.
    remaining: AtomicUsize,
    /// The current job, with its lifetime erased: valid from the `generation` bump that
    /// publishes it until `remaining` reaches 0, which [`WorkerThreads::run`] waits for.
    job: UnsafeCell<Option<&'static Job>>,
    /// The first panic of a helper in the current job, re-raised on the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    stop: AtomicBool,
    /// Helpers parked (or about to park) on `wake`.
    parked: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by `run` while no helper reads it (before the generation
// bump that publishes it, after `remaining` has reached 0), and read only by helpers in
// between; the job itself is `Sync`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// A caller plus `n - 1` helper threads that run data-parallel jobs.
pub(crate) struct WorkerThreads {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
}

impl WorkerThreads {
    /// Starts `n - 1` helper threads named `gradus-worker-1..`.
    pub(crate) fn new(n: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            remaining: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            panic: Mutex::new(None),
            stop: AtomicBool::new(false),
            parked: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut threads = WorkerThreads {
            shared,
            helpers: Vec::new(),
        };
        for index in 1..n.max(1) {
            let shared = Arc::clone(&threads.shared);
            let handle = std::thread::Builder::new()
                .name(format!("gradus-worker-{index}"))
                .spawn(move || helper(&shared, index))?;
            threads.helpers.push(handle);
        }
        Ok(threads)
    }

    /// How many workers run a job: the caller and the helpers.
    pub(crate) fn len(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `job(i)` for every worker `i` at once, worker 0 on this thread, and returns when
    /// all have finished; a panic of any of them is raised here after all have finished.
    pub(crate) fn run(&self, job: &(dyn Fn(usize) + Sync + '_)) {
        let s = &*self.shared;
        if self.helpers.is_empty() {
            return job(0);
        }
        // SAFETY: the reference outlives every use: this function returns (or unwinds) only
        // after `remaining` is 0, i.e. after every helper has finished with it.
        let erased: &'static Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Job>(job) };
        // SAFETY: no helper reads `job` now: the previous job's `remaining` reached 0.
        unsafe { *s.job.get() = Some(erased) };
        s.remaining.store(self.helpers.len(), Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        wake_parked(s);
        let mine = catch_unwind(AssertUnwindSafe(|| job(0)));
        let mut spins = 0u32;
        while s.remaining.load(Ordering::Acquire) != 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        // SAFETY: every helper has finished; none reads `job` until the next bump.
        unsafe { *s.job.get() = None };
        if let Err(payload) = mine {
            resume_unwind(payload);
        }
        if let Some(payload) = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(payload);
        }
    }
}

/// The optimizer's elementwise update runs on the workers too (`gradus_optim::split_mut`).
impl gradus_optim::Parallel for WorkerThreads {
    fn threads(&self) -> usize {
        self.len()
    }

    fn run(&self, job: &(dyn Fn(usize) + Sync + '_)) {
        WorkerThreads::run(self, job)
    }
}

fn wake_parked(s: &Shared) {
    if s.parked.load(Ordering::SeqCst) > 0 {
        let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        s.wake.notify_all();
    }
}

/// A helper's life: wait for a new generation (spinning, then parked), run the job, repeat.
fn helper(s: &Shared, index: usize) {
    let mut seen = 0usize;
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        let current = loop {
            let g = s.generation.load(Ordering::Acquire);
            if g != seen {
                break g;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(256) {
                std::hint::spin_loop();
                continue;
            }
            if started.elapsed() < SPIN {
                std::thread::yield_now();
                continue;
            }
            // Park; `run` bumps the generation before it reads `parked`, and this thread
            // counts itself parked before it reads the generation again, so one of the two
            // sees the other.
            s.parked.fetch_add(1, Ordering::SeqCst);
            let mut guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            while s.generation.load(Ordering::SeqCst) == seen {
                guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            drop(guard);
            s.parked.fetch_sub(1, Ordering::SeqCst);
        };
        seen = current;
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: published by the generation bump just seen; valid until `remaining` is 0.
        let job = unsafe { *s.job.get() };
        if let Some(job) = job
            && let Err(payload) = catch_unwind(AssertUnwindSafe(|| job(index)))
        {
            s.panic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(payload);
        }
        s.remaining.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for WorkerThreads {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        s.wake.notify_all();
        drop(_guard);
        for handle in self.helpers.drain(..) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_worker_runs_each_job_once_and_the_caller_is_worker_zero() {
        let threads = WorkerThreads::new(3).unwrap();
        assert_eq!(threads.len(), 3);
        let caller = std::thread::current().id();
        for round in 0..200 {
            let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
            threads.run(&|i| {
                hits[i].fetch_add(1, Ordering::SeqCst);
                assert_eq!(i == 0, std::thread::current().id() == caller);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::SeqCst) == 1),
                "round {round}"
            );
            if round % 50 == 0 {
                // Long enough for the helpers to park: they must wake for the next job.
                std::thread::sleep(SPIN * 3);
            }
        }
    }

    #[test]
    fn a_helpers_panic_reaches_the_caller_and_the_threads_stay_usable() {
        let threads = WorkerThreads::new(2).unwrap();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            threads.run(&|i| assert!(i != 1, "worker one fails"));
        }));
        let message = caught.unwrap_err();
        assert_eq!(
            message.downcast_ref::<&str>().copied(),
            Some("worker one fails")
        );
        let count = AtomicUsize::new(0);
        threads.run(&|_| {
            count.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn one_worker_runs_on_the_caller_without_threads() {
        let threads = WorkerThreads::new(1).unwrap();
        let count = AtomicUsize::new(0);
        threads.run(&|i| {
            assert_eq!(i, 0);
            count.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
