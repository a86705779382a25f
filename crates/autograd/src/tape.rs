//! The tape: one forward pass recorded as a list of nodes, and the reverse sweep over it.
//!
//! Nodes are appended in execution order, which is already a topological order, so
//! backward is a single loop from the loss down to the first node.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ndarray::ArrayD;
use smallvec::SmallVec;

use crate::rule::Rule;
use crate::{BufferId, Float, Gradients, ParamId, ParamStore, pool};

/// The id of a value recorded on a tape (valid for that tape only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) usize);

/// One gradient (or none) per operand, as a backward rule returns them.
pub(crate) type Grads<T> = SmallVec<[Option<ArrayD<T>>; 3]>;

/// What a [`Tape::custom_op`] backward rule returns: one gradient (or `None`) per operand.
pub type OperandGrads<T> = Vec<Option<ArrayD<T>>>;

enum Origin {
    Constant,
    Input,
    Param(ParamId),
    Op,
}

pub(crate) struct Node<T: Float> {
    op: &'static str,
    value: Arc<ArrayD<T>>,
    origin: Origin,
    parents: SmallVec<[NodeId; 3]>,
    requires_grad: bool,
    backward: Option<Rule<T>>,
}

/// A record of one forward pass.
///
/// A recording tape exists only inside [`value_and_grad`](crate::value_and_grad), which runs `backward` exactly once
/// when the closure returns: there is no `zero_grad` to forget and no way to run backward twice.
/// [`Tape::no_grad`] makes a tape for evaluation that records no backward rules.
pub struct Tape<T: Float = f32> {
    nodes: RefCell<Vec<Node<T>>>,
    recording: bool,
    pub(crate) detect_anomaly: bool,
    anomaly: RefCell<Option<Anomaly>>,
}

/// Where anomaly detection found the first NaN or infinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// In a value computed by the forward pass (or in a leaf's data).
    Forward,
    /// In a gradient computed by a backward rule.
    Backward,
}

/// The first op whose output (forward) or operand gradient (backward) held a NaN or an
/// infinity, found by [`value_and_grad_detect_anomaly`](crate::value_and_grad_detect_anomaly).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "anomaly: {phase:?} of `{op}` produced a non-finite value: operands {operand_shapes:?} -> output {output_shape:?}"
)]
pub struct Anomaly {
    /// The op's name (`log`, `matmul`, ...) or the leaf's (`param 0.weight`, `constant`).
    pub op: String,
    /// Forward or backward.
    pub phase: Phase,
    /// Shapes of the op's operands.
    pub operand_shapes: Vec<Vec<usize>>,
    /// Shape of its output.
    pub output_shape: Vec<usize>,
}

impl<T: Float> fmt::Debug for Tape<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tape")
            .field("nodes", &self.nodes.borrow().len())
            .field("recording", &self.recording)
            .finish()
    }
}

/// A value on a tape: a cheap copyable handle used to build expressions.
///
/// ```
/// use gradus_autograd::{Tape, ndarray::arr1};
/// let tape = Tape::<f64>::no_grad();
/// let x = tape.constant(arr1(&[1.0, 2.0]).into_dyn());
/// let y = (x * x + 1.0).sum();
/// assert_eq!(y.item(), 7.0);
/// ```
pub struct Var<'t, T: Float = f32> {
    pub(crate) tape: &'t Tape<T>,
    pub(crate) id: NodeId,
}

impl<T: Float> Clone for Var<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Float> Copy for Var<'_, T> {}

impl<T: Float> fmt::Debug for Var<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Var({:?}, {} {:?})",
            self.id,
            self.op_name(),
            self.shape()
        )
    }
}

impl<T: Float> Tape<T> {
    pub(crate) fn new(recording: bool) -> Self {
        let nodes = pool::with_pool::<T, _>(|p| std::mem::take(&mut p.nodes)).unwrap_or_default();
        Self {
            nodes: RefCell::new(nodes),
            recording,
            detect_anomaly: false,
            anomaly: RefCell::new(None),
        }
    }

    /// Records the first non-finite forward value, in anomaly mode.
    fn check_forward(
        &self,
        op: impl FnOnce() -> String,
        operands: Vec<Vec<usize>>,
        value: &ArrayD<T>,
    ) {
        if self.detect_anomaly
            && self.anomaly.borrow().is_none()
            && value.iter().any(|v| !v.is_finite())
        {
            *self.anomaly.borrow_mut() = Some(Anomaly {
                op: op(),
                phase: Phase::Forward,
                operand_shapes: operands,
                output_shape: value.shape().to_vec(),
            });
        }
    }

