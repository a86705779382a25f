//! Parameters and buffers live outside the tape, in a store with stable ids and dotted names.
//!
//! A tape refers to a parameter by [`ParamId`] and shares its array (an `Arc`, no copy);
//! the optimizer later updates the array in place through [`ParamStore::get_mut`]. Buffers
//! ([`BufferId`]) are PyTorch's `register_buffer`: saved and loaded with the weights, never
//! trained, and invisible to optimizers and clipping.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use ndarray::ArrayD;

use crate::Float;

/// The stable id of a trainable parameter in its [`ParamStore`]. It remembers the name it
/// was registered under (as a hash): it is valid with its store, the store's clones, and any
/// store built the same way (same names in the same order, as a second `build` of one
/// model); with a store that holds another parameter at its place it panics instead of
/// silently reading the wrong array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId {
    pub(crate) index: usize,
    pub(crate) key: u32,
}

impl ParamId {
    /// The position of the parameter in its store (insertion order).
    pub fn index(self) -> usize {
        self.index
    }
}

/// The id of a buffer (non-trainable state, such as BatchNorm's running mean) in its
/// [`ParamStore`]; like [`ParamId`] it is checked against the name it was registered under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferId {
    pub(crate) index: usize,
    pub(crate) key: u32,
}

/// FNV-1a: a name's 32-bit key, to catch an id used with a store it does not belong to.
fn key_of(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A plain named map of arrays: what a model's parameters export to and import from.
pub type NamedArrays<T> = BTreeMap<String, ArrayD<T>>;

/// What differs between a [`NamedArrays`] map and the parameters it was meant for.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub struct ImportError {
    /// Parameters of the model that the map does not have.
    pub missing: Vec<String>,
    /// Names in the map that the model does not have.
    pub unexpected: Vec<String>,
    /// `(name, expected shape, found shape)` for every parameter whose shape differs.
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl ImportError {
    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

/// At most this many differences of each kind are listed; the rest are counted.
const MAX_LISTED: usize = 20;

/// A name as it may be printed: control characters and terminal escapes in a hostile file's
/// names are escaped, so they cannot forge output lines, and a very long name is cut.
fn printable(name: &str) -> String {
    let escaped: String = name.chars().flat_map(char::escape_debug).collect();
    if escaped.chars().count() > 200 {
        let cut: String = escaped.chars().take(200).collect();
        format!("{cut}...")
    } else {
        escaped
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameters do not match the model:")?;
        let more = |f: &mut fmt::Formatter<'_>, n: usize, what: &str| {
            if n > MAX_LISTED {
                write!(f, "\n  ... and {} more {what}", n - MAX_LISTED)?;
            }
            Ok(())
        };
        for name in self.missing.iter().take(MAX_LISTED) {
            write!(f, "\n  missing: {}", printable(name))?;
        }
        more(f, self.missing.len(), "missing")?;
        for name in self.unexpected.iter().take(MAX_LISTED) {
            write!(f, "\n  unexpected: {}", printable(name))?;
        }
        more(f, self.unexpected.len(), "unexpected")?;
        for (name, expected, found) in self.mismatched.iter().take(MAX_LISTED) {
            write!(
                f,
                "\n  shape of {}: expected {expected:?}, found {found:?}",
                printable(name)
            )?;
        }
        more(f, self.mismatched.len(), "with another shape")
    }
}

/// A parameter or buffer name was inserted twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter name `{0}` is already in the store")]
pub struct DuplicateName(pub String);

#[derive(Clone, Copy, Debug)]
enum Entry {
    Param(usize),
    Buffer(usize),
}

/// The state of a model: trainable parameters and non-trainable buffers, arrays with stable
/// ids and unique dotted names (PyTorch's `state_dict` names).
///
/// ```
/// use gradus_autograd::ParamStore;
/// use ndarray::ArrayD;
///
/// let mut params = ParamStore::<f32>::new();
/// let w = params.insert("0.weight", ArrayD::zeros(vec![3, 2])).unwrap();
/// assert_eq!(params.name(w), "0.weight");
/// assert_eq!(params.get(w).shape(), &[3, 2]);
/// params.get_mut(w)[[0, 0]] = 1.0;
/// assert_eq!(params.id("0.weight"), Some(w));
///
/// // A buffer is saved with the weights but is not a parameter.
/// let n = params.insert_buffer("0.num_batches_tracked", ArrayD::zeros(vec![])).unwrap();
/// assert_eq!(params.len(), 1);
/// assert_eq!(params.export().len(), 2);
/// assert_eq!(params.buffer(n).ndim(), 0);
/// ```
#[derive(Clone)]
pub struct ParamStore<T: Float = f32> {
    names: Vec<String>,
    values: Vec<Arc<ArrayD<T>>>,
    buffer_names: Vec<String>,
    buffers: Vec<Arc<ArrayD<T>>>,
    index: HashMap<String, Entry>,
}

impl<T: Float> Default for ParamStore<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> fmt::Debug for ParamStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (_, name, value) in self.iter() {
            map.entry(&name, &value.shape());
        }
        for (_, name, value) in self.buffers() {
            map.entry(&name, &value.shape());
        }
        map.finish()
    }
}

