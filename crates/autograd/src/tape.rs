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

use crate::{BufferId, Float, ParamId, ParamStore, pool};

/// The id of a value recorded on a tape (valid for that tape only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) usize);

/// One gradient (or none) per operand, as a backward rule returns them.
pub(crate) type Grads<T> = SmallVec<[Option<ArrayD<T>>; 3]>;

/// What a [`Tape::custom_op`] backward rule returns: one gradient (or `None`) per operand.
pub type OperandGrads<T> = Vec<Option<ArrayD<T>>>;

/// A backward rule: given the gradient of the output (which the rule may take and reuse),
/// the output's value, the operands' values and which operands need a gradient, returns one
/// gradient (shaped like that operand) per operand. Rules that capture nothing are not
/// allocated at all, since a boxed zero-sized closure takes no heap memory.
pub(crate) type BackwardFn<T> =
    Box<dyn FnOnce(&mut ArrayD<T>, &ArrayD<T>, &[&ArrayD<T>], &[bool]) -> Grads<T>>;

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
    backward: Option<BackwardFn<T>>,
}

/// A record of one forward pass.
///
/// A recording tape exists only inside [`value_and_grad`], which runs `backward` exactly once
/// when the closure returns: there is no `zero_grad` to forget and no way to run backward twice.
/// [`Tape::no_grad`] makes a tape for evaluation that records no backward rules.
pub struct Tape<T: Float = f32> {
    nodes: RefCell<Vec<Node<T>>>,
    recording: bool,
    detect_anomaly: bool,
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
/// infinity, found by [`value_and_grad_detect_anomaly`].
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
    fn new(recording: bool) -> Self {
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

    /// True inside [`value_and_grad`].
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

    /// Records the result of an op. The rule is kept only if some parent needs a gradient.
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
                Some(Box::new(backward))
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
    fn backward(self, loss: NodeId) -> Result<Gradients<T>, Anomaly> {
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
                    let parent_grads = rule(&mut g, &node.value, &inputs, &needs);
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

/// Records `f` on a fresh tape, runs backward from the scalar it returns, and gives back the
/// loss value and the gradients. Vars cannot escape the closure, so the tape is consumed
/// exactly once.
///
/// ```
/// use gradus_autograd::{value_and_grad, ParamStore, ndarray::arr1};
///
/// let mut params = ParamStore::<f64>::new();
/// let w = params.insert("w", arr1(&[1.0, 2.0]).into_dyn()).unwrap();
/// let (loss, grads) = value_and_grad(|tape| {
///     let w = tape.param(&params, w);
///     (w * w).sum() // d/dw sum(w^2) = 2w
/// });
/// assert_eq!(loss, 5.0);
/// assert_eq!(grads.get(w).unwrap().as_slice().unwrap(), &[2.0, 4.0]);
/// ```
pub fn value_and_grad<T, F>(f: F) -> (T, Gradients<T>)
where
    T: Float,
    F: for<'t> FnOnce(&'t Tape<T>) -> Var<'t, T>,
{
    record_and_backward(f, false).expect("anomaly detection is off")
}

/// [`value_and_grad`] in anomaly mode (PyTorch's `detect_anomaly`): every forward value and
/// every backward gradient is checked, and the first op that produced a NaN or an infinity
/// is reported with its name and shapes. Slower; for debugging.
///
/// ```
/// use gradus_autograd::{value_and_grad_detect_anomaly, Phase, ndarray::arr1};
/// let err = value_and_grad_detect_anomaly(|tape| {
///     let x = tape.input(arr1(&[1.0f64, 0.0]).into_dyn());
///     (x.log() * 2.0).sum()
/// })
/// .unwrap_err();
/// assert_eq!((err.op.as_str(), err.phase), ("log", Phase::Forward));
/// assert_eq!(err.output_shape, vec![2]);
/// ```
pub fn value_and_grad_detect_anomaly<T, F>(f: F) -> Result<(T, Gradients<T>), Anomaly>
where
    T: Float,
    F: for<'t> FnOnce(&'t Tape<T>) -> Var<'t, T>,
{
    record_and_backward(f, true)
}

fn record_and_backward<T, F>(f: F, detect_anomaly: bool) -> Result<(T, Gradients<T>), Anomaly>
where
    T: Float,
    F: for<'t> FnOnce(&'t Tape<T>) -> Var<'t, T>,
{
    record_with_aux(|tape| (f(tape), ()), detect_anomaly).map(|(v, g, ())| (v, g))
}

fn record_with_aux<T, A, F>(f: F, detect_anomaly: bool) -> Result<(T, Gradients<T>, A), Anomaly>
where
    T: Float,
    F: for<'t> FnOnce(&'t Tape<T>) -> (Var<'t, T>, A),
{
    let mut tape = Tape::new(true);
    tape.detect_anomaly = detect_anomaly;
    let (loss, aux) = f(&tape);
    let loss = loss.id;
    let value = tape
        .value_of(loss)
        .iter()
        .next()
        .copied()
        .expect("loss has one element");
    Ok((value, tape.backward(loss)?, aux))
}

/// [`value_and_grad`] for a closure that returns, beside the loss, anything computed on the
/// way (JAX's `has_aux=True`): logits' accuracy, metrics, buffer updates. With
/// `detect_anomaly`, it fails as [`value_and_grad_detect_anomaly`] does.
///
/// ```
/// use gradus_autograd::{value_and_grad_with_aux, count_correct, ParamStore, ndarray::arr2};
///
/// let mut params = ParamStore::<f32>::new();
/// let w = params.insert("w", arr2(&[[1.0, 0.0], [0.0, 1.0]]).into_dyn()).unwrap();
/// let x = arr2(&[[2.0, 1.0], [0.0, 3.0]]).into_dyn();
/// let labels = [0, 0];
/// let (loss, grads, correct) = value_and_grad_with_aux(false, |tape| {
///     let logits = tape.constant(x.clone()).matmul(tape.param(&params, w));
///     let correct = count_correct(&logits.value(), &labels);
///     (logits.cross_entropy_with_logits(&labels), correct)
/// })
/// .unwrap();
/// assert_eq!(correct, 1);
/// assert!(loss > 0.0 && grads.get(w).is_some());
/// ```
pub fn value_and_grad_with_aux<T, A, F>(
    detect_anomaly: bool,
    f: F,
) -> Result<(T, Gradients<T>, A), Anomaly>
where
    T: Float,
    F: for<'t> FnOnce(&'t Tape<T>) -> (Var<'t, T>, A),
{
    record_with_aux(f, detect_anomaly)
}

/// The gradients of one backward pass, keyed by parameter (and by the inputs that asked).
///
/// Dropping them gives their storage back to this thread's [`pool`](crate::pool).
#[derive(Clone, Debug, Default)]
pub struct Gradients<T: Float = f32> {
    params: Vec<Option<ArrayD<T>>>,
    /// The name key of each parameter with a gradient, so an id of another model is caught.
    keys: Vec<u32>,
    inputs: HashMap<NodeId, ArrayD<T>>,
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

    /// Adds `other`'s gradients into these, parameter by parameter (what summing the
    /// gradients of several shards of a batch does).
    pub fn accumulate(&mut self, other: &Gradients<T>) {
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

    /// The gradient of a value made with [`Tape::input`].
    pub fn input(&self, id: NodeId) -> Option<&ArrayD<T>> {
        self.inputs.get(&id)
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
