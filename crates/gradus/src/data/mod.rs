//! Datasets held in memory, mini-batch iteration, and the IDX / MNIST readers.
//!
//! The batch size decides which gradient descent a training run is: [`BatchSize::Full`]
//! (batch GD: one step per epoch over the whole set), [`BatchSize::Stochastic`] (one
//! sample per step) or [`BatchSize::Mini`] (n samples per step).

pub mod idx;
pub mod mnist;

use gradus_autograd::ndarray::{ArrayD, Axis};
use gradus_autograd::{Float, memory};
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::DataError;

/// How many samples one gradient step averages over, named by the variant it makes.
///
/// ```
/// use gradus::BatchSize;
/// assert_eq!(BatchSize::from_count(64, 60_000), BatchSize::Mini(64));
/// assert_eq!(BatchSize::Full.samples(500), 500);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchSize {
    /// Batch gradient descent: the whole training set per step.
    Full,
    /// Stochastic gradient descent: one sample per step.
    Stochastic,
    /// Mini-batch gradient descent: `n` samples per step.
    Mini(usize),
}

/// What a batch size means for a dataset.
///
/// ```
/// use gradus::BatchSize;
/// let b = BatchSize::from_count(1, 100);
/// assert_eq!((b, b.samples(100)), (BatchSize::Stochastic, 1));
/// ```
impl BatchSize {
    /// From a number: 1 is stochastic GD, `n >= dataset size` is batch GD.
    ///
    /// ```
    /// use gradus::BatchSize;
    /// assert_eq!(BatchSize::from_count(1, 60_000), BatchSize::Stochastic);
    /// assert_eq!(BatchSize::from_count(64, 60_000), BatchSize::Mini(64));
    /// assert_eq!(BatchSize::from_count(60_000, 60_000), BatchSize::Full);
    /// assert_eq!(BatchSize::Mini(64).variant(), "mini-batch gradient descent");
    /// ```
    pub fn from_count(n: usize, dataset_len: usize) -> Self {
        match n {
            1 => BatchSize::Stochastic,
            n if n >= dataset_len => BatchSize::Full,
            n => BatchSize::Mini(n),
        }
    }

    /// Samples per batch for a dataset of `len` samples.
    ///
    /// ```
    /// use gradus::BatchSize;
    /// assert_eq!(BatchSize::Mini(64).samples(10), 10); // never more than the data
    /// assert_eq!(BatchSize::Stochastic.samples(10), 1);
    /// ```
    pub fn samples(self, len: usize) -> usize {
        match self {
            BatchSize::Full => len.max(1),
            BatchSize::Stochastic => 1,
            BatchSize::Mini(n) => n.min(len).max(1),
        }
    }

    /// The gradient-descent variant this batch size gives.
    ///
    /// ```
    /// assert_eq!(gradus::BatchSize::Stochastic.variant(), "stochastic gradient descent");
    /// ```
    pub fn variant(self) -> &'static str {
        match self {
            BatchSize::Full => "batch gradient descent",
            BatchSize::Stochastic => "stochastic gradient descent",
            BatchSize::Mini(_) => "mini-batch gradient descent",
        }
    }
}

/// What a dataset's samples are labelled with.
///
/// ```
/// use gradus::{Dataset, ndarray::arr2};
/// let data = Dataset::classification(arr2(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]]).into_dyn(), vec![0, 1, 1])?;
/// assert!(matches!(data.targets(), gradus::Targets::Classes(c) if c == &[0, 1, 1]));
/// # Ok::<(), gradus::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Targets<T: Float> {
    /// A class index per sample (for cross-entropy).
    Classes(Vec<usize>),
    /// A value array per sample, `[n, ...]` (for regression or BCE).
    Values(ArrayD<T>),
}

/// Inputs `[n, ...]` and their targets, in memory.
///
/// ```
/// use gradus::Dataset;
/// use gradus::ndarray::arr2;
/// let d = Dataset::classification(arr2(&[[0.0f32, 1.0], [1.0, 0.0], [1.0, 1.0]]).into_dyn(), vec![1, 1, 0]).unwrap();
/// let (train, valid) = d.split(1.0 / 3.0, 7);
/// assert_eq!((train.len(), valid.len()), (2, 1));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset<T: Float = f32> {
    inputs: ArrayD<T>,
    targets: Targets<T>,
}

