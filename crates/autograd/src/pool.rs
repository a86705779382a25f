//! Buffer reuse across training steps: a small per-thread pool of tensor storage.
//!
//! A training step makes the same tensors in the same shapes every time. Instead of asking
//! the allocator for each of them (and, for large ones, having the kernel map fresh zeroed
//! pages), the tape takes storage from this pool and gives it back when backward is done
//! with a value or gradient; [`Gradients`](crate::Gradients) give theirs back when dropped.
//! Once warm, a step of an MLP allocates nothing that grows with the number of ops.
//!
//! The pool is per thread and per element type, holds at most [`MAX_BUFFERS`] buffers and
//! [`MAX_BYTES`] bytes (the oldest go first), and only ever takes back storage that nothing
//! else refers to: a value still shared (a parameter, a value a caller kept) is left alone.
//!
//! The pool is private to this crate; [`crate::memory`] is its public face.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

use crate::Float;
use crate::tape::Node;

/// Most buffers a thread's pool keeps per element type.
pub const MAX_BUFFERS: usize = 64;
/// Most bytes a thread's pool keeps per element type.
pub const MAX_BYTES: usize = 512 << 20;
/// Empty `Arc` shells kept for the tape's values.
const MAX_SHELLS: usize = 256;

pub(crate) struct Pool<T: Float> {
    buffers: Vec<Vec<T>>,
    bytes: usize,
    /// Unique `Arc`s holding empty arrays, so a recorded value needs no fresh `Arc`.
    shells: Vec<Arc<ArrayD<T>>>,
    /// The last tape's (emptied) node list and backward scratch, reused by the next tape.
    pub(crate) nodes: Vec<Node<T>>,
    pub(crate) grads: Vec<Option<ArrayD<T>>>,
    pub(crate) requires: Vec<bool>,
    /// The slots of the last dropped [`Gradients`](crate::Gradients).
    pub(crate) param_grads: Vec<Option<ArrayD<T>>>,
    /// Their name keys.
    pub(crate) param_keys: Vec<u32>,
}

impl<T: Float> Pool<T> {
    const fn new() -> Self {
        Self {
            buffers: Vec::new(),
            bytes: 0,
            shells: Vec::new(),
            nodes: Vec::new(),
            grads: Vec::new(),
            requires: Vec::new(),
            param_grads: Vec::new(),
            param_keys: Vec::new(),
        }
    }

    fn take(&mut self, len: usize) -> Option<Vec<T>> {
        // Best fit, and never more than twice (plus a page) what was asked for.
        let limit = len.saturating_mul(2).saturating_add(1024);
        let mut best: Option<usize> = None;
        for (i, b) in self.buffers.iter().enumerate() {
            let c = b.capacity();
            if c >= len && c <= limit && best.is_none_or(|j| c < self.buffers[j].capacity()) {
                best = Some(i);
            }
        }
        let b = self.buffers.swap_remove(best?);
        self.bytes -= b.capacity() * size_of::<T>();
        Some(b)
    }

    /// Keeps `b` with its elements: they are initialised values a later [`scratch`] may
    /// hand out as they are.
    fn put(&mut self, b: Vec<T>) {
        let size = b.capacity() * size_of::<T>();
        if size == 0 || size > MAX_BYTES {
            return;
        }
        while self.buffers.len() >= MAX_BUFFERS || self.bytes + size > MAX_BYTES {
            let old = self.buffers.remove(0);
            self.bytes -= old.capacity() * size_of::<T>();
        }
        self.bytes += size;
        self.buffers.push(b);
    }
}

thread_local! {
    static POOL_F32: RefCell<Pool<f32>> = const { RefCell::new(Pool::new()) };
    static POOL_F64: RefCell<Pool<f64>> = const { RefCell::new(Pool::new()) };
}

