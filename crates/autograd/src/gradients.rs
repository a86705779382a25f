//! `Gradients`: what one backward pass returns, keyed by parameter id (and by the inputs that
//! asked), with the operations clipping and data parallelism need.

use std::collections::HashMap;

use ndarray::ArrayD;

use crate::tape::NodeId;
use crate::{Float, ParamId, pool};

/// The gradients of one backward pass, keyed by parameter (and by the inputs that asked).
///
/// Dropping them gives their storage back to this thread's cache (see [`memory`](crate::memory)).
#[derive(Clone, Debug, Default)]
pub struct Gradients<T: Float = f32> {
    pub(crate) params: Vec<Option<ArrayD<T>>>,
    /// The name key of each parameter with a gradient, so an id of another model is caught.
    pub(crate) keys: Vec<u32>,
    pub(crate) inputs: HashMap<NodeId, ArrayD<T>>,
}

impl<T: Float> Drop for Gradients<T> {
    fn drop(&mut self) {
        for g in self.params.drain(..).flatten() {
            pool::recycle(g);
        }
        for (_, g) in self.inputs.drain() {
            pool::recycle(g);
        }
        let slots = std::mem::take(&mut self.params);
        let keys = std::mem::take(&mut self.keys);
        pool::with_pool::<T, _>(|p| {
            p.param_grads = slots;
            p.param_keys = keys;
        });
    }
}

impl<T: Float> Gradients<T> {
    fn check(&self, id: ParamId) {
        if let Some(&k) = self.keys.get(id.index) {
            assert!(
                k == 0 || k == id.key,
                "gradients: parameter #{} belongs to another model than these gradients",
                id.index
            );
        }
    }

    /// The gradient of a parameter, or `None` if the loss did not depend on it.
    pub fn get(&self, id: ParamId) -> Option<&ArrayD<T>> {
        self.check(id);
        self.params.get(id.index).and_then(Option::as_ref)
    }

    /// Mutable access, for clipping and the like.
    pub fn get_mut(&mut self, id: ParamId) -> Option<&mut ArrayD<T>> {
        self.check(id);
        self.params.get_mut(id.index).and_then(Option::as_mut)
    }

    /// Sets or replaces a parameter's gradient.
    pub fn insert(&mut self, id: ParamId, grad: ArrayD<T>) {
        self.check(id);
        if self.params.len() <= id.index {
            self.params.resize_with(id.index + 1, || None);
        }
        if self.keys.len() <= id.index {
            self.keys.resize(id.index + 1, 0);
        }
        self.params[id.index] = Some(grad);
        self.keys[id.index] = id.key;
    }

    /// Multiplies every gradient by `factor` (what weighting a shard of a batch by its size
    /// does before the shards are summed).
    pub fn scale(&mut self, factor: T) {
        let grads = self;
        crate::monomorphic!(T; f32 => Gradients::scale_f32, f64 => Gradients::scale_f64; grads, factor);
        grads.scale_generic(factor)
    }

    #[inline(always)]
    fn scale_generic(&mut self, factor: T) {
        for g in self.params.iter_mut().flatten() {
            g.mapv_inplace(|v| v * factor);
        }
    }

    /// Adds `other`'s gradients into these, parameter by parameter (what summing the
    /// gradients of several shards of a batch does).
    pub fn accumulate(&mut self, other: &Gradients<T>) {
        let grads = self;
        crate::monomorphic!(T; f32 => Gradients::accumulate_f32, f64 => Gradients::accumulate_f64; grads, other);
        grads.accumulate_generic(other)
    }

    #[inline(always)]
    fn accumulate_generic(&mut self, other: &Gradients<T>) {
        for (i, g) in other.params.iter().enumerate() {
            let Some(g) = g else { continue };
            if self.params.len() <= i {
                self.params.resize_with(i + 1, || None);
            }
            match &mut self.params[i] {
                Some(acc) => *acc += g,
                slot => *slot = Some(g.clone()),
            }
            if self.keys.len() <= i {
                self.keys.resize(i + 1, 0);
            }
            self.keys[i] = other.keys.get(i).copied().unwrap_or(0);
        }
    }

