//! Data-parallel training over MPI (the `mpi` feature): one process per rank, each with its
//! own data-parallel workers, training one model.
//!
//! Every rank shuffles the same global order from the shared seed and takes its shard of
//! every mini-batch: rank `r` of `R`, with `W` workers each, runs the global workers
//! `r * W .. (r + 1) * W` of `R * W`, exactly the shards and dropout streams that `R * W`
//! workers in one process would run. Each step sums the ranks' gradients (already weighted by
//! their share of the batch) over one flat buffer: the ranks of one machine in an MPI
//! shared-memory window, in rank order ([`Reduction::SharedMemory`], the default), then the
//! machines' sums with one `MPI_Allreduce` among one rank per machine; or, with
//! [`Reduction::Allreduce`], with one `MPI_Allreduce` over all ranks. The loss and metrics go
//! in a second, small allreduce; every rank then applies the same update. After every
//! epoch a checksum of the parameters is compared across ranks, so a silent divergence
//! becomes an error. Only rank 0 prints progress and writes checkpoints.
//!
//! An error on one rank (a checkpoint that cannot be written, say) would leave the others
//! waiting in the next reduction, so in a run of more than one rank `fit` prints it and
//! aborts the job (`MPI_Abort`); a panic does the same.
//!
//! ```no_run
//! use std::sync::Arc;
//! use gradus::{Mnist, Sequential, Trainer, TrainerConfig, distributed::Mpi};
//! use gradus::optim::Adam;
//!
//! // mpirun -n 4 target/release/examples/my_training
//! let mpi = Arc::new(Mpi::init().expect("MPI initialises"));
//! let mnist = Mnist::load_default()?;
//! let (model, mut params) = Sequential::<f32>::new().linear(784, 128).relu().linear(128, 10).build(0)?;
//! let mut trainer = Trainer::new(TrainerConfig::default(), Adam::new(1e-3)).distributed(mpi.clone());
//! trainer.fit(&model, &mut params, &mnist.train, Some(&mnist.test))?;
//! if mpi.rank() == 0 {
//!     gradus::checkpoint::save_weights("model.gradus", &params)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::atomic::{AtomicBool, Ordering};

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::{Communicator, CommunicatorCollectives};

use gradus_autograd::mono::cast;
use gradus_autograd::{Float, Gradients, ParamStore, all_finite};
use gradus_layers::BufferUpdates;

use crate::trainer::MetricSums;

mod node;

/// How the ranks' gradients are summed each step: [`Mpi::set_reduction`], or the
/// environment variable `GRADUS_MPI_REDUCE` (`shared` or `allreduce`) read by [`Mpi::init`].
///
/// ```no_run
/// use gradus::distributed::{Mpi, Reduction};
/// let mpi = Mpi::init().unwrap();
/// mpi.set_reduction(Reduction::Allreduce); // MPI_Allreduce over every rank
/// assert_eq!(mpi.reduction(), Reduction::Allreduce);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The ranks of each machine sum in a shared-memory window (`MPI_Win_allocate_shared`),
    /// in rank order; the machines' sums then go through one `MPI_Allreduce` among one rank
    /// per machine. On one machine, R ranks of one worker each give the weights of one
    /// process with R workers bit for bit.
    #[default]
    SharedMemory,
    /// One `MPI_Allreduce` over every rank (the MPI library's summation order).
    Allreduce,
}

/// An initialised MPI environment: this process's rank in `MPI_COMM_WORLD`. Dropping it
/// finalises MPI, so keep it alive until the last collective call.
pub struct Mpi {
    world: SimpleCommunicator,
    /// The ranks on this machine (sharing its memory), in world rank order.
    node: SimpleCommunicator,
    /// The first rank of every machine, on those ranks, when the job spans machines.
    across: Option<SimpleCommunicator>,
    /// Ranks on this machine, this one included.
    local: usize,
    /// Whether gradients are summed with one allreduce over all ranks ([`Reduction`]).
    allreduce: AtomicBool,
    /// What this process's trainers have spent on reducing gradients.
    stats: std::sync::Mutex<ReduceStats>,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mpi {{ rank: {}, size: {}, local_size: {} }}",
            self.rank(),
            self.size(),
            self.local
        )
    }
}