/// Runs `f` on this thread's pool for `T`; `None` for an element type without a pool, or
/// while the thread is being torn down.
pub(crate) fn with_pool<T: Float, R>(f: impl FnOnce(&mut Pool<T>) -> R) -> Option<R> {
    fn on<P: Any, T: Float, R>(
        key: &'static std::thread::LocalKey<RefCell<P>>,
        f: impl FnOnce(&mut Pool<T>) -> R,
    ) -> Option<R> {
        key.try_with(|p| {
            let mut p = p.try_borrow_mut().ok()?;
            (&mut *p as &mut dyn Any).downcast_mut::<Pool<T>>().map(f)
        })
        .ok()
        .flatten()
    }
    if T::NAME == "f32" {
        on(&POOL_F32, f)
    } else {
        on(&POOL_F64, f)
    }
}

/// An empty `Vec` with room for at least `len` elements, reusing pooled storage when a
/// buffer of about that size is there.
pub fn take<T: Float>(len: usize) -> Vec<T> {
    match with_pool::<T, _>(|p| p.take(len)).flatten() {
        Some(mut v) => {
            v.clear();
            v
        }
        None => Vec::with_capacity(len),
    }
}

/// An array of `shape` whose elements are unspecified (whatever the reused storage held,
/// zeros for fresh storage): for a result that is about to be overwritten in full, such as
/// the output of a matrix product with `beta = 0`. Never uninitialised memory.
pub fn scratch<T: Float>(shape: &[usize]) -> ArrayD<T> {
    let n = shape.iter().product();
    let v = match with_pool::<T, _>(|p| p.take(n)).flatten() {
        Some(mut v) => {
            v.truncate(n);
            v.resize(n, T::zero());
            v
        }
        None => vec![T::zero(); n],
    };
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("element count matches")
}

/// Gives a `Vec`'s storage to the pool.
pub fn recycle_vec<T: Float>(v: Vec<T>) {
    with_pool::<T, _>(|p| p.put(v));
}

/// Gives an array's storage to the pool.
pub fn recycle<T: Float>(a: ArrayD<T>) {
    let (v, _) = a.into_raw_vec_and_offset();
    recycle_vec(v);
}

/// `(buffers, bytes)` this thread's pool holds for `T`.
pub fn held<T: Float>() -> (usize, usize) {
    with_pool::<T, _>(|p| (p.buffers.len(), p.bytes)).unwrap_or((0, 0))
}

/// Frees everything this thread's pool holds for `T`.
pub fn clear<T: Float>() {
    with_pool::<T, _>(|p| *p = Pool::new());
}

/// An array of `shape` filled by `f`, element by element in row-major order, on pooled
/// storage.
pub(crate) fn from_iter<T: Float>(shape: &[usize], it: impl IntoIterator<Item = T>) -> ArrayD<T> {
    let n = shape.iter().product();
    let mut v = take::<T>(n);
    v.extend(it);
    assert_eq!(v.len(), n, "pool::from_iter: wrong element count");
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("element count checked")
}

/// An array of `shape` holding `value` everywhere, on pooled storage.
pub(crate) fn full<T: Float>(shape: &[usize], value: T) -> ArrayD<T> {
    let n = shape.iter().product();
    from_iter(shape, std::iter::repeat_n(value, n))
}

/// `f` applied to every element of `a`, on pooled storage (row-major order).
pub(crate) fn map<T: Float>(a: &ArrayD<T>, mut f: impl FnMut(T) -> T) -> ArrayD<T> {
    match a.as_slice() {
        Some(s) => from_iter(a.shape(), s.iter().map(|&v| f(v))),
        None => from_iter(a.shape(), a.iter().map(|&v| f(v))),
    }
}

/// A copy of `a` in row-major order, on pooled storage.
pub(crate) fn copy<T: Float>(a: &ArrayD<T>) -> ArrayD<T> {
    map(a, |v| v)
}

