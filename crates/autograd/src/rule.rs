//! Backward rules kept inside the tape's nodes.
//!
//! A rule is a closure; the ops that keep state for backward (a convolution's geometry, a
//! max pool's argmax, a loss's labels) capture it, and a boxed capturing closure is a heap
//! allocation per op per step. A [`Rule`] holds a closure of up to [`INLINE`] bytes in the
//! node itself (the tape's node vector is reused from step to step), and boxes only larger
//! ones, such as a custom op's.

use std::mem::{ManuallyDrop, MaybeUninit};

use ndarray::ArrayD;

use crate::Float;
use crate::tape::Grads;

/// The largest closure kept inline, in bytes (the convolution's, pooling's and losses' rules
/// fit: `crates/gradus/tests/allocations.rs` counts a CNN step's allocations).
pub(crate) const INLINE: usize = 192;

type Args<'a, T> = (
    &'a mut ArrayD<T>,
    &'a ArrayD<T>,
    &'a [&'a ArrayD<T>],
    &'a [bool],
);

type Boxed<T> = Box<dyn FnOnce(&mut ArrayD<T>, &ArrayD<T>, &[&ArrayD<T>], &[bool]) -> Grads<T>>;

/// Storage for an inline closure: `INLINE` bytes aligned for any of the closures' fields
/// (16 bytes, the most any of them needs).
#[repr(C, align(16))]
pub(crate) struct Slot(MaybeUninit<[u8; INLINE]>);

/// A backward rule, run at most once: inline when it fits, boxed otherwise.
pub(crate) enum Rule<T: Float> {
    Inline {
        slot: Slot,
        /// Moves the closure out of the slot and calls it.
        call: unsafe fn(*mut Slot, Args<'_, T>) -> Grads<T>,
        /// Drops the closure in place (a rule that never ran).
        drop: unsafe fn(*mut Slot),
    },
    Boxed(Boxed<T>),
}

impl<T: Float> Rule<T> {
    pub(crate) fn new<F>(f: F) -> Self
    where
        F: FnOnce(&mut ArrayD<T>, &ArrayD<T>, &[&ArrayD<T>], &[bool]) -> Grads<T> + 'static,
    {
        if size_of::<F>() > INLINE || align_of::<F>() > align_of::<Slot>() {
            return Rule::Boxed(Box::new(f));
        }
        unsafe fn call<T: Float, F>(
            slot: *mut Slot,
            (g, out, inputs, needs): Args<'_, T>,
        ) -> Grads<T>
        where
            F: FnOnce(&mut ArrayD<T>, &ArrayD<T>, &[&ArrayD<T>], &[bool]) -> Grads<T>,
        {
            // SAFETY: the slot holds an `F` (written by `new`), read exactly once: the rule
            // is consumed by `run`, which does not drop the slot afterwards.
            let f = unsafe { slot.cast::<F>().read() };
            f(g, out, inputs, needs)
        }
        unsafe fn drop<F>(slot: *mut Slot) {
            // SAFETY: the slot holds an `F` that was never read (the rule did not run).
            unsafe { slot.cast::<F>().drop_in_place() }
        }
        let mut slot = Slot(MaybeUninit::uninit());
        // SAFETY: `F` fits the slot in size and alignment (checked above).
        unsafe { (&raw mut slot).cast::<F>().write(f) };
        Rule::Inline {
            slot,
            call: call::<T, F>,
            drop: drop::<F>,
        }
    }

    /// Runs the rule, consuming it.
    pub(crate) fn run(
        self,
        g: &mut ArrayD<T>,
        out: &ArrayD<T>,
        inputs: &[&ArrayD<T>],
        needs: &[bool],
    ) -> Grads<T> {
        // `this` is never dropped: the closure is moved out below, exactly once.
        let mut this = ManuallyDrop::new(self);
        match &mut *this {
            // SAFETY: the slot holds the closure, and the drop function will not run.
            Rule::Inline { slot, call, .. } => unsafe { call(slot, (g, out, inputs, needs)) },
            Rule::Boxed(f) => {
                // SAFETY: the box is read once and `this` is never dropped.
                let f = unsafe { std::ptr::read(f) };
                f(g, out, inputs, needs)
            }
        }
    }
}

impl<T: Float> Drop for Rule<T> {
    fn drop(&mut self) {
        if let Rule::Inline { slot, drop, .. } = self {
            // SAFETY: a rule dropped without running still holds its closure.
            unsafe { drop(slot) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smallvec::smallvec;
    use std::rc::Rc;

    fn args() -> (ArrayD<f64>, ArrayD<f64>) {
        (ArrayD::zeros(vec![1]), ArrayD::zeros(vec![1]))
    }

    #[test]
    fn an_inline_rule_runs_once_and_drops_its_captures_once() {
        let witness = Rc::new(());
        let kept = Rc::clone(&witness);
        let state = [7.0f64; 8];
        let rule = Rule::<f64>::new(move |_, _, _, _| {
            let _keep = &kept;
            smallvec![Some(ArrayD::from_elem(vec![1], state[3]))]
        });
        assert!(matches!(rule, Rule::Inline { .. }));
        assert_eq!(Rc::strong_count(&witness), 2);
        let (mut g, out) = args();
        let grads = rule.run(&mut g, &out, &[], &[]);
        assert_eq!(grads[0].as_ref().unwrap()[[0]], 7.0);
        assert_eq!(
            Rc::strong_count(&witness),
            1,
            "the captures were dropped after the run"
        );
    }

    #[test]
    fn a_rule_that_never_runs_drops_its_captures() {
        let witness = Rc::new(());
        let kept = Rc::clone(&witness);
        let rule = Rule::<f64>::new(move |_, _, _, _| {
            let _keep = &kept;
            smallvec![]
        });
        drop(rule);
        assert_eq!(Rc::strong_count(&witness), 1);
    }

    #[test]
    fn a_large_closure_is_boxed_and_still_runs() {
        let big = [1.5f64; 64];
        let rule = Rule::<f64>::new(move |_, _, _, _| {
            smallvec![Some(ArrayD::from_elem(vec![1], big.iter().sum()))]
        });
        assert!(matches!(rule, Rule::Boxed(_)));
        let (mut g, out) = args();
        assert_eq!(
            rule.run(&mut g, &out, &[], &[])[0].as_ref().unwrap()[[0]],
            96.0
        );
    }

    #[test]
    fn a_panicking_rule_drops_its_captures_once() {
        let witness = Rc::new(());
        let kept = Rc::clone(&witness);
        let rule = Rule::<f64>::new(move |_, _, _, _| {
            let _keep = &kept;
            panic!("rule fails")
        });
        let (mut g, out) = args();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rule.run(&mut g, &out, &[], &[])
        }));
        assert!(result.is_err());
        assert_eq!(Rc::strong_count(&witness), 1);
    }
}