impl Mpi {
    /// Initialises MPI (once per process; `None` if it already was) and installs a panic hook
    /// that aborts the whole job, so a rank that dies does not leave the others hanging.
    /// Run without `mpirun`, this is a job of one rank.
    ///
    /// ```no_run
    /// let mpi = gradus::distributed::Mpi::init().expect("MPI initialises");
    /// println!("rank {} of {}", mpi.rank(), mpi.size());
    /// ```
    pub fn init() -> Option<Mpi> {
        // Only the thread that called `fit` talks to MPI; the workers never do.
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)?;
        let world = universe.world();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            // After MPI_Finalize (the `Mpi` dropped) there is no job left to end.
            if mpi::environment::is_finalized() {
                return;
            }
            eprintln!("gradus: a rank panicked; aborting the MPI job");
            // SAFETY: MPI is initialised (the hook is installed after it) and not finalised
            // (checked above); MPI_Abort takes any communicator and does not return.
            unsafe {
                mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, 101);
            }
        }));
        // Collective over the world, so every rank makes it here, before any training.
        let node = world.split_shared(0);
        let local = node.size() as usize;
        let first = node.rank() == 0;
        let color = if first {
            Color::with_value(0)
        } else {
            Color::undefined()
        };
        let across = world
            .split_by_color(color)
            .filter(|c| c.size() > 1 && first);
        let reduction = match std::env::var("GRADUS_MPI_REDUCE").as_deref() {
            Err(_) | Ok("shared") => Reduction::SharedMemory,
            Ok("allreduce") => Reduction::Allreduce,
            Ok(other) => end_job(
                &world,
                format!("GRADUS_MPI_REDUCE is `{other}`: expected `shared` or `allreduce`"),
                2,
            ),
        };
        let mpi = Mpi {
            world,
            node,
            across,
            local,
            allreduce: AtomicBool::new(false),
            stats: Default::default(),
            _universe: universe,
        };
        mpi.set_reduction(reduction);
        Some(mpi)
    }

    /// How gradients are summed across the ranks from the next step on; every rank must
    /// choose the same (the trainer checks before training). The default is
    /// [`Reduction::SharedMemory`], or what `GRADUS_MPI_REDUCE` says.
    ///
    /// ```no_run
    /// use gradus::distributed::{Mpi, Reduction};
    /// let mpi = Mpi::init().unwrap();
    /// mpi.set_reduction(Reduction::SharedMemory);
    /// ```
    pub fn set_reduction(&self, reduction: Reduction) {
        self.allreduce
            .store(reduction == Reduction::Allreduce, Ordering::Relaxed);
    }

    /// How gradients are summed across the ranks: [`Mpi::set_reduction`].
    ///
    /// ```no_run
    /// use gradus::distributed::{Mpi, Reduction};
    /// let mpi = Mpi::init().unwrap();
    /// println!("{:?}", mpi.reduction());
    /// ```
    pub fn reduction(&self) -> Reduction {
        if self.allreduce.load(Ordering::Relaxed) {
            Reduction::Allreduce
        } else {
            Reduction::SharedMemory
        }
    }

    /// This process's rank, from 0.
    ///
    /// ```no_run
    /// let mpi = gradus::distributed::Mpi::init().unwrap();
    /// assert!(mpi.rank() < mpi.size());
    /// ```
    pub fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    /// The number of ranks.
    ///
    /// ```no_run
    /// let mpi = gradus::distributed::Mpi::init().unwrap();
    /// assert!(mpi.size() >= 1);
    /// ```
    pub fn size(&self) -> usize {
        self.world.size() as usize
    }

    /// The number of ranks on this machine (`MPI_Comm_split_type` with
    /// `MPI_COMM_TYPE_SHARED`), this one included: how many share its cores. With a
    /// hostfile of several machines it is the ranks placed on this one, not [`Mpi::size`].
    ///
    /// ```no_run
    /// let mpi = gradus::distributed::Mpi::init().unwrap();
    /// let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    /// let workers = (cores / mpi.local_size()).max(1); // a worker per core of this machine
    /// assert!(mpi.local_size() >= 1 && mpi.local_size() <= mpi.size());
    /// ```
    pub fn local_size(&self) -> usize {
        self.local
    }

    /// The time this process's trainers have spent reducing gradients across the ranks, so
    /// far: how communication-bound a job is (docs/distributed.md's cost model, measured).
    ///
    /// ```no_run
    /// let mpi = gradus::distributed::Mpi::init().unwrap();
    /// // ... trainer.distributed(mpi.clone()).fit(...) ...
    /// let s = mpi.reduce_stats();
    /// if s.steps > 0 {
    ///     println!("{:.2} ms per step in the allreduce", 1e3 * s.allreduce_secs / s.steps as f64);
    /// }
    /// ```
    pub fn reduce_stats(&self) -> ReduceStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends every rank of the job with `code` (`MPI_Abort`), after printing `message`.
    ///
    /// ```no_run
    /// let mpi = gradus::distributed::Mpi::init().unwrap();
    /// mpi.abort("the data are missing on this rank", 2);
    /// ```
    pub fn abort(&self, message: impl std::fmt::Display, code: i32) -> ! {
        end_job(&self.world, message, code)
    }

    /// Waits until every rank has called it (`MPI_Barrier`): after rank 0 has written a
    /// file, say, before the others read it.
    ///
    /// ```no_run
    /// let mpi = gradus::distributed::Mpi::init().unwrap();
    /// if mpi.rank() == 0 {
    ///     std::fs::write("shared.txt", "hello").unwrap();
    /// }
    /// mpi.barrier();
    /// assert_eq!(std::fs::read_to_string("shared.txt").unwrap(), "hello");
    /// ```
    pub fn barrier(&self) {
        self.world.barrier();
    }

    /// Sums a step's few scalars across ranks, in place (the copy sent stays on the stack).
    fn sum_f64<const N: usize>(&self, values: &mut [f64; N]) {
        let send = *values;
        self.world
            .all_reduce_into(&send[..], &mut values[..], SystemOperation::sum());
    }

    /// Sums a flat buffer of `T` across the ranks of `comm` into `recv`.
    fn sum<T: Float>(comm: &SimpleCommunicator, send: &[T], recv: &mut [T]) {
        // SAFETY (both casts): `&[f32]` / `&mut [f32]` are the same slices with T = f32.
        if let (Ok(s), Ok(r)) = unsafe {
            (
                cast::<T, f32, &[T], &[f32]>(send),
                cast::<T, f32, &mut [T], &mut [f32]>(&mut *recv),
            )
        } {
            return comm.all_reduce_into(s, r, SystemOperation::sum());
        }
        // SAFETY: as above, with f64.
        if let (Ok(s), Ok(r)) = unsafe {
            (
                cast::<T, f64, &[T], &[f64]>(send),
                cast::<T, f64, &mut [T], &mut [f64]>(recv),
            )
        } {
            return comm.all_reduce_into(s, r, SystemOperation::sum());
        }
        panic!("MPI reductions support f32 and f64, not {}", T::NAME);
    }

    /// Every rank's value of `x`, in rank order.
    fn gather(&self, x: u64) -> Vec<u64> {
        let mut all = vec![0u64; self.size()];
        self.world.all_gather_into(&x, &mut all[..]);
        all
    }
}

