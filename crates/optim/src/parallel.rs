//! Elementwise updates split over the threads of a data-parallel trainer.
//!
//! With several workers, the trainer's threads sit idle while one of them updates the
//! parameters: for W2's 670k parameters, SGD with momentum streams about 13 MB through
//! memory per step, a millisecond that a single core cannot shorten. Every built-in update
//! is elementwise, so [`split_mut`] cuts the slices into one contiguous range per thread
//! (each updated in pieces); the result is the same bit for bit, whatever the number of
//! threads.

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
/// long slices, over one contiguous range per thread at once (each thread calling `f` on
/// consecutive pieces of its range, 1 KiB of each slice at a time); `parts` are the sub-slices
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
        // Piece by piece, each piece's lines claimed for writing a few pieces ahead.
        let piece = (PIECE_BYTES / std::mem::size_of::<T>().max(1)).max(1);
        let mut start = range.start;
        while start < range.end {
            let end = (start + piece).min(range.end);
            let ahead = (start + AHEAD * piece).min(range.end);
            let ahead_end = (ahead + piece).min(range.end);
            for b in bases.iter().filter(|b| b.1 != 0) {
                // SAFETY: `ahead..ahead_end` lies inside the slice.
                prefetch_for_write(unsafe { b.0.add(ahead) }, ahead_end - ahead);
            }
            let parts = bases.each_ref().map(|b| {
                if b.1 == 0 {
                    &mut [][..]
                } else {
                    // SAFETY: `start..end` lies inside the slice (its length is `len`), the
                    // ranges of the threads are disjoint, and the slices stay borrowed until
                    // `run` returns.
                    unsafe { std::slice::from_raw_parts_mut(b.0.add(start), end - start) }
                }
            });
            f(parts, start..end);
            start = end;
        }
    });
}

/// The pieces a thread's range is updated in, and how many pieces ahead their cache lines
/// are claimed for writing.
const PIECE_BYTES: usize = 1024;
const AHEAD: usize = 4;

/// Asks for the cache lines of `len` elements from `p` in a state that can be written.
///
/// Every worker reads all the parameters in its forward pass, so when a thread then updates
/// its range, each line it writes is also in the other cores' caches, and each store must
/// first have the other copies invalidated. The stores wait for that one line at a time; on
/// this project's virtual machine, W1's update (101,770 parameters) on 2 threads took as
/// long as on one. `prefetchw` puts those requests in flight ahead of the stores, many at
/// once (on CPUs without it, nothing is done).
#[inline]
fn prefetch_for_write<T>(p: *const T, len: usize) {
    #[cfg(target_arch = "x86_64")]
    if has_prefetchw() {
        let bytes = len * std::mem::size_of::<T>();
        let mut offset = 0;
        while offset < bytes {
            // SAFETY: the CPU has PREFETCHW (checked); a prefetch does not fault and changes
            // no architectural state.
            unsafe {
                std::arch::asm!(
                    "prefetchw [{}]",
                    in(reg) p.cast::<u8>().wrapping_add(offset),
                    options(nostack, preserves_flags, readonly)
                );
            }
            offset += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Whether the CPU has PREFETCHW: CPUID leaf 0x8000_0001, ECX bit 8 (AMD's 3DNowPrefetch,
/// Intel's PRFCHW).
#[cfg(target_arch = "x86_64")]
fn has_prefetchw() -> bool {
    use std::arch::x86_64::__cpuid;
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        #[allow(unused_unsafe)] // `__cpuid` is safe to call in newer Rust versions
        let (max, ecx) = unsafe { (__cpuid(0x8000_0000).eax, __cpuid(0x8000_0001).ecx) };
        max >= 0x8000_0001 && ecx & (1 << 8) != 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        let threads = Mutex::new(HashSet::new());
        let calls = AtomicUsize::new(0);
        let count = |_: [&mut [u8]; 1], _| {
            calls.fetch_add(1, Ordering::Relaxed);
            threads.lock().unwrap().insert(std::thread::current().id());
        };
        with_parallel(&Scoped(2), || split_mut(a.len(), [&mut a[..]], count));
        // Two threads, each over its half in pieces of 1 KiB.
        assert_eq!(threads.lock().unwrap().len(), 2);
        assert_eq!(
            calls.swap(0, Ordering::Relaxed),
            MIN_SPLIT * 2 / PIECE_BYTES
        );
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