/// One mini-batch, copied out of a dataset.
///
/// ```
/// use gradus::{Dataset, ndarray::arr2};
/// let data = Dataset::classification(arr2(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]]).into_dyn(), vec![0, 1, 1])?;
/// let batch = data.batch(&[2, 0]);
/// assert_eq!(batch.inputs.shape(), &[2, 2]);
/// assert_eq!(batch.targets, gradus::Targets::Classes(vec![1, 0]));
/// # Ok::<(), gradus::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<T: Float> {
    /// Inputs `[b, ...]`.
    pub inputs: ArrayD<T>,
    /// Targets of the same samples.
    pub targets: Targets<T>,
}

/// Building, reading and slicing a dataset.
///
/// ```
/// use gradus::{Dataset, ndarray::arr2};
/// let data = Dataset::classification(arr2(&[[0.0f32], [1.0]]).into_dyn(), vec![0, 1])?;
/// assert_eq!(data.subset(&[1]).labels(), Some(&[1][..]));
/// # Ok::<(), gradus::DataError>(())
/// ```
impl<T: Float> Dataset<T> {
    /// A classification set; labels must be as many as input rows.
    ///
    /// ```
    /// use gradus::{Dataset, ndarray::arr2};
    /// let data = Dataset::classification(arr2(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]]).into_dyn(), vec![0, 1, 1])?;
    /// assert_eq!(data.len(), 3);
    /// // One label too few is an error, not a panic:
    /// assert!(Dataset::classification(arr2(&[[0.0f32]]).into_dyn(), vec![]).is_err());
    /// # Ok::<(), gradus::DataError>(())
    /// ```
    pub fn classification(inputs: ArrayD<T>, labels: Vec<usize>) -> Result<Self, DataError> {
        Self::new(inputs, Targets::Classes(labels))
    }

    /// A regression set; targets must have as many rows as inputs.
    ///
    /// ```
    /// use gradus::{Dataset, ndarray::arr2};
    /// let data = Dataset::regression(
    ///     arr2(&[[0.0f32], [1.0]]).into_dyn(),
    ///     arr2(&[[0.5f32], [1.5]]).into_dyn(),
    /// )?;
    /// assert!(data.labels().is_none());
    /// # Ok::<(), gradus::DataError>(())
    /// ```
    pub fn regression(inputs: ArrayD<T>, targets: ArrayD<T>) -> Result<Self, DataError> {
        Self::new(inputs, Targets::Values(targets))
    }

    fn new(inputs: ArrayD<T>, targets: Targets<T>) -> Result<Self, DataError> {
        if inputs.ndim() == 0 {
            return Err(DataError::Invalid(
                "inputs must have a sample axis, got a scalar".into(),
            ));
        }
        let n = inputs.shape()[0];
        let m = match &targets {
            Targets::Classes(c) => c.len(),
            Targets::Values(v) => v.shape().first().copied().unwrap_or(0),
        };
        if n != m {
            return Err(DataError::Invalid(format!(
                "{n} input rows but {m} targets"
            )));
        }
        Ok(Self { inputs, targets })
    }

