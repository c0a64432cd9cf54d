//! The parsed tree: values that carry the file, line and column they were written at, and maps
//! that keep their keys in file order.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Where something was written: the file (as it was named to the parser) and a 1-based line and
/// column (columns count characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A value together with the position it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

/// One configuration value. Durations, host:port pairs, URLs and datetimes are strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<Spanned<Value>>),
    Map(Map),
}

impl Value {
    /// The name of the value's type as error messages say it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }
}

/// One `key: value` of a map.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key as written (nats-server matches option names case-insensitively; this keeps the
    /// original spelling for messages).
    pub key: String,
    /// Where the key was written; nats-server reports option errors at the key.
    pub key_pos: Pos,
    pub value: Spanned<Value>,
    pub(crate) used_as_variable: bool,
}

impl Entry {
    /// Whether a `$key` reference elsewhere used this entry as a variable. nats-server does not
    /// report such entries as unknown fields, because they are variable definitions.
    pub fn is_used_variable(&self) -> bool {
        self.used_as_variable
    }
}

/// A map in file order. A key written twice keeps its first place and its last value (as in
/// nats-server, where the last assignment wins). Keys are indexed: a file with many keys parses
/// in linear time, not quadratic.
#[derive(Clone, Default)]
pub struct Map {
    entries: Vec<Entry>,
    /// Position of each key in `entries`.
    index: HashMap<String, usize>,
}

impl PartialEq for Map {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("entries", &self.entries)
            .finish()
    }
}

impl Map {
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry with exactly this key.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.index.get(key).and_then(|&i| self.entries.get(i))
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Entry> {
        self.index.get(key).and_then(|&i| self.entries.get_mut(i))
    }

    /// The entries in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Entry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets `entry.key`, replacing an earlier value of the same key in place.
    pub fn insert(&mut self, entry: Entry) {
        match self.get_mut(&entry.key) {
            Some(existing) => {
                let used = existing.used_as_variable || entry.used_as_variable;
                *existing = entry;
                existing.used_as_variable = used;
            }
            None => {
                self.index.insert(entry.key.clone(), self.entries.len());
                self.entries.push(entry);
            }
        }
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = &'a Entry;
    type IntoIter = std::slice::Iter<'a, Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}
