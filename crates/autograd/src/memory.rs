//! The tensor-storage cache, seen from outside: how much it holds, emptying it, and taking
//! storage from it for arrays that go onto a tape (PyTorch's caching allocator has
//! `torch.cuda.empty_cache` and `memory_reserved` for the same reasons).
//!
//! A training step makes the same tensors in the same shapes every time, so the tape keeps
//! the storage of values and gradients it is done with in a small per-thread cache (at most
//! [`MAX_BUFFERS`] buffers and [`MAX_BYTES`] bytes per element type) and reuses it on the
//! next step. Nothing here is needed for correctness.
//!
//! ```
//! use gradus_autograd::{memory, ndarray::ArrayD};
//! memory::empty_cache::<f32>();
//! assert_eq!(memory::cached::<f32>(), (0, 0));
//! let v: Vec<f32> = memory::take(64 * 100);
//! assert!(v.capacity() >= 64 * 100 && v.is_empty());
//! ```

pub use crate::pool::{MAX_BUFFERS, MAX_BYTES};
use crate::{Float, pool};

/// An empty vector with capacity for `len` elements, from this thread's cache when it holds
/// one of a fitting size: for building an array (a batch of inputs) that goes onto a tape,
/// which gives the storage back to the cache when done with it.
///
/// ```
/// let v = gradus_autograd::memory::take::<f32>(256);
/// assert!(v.is_empty() && v.capacity() >= 256);
/// ```
pub fn take<T: Float>(len: usize) -> Vec<T> {
    pool::take(len)
}

/// `(buffers, bytes)` this thread's cache holds for element type `T`.
///
/// ```
/// use gradus_autograd::memory;
/// memory::empty_cache::<f64>();
/// assert_eq!(memory::cached::<f64>(), (0, 0));
/// ```
pub fn cached<T: Float>() -> (usize, usize) {
    pool::held::<T>()
}

/// Frees everything this thread's cache holds for element type `T`.
///
/// ```
/// use gradus_autograd::{memory, Tape, ndarray::Array1};
/// let tape = Tape::<f32>::no_grad();
/// drop(tape.constant(Array1::zeros(1000).into_dyn()).relu());
/// drop(tape); // its buffers go back to this thread's cache
/// memory::empty_cache::<f32>();
/// assert_eq!(memory::cached::<f32>(), (0, 0));
/// ```
pub fn empty_cache<T: Float>() {
    pool::clear::<T>()
}