impl<T: Float> ParamStore<T> {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            names: Vec::new(),
            values: Vec::new(),
            buffer_names: Vec::new(),
            buffers: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn claim(&mut self, name: String, entry: Entry) -> Result<String, DuplicateName> {
        if self.index.contains_key(&name) {
            return Err(DuplicateName(name));
        }
        self.index.insert(name.clone(), entry);
        Ok(name)
    }

    /// Adds a trainable parameter; names must be unique among parameters and buffers.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: ArrayD<T>,
    ) -> Result<ParamId, DuplicateName> {
        let index = self.values.len();
        let name = self.claim(name.into(), Entry::Param(index))?;
        let key = key_of(&name);
        self.names.push(name);
        self.values.push(Arc::new(value));
        Ok(ParamId { index, key })
    }

    /// Adds a buffer: state saved and loaded with the weights (PyTorch's `register_buffer`)
    /// that optimizers, clipping and the missing-gradient check never see.
    pub fn insert_buffer(
        &mut self,
        name: impl Into<String>,
        value: ArrayD<T>,
    ) -> Result<BufferId, DuplicateName> {
        let index = self.buffers.len();
        let name = self.claim(name.into(), Entry::Buffer(index))?;
        let key = key_of(&name);
        self.buffer_names.push(name);
        self.buffers.push(Arc::new(value));
        Ok(BufferId { index, key })
    }

    fn check(names: &[String], index: usize, key: u32, what: &str) {
        match names.get(index) {
            Some(name) if key_of(name) == key => {}
            Some(name) => panic!(
                "{what} #{index} belongs to another ParamStore: this store holds `{name}` there; \
                 ids are valid only with the store that made them or one built the same way"
            ),
            None => panic!(
                "{what} #{index} belongs to another ParamStore: this store has only {} {what}s",
                names.len()
            ),
        }
    }

    fn check_param(&self, id: ParamId) {
        Self::check(&self.names, id.index, id.key, "parameter");
    }

    fn check_buffer(&self, id: BufferId) {
        Self::check(&self.buffer_names, id.index, id.key, "buffer");
    }

    /// The parameter's value. Panics if `id` was made by another store.
    pub fn get(&self, id: ParamId) -> &ArrayD<T> {
        self.check_param(id);
        &self.values[id.index]
    }

    /// The parameter's value, to update in place. The array is copied only if a live tape
    /// still shares it (which the training loop never does).
    pub fn get_mut(&mut self, id: ParamId) -> &mut ArrayD<T> {
        self.check_param(id);
        Arc::make_mut(&mut self.values[id.index])
    }

    /// A buffer's value. Panics if `id` was made by another store.
    pub fn buffer(&self, id: BufferId) -> &ArrayD<T> {
        self.check_buffer(id);
        &self.buffers[id.index]
    }

    /// A shared handle to a buffer's value, as a tape holds it.
    pub(crate) fn shared_buffer(&self, id: BufferId) -> Arc<ArrayD<T>> {
        Arc::clone(&self.buffers[id.index])
    }

    /// Replaces a buffer's value (what a training-mode forward's updates do), which must keep
    /// its shape.
    pub fn set_buffer(&mut self, id: BufferId, value: ArrayD<T>) {
        self.check_buffer(id);
        let name = &self.buffer_names[id.index];
        assert_eq!(
            self.buffers[id.index].shape(),
            value.shape(),
            "set_buffer: buffer `{name}` has shape {:?}, the new value {:?}",
            self.buffers[id.index].shape(),
            value.shape()
        );
        self.buffers[id.index] = Arc::new(value);
    }

    /// The buffer's dotted name.
    pub fn buffer_name(&self, id: BufferId) -> &str {
        self.check_buffer(id);
        &self.buffer_names[id.index]
    }

    /// The id of the buffer called `name`.
    pub fn buffer_id(&self, name: &str) -> Option<BufferId> {
        match self.index.get(name) {
            Some(&Entry::Buffer(index)) => Some(BufferId {
                index,
                key: key_of(name),
            }),
            _ => None,
        }
    }

    /// `(id, name, value)` for every buffer, in insertion order.
    pub fn buffers(&self) -> impl Iterator<Item = (BufferId, &str, &ArrayD<T>)> {
        self.buffer_names
            .iter()
            .zip(&self.buffers)
            .enumerate()
            .map(|(index, (n, v))| {
                let id = BufferId {
                    index,
                    key: key_of(n),
                };
                (id, n.as_str(), &**v)
            })
    }

    /// Number of buffers.
    pub fn num_buffers(&self) -> usize {
        self.buffers.len()
    }

    /// The name and the mutable value of one parameter at once (for an optimizer that keys
    /// its state by name). Copies the value first if a tape still shares it.
    ///
    /// ```
    /// use gradus_autograd::{ParamStore, ndarray::arr1};
    /// let mut params = ParamStore::<f32>::new();
    /// let w = params.insert("w", arr1(&[1.0]).into_dyn()).unwrap();
    /// let (name, value) = params.name_and_value_mut(w);
    /// value[[0]] = 2.0;
    /// assert_eq!(name, "w");
    /// assert_eq!(params.get(w)[[0]], 2.0);
    /// ```
    pub fn name_and_value_mut(&mut self, id: ParamId) -> (&str, &mut ArrayD<T>) {
        self.check_param(id);
        (
            &self.names[id.index],
            Arc::make_mut(&mut self.values[id.index]),
        )
    }

    /// A shared handle to the value, as a tape holds it.
    pub(crate) fn shared(&self, id: ParamId) -> Arc<ArrayD<T>> {
        self.check_param(id);
        Arc::clone(&self.values[id.index])
    }

    /// The parameter's dotted name.
    pub fn name(&self, id: ParamId) -> &str {
        self.check_param(id);
        &self.names[id.index]
    }

    /// The id of the parameter called `name` (`None` for a buffer's name).
    pub fn id(&self, name: &str) -> Option<ParamId> {
        match self.index.get(name) {
            Some(&Entry::Param(index)) => Some(ParamId {
                index,
                key: key_of(name),
            }),
            _ => None,
        }
    }

    /// Number of trainable parameters (arrays); buffers are not counted.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the store holds no parameter.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Total number of scalar elements over all trainable parameters.
    pub fn num_elements(&self) -> usize {
        self.values.iter().map(|v| v.len()).sum()
    }

    /// All ids in insertion order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> + use<'_, T> {
        self.names.iter().enumerate().map(|(index, n)| ParamId {
            index,
            key: key_of(n),
        })
    }

    /// The id of the parameter at position `index` (insertion order).
    pub fn id_at(&self, index: usize) -> Option<ParamId> {
        self.names.get(index).map(|n| ParamId {
            index,
            key: key_of(n),
        })
    }

    /// `(id, name, value)` for every trainable parameter, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &str, &ArrayD<T>)> {
        self.names
            .iter()
            .zip(&self.values)
            .enumerate()
            .map(|(index, (n, v))| {
                let id = ParamId {
                    index,
                    key: key_of(n),
                };
                (id, n.as_str(), &**v)
            })
    }

    fn all_entries(&self) -> impl Iterator<Item = (&String, &Arc<ArrayD<T>>)> {
        self.names
            .iter()
            .zip(&self.values)
            .chain(self.buffer_names.iter().zip(&self.buffers))
    }

    /// Copies every parameter and buffer into a plain named map (PyTorch's `state_dict`).
    pub fn export(&self) -> NamedArrays<T> {
        self.all_entries()
            .map(|(n, v)| (n.clone(), (**v).clone()))
            .collect()
    }

    /// Replaces every parameter and buffer with the array of the same name. Nothing is
    /// changed unless every name and shape matches; otherwise the error lists every difference.
    ///
    /// ```
    /// use gradus_autograd::ParamStore;
    /// use ndarray::ArrayD;
    ///
    /// let mut a = ParamStore::<f32>::new();
    /// a.insert("w", ArrayD::zeros(vec![2])).unwrap();
    /// let mut map = a.export();
    /// map.insert("extra".into(), ArrayD::zeros(vec![1]));
    /// let err = a.import(&map).unwrap_err();
    /// assert_eq!(err.unexpected, vec!["extra".to_string()]);
    /// ```
    pub fn import(&mut self, map: &NamedArrays<T>) -> Result<(), ImportError> {
        let mut err = ImportError::default();
        for (name, value) in self.all_entries() {
            match map.get(name) {
                None => err.missing.push(name.clone()),
                Some(v) if v.shape() != value.shape() => {
                    err.mismatched
                        .push((name.clone(), value.shape().to_vec(), v.shape().to_vec()))
                }
                Some(_) => {}
            }
        }
        err.unexpected = map
            .keys()
            .filter(|k| !self.index.contains_key(*k))
            .cloned()
            .collect();
        if !err.is_empty() {
            return Err(err);
        }
        for (name, value) in self.names.iter().zip(&mut self.values) {
            *value = Arc::new(map[name].clone());
        }
        for (name, value) in self.buffer_names.iter().zip(&mut self.buffers) {
            *value = Arc::new(map[name].clone());
        }
        Ok(())
    }
}
