//! Shapes whose dimensions are known, except the batch and open dimensions (a sequence of any
//! length, Keras's `None`), which stay symbolic until a program is specialised for the sizes it
//! is fed.
//!
//! Open dimensions follow one rule: where a shape rule needs two open dimensions equal, they are
//! unified ([`Graph::add_node`](super::Graph::add_node) records it and checks it when fed); an
//! open dimension never equals a fixed size.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// One dimension: a known size, a multiple of the symbolic batch size `B`, or an open size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size known at graph-construction time.
    Fixed(usize),
    /// `k × B`, where `B` is the batch size (usually `k = 1`).
    Batch(usize),
    /// A size known only when the program is fed (a sequence length).
    Open(Sym),
    /// `k × B × T`: the batch and an open dimension folded into one axis (a dense layer's
    /// rows over a batch of sequences).
    BatchOpen(usize, Sym),
}

/// The symbol of an open dimension. Symbols with the same name are the same dimension; each
/// anonymous one ([`Sym::fresh`], Keras's `None`) is distinct until a shape rule unifies it.
#[derive(Debug, Clone, Copy)]
pub struct Sym {
    id: u64,
    name: &'static str,
}

/// Anonymous symbols take ids from here; named ones hash their name below this bit.
const FRESH_BIT: u64 = 1 << 63;
static NEXT_FRESH: AtomicU64 = AtomicU64::new(FRESH_BIT);

impl Sym {
    /// The open dimension called `name` (the same name is the same dimension everywhere).
    pub fn named(name: &'static str) -> Self {
        // FNV-1a: stable across runs, so named dimensions keep fingerprints reproducible.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Sym {
            id: hash & !FRESH_BIT,
            name,
        }
    }

    /// A new anonymous open dimension, distinct from every other (shown as `None`).
    pub fn fresh() -> Self {
        Sym {
            id: NEXT_FRESH.fetch_add(1, Ordering::Relaxed),
            name: "None",
        }
    }

    /// The name shown in shapes and errors.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// A stable identity, for fingerprints.
    pub fn id(self) -> u64 {
        self.id
    }
}

impl PartialEq for Sym {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Sym {}

impl Hash for Sym {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl PartialOrd for Sym {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sym {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

impl Dim {
    /// The batch dimension `B`.
    pub const BATCH: Dim = Dim::Batch(1);

    /// The product of dimensions as one dimension: the batch stays symbolic, and an open length
    /// folds on its own or with the batch (the rows of a batch of sequences), not with sizes alone.
    pub fn fold(dims: &[Dim]) -> crate::error::Result<Dim> {
        let (mut batch, mut open) = (None, None);
        let mut fixed: usize = 1;
        let shape = || Shape(dims.to_vec());
        let too_big = || {
            crate::error::Error::shape(
                "reshape",
                format!("{} has more elements than fit in memory", shape()),
            )
        };
        let unfoldable = |why: &str| {
            crate::error::Error::shape("reshape", format!("cannot fold {}: {why}", shape()))
        };
        for d in dims {
            let (k, sym) = match *d {
                Dim::Fixed(n) => (n, None),
                Dim::Batch(k) => (k, None),
                Dim::Open(s) => (1, Some(s)),
                Dim::BatchOpen(k, s) => (k, Some(s)),
            };
            fixed = fixed.checked_mul(k).ok_or_else(too_big)?;
            if d.has_batch() && batch.replace(()).is_some() {
                return Err(unfoldable("two batch axes cannot be folded into one"));
            }
            if sym.is_some() && open.replace(sym).is_some() {
                return Err(unfoldable("two open dimensions cannot be folded into one"));
            }
        }
        Ok(match (batch, open.flatten()) {
            (None, None) => Dim::Fixed(fixed),
            (Some(()), None) => Dim::Batch(fixed),
            (Some(()), Some(s)) => Dim::BatchOpen(fixed, s),
            (None, Some(s)) if fixed == 1 => Dim::Open(s),
            (None, Some(_)) => {
                return Err(unfoldable(
                    "an open dimension (a length known only when fed) folds only with the batch; \
                     fix the length in the input's shape",
                ))
            }
        })
    }

    /// The concrete size for a given batch size. Open dimensions must have been bound first
    /// ([`Graph::bind`](super::Graph::bind)); compiling and interpreting check that.
    pub fn concrete(self, batch: usize) -> usize {
        match self {
            Dim::Fixed(n) => n,
            Dim::Batch(k) => k * batch,
            Dim::Open(s) | Dim::BatchOpen(_, s) => {
                unreachable!("the open dimension {} is not bound", s.name)
            }
        }
    }