/// Prints `error (rank r): message` and ends every rank of the job with `code`.
fn end_job(world: &SimpleCommunicator, message: impl std::fmt::Display, code: i32) -> ! {
    use std::io::Write;
    // One write of the whole line: `eprintln!` writes its pieces separately, and the lines
    // of ranks failing at once came out interleaved through mpirun.
    let line = format!("error (rank {}): {message}\n", world.rank());
    let _ = std::io::stderr().write_all(line.as_bytes());
    let _ = std::io::stderr().flush();
    // mpirun forwards each rank's output asynchronously, and MPI_Abort ends every rank at
    // once: give it a moment to pass this rank's last lines on first.
    std::thread::sleep(std::time::Duration::from_secs(1));
    world.abort(code)
}

/// What the gradient reductions of a process cost: [`Mpi::reduce_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReduceStats {
    /// Steps whose gradients were summed across the ranks.
    pub steps: u64,
    /// Values in the last step's flat buffer (every gradient and buffer update).
    pub values: usize,
    /// Seconds summing the gradients across the ranks (the shared-memory sum with its
    /// barriers and the allreduce between machines, or the one `MPI_Allreduce`), waiting
    /// for the slowest rank included.
    pub allreduce_secs: f64,
    /// Seconds copying the gradients into the flat buffer (this rank's part of the shared
    /// window) and the sums back out.
    pub copy_secs: f64,
}

