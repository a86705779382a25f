//! Elementwise updates split over the threads of a data-parallel trainer.
//!
//! With several workers, the trainer's threads sit idle while one of them updates the
//! parameters: for W2's 670k parameters, SGD with momentum streams about 13 MB through
//! memory per step, a millisecond that a single core cannot shorten. Every built-in update
//! is elementwise, so [`split_mut`] cuts the slices into one contiguous range per thread;
//! the result is the same bit for bit, whatever the number of threads.

use std::cell::Cell;
use std::ops::Range;

/// Threads that run a job at once, `job(i)` for every `i` in `0..threads()`, returning when
/// all have finished (the trainer's data-parallel workers implement it).
///
/// ```
/// use gradus_optim::Parallel;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// /// Runs the jobs one after the other on the caller: a stand-in for real threads.
/// struct Inline(usize);
/// impl Parallel for Inline {
///     fn threads(&self) -> usize { self.0 }
///     fn run(&self, job: &(dyn Fn(usize) + Sync + '_)) { (0..self.0).for_each(job) }
/// }
/// let ran = AtomicUsize::new(0);
/// Inline(3).run(&|_| { ran.fetch_add(1, Ordering::Relaxed); });
/// assert_eq!(ran.into_inner(), 3);
/// ```
pub trait Parallel: Sync {
    /// How many jobs [`run`](Parallel::run) runs at once.
    fn threads(&self) -> usize;
    /// Runs `job(i)` for every `i` in `0..threads()` and returns when all have finished.
    fn run(&self, job: &(dyn Fn(usize) + Sync + '_));
}

thread_local! {
    static CURRENT: Cell<Option<&'static dyn Parallel>> = const { Cell::new(None) };
}

/// Runs `f` with `threads` available to [`split_mut`] on this thread: how a trainer lends
/// its workers to an optimizer's `step`.
///
/// ```
/// use gradus_optim::{Parallel, split_mut, with_parallel};
/// struct Inline(usize);
/// impl Parallel for Inline {
///     fn threads(&self) -> usize { self.0 }
///     fn run(&self, job: &(dyn Fn(usize) + Sync + '_)) { (0..self.0).for_each(job) }
/// }
/// let mut v = vec![1.0f32; 100_000];
/// with_parallel(&Inline(4), || split_mut(v.len(), [&mut v[..]], |[v], _| v.iter_mut().for_each(|x| *x *= 2.0)));
/// assert!(v.iter().all(|&x| x == 2.0));
/// ```
pub fn with_parallel<R>(threads: &dyn Parallel, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<&'static dyn Parallel>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    // SAFETY: the reference is reachable only through `CURRENT`, which is restored when
    // this function returns or unwinds, and `split_mut` uses it only while it runs.
    let erased = unsafe { std::mem::transmute::<&dyn Parallel, &'static dyn Parallel>(threads) };
    let _restore = Restore(CURRENT.with(|c| c.replace(Some(erased))));
    f()
}

/// Below this many elements one thread is quicker than a hand-off.
const MIN_SPLIT: usize = 1 << 15;

struct Base<T>(*mut T, usize);
// SAFETY: the threads of `split_mut` make disjoint sub-slices of the slices these came from.
unsafe impl<T: Send> Sync for Base<T> {}

/// Calls `f(parts, range)` over `0..len`, in one piece or, inside [`with_parallel`] and for
/// long slices, in one contiguous range per thread at once; `parts` are the sub-slices
/// `range` of `slices`, each of which holds `len` elements or none (an absent optional
/// state, passed as `&mut []`, stays empty). For elementwise updates, whose result does not
/// depend on how the elements are split.
///
/// ```
/// use gradus_optim::split_mut;
/// let (mut p, mut b, g) = (vec![1.0f32; 8], vec![0.5f32; 8], vec![2.0f32; 8]);
/// split_mut(p.len(), [&mut p[..], &mut b[..]], |[p, b], r| {
///     for ((p, b), &g) in p.iter_mut().zip(b.iter_mut()).zip(&g[r]) {
///         *b = 0.9 * *b + g;
///         *p -= 0.1 * *b;
///     }
/// });
/// assert!((p[0] - (1.0 - 0.1 * 2.45)).abs() < 1e-6);
/// ```
pub fn split_mut<T: Send, const N: usize>(
    len: usize,
    slices: [&mut [T]; N],
    f: impl Fn([&mut [T]; N], Range<usize>) + Sync,
) {
    for s in &slices {
        assert!(
            s.len() == len || s.is_empty(),
            "split_mut: a slice of {} elements for {len}",
            s.len()
        );
    }
    let threads = CURRENT
        .with(Cell::get)
        .filter(|p| p.threads() > 1 && len >= MIN_SPLIT);
    let Some(threads) = threads else {
        return f(slices, 0..len);
    };
    let bases = slices.map(|s| Base(s.as_mut_ptr(), s.len()));
    let chunk = len.div_ceil(threads.threads()).next_multiple_of(64);
    threads.run(&|i| {
        let range = (i * chunk).min(len)..((i + 1) * chunk).min(len);
        if range.is_empty() {
            return;
        }
        let parts = bases.each_ref().map(|b| {
            if b.1 == 0 {
                &mut [][..]
            } else {
                // SAFETY: `range` lies inside the slice (its length is `len`), the ranges of
                // the threads are disjoint, and the slices stay borrowed until `run` returns.
                unsafe { std::slice::from_raw_parts_mut(b.0.add(range.start), range.len()) }
            }
        });
        f(parts, range);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the jobs on real threads, as the trainer's workers do.
    struct Scoped(usize);
    impl Parallel for Scoped {
        fn threads(&self) -> usize {
            self.0
        }
        fn run(&self, job: &(dyn Fn(usize) + Sync + '_)) {
            std::thread::scope(|s| {
                for i in 0..self.0 {
                    s.spawn(move || job(i));
                }
            });
        }
    }

    #[test]
    fn every_element_is_visited_once_with_its_own_index() {
        for (threads, len) in [(1, 100_000), (3, 100_003), (4, MIN_SPLIT), (2, 10)] {
            let mut a: Vec<u64> = vec![0; len];
            let mut none: Vec<u64> = Vec::new();
            with_parallel(&Scoped(threads), || {
                split_mut(len, [&mut a[..], &mut none[..]], |[a, none], r| {
                    assert!(none.is_empty());
                    for (x, i) in a.iter_mut().zip(r) {
                        *x += i as u64 + 1;
                    }
                })
            });
            assert!(a.iter().enumerate().all(|(i, &x)| x == i as u64 + 1));
        }
    }

    #[test]
    fn outside_with_parallel_it_runs_in_one_piece_and_the_lender_is_forgotten_after() {
        let mut a = vec![0u8; MIN_SPLIT * 2];
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let count = |_: [&mut [u8]; 1], _| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        with_parallel(&Scoped(2), || split_mut(a.len(), [&mut a[..]], count));
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::Relaxed), 2);
        split_mut(a.len(), [&mut a[..]], count);
        assert_eq!(calls.into_inner(), 1);
    }

    #[test]
    #[should_panic(expected = "split_mut: a slice of 3 elements for 4")]
    fn slices_of_another_length_are_refused() {
        let (mut a, mut b) = (vec![0; 4], vec![0; 3]);
        split_mut(4, [&mut a[..], &mut b[..]], |_, _| {});
    }
}
