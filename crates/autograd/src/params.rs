//! Parameters live outside the tape, in a store with stable ids and dotted names.
//!
//! A tape refers to a parameter by [`ParamId`] and shares its array (an `Arc`, no copy);
//! the optimizer later updates the array in place through [`ParamStore::get_mut`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use ndarray::ArrayD;

use crate::Float;

/// The stable id of a parameter in its [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub(crate) usize);

impl ParamId {
    /// The position of the parameter in its store (insertion order).
    pub fn index(self) -> usize {
        self.0
    }
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

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameters do not match the model:")?;
        for name in &self.missing {
            write!(f, "\n  missing: {name}")?;
        }
        for name in &self.unexpected {
            write!(f, "\n  unexpected: {name}")?;
        }
        for (name, expected, found) in &self.mismatched {
            write!(
                f,
                "\n  shape of {name}: expected {expected:?}, found {found:?}"
            )?;
        }
        Ok(())
    }
}

/// A parameter name was inserted twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter name `{0}` is already in the store")]
pub struct DuplicateName(pub String);

/// The parameters of a model: arrays with stable ids and unique dotted names.
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
/// ```
#[derive(Clone, Default)]
pub struct ParamStore<T: Float = f32> {
    names: Vec<String>,
    values: Vec<Arc<ArrayD<T>>>,
    index: HashMap<String, ParamId>,
}

impl<T: Float> fmt::Debug for ParamStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (_, name, value) in self.iter() {
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
            index: HashMap::new(),
        }
    }

    /// Adds a parameter; names must be unique.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: ArrayD<T>,
    ) -> Result<ParamId, DuplicateName> {
        let name = name.into();
        if self.index.contains_key(&name) {
            return Err(DuplicateName(name));
        }
        let id = ParamId(self.values.len());
        self.index.insert(name.clone(), id);
        self.names.push(name);
        self.values.push(Arc::new(value));
        Ok(id)
    }

    /// The parameter's value.
    pub fn get(&self, id: ParamId) -> &ArrayD<T> {
        &self.values[id.0]
    }

    /// The parameter's value, to update in place. The array is copied only if a live tape
    /// still shares it (which the training loop never does).
    pub fn get_mut(&mut self, id: ParamId) -> &mut ArrayD<T> {
        Arc::make_mut(&mut self.values[id.0])
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
        (&self.names[id.0], Arc::make_mut(&mut self.values[id.0]))
    }

    /// A shared handle to the value, as a tape holds it.
    pub(crate) fn shared(&self, id: ParamId) -> Arc<ArrayD<T>> {
        Arc::clone(&self.values[id.0])
    }

    /// The parameter's dotted name.
    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.0]
    }

    /// The id of the parameter called `name`.
    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.index.get(name).copied()
    }

    /// Number of parameters (arrays).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the store holds no parameter.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Total number of scalar elements over all parameters.
    pub fn num_elements(&self) -> usize {
        self.values.iter().map(|v| v.len()).sum()
    }

    /// All ids in insertion order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> + use<T> {
        (0..self.values.len()).map(ParamId)
    }

    /// `(id, name, value)` for every parameter, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &str, &ArrayD<T>)> {
        self.names
            .iter()
            .zip(&self.values)
            .enumerate()
            .map(|(i, (n, v))| (ParamId(i), n.as_str(), &**v))
    }

    /// Copies every parameter into a plain named map.
    pub fn export(&self) -> NamedArrays<T> {
        self.iter()
            .map(|(_, n, v)| (n.to_owned(), v.clone()))
            .collect()
    }

    /// Replaces every parameter with the array of the same name. Nothing is changed unless
    /// every name and shape matches; otherwise the error lists every difference.
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
        for (i, name) in self.names.iter().enumerate() {
            match map.get(name) {
                None => err.missing.push(name.clone()),
                Some(v) if v.shape() != self.values[i].shape() => err.mismatched.push((
                    name.clone(),
                    self.values[i].shape().to_vec(),
                    v.shape().to_vec(),
                )),
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
        for (i, name) in self.names.iter().enumerate() {
            self.values[i] = Arc::new(map[name].clone());
        }
        Ok(())
    }
}