/// The reusable buffers of one trainer's reductions.
#[derive(Default)]
pub(crate) struct Reducer<T: Float> {
    send: Vec<T>,
    recv: Vec<T>,
    /// The machine's shared-memory window, sized for the model's values.
    node: Option<node::NodeSum<T>>,
}

// SAFETY: the window's memory belongs to this process as long as the window lives, and
// only the thread that drives the trainer (MPI's funneled thread) touches it.
unsafe impl<T: Float> Send for Reducer<T> {}

impl<T: Float> Reducer<T> {
    /// Sums a step's gradients, loss and metrics across ranks and averages its buffer
    /// updates (each rank's already averages its own workers'), so every rank ends with the
    /// whole batch's values; returns whether every summed gradient is finite (checked as
    /// they are copied out).
    pub(crate) fn reduce_step(
        &mut self,
        mpi: &Mpi,
        grads: &mut Gradients<T>,
        loss: &mut f64,
        metrics: &mut MetricSums,
        updates: &mut BufferUpdates<T>,
    ) -> bool {
        let start = std::time::Instant::now();
        // One flat buffer: every gradient, then every buffer update.
        let len = grads.arrays_mut().map(|a| a.len()).sum::<usize>()
            + updates.arrays_mut().map(|a| a.len()).sum::<usize>();
        let (packed, summed, flat) = match mpi.reduction() {
            Reduction::SharedMemory => {
                if self.node.as_ref().is_none_or(|n| n.len() != len) {
                    self.node = None;
                    self.node = Some(node::NodeSum::new(&mpi.node, len, mpi.local == mpi.size()));
                }
                let node = self.node.as_mut().expect("allocated above");
                let mut at = 0;
                let mine = node.begin(mpi.node.rank() as usize);
                for a in grads.arrays_mut().chain(updates.arrays_mut()) {
                    at = pack(mine, at, a);
                }
                let packed = std::time::Instant::now();
                let sums = node.sum(&mpi.node, mpi.across.as_ref(), &mut self.send);
                (packed, std::time::Instant::now(), sums)
            }
            Reduction::Allreduce => {
                self.send.clear();
                self.send.resize(len, T::zero());
                let mut at = 0;
                for a in grads.arrays_mut().chain(updates.arrays_mut()) {
                    at = pack(&mut self.send, at, a);
                }
                if self.recv.len() != len {
                    self.recv = vec![T::zero(); len];
                }
                let packed = std::time::Instant::now();
                Mpi::sum(&mpi.world, &self.send, &mut self.recv);
                (packed, std::time::Instant::now(), &self.recv[..])
            }
        };
        let (mut at, mut finite) = (0, true);
        for g in grads.arrays_mut() {
            at = unpack_checked(flat, at, g, None, &mut finite);
        }
        let ranks = T::of(mpi.size() as f64);
        for u in updates.arrays_mut() {
            at = unpack(flat, at, u, Some(ranks));
        }
        {
            let mut stats = mpi.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.steps += 1;
            stats.values = len;
            stats.allreduce_secs += (summed - packed).as_secs_f64();
            stats.copy_secs += (packed - start).as_secs_f64() + summed.elapsed().as_secs_f64();
        }
        let mut small = [
            *loss,
            metrics.samples as f64,
            metrics.correct as f64,
            metrics.abs_err,
            metrics.sq_err,
            metrics.elements as f64,
        ];
        mpi.sum_f64(&mut small);
        *loss = small[0];
        metrics.samples = small[1] as usize;
        metrics.correct = small[2] as usize;
        metrics.abs_err = small[3];
        metrics.sq_err = small[4];
        metrics.elements = small[5] as usize;
        finite
    }
}