    /// Number of samples.
    ///
    /// ```
    /// use gradus::{Dataset, ndarray::arr2};
    /// let data = Dataset::classification(arr2(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]]).into_dyn(), vec![0, 1, 1])?;
    /// assert_eq!(data.len(), 3);
    /// # Ok::<(), gradus::DataError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.inputs.shape()[0]
    }

    /// True when there are no samples.
    ///
    /// ```
    /// use gradus::{Dataset, ndarray::arr2};
    /// let data = Dataset::classification(arr2(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]]).into_dyn(), vec![0, 1, 1])?;
    /// assert!(!data.is_empty());
    /// assert!(data.take(0).is_empty());
    /// # Ok::<(), gradus::DataError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inputs.
    ///
    /// ```
    /// use gradus::{Dataset, ndarray::arr2};
    /// let data = Dataset::classification(arr2(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]]).into_dyn(), vec![0, 1, 1])?;
    /// assert_eq!(data.inputs().shape(), &[3, 2]);
    /// # Ok::<(), gradus::DataError>(())
    /// ```
    pub fn inputs(&self) -> &ArrayD<T> {
        &self.inputs
    }

    /// The targets.
    ///
    /// ```
    /// use gradus::{Dataset, ndarray::arr2};
    /// let data = Dataset::classification(arr2(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]]).into_dyn(), vec![0, 1, 1])?;
    /// assert_eq!(data.targets(), &gradus::Targets::Classes(vec![0, 1, 1]));
    /// # Ok::<(), gradus::DataError>(())
    /// ```
    pub fn targets(&self) -> &Targets<T> {
        &self.targets
    }

    /// The class labels, if this is a classification set.
    ///
    /// ```
    /// use gradus::{Dataset, ndarray::arr2};
    /// let data = Dataset::classification(arr2(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]]).into_dyn(), vec![0, 1, 1])?;
    /// assert_eq!(data.labels(), Some(&[0, 1, 1][..]));
    /// # Ok::<(), gradus::DataError>(())
    /// ```
    pub fn labels(&self) -> Option<&[usize]> {
        match &self.targets {
            Targets::Classes(c) => Some(c),
            Targets::Values(_) => None,
        }
    }

    /// The samples at `indices`, in that order.
    ///
    /// ```
    /// use gradus::{Dataset, ndarray::arr2};
    /// let data = Dataset::classification(arr2(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]]).into_dyn(), vec![0, 1, 1])?;
    /// let batch = data.batch(&[1, 1]); // repeats are allowed
    /// assert_eq!(batch.inputs.as_slice().unwrap(), &[2.0, 3.0, 2.0, 3.0]);
    /// # Ok::<(), gradus::DataError>(())
    /// ```
    pub fn batch(&self, indices: &[usize]) -> Batch<T> {
        let inputs = gather_rows(&self.inputs, indices);
        let targets = match &self.targets {
            Targets::Classes(c) => Targets::Classes(indices.iter().map(|&i| c[i]).collect()),
            Targets::Values(v) => Targets::Values(gather_rows(v, indices)),
        };
        Batch { inputs, targets }
    }

    /// A new dataset of the samples at `indices`.
    ///
    /// ```
    /// use gradus::{Dataset, ndarray::arr2};
    /// let data = Dataset::classification(arr2(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]]).into_dyn(), vec![0, 1, 1])?;
    /// let odd = data.subset(&[1]);
    /// assert_eq!((odd.len(), odd.labels()), (1, Some(&[1][..])));
    /// # Ok::<(), gradus::DataError>(())
    /// ```
    pub fn subset(&self, indices: &[usize]) -> Self {
        let b = self.batch(indices);
        Self {
            inputs: b.inputs,
            targets: b.targets,
        }
    }

    /// The first `n` samples (or all, if fewer).
    ///
    /// ```
    /// use gradus::{Dataset, ndarray::arr2};
    /// let data = Dataset::classification(arr2(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]]).into_dyn(), vec![0, 1, 1])?;
    /// assert_eq!(data.take(2).len(), 2);
    /// assert_eq!(data.take(100).len(), 3);
    /// # Ok::<(), gradus::DataError>(())
    /// ```
    pub fn take(&self, n: usize) -> Self {
        self.subset(&(0..n.min(self.len())).collect::<Vec<_>>())
    }

    /// A seeded random split: `(rest, held_out)` with `round(fraction * len)` samples held out.
    ///
    /// ```
    /// use gradus::{Dataset, ndarray::arr2};
    /// let data = Dataset::classification(arr2(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]]).into_dyn(), vec![0, 1, 1])?;
    /// let (rest, held_out) = data.split(1.0 / 3.0, 7);
    /// assert_eq!((rest.len(), held_out.len()), (2, 1));
    /// assert_eq!(data.split(1.0 / 3.0, 7), (rest, held_out)); // the same seed, the same split
    /// # Ok::<(), gradus::DataError>(())
    /// ```
    pub fn split(&self, fraction: f64, seed: u64) -> (Self, Self) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let k = ((fraction.clamp(0.0, 1.0) * self.len() as f64).round() as usize).min(self.len());
        let (held, rest) = order.split_at(k);
        (self.subset(rest), self.subset(held))
    }

    /// The index lists of one epoch's batches: every sample exactly once (unless
    /// `drop_last` drops a final partial batch), shuffled by `rng` if given.
    ///
    /// ```
    /// use gradus::{BatchSize, Dataset};
    /// use gradus::ndarray::ArrayD;
    /// let d = Dataset::<f32>::classification(ArrayD::zeros(vec![10, 2]), vec![0; 10]).unwrap();
    /// let batches = d.epoch_batches(BatchSize::Mini(4), None, false);
    /// assert_eq!(batches, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    /// assert_eq!(d.epoch_batches(BatchSize::Mini(4), None, true).len(), 2);
    /// ```
    pub fn epoch_batches(
        &self,
        batch_size: BatchSize,
        rng: Option<&mut dyn RngCore>,
        drop_last: bool,
    ) -> Vec<Vec<usize>> {
        let order = self.epoch_order(rng);
        epoch_chunks(&order, batch_size, drop_last)
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// One epoch's sample order (shuffled by `rng` if given): the batches of
    /// [`epoch_batches`](Self::epoch_batches) are its [`epoch_chunks`], taken without
    /// copying them out. The same `rng` state gives the same order in both.
    ///
    /// ```
    /// use gradus::{BatchSize, Dataset, data::epoch_chunks};
    /// use gradus::ndarray::ArrayD;
    /// let d = Dataset::<f32>::classification(ArrayD::zeros(vec![5, 2]), vec![0; 5]).unwrap();
    /// let order = d.epoch_order(None);
    /// let chunks: Vec<&[usize]> = epoch_chunks(&order, BatchSize::Mini(2), true).collect();
    /// assert_eq!(chunks, [&[0, 1][..], &[2, 3][..]]);
    /// ```
    pub fn epoch_order(&self, rng: Option<&mut dyn RngCore>) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        if let Some(rng) = rng {
            order.shuffle(rng);
        }
        order
    }
}