/// Takes the array out of `g`, leaving an empty one: for a backward rule that reuses the
/// incoming gradient's storage for its result.
pub(crate) fn steal<T: Float>(g: &mut ArrayD<T>) -> ArrayD<T> {
    std::mem::replace(g, empty())
}

/// An empty array (no allocation).
pub(crate) fn empty<T: Float>() -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(&[0]), Vec::new()).expect("empty")
}

/// `value` in a shared `Arc`, reusing an empty pooled shell when there is one.
pub(crate) fn share<T: Float>(value: ArrayD<T>) -> Arc<ArrayD<T>> {
    match with_pool::<T, _>(|p| p.shells.pop()).flatten() {
        Some(mut shell) => {
            *Arc::get_mut(&mut shell).expect("pooled shells are unique") = value;
            shell
        }
        None => Arc::new(value),
    }
}

/// Gives back a shared value (such as [`Var::value`](crate::Var::value)) if nothing else
/// refers to it: its storage and its `Arc`. A value still shared is simply dropped.
pub fn recycle_shared<T: Float>(mut a: Arc<ArrayD<T>>) {
    if let Some(v) = Arc::get_mut(&mut a) {
        recycle(std::mem::replace(v, empty()));
        with_pool::<T, _>(|p| {
            if p.shells.len() < MAX_SHELLS {
                p.shells.push(a);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fit_and_bounds() {
        clear::<f64>();
        recycle_vec(Vec::<f64>::with_capacity(10_000));
        recycle_vec(Vec::<f64>::with_capacity(100));
        let v: Vec<f64> = take(10);
        assert_eq!(v.capacity(), 100, "the smallest buffer that fits");
        let w: Vec<f64> = take(10);
        assert!(
            w.capacity() < 10_000,
            "a buffer far too big is not handed out"
        );
        assert_eq!(held::<f64>(), (1, 80_000));
        for _ in 0..MAX_BUFFERS + 10 {
            recycle_vec(Vec::<f64>::with_capacity(16));
        }
        assert_eq!(held::<f64>().0, MAX_BUFFERS);
        recycle_vec(Vec::<f64>::with_capacity(MAX_BYTES / 8 + 1));
        assert!(held::<f64>().1 <= MAX_BYTES, "over the byte limit");
        clear::<f64>();
        assert_eq!(held::<f64>(), (0, 0));
    }

    #[test]
    fn shared_values_are_not_taken_back() {
        clear::<f32>();
        let a = share(ArrayD::<f32>::zeros(vec![3, 4]));
        let kept = Arc::clone(&a);
        recycle_shared(a);
        assert_eq!(held::<f32>(), (0, 0), "a value still referred to stays");
        assert_eq!(kept.shape(), &[3, 4]);
        recycle_shared(kept);
        assert_eq!(held::<f32>(), (1, 48));
        let b = share(ArrayD::<f32>::ones(vec![2]));
        assert_eq!(b.as_slice().unwrap(), &[1.0, 1.0]);
    }
}

thread_local! {
    /// Index buffers (max pooling's argmax), kept per thread like the value pool.
    static INDICES: RefCell<Vec<Vec<u32>>> = const { RefCell::new(Vec::new()) };
}

/// `len` zeroed indices, reusing a buffer given back by [`recycle_indices`] on this thread.
pub(crate) fn take_indices(len: usize) -> Vec<u32> {
    let mut v = INDICES
        .try_with(|c| {
            let mut cache = c.borrow_mut();
            let at = cache.iter().position(|v| v.capacity() >= len)?;
            Some(cache.swap_remove(at))
        })
        .ok()
        .flatten()
        .unwrap_or_default();
    v.clear();
    v.resize(len, 0);
    v
}

/// Gives an index buffer back (at most 8 are kept per thread).
pub(crate) fn recycle_indices(v: Vec<u32>) {
    let _ = INDICES.try_with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() < 8 {
            cache.push(v);
        }
    });
}
