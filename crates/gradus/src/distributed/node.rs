//! The sum of the gradients of the ranks on one machine, in memory they share: an MPI-3
//! shared-memory window (`MPI_Win_allocate_shared` over the ranks of `MPI_COMM_TYPE_SHARED`).
//!
//! Each rank copies its flat gradients into its own segment of the window; after a barrier,
//! each sums its own slice of the values across every segment, in rank order, into the
//! first segment; after a second barrier every rank reads the sums from there. Ranks on one
//! machine thus exchange the gradients as the threads of one process do: each value is read
//! from another rank's memory once, with no message queue in between. MPICH's
//! `MPI_Allreduce` moves the same bytes through its shared-memory cells a chunk at a time,
//! each copied in by one rank and out by the other: 1.0-1.4 ms for W2's 2.7 MB on the 2-core
//! machine (docs/distributed.md). The sum is in rank order, which is the order of the
//! workers of one process: R ranks of one worker each give the weights of one process with
//! R workers bit for bit, for any R (an allreduce's order is the library's choice).
//!
//! Every segment holds two buffers and the steps alternate between them, so a rank can write
//! the next step's gradients while a slower one still reads the last step's sums: the two
//! barriers of a step are all the synchronisation it needs.

use std::os::raw::c_void;

use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};

use gradus_autograd::{Float, add_to};

/// A shared-memory window of two buffers of `len` values per rank of one machine.
pub(crate) struct NodeSum<T: Float> {
    win: ffi::MPI_Win,
    /// The start of each local rank's segment, in local rank order.
    segments: Vec<*mut T>,
    len: usize,
    /// Which of the two buffers this step uses.
    parity: usize,
    /// Whether every rank of the job is on this machine.
    one_machine: bool,
}

impl<T: Float> NodeSum<T> {
    /// Allocates the window (collective over `node`: every rank of the machine calls it,
    /// with the same `len`); `one_machine` says whether `node` holds every rank of the job.
    pub(crate) fn new(node: &SimpleCommunicator, len: usize, one_machine: bool) -> NodeSum<T> {
        let bytes = 2 * len * size_of::<T>();
        let mut base: *mut T = std::ptr::null_mut();
        let mut win: ffi::MPI_Win = unsafe { ffi::RSMPI_WIN_NULL };
        // SAFETY: MPI is initialised (a communicator exists); `base` and `win` are written
        // by the call; MPI's default error handler ends the job on failure.
        unsafe {
            ffi::MPI_Win_allocate_shared(
                bytes as ffi::MPI_Aint,
                size_of::<T>() as i32,
                ffi::RSMPI_INFO_NULL,
                node.as_raw(),
                (&mut base as *mut *mut T).cast::<c_void>(),
                &mut win,
            );
        }
        let segments = (0..node.size())
            .map(|r| {
                let (mut size, mut unit, mut ptr): (ffi::MPI_Aint, i32, *mut T) =
                    (0, 0, std::ptr::null_mut());
                // SAFETY: `win` is a shared window of `node`, and `r` one of its ranks.
                unsafe {
                    ffi::MPI_Win_shared_query(
                        win,
                        r,
                        &mut size,
                        &mut unit,
                        (&mut ptr as *mut *mut T).cast::<c_void>(),
                    );
                }
                assert!(
                    size as usize >= bytes && (bytes == 0 || !ptr.is_null()),
                    "MPI shared window: rank {r}'s segment holds {size} bytes, {bytes} expected"
                );
                ptr
            })
            .collect();
        // One passive-target epoch for the window's whole life: `MPI_Win_sync` then orders
        // the loads and stores around each barrier (MPI's unified memory model).
        // SAFETY: `win` is a valid window.
        unsafe { ffi::MPI_Win_lock_all(ffi::MPI_MODE_NOCHECK as i32, win) };
        NodeSum {
            win,
            segments,
            len,
            parity: 0,
            one_machine,
        }
    }

    /// The number of values per buffer.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// This step's buffer of local rank `r`.
    fn buffer(&self, r: usize) -> *mut T {
        // SAFETY: each segment holds two buffers of `len` values.
        unsafe { self.segments[r].add(self.parity * self.len) }
    }

    /// Starts a step: this rank's buffer (local rank `me`), to fill with its values.
    pub(crate) fn begin(&mut self, me: usize) -> &mut [T] {
        self.parity ^= 1;
        // SAFETY: the buffer holds `len` values, and only this rank writes its own buffer,
        // never while another reads it: the others read it only between this step's two
        // barriers, and read the other buffer's sums after them.
        unsafe { std::slice::from_raw_parts_mut(self.buffer(me), self.len) }
    }

    /// Sums the buffers of every rank of `node` in rank order (after all have filled
    /// theirs with [`begin`](Self::begin)), then, on the machine's first rank, across
    /// machines with one allreduce over `across` (the communicator of the machines' first
    /// ranks, when there is more than one machine; `scratch` holds its send buffer); every
    /// rank gets the sums.
    pub(crate) fn sum(
        &mut self,
        node: &SimpleCommunicator,
        across: Option<&SimpleCommunicator>,
        scratch: &mut Vec<T>,
    ) -> &[T] {
        let (me, ranks) = (node.rank() as usize, node.size() as usize);
        self.fence(node);
        let range = me * self.len / ranks..(me + 1) * self.len / ranks;
        // SAFETY: every rank writes only its own range of buffer 0, which no one else reads
        // or writes until the next fence; the other buffers are only read until then.
        let acc =
            unsafe { std::slice::from_raw_parts_mut(self.buffer(0).add(range.start), range.len()) };
        for r in 1..ranks {
            // SAFETY: as above; `buffer(r)` holds `len` values and is not written now.
            let other =
                unsafe { std::slice::from_raw_parts(self.buffer(r).add(range.start), range.len()) };
            add_to(acc, other);
        }
        self.fence(node);
        // Only the machine's first rank holds `across`; the others learn whether there is
        // more than one machine from the number of ranks.
        if across.is_some() || !self.one_machine {
            if let Some(across) = across {
                // SAFETY: between the fences only this rank touches buffer 0.
                let sums = unsafe { std::slice::from_raw_parts_mut(self.buffer(0), self.len) };
                scratch.clear();
                scratch.extend_from_slice(sums);
                super::Mpi::sum(across, scratch, sums);
            }
            self.fence(node);
        }
        // SAFETY: buffer 0 is not written again until every rank has passed the next
        // step's first fence (which it reaches only after reading these sums).
        unsafe { std::slice::from_raw_parts(self.buffer(0), self.len) }
    }

    /// Makes every rank's stores visible to the others and waits for all of them.
    fn fence(&self, node: &SimpleCommunicator) {
        // SAFETY: the window is locked (`MPI_Win_lock_all`) for its whole life.
        unsafe { ffi::MPI_Win_sync(self.win) };
        node.barrier();
        unsafe { ffi::MPI_Win_sync(self.win) };
    }
}

impl<T: Float> Drop for NodeSum<T> {
    fn drop(&mut self) {
        // Collective over the machine's ranks, which drop their trainers together (a rank
        // that fails ends the whole job instead). After MPI_Finalize there is nothing left
        // to free.
        if mpi::environment::is_finalized() {
            return;
        }
        // SAFETY: `win` is a valid, locked window, freed once.
        unsafe {
            ffi::MPI_Win_unlock_all(self.win);
            ffi::MPI_Win_free(&mut self.win);
        }
    }
}
