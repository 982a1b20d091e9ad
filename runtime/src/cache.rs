//! Compiled programs cached in memory, keyed by the graph's fingerprint (with the program's
//! outputs and updates), the batch size, the CPU features and the compile options: compiling
//! the same model for the same shapes twice is a lookup.

use kiln_compiler::codegen::{compile, host_features, CompileOptions, CpuFeatures, Executable};
use kiln_compiler::ir::{Graph, NodeId};
use kiln_compiler::Result;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Entries kept; the oldest is dropped beyond this (programs using it keep their code alive).
const CAPACITY: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    graph: u64,
    /// How many of the fingerprinted roots are outputs (the rest are update pairs).
    outputs: usize,
    batch: usize,
    features: CpuFeatures,
    options: CompileOptions,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<Key, Arc<Executable>>,
    order: VecDeque<Key>,
}

static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);

/// Counters of the process-wide program cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
}

/// The cache's counters so far.
pub fn cache_stats() -> CacheStats {
    let entries = CACHE
        .get()
        .map_or(0, |c| c.lock().map_or(0, |c| c.entries.len()));
    CacheStats {
        hits: HITS.load(Ordering::Relaxed),
        misses: MISSES.load(Ordering::Relaxed),
        entries,
    }
}

/// The executable for these arguments, compiled now or found in the cache.
pub(crate) fn get_or_compile(
    graph: &Graph,
    outputs: &[NodeId],
    updates: &[(NodeId, NodeId)],
    batch: usize,
    options: &CompileOptions,
) -> Result<Arc<Executable>> {
    let roots: Vec<NodeId> = outputs
        .iter()
        .copied()
        .chain(updates.iter().flat_map(|&(p, v)| [p, v]))
        .collect();
    let key = Key {
        graph: graph.fingerprint(&roots),
        outputs: outputs.len(),
        batch,
        features: host_features(),
        options: options.clone(),
    };
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(exe) = cache.lock().ok().and_then(|c| c.entries.get(&key).cloned()) {
        HITS.fetch_add(1, Ordering::Relaxed);
        return Ok(exe);
    }
    MISSES.fetch_add(1, Ordering::Relaxed);
    let exe = Arc::new(compile(graph, outputs, updates, batch, options)?);
    if let Ok(mut c) = cache.lock() {
        if c.entries.insert(key.clone(), exe.clone()).is_none() {
            c.order.push_back(key);
        }
        while c.order.len() > CAPACITY {
            if let Some(old) = c.order.pop_front() {
                c.entries.remove(&old);
            }
        }
    }
    Ok(exe)
}