/// The batches of an epoch's `order`: chunks of `batch_size` (of `order.len()` samples),
/// without a final partial batch when `drop_last`.
///
/// ```
/// use gradus::{BatchSize, data::epoch_chunks};
/// let order = [4, 0, 3, 1, 2];
/// let chunks: Vec<&[usize]> = epoch_chunks(&order, BatchSize::Mini(2), false).collect();
/// assert_eq!(chunks, [&[4, 0][..], &[3, 1], &[2]]);
/// assert_eq!(epoch_chunks(&order, BatchSize::Mini(2), true).count(), 2); // drop_last
/// ```
pub fn epoch_chunks(
    order: &[usize],
    batch_size: BatchSize,
    drop_last: bool,
) -> impl Iterator<Item = &[usize]> + Clone {
    let size = batch_size.samples(order.len());
    order
        .chunks(size)
        .filter(move |c| !drop_last || c.len() == size)
}

/// The rows `indices` of `a` (along axis 0), copied row by row: a plain memcpy per row when
/// `a` is contiguous, which ndarray's generic `select` is not.
fn gather_rows<T: Float>(a: &ArrayD<T>, indices: &[usize]) -> ArrayD<T> {
    gradus_autograd::monomorphic!(T; f32 => gather_rows_f32, f64 => gather_rows_f64; a, indices);
    gather_rows_generic(a, indices)
}

// Compiled here for f32 and f64 (see `gradus_autograd::mono`).
#[inline(never)]
fn gather_rows_f32(a: &ArrayD<f32>, indices: &[usize]) -> ArrayD<f32> {
    gather_rows_generic(a, indices)
}

#[inline(never)]
fn gather_rows_f64(a: &ArrayD<f64>, indices: &[usize]) -> ArrayD<f64> {
    gather_rows_generic(a, indices)
}

fn gather_rows_generic<T: Float>(a: &ArrayD<T>, indices: &[usize]) -> ArrayD<T> {
    let Some(all) = a.as_slice() else {
        return a.select(Axis(0), indices);
    };
    let row = a.shape()[1..].iter().product::<usize>();
    // Pooled storage: the tape gives it back after the step, so the next batch reuses it.
    let mut data = memory::take(indices.len() * row);
    for &i in indices {
        data.extend_from_slice(&all[i * row..(i + 1) * row]);
    }
    let mut dim = a.raw_dim();
    dim[0] = indices.len();
    ArrayD::from_shape_vec(dim, data).expect("rows of the right length")
}