/// Copies `a` into `flat[at..]`; returns the next position.
fn pack<T: Float>(flat: &mut [T], at: usize, a: &gradus_autograd::ndarray::ArrayD<T>) -> usize {
    let dst = &mut flat[at..at + a.len()];
    match a.as_slice_memory_order() {
        Some(s) => dst.copy_from_slice(s),
        None => dst.iter_mut().zip(a.iter()).for_each(|(d, &s)| *d = s),
    }
    at + a.len()
}

/// Copies `a.len()` values from `flat[at..]` into `a` (divided by `divide`, if given);
/// returns the next position.
fn unpack<T: Float>(
    flat: &[T],
    at: usize,
    a: &mut gradus_autograd::ndarray::ArrayD<T>,
    divide: Option<T>,
) -> usize {
    unpack_checked(flat, at, a, divide, &mut true)
}

/// [`unpack`], clearing `finite` if a value copied is not finite (checked a block at a time
/// as it is copied, while the block is in the cache).
fn unpack_checked<T: Float>(
    flat: &[T],
    at: usize,
    a: &mut gradus_autograd::ndarray::ArrayD<T>,
    divide: Option<T>,
    finite: &mut bool,
) -> usize {
    const BLOCK: usize = 4096;
    let n = a.len();
    let src = &flat[at..at + n];
    match (a.as_slice_memory_order_mut(), divide) {
        (Some(d), None) => {
            for (d, s) in d.chunks_mut(BLOCK).zip(src.chunks(BLOCK)) {
                d.copy_from_slice(s);
                *finite &= all_finite(d);
            }
            return at + n;
        }
        (Some(d), Some(k)) => d.iter_mut().zip(src).for_each(|(d, &s)| *d = s / k),
        (None, _) => a
            .iter_mut()
            .zip(src)
            .for_each(|(d, &s)| *d = divide.map_or(s, |k| s / k)),
    }
    *finite &= all_finite(src);
    at + n
}

/// An FNV-1a hash of every parameter's bytes and shape, in order.
fn checksum<T: Float>(params: &ParamStore<T>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (_, _, a) in params.iter() {
        for &d in a.shape() {
            eat(&(d as u64).to_le_bytes());
        }
        for &v in a.iter() {
            eat(&v.as_f64().to_bits().to_le_bytes());
        }
    }
    h
}

/// Compares configuration values across the ranks (one all-gather each, before training):
/// the first that differs, with every rank's value in rank order.
pub(crate) fn check_same(mpi: &Mpi, fields: &[(&str, u64)]) -> Result<(), String> {
    for &(name, value) in fields {
        let all = mpi.gather(value);
        if all.iter().any(|&v| v != value) {
            return Err(format!(
                "`{name}` differs across the ranks (rank 0, 1, ...: {all:?}): every rank must \
                 train with the same configuration"
            ));
        }
    }
    Ok(())
}

/// Compares the parameters' checksum across ranks: `Err` names the ranks that differ from
/// rank 0.
pub(crate) fn check_in_step<T: Float>(mpi: &Mpi, params: &ParamStore<T>) -> Result<(), String> {
    let all = mpi.gather(checksum(params));
    let differ: Vec<usize> = (1..all.len()).filter(|&r| all[r] != all[0]).collect();
    if differ.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the parameters of rank(s) {differ:?} differ from rank 0's (checksums {all:x?}): \
             the ranks diverged"
        ))
    }
}