    /// The size if it is known without a batch size.
    pub fn fixed(self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(n),
            Dim::Batch(_) | Dim::Open(_) | Dim::BatchOpen(..) => None,
        }
    }

    /// Whether the two can be the same size: equal dimensions can, and open ones that differ
    /// only in their symbol (which a shape rule then unifies); an open one never equals a size.
    pub fn unifiable(self, other: Dim) -> bool {
        match (self.open(), other.open()) {
            (Some(a), Some(_)) => {
                self.map_open(|_| Dim::Open(a)) == other.map_open(|_| Dim::Open(a))
            }
            _ => self == other,
        }
    }

    /// Whether the dimension is a multiple of the batch size.
    pub fn has_batch(self) -> bool {
        matches!(self, Dim::Batch(_) | Dim::BatchOpen(..))
    }

    /// The symbol of the open dimension this one is or contains.
    pub fn open(self) -> Option<Sym> {
        match self {
            Dim::Open(s) | Dim::BatchOpen(_, s) => Some(s),
            Dim::Fixed(_) | Dim::Batch(_) => None,
        }
    }

    /// This dimension with its open dimension (if any) replaced by what `f` gives.
    pub fn map_open(self, f: impl FnOnce(Sym) -> Dim) -> Dim {
        match self {
            Dim::Open(s) => f(s),
            Dim::BatchOpen(k, s) => match f(s) {
                Dim::Fixed(n) => Dim::Batch(k * n),
                Dim::Open(t) => Dim::BatchOpen(k, t),
                other => unreachable!("an open dimension maps to a size or a symbol, not {other}"),
            },
            Dim::Fixed(_) | Dim::Batch(_) => self,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Self {
        Dim::Fixed(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Batch(1) => write!(f, "B"),
            Dim::Batch(k) => write!(f, "{k}B"),
            Dim::Open(s) => write!(f, "{}", s.name),
            Dim::BatchOpen(1, s) => write!(f, "B·{}", s.name),
            Dim::BatchOpen(k, s) => write!(f, "{k}B·{}", s.name),
        }
    }
}

/// A symbolic element count: `coefficient × B^batch_power × Π open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub coefficient: usize,
    pub batch_power: u32,
    /// The open dimensions multiplied in, sorted (a symbol appears once per factor).
    pub open: Vec<Sym>,
}

impl Count {
    /// Whether the count is known without any run-time size.
    pub fn is_fixed(&self) -> bool {
        self.batch_power == 0 && self.open.is_empty()
    }
}

/// An ordered list of dimensions, row-major.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// A shape of known dimensions.
    pub fn fixed(dims: &[usize]) -> Self {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    /// `[B, dims...]`: a batch of items of the given shape.
    pub fn batched(dims: &[usize]) -> Self {
        let mut v = vec![Dim::BATCH];
        v.extend(dims.iter().map(|&d| Dim::Fixed(d)));
        Shape(v)
    }

    /// The scalar shape `[]`.
    pub fn scalar() -> Self {
        Shape(Vec::new())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// The element count, symbolically.
    pub fn count(&self) -> Count {
        let mut c = Count {
            coefficient: 1,
            batch_power: 0,
            open: Vec::new(),
        };
        for d in &self.0 {
            match *d {
                Dim::Fixed(n) => c.coefficient *= n,
                Dim::Batch(k) => {
                    c.coefficient *= k;
                    c.batch_power += 1;
                }
                Dim::Open(s) => c.open.push(s),
                Dim::BatchOpen(k, s) => {
                    c.coefficient *= k;
                    c.batch_power += 1;
                    c.open.push(s);
                }
            }
        }
        c.open.sort_unstable();
        c
    }

    /// Whether any dimension depends on the batch size.
    pub fn has_batch(&self) -> bool {
        self.0.iter().any(|d| d.has_batch())
    }

    /// The open dimensions, in order of first appearance, without repeats.
    pub fn open_dims(&self) -> Vec<Sym> {
        let mut syms = Vec::new();
        for s in self.0.iter().filter_map(|d| d.open()) {
            if !syms.contains(&s) {
                syms.push(s);
            }
        }
        syms
    }

    /// This shape with every open dimension replaced by what `f` gives for its symbol.
    pub fn map_open(&self, mut f: impl FnMut(Sym) -> Dim) -> Shape {
        Shape(self.0.iter().map(|&d| d.map_open(&mut f)).collect())
    }

    /// Concrete dimensions for a given batch size.
    pub fn concrete(&self, batch: usize) -> Vec<usize> {
        self.0.iter().map(|d| d.concrete(batch)).collect()
    }
}

impl From<Vec<Dim>> for Shape {
    fn from(v: Vec<Dim>) -> Self {
        Shape(v)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// Row-major strides (in elements) of concrete dimensions.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}