    /// A tape that records values but no backward rules: the evaluation path.
    ///
    /// ```
    /// use gradus_autograd::{Tape, ndarray::arr2};
    /// let tape = Tape::<f32>::no_grad();
    /// let x = tape.constant(arr2(&[[1.0, -2.0]]).into_dyn());
    /// assert_eq!(x.relu().value().as_slice().unwrap(), &[1.0, 0.0]);
    /// ```
    pub fn no_grad() -> Self {
        Self::new(false)
    }

    /// True inside [`value_and_grad`](crate::value_and_grad).
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Number of values recorded so far.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// True when nothing is recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn leaf(&self, op: &'static str, value: Arc<ArrayD<T>>, origin: Origin) -> Var<'_, T> {
        self.check_forward(|| op.to_string(), Vec::new(), &value);
        let requires_grad = self.recording && !matches!(origin, Origin::Constant);
        let mut nodes = self.nodes.borrow_mut();
        let id = NodeId(nodes.len());
        nodes.push(Node {
            op,
            value,
            origin,
            parents: SmallVec::new(),
            requires_grad,
            backward: None,
        });
        Var { tape: self, id }
    }

    /// A value that needs no gradient (a batch of inputs, labels as floats, a mask).
    pub fn constant(&self, value: ArrayD<T>) -> Var<'_, T> {
        self.leaf("constant", pool::share(value), Origin::Constant)
    }

    /// A value whose gradient the caller wants back: [`Gradients::input`] with [`Var::id`].
    pub fn input(&self, value: ArrayD<T>) -> Var<'_, T> {
        self.leaf("input", pool::share(value), Origin::Input)
    }

    /// A buffer from the store (running statistics and the like), shared without copying; it
    /// is a constant: no gradient flows into it.
    pub fn buffer(&self, params: &ParamStore<T>, id: BufferId) -> Var<'_, T> {
        let value = params.shared_buffer(id);
        if self.detect_anomaly {
            self.check_forward(
                || format!("buffer {}", params.buffer_name(id)),
                Vec::new(),
                &value,
            );
        }
        self.leaf("buffer", value, Origin::Constant)
    }

    /// A parameter from the store, shared without copying; its gradient is keyed by `id`.
    pub fn param(&self, params: &ParamStore<T>, id: ParamId) -> Var<'_, T> {
        if self.detect_anomaly {
            self.check_forward(
                || format!("param {}", params.name(id)),
                Vec::new(),
                params.get(id),
            );
        }
        self.leaf("param", params.shared(id), Origin::Param(id))
    }

    /// Records the result of an op. The rule is kept only if some parent needs a gradient:
    /// given the gradient of the output (which the rule may take and reuse), the output's
    /// value, the operands' values and which operands need a gradient, it returns one
    /// gradient (shaped like that operand) per operand. It is stored in the node itself when
    /// its captures fit ([`Rule`]), so recording it allocates nothing.
    pub(crate) fn push_op<F>(
        &self,
        op: &'static str,
        parents: &[Var<'_, T>],
        value: ArrayD<T>,
        backward: F,
    ) -> Var<'_, T>
    where
        F: FnOnce(&mut ArrayD<T>, &ArrayD<T>, &[&ArrayD<T>], &[bool]) -> Grads<T> + 'static,
    {
        if self.detect_anomaly {
            let shapes = parents.iter().map(|p| p.shape()).collect();
            self.check_forward(|| op.to_string(), shapes, &value);
        }
        let mut nodes = self.nodes.borrow_mut();
        for p in parents {
            assert!(
                std::ptr::eq(p.tape, self),
                "{op}: an operand was recorded on a different tape"
            );
        }
        let requires_grad = self.recording && parents.iter().any(|p| nodes[p.id.0].requires_grad);
        let id = NodeId(nodes.len());
        nodes.push(Node {
            op,
            value: pool::share(value),
            origin: Origin::Op,
            parents: if requires_grad {
                parents.iter().map(|p| p.id).collect()
            } else {
                SmallVec::new()
            },
            requires_grad,
            backward: if requires_grad {
                Some(Rule::new(backward))
            } else {
                None
            },
        });
        Var { tape: self, id }
    }

    /// Records an op defined outside gradus: its name, its operands, the value it computed
    /// and its backward rule (as `torch.autograd.Function` or micrograd's `_backward`).
    ///
    /// The rule gets the gradient of the loss with respect to the output, the output's value
    /// and the operands' values, and returns one gradient per operand, shaped like that
    /// operand (`None` for an operand that takes none). It runs at most once, and only when
    /// some operand needs a gradient. Check it with [`gradcheck`](crate::gradcheck).
    ///
    /// ```
    /// use gradus_autograd::{Var, gradcheck, ndarray::arr1};
    ///
    /// /// softplus(x) = ln(1 + e^x); d/dx = sigmoid(x).
    /// fn softplus<'t>(x: Var<'t, f64>) -> Var<'t, f64> {
    ///     let value = x.value().mapv(|v| v.exp().ln_1p());
    ///     x.tape().custom_op("softplus", &[x], value, |grad, _out, operands| {
    ///         let sig = operands[0].mapv(|v| 1.0 / (1.0 + (-v).exp()));
    ///         vec![Some(grad * &sig)]
    ///     })
    /// }
    ///
    /// let x = arr1(&[-1.0, 0.5, 2.0]).into_dyn();
    /// gradcheck(|v| softplus(v[0]).sum(), &[x]).unwrap();
    /// ```
    pub fn custom_op<F>(
        &self,
        name: &'static str,
        operands: &[Var<'_, T>],
        value: ArrayD<T>,
        backward: F,
    ) -> Var<'_, T>
    where
        F: FnOnce(&ArrayD<T>, &ArrayD<T>, &[&ArrayD<T>]) -> OperandGrads<T> + 'static,
    {
        let n = operands.len();
        self.push_op(name, operands, value, move |g, out, inputs, _| {
            let grads = backward(g, out, inputs);
            assert!(
                grads.len() == n,
                "{name}: the backward rule returned {} gradients for {n} operands",
                grads.len()
            );
            grads.into_iter().collect()
        })
    }

    pub(crate) fn value_of(&self, id: NodeId) -> Arc<ArrayD<T>> {
        Arc::clone(&self.nodes.borrow()[id.0].value)
    }

    /// The reverse sweep: consumes the records, giving each value's storage back to the pool
    /// once it is processed.
    pub(crate) fn backward(self, loss: NodeId) -> Result<Gradients<T>, Anomaly> {
        let tape = self;
        crate::monomorphic!(T; f32 => backward_f32, f64 => backward_f64; tape, loss);
        tape.backward_generic(loss)
    }

    #[inline(always)]
    fn backward_generic(self, loss: NodeId) -> Result<Gradients<T>, Anomaly> {
        let detect = self.detect_anomaly;
        if let Some(a) = self.anomaly.borrow_mut().take() {
            return Err(a);
        }
        // Nodes recorded after the loss get no gradient: the sweep below gives their values
        // back as it passes them; whatever it leaves (after an anomaly) the tape's `Drop` does.
        let mut nodes = std::mem::take(&mut *self.nodes.borrow_mut());
        let loss_value = &nodes[loss.0].value;
        assert!(
            loss_value.len() == 1,
            "backward: the loss must hold a single element, got shape {:?}",
            loss_value.shape()
        );
        let (params, mut keys) = pool::with_pool::<T, _>(|p| {
            (
                std::mem::take(&mut p.param_grads),
                std::mem::take(&mut p.param_keys),
            )
        })
        .unwrap_or_default();
        keys.clear();
        let mut out = Gradients {
            params,
            keys,
            inputs: HashMap::new(),
        };
        if !nodes[loss.0].requires_grad {
            *self.nodes.borrow_mut() = nodes;
            return Ok(out);
        }
        let (mut requires, mut grads) = pool::with_pool::<T, _>(|p| {
            (
                std::mem::take(&mut p.requires),
                std::mem::take(&mut p.grads),
            )
        })
        .unwrap_or_default();
        requires.clear();
        requires.extend(nodes.iter().map(|n| n.requires_grad));
        grads.clear();
        grads.resize_with(nodes.len(), || None);
        grads[loss.0] = Some(pool::full(loss_value.shape(), T::one()));
        let mut result = Ok(());
        while let Some(node) = nodes.pop() {
            let i = nodes.len();
            let Some(mut g) = grads[i].take() else {
                pool::recycle_shared(node.value);
                continue;
            };
            match node.origin {
                Origin::Constant => pool::recycle(g),
                Origin::Input => {
                    out.inputs.insert(NodeId(i), g);
                }
                Origin::Param(pid) => {
                    if out.params.len() <= pid.index {
                        out.params.resize_with(pid.index + 1, || None);
                    }
                    accumulate(&mut out.params[pid.index], g, "param");
                    if out.keys.len() <= pid.index {
                        out.keys.resize(pid.index + 1, 0);
                    }
                    out.keys[pid.index] = pid.key;
                }
                Origin::Op => {
                    let rule = node.backward.expect("op that requires grad has a rule");
                    let needs: SmallVec<[bool; 3]> =
                        node.parents.iter().map(|p| requires[p.0]).collect();
                    let inputs: SmallVec<[&ArrayD<T>; 3]> =
                        node.parents.iter().map(|p| &*nodes[p.0].value).collect();
                    let parent_grads = rule.run(&mut g, &node.value, &inputs, &needs);
                    drop(inputs);
                    pool::recycle(g);
                    debug_assert_eq!(parent_grads.len(), node.parents.len(), "{}", node.op);
                    if detect
                        && parent_grads
                            .iter()
                            .flatten()
                            .any(|g| g.iter().any(|v| !v.is_finite()))
                    {
                        result = Err(Anomaly {
                            op: node.op.to_string(),
                            phase: Phase::Backward,
                            operand_shapes: node
                                .parents
                                .iter()
                                .map(|p| nodes[p.0].value.shape().to_vec())
                                .collect(),
                            output_shape: node.value.shape().to_vec(),
                        });
                        pool::recycle_shared(node.value);
                        break;
                    }
                    for (p, pg) in node.parents.iter().zip(parent_grads) {
                        match (pg, requires[p.0]) {
                            (Some(pg), true) => {
                                let expected = nodes[p.0].value.shape();
                                assert!(
                                    pg.shape() == expected,
                                    "{}: backward produced a gradient of shape {:?} for an operand of shape {:?}",
                                    node.op,
                                    pg.shape(),
                                    expected
                                );
                                accumulate(&mut grads[p.0], pg, node.op);
                            }
                            (Some(pg), false) => pool::recycle(pg),
                            (None, _) => {}
                        }
                    }
                }
            }
            pool::recycle_shared(node.value);
        }
        for g in grads.drain(..).flatten() {
            pool::recycle(g);
        }
        *self.nodes.borrow_mut() = nodes;
        pool::with_pool::<T, _>(|p| {
            p.requires = requires;
            p.grads = grads;
        });
        result.map(|()| out)
    }
}

#[inline(never)]
fn backward_f32(tape: Tape<f32>, loss: NodeId) -> Result<Gradients<f32>, Anomaly> {
    tape.backward_generic(loss)
}

#[inline(never)]
fn backward_f64(tape: Tape<f64>, loss: NodeId) -> Result<Gradients<f64>, Anomaly> {
    tape.backward_generic(loss)
}

impl<T: Float> Drop for Tape<T> {
    /// Gives the values' storage and the (emptied) node list back to the pool.
    fn drop(&mut self) {
        let mut nodes = std::mem::take(self.nodes.get_mut());
        for n in nodes.drain(..) {
            pool::recycle_shared(n.value);
        }
        pool::with_pool::<T, _>(|p| {
            if nodes.capacity() > p.nodes.capacity() {
                p.nodes = nodes;
            }
        });
    }
}

fn accumulate<T: Float>(slot: &mut Option<ArrayD<T>>, g: ArrayD<T>, op: &str) {
    match slot {
        None => *slot = Some(g),
        Some(acc) => {
            assert_eq!(
                acc.shape(),
                g.shape(),
                "{op}: accumulated gradients differ in shape"
            );
            *acc += &g;
            pool::recycle(g);
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// The value's id on its tape.
    pub fn id(self) -> NodeId {
        self.id
    }

    /// The tape this value is recorded on.
    pub fn tape(self) -> &'t Tape<T> {
        self.tape
    }

    /// The computed value (shared, not copied).
    pub fn value(self) -> Arc<ArrayD<T>> {
        self.tape.value_of(self.id)
    }

    /// The value's shape.
    pub fn shape(self) -> Vec<usize> {
        self.tape.nodes.borrow()[self.id.0].value.shape().to_vec()
    }

    /// The single element of a one-element value (a loss).
    pub fn item(self) -> T {
        let v = self.value();
        assert!(
            v.len() == 1,
            "item: value of shape {:?} is not a single element",
            v.shape()
        );
        *v.iter().next().expect("one element")
    }

    /// The name of the op that produced this value.
    pub fn op_name(self) -> &'static str {
        self.tape.nodes.borrow()[self.id.0].op
    }
}