    /// The sum of `parts`, parameter by parameter, in the order given (`(a + b) + c`, as
    /// [`Gradients::accumulate`] would make it), on this thread's pooled storage: how the
    /// shards of data-parallel workers are combined without taking any worker's buffers.
    ///
    /// ```
    /// use gradus_autograd::{value_and_grad, Gradients, ParamStore, ndarray::arr1};
    /// let mut params = ParamStore::<f32>::new();
    /// let w = params.insert("w", arr1(&[1.0, 2.0]).into_dyn()).unwrap();
    /// let (_, a) = value_and_grad(|tape| tape.param(&params, w).sum());
    /// let (_, b) = value_and_grad(|tape| tape.param(&params, w).square().sum());
    /// let total = Gradients::sum_of(&[&a, &b]);
    /// assert_eq!(total.get(w).unwrap().as_slice().unwrap(), &[3.0, 5.0]);
    /// ```
    pub fn sum_of(parts: &[&Gradients<T>]) -> Gradients<T> {
        crate::monomorphic!(T; f32 => Gradients::sum_of_f32, f64 => Gradients::sum_of_f64; parts);
        Self::sum_of_generic(parts)
    }

    #[inline(always)]
    fn sum_of_generic(parts: &[&Gradients<T>]) -> Gradients<T> {
        let (mut params, mut keys) = pool::with_pool::<T, _>(|p| {
            (
                std::mem::take(&mut p.param_grads),
                std::mem::take(&mut p.param_keys),
            )
        })
        .unwrap_or_default();
        params.clear();
        keys.clear();
        let slots = parts.iter().map(|p| p.params.len()).max().unwrap_or(0);
        params.resize_with(slots, || None);
        keys.resize(slots, 0);
        for (i, slot) in params.iter_mut().enumerate() {
            for part in parts {
                let Some(Some(g)) = part.params.get(i) else {
                    continue;
                };
                keys[i] = part.keys.get(i).copied().unwrap_or(0);
                match slot {
                    Some(acc) => *acc += g,
                    None => *slot = Some(pool::copy(g)),
                }
            }
        }
        Gradients {
            params,
            keys,
            inputs: HashMap::new(),
        }
    }

    /// The gradient of a value made with [`Tape::input`](crate::Tape::input).
    pub fn input(&self, id: NodeId) -> Option<&ArrayD<T>> {
        self.inputs.get(&id)
    }

    /// The gradients present, mutable, in parameter order: what a reduction across
    /// processes sums (every process of one model sees the same order).
    ///
    /// ```
    /// use gradus_autograd::{value_and_grad, ParamStore, ndarray::arr1};
    /// let mut params = ParamStore::<f32>::new();
    /// let w = params.insert("w", arr1(&[1.0, 2.0]).into_dyn()).unwrap();
    /// let (_, mut grads) = value_and_grad(|tape| tape.param(&params, w).square().sum());
    /// for g in grads.arrays_mut() {
    ///     g.mapv_inplace(|v| v * 0.5);
    /// }
    /// assert_eq!(grads.get(w).unwrap().as_slice().unwrap(), &[1.0, 2.0]);
    /// ```
    pub fn arrays_mut(&mut self) -> impl Iterator<Item = &mut ArrayD<T>> {
        self.params.iter_mut().flatten()
    }

    /// `(id, gradient)` for every parameter that received one.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &ArrayD<T>)> {
        let keys = &self.keys;
        self.params
            .iter()
            .enumerate()
            .filter_map(move |(index, g)| {
                let key = keys.get(index).copied().unwrap_or(0);
                g.as_ref().map(|g| (ParamId { index, key }, g))
            })
    }

    /// Mutable `(id, gradient)` pairs.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ParamId, &mut ArrayD<T>)> {
        let keys = &self.keys;
        self.params
            .iter_mut()
            .enumerate()
            .filter_map(move |(index, g)| {
                let key = keys.get(index).copied().unwrap_or(0);
                g.as_mut().map(|g| (ParamId { index, key }, g))
            })
    }

    /// Number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when no parameter received a gradient.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// The f32 and f64 bodies, compiled here (see `mono`).
impl Gradients<f32> {
    #[inline(never)]
    fn sum_of_f32(parts: &[&Gradients<f32>]) -> Gradients<f32> {
        Self::sum_of_generic(parts)
    }
    #[inline(never)]
    fn scale_f32(&mut self, factor: f32) {
        self.scale_generic(factor)
    }
    #[inline(never)]
    fn accumulate_f32(&mut self, other: &Gradients<f32>) {
        self.accumulate_generic(other)
    }
}

impl Gradients<f64> {
    #[inline(never)]
    fn sum_of_f64(parts: &[&Gradients<f64>]) -> Gradients<f64> {
        Self::sum_of_generic(parts)
    }
    #[inline(never)]
    fn scale_f64(&mut self, factor: f64) {
        self.scale_generic(factor)
    }
    #[inline(never)]
    fn accumulate_f64(&mut self, other: &Gradients<f64>) {
        self.accumulate_generic(other)
    }
}
