//! A compiled program: validated inputs in, kernels run in order, outputs out.
//!
//! A program is specialised lazily for each batch size and set of sequence lengths (the sizes of
//! its open dimensions) it sees: the graph is bound to those sizes and compiled, through the
//! process-wide cache, and each specialisation has its own work arena; all specialisations
//! share one state arena holding parameters and optimizer
//! state, so training on a last partial batch or evaluating at another batch size sees the
//! same weights. Kernels split into parts (large matmuls, elementwise and rows kernels) run on
//! the process's worker pool (see [`crate::pool`]), the others on the calling thread.

use crate::arena::Arena;
use crate::cache::get_or_compile;
use crate::dump::{DumpConfig, Profile};
use crate::float_mode::FlushSubnormals;
use crate::pool::Pool;
use kiln_compiler::codegen::{CompileOptions, Executable, Slot, StateLayout};
use kiln_compiler::interp::{infer_sizes, Sizes};
use kiln_compiler::ir::{Graph, NodeId, Op};
use kiln_compiler::{Error, Result, Tensor};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One set of sizes' executable (shared through the cache), work memory and profile.
struct Specialisation {
    exe: Arc<Executable>,
    work: Arena,
    profile: Profile,
}

/// A graph's outputs (and parameter updates), compiled per batch size, with persistent state.
pub struct Program {
    name: String,
    dump: DumpConfig,
    graph: Graph,
    outputs: Vec<NodeId>,
    updates: Vec<(NodeId, NodeId)>,
    options: CompileOptions,
    layout: StateLayout,
    state: Arena,
    specialisations: HashMap<Sizes, Specialisation>,
    /// f32 inputs cast to indices, checked by `run` (see [`crate::guard`]).
    cast_indices: Vec<crate::guard::IndexUse>,
}

fn describe(dims: &[usize], dtype: impl std::fmt::Display) -> String {
    format!("{dtype} {dims:?}")
}

impl Program {
    /// A program computing `outputs` of `graph` and then applying the `(parameter, new value)`
    /// updates. Nothing is compiled until a batch size is known. Options come from the
    /// environment (`KILN_FUSION=0` turns fusion off; `KILN_ISA` forces a microkernel path).
    pub fn new(graph: &Graph, outputs: &[NodeId], updates: &[(NodeId, NodeId)]) -> Result<Self> {
        Self::with_options(graph, outputs, updates, CompileOptions::from_env()?)
    }

    /// [`Program::new`] with explicit compile options.
    pub fn with_options(
        graph: &Graph,
        outputs: &[NodeId],
        updates: &[(NodeId, NodeId)],
        options: CompileOptions,
    ) -> Result<Self> {
        let all = outputs
            .iter()
            .chain(updates.iter().flat_map(|(p, v)| [p, v]));
        if let Some(bad) = all.clone().find(|n| n.index() >= graph.len()) {
            return Err(Error::Graph(format!("node {} does not exist", bad.index())));
        }
        kiln_compiler::limits::check_graph(graph, 1)?;
        let layout = StateLayout::of(graph);
        let dump = DumpConfig::from_env()?;
        let mut options = options;
        options.dump_clif |= dump.options.clif;
        options.dump_asm |= dump.options.asm;
        options.dump_graphs |= dump.options.graph;
        options.dump_schedule |= dump.options.schedule;
        Ok(Program {
            name: "program".into(),
            dump,
            state: Arena::new(layout.bytes, || "the state arena (parameters)".into())?,
            layout,
            graph: graph.clone(),
            outputs: outputs.to_vec(),
            updates: updates.to_vec(),
            options,
            specialisations: HashMap::new(),
            cast_indices: crate::guard::cast_index_uses(graph, &all.copied().collect::<Vec<_>>()),
        })
    }

    /// Names the program in dumps and profiles (`KILN_DUMP`).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// [`Program::new`], then compiles the specialisation for `batch` (so compile errors
    /// surface here).
    pub fn compile(
        graph: &Graph,
        outputs: &[NodeId],
        updates: &[(NodeId, NodeId)],
        batch: usize,
    ) -> Result<Self> {
        let mut p = Self::new(graph, outputs, updates)?;
        p.specialise(batch)?;
        Ok(p)
    }

    /// Compiles (once) the specialisation for these sizes (a batch size alone for a program
    /// without open dimensions) and returns it.
    pub fn specialise(&mut self, sizes: impl Into<Sizes>) -> Result<&Executable> {
        let sizes = sizes.into();
        if !self.specialisations.contains_key(&sizes) {
            let batch = sizes.batch;
            let bound;
            let graph = if sizes.open.is_empty() {
                &self.graph
            } else {
                bound = self.graph.bind(&sizes.open)?;
                &bound
            };
            kiln_compiler::limits::check_graph(graph, batch)?;
            let exe = get_or_compile(graph, &self.outputs, &self.updates, batch, &self.options)?;
            let mut work = Arena::new(exe.work_bytes, || {
                format!("the work arena of `{}` at {sizes}", self.name)
            })?;
            for (offset, words) in &exe.constants {
                work.write_words(*offset, words);
            }
            self.dump.specialisation(&self.name, &exe);
            let profile = Profile {
                calls: 0,
                time: vec![Duration::ZERO; exe.kernels.len()],
                #[cfg(feature = "counters")]
                native_calls: vec![[0; 3]; exe.kernels.len()],
            };
            self.specialisations
                .insert(sizes.clone(), Specialisation { exe, work, profile });
        }
        Ok(&self.specialisations[&sizes].exe)
    }

    /// The sizes specialised so far, by batch size and then lengths.
    pub fn specialisations(&self) -> Vec<Sizes> {
        let mut sizes: Vec<Sizes> = self.specialisations.keys().cloned().collect();
        sizes.sort_unstable_by_key(|s| (s.batch, s.open.iter().map(|o| o.1).collect::<Vec<_>>()));
        sizes
    }

    /// The batch sizes specialised so far, ascending, without repeats.
    pub fn batch_sizes(&self) -> Vec<usize> {
        let mut batches: Vec<usize> = self.specialisations().iter().map(|s| s.batch).collect();
        batches.dedup();
        batches
    }

    /// The specialisation compiled for these sizes, if any.
    pub fn executable(&self, sizes: impl Into<Sizes>) -> Option<&Executable> {
        self.specialisations.get(&sizes.into()).map(|s| &*s.exe)
    }

    /// The per-kernel time profile of each specialisation's runs so far (kernels are timed only
    /// when `KILN_DUMP` includes `profile`).
    pub fn profile_report(&self) -> String {
        self.specialisations()
            .into_iter()
            .map(|b| {
                let s = &self.specialisations[&b];
                s.profile.report(&s.exe)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Per kernel of the specialisation for these sizes (if compiled), the native microkernel
    /// calls its runs made so far, indexed by `Isa as usize`: which contraction ran on which
    /// path (see [`Kernel::outputs`](kiln_compiler::codegen::Kernel::outputs)).
    #[cfg(feature = "counters")]
    pub fn native_calls_by_kernel(&self, sizes: impl Into<Sizes>) -> Option<&[[u64; 3]]> {
        self.specialisations
            .get(&sizes.into())
            .map(|s| s.profile.native_calls.as_slice())
    }

    /// Time the compiler spent on this program's specialisations (a specialisation found in
    /// the program cache counts with the time it took when first compiled).
    pub fn compile_time(&self) -> std::time::Duration {
        self.specialisations
            .values()
            .map(|s| s.exe.compile_time)
            .sum()
    }

    /// The graph the program was built from.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The options the program compiles with.
    pub fn options(&self) -> &CompileOptions {
        &self.options
    }

    /// Where each parameter lives in the state arena.
    pub fn state_layout(&self) -> &StateLayout {
        &self.layout
    }

    fn parameter_slot(&self, name: &str) -> Result<&Slot> {
        self.layout
            .find(name)
            .ok_or_else(|| Error::UnknownTensor(name.to_string()))
    }

    /// Sets a parameter's value.
    pub fn set_parameter(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let slot = self.parameter_slot(name)?.clone();
        check_tensor(&slot, value)?;
        self.state.write_words(slot.offset, value.as_bits());
        Ok(())
    }

    /// A parameter's current value.
    pub fn parameter(&self, name: &str) -> Result<Tensor> {
        let slot = self.parameter_slot(name)?;
        Tensor::from_bits(
            &slot.dims,
            slot.dtype,
            self.state.words(slot.offset, slot.len()),
        )
    }

    /// A copy of the whole state arena (parameters and optimizer state), for
    /// [`Program::restore_state`].
    pub(crate) fn state_snapshot(&self) -> Vec<u32> {
        self.state.words(0, self.layout.bytes / 4).to_vec()
    }

    /// Puts back a state arena copied by [`Program::state_snapshot`] of this program.
    pub(crate) fn restore_state(&mut self, words: &[u32]) {
        self.state.write_words(0, words);
    }

    /// Runs the program on named inputs and returns its outputs. The batch size is inferred
    /// from the inputs; every input is checked (name, shape, dtype, and the range of index
    /// inputs) before any kernel runs.
    pub fn run(&mut self, feeds: &[(&str, &Tensor)]) -> Result<Vec<Tensor>> {
        for (name, _) in feeds {
            if let Some(Op::Parameter { .. }) =
                self.graph.find(name).map(|n| &self.graph.node(n).op)
            {
                return Err(Error::InvalidArgument(format!(
                    "`{name}` is a parameter: set it with `set_parameter`, not as an input"
                )));
            }
        }
        let shapes: Vec<(&str, &[usize])> = feeds.iter().map(|(n, t)| (*n, t.shape())).collect();
        let sizes =
            infer_sizes(&self.graph, &shapes).map_err(|e| naming_readers(&self.graph, e))?;
        let batch = sizes.batch;
        if batch == 0 {
            let (name, t) = feeds
                .iter()
                .find(|(_, t)| t.is_empty())
                .expect("batch 0 has an empty feed");
            return Err(Error::InputMismatch {
                name: name.to_string(),
                expected: "a batch of at least one item".into(),
                found: describe(t.shape(), t.dtype()),
            });
        }
        self.specialise(sizes.clone())?;
        let spec = self
            .specialisations
            .get_mut(&sizes)
            .expect("specialised above");
        let exe = &spec.exe;
        let feed = |slot: &Slot| -> Result<&Tensor> {
            feeds
                .iter()
                .find(|(n, _)| *n == slot.name)
                .map(|(_, t)| *t)
                .ok_or_else(|| Error::InputMismatch {
                    name: slot.name.clone(),
                    expected: describe(&slot.dims, slot.dtype),
                    found: "nothing (the input was not given)".into(),
                })
        };
        for slot in &exe.inputs {
            check_tensor(slot, feed(slot)?).map_err(|e| naming_readers(&self.graph, e))?;
        }
        for b in &exe.index_bounds {
            let slot = exe
                .inputs
                .iter()
                .find(|s| s.name == b.input)
                .expect("an input");
            let values = feed(slot)?.as_i32()?;
            if let Some((position, &v)) = values
                .iter()
                .enumerate()
                .find(|(_, &v)| v < 0 || v as usize >= b.bound)
            {
                return Err(Error::IndexOutOfRange {
                    name: format!("{} (used by {})", b.input, b.op),
                    position,
                    value: v as i64,
                    bound: b.bound,
                });
            }
        }
        crate::guard::check_cast_indices(&self.cast_indices, batch, feeds)?;
        for slot in &exe.inputs {
            spec.work.write_words(slot.offset, feed(slot)?.as_bits());
        }
        spec.work.write_words(exe.status_offset, &[0]);
        let (state, work) = (self.state.as_ptr(), spec.work.as_ptr());
        let flush = FlushSubnormals::start();
        let pool = exe
            .kernels
            .iter()
            .any(|k| k.parts > 1)
            .then(|| Pool::global().engage())
            .flatten();
        for (i, k) in exe.kernels.iter().enumerate() {
            let started = self.dump.options.profile.then(Instant::now);
            #[cfg(feature = "counters")]
            let before = kiln_compiler::codegen::native_call_counts();
            // SAFETY: the kernel was compiled for these arena layouts; every input was checked
            // to fill exactly its slot, and kernels check computed indices themselves.
            unsafe {
                match &pool {
                    Some(pool) if k.parts > 1 => pool.run(k, state, work),
                    _ => k.run_serially(state, work),
                }
            }
            if let Some(t) = started {
                spec.profile.time[i] += t.elapsed();
            }
            #[cfg(feature = "counters")]
            for ((sum, after), before) in spec.profile.native_calls[i]
                .iter_mut()
                .zip(kiln_compiler::codegen::native_call_counts())
                .zip(before)
            {
                *sum += after - before;
            }
        }
        drop(pool);
        drop(flush);
        spec.profile.calls += 1;
        let status = spec.work.words(exe.status_offset, 1)[0];
        if status != 0 {
            let kernel = exe
                .kernels
                .get(status as usize - 1)
                .map_or("?".to_string(), |k| k.name.clone());
            return Err(Error::Kernel {
                kernel,
                message: "an index computed by the program is out of range".into(),
            });
        }
        exe.outputs
            .iter()
            .map(|s| {
                let arena = match s.region {
                    kiln_compiler::codegen::Region::State => &self.state,
                    kiln_compiler::codegen::Region::Work => &spec.work,
                };
                Tensor::from_bits(&s.dims, s.dtype, arena.words(s.offset, s.len()))
            })
            .collect()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if self.dump.options.profile && !self.specialisations.is_empty() {
            self.dump.profile(&self.name, &self.profile_report());
        }
    }
}

/// An input mismatch that also names the layers reading the input (`expected [B, 5, 3], the
/// input of layer lstm`), so that a wrong sequence length points at the layer that fixed it.
fn naming_readers(graph: &Graph, e: Error) -> Error {
    let Error::InputMismatch {
        name,
        expected,
        found,
    } = e
    else {
        return e;
    };
    let mut readers: Vec<&str> = graph
        .find(&name)
        .map(|id| graph.users(id))
        .unwrap_or_default()
        .into_iter()
        .map(|u| graph.node(u).scope.as_str())
        .filter(|scope| !scope.is_empty())
        .collect();
    readers.sort_unstable();
    readers.dedup();
    let expected = match readers.as_slice() {
        [] => expected,
        layers => format!("{expected}, the input of layer {}", layers.join(", ")),
    };
    Error::InputMismatch {
        name,
        expected,
        found,
    }
}

fn check_tensor(slot: &Slot, t: &Tensor) -> Result<()> {
    if t.shape() != slot.dims.as_slice() || t.dtype() != slot.dtype {
        return Err(Error::InputMismatch {
            name: slot.name.clone(),
            expected: describe(&slot.dims, slot.dtype),
            found: describe(t.shape(), t.dtype()),
        });
    }
    Ok(())
}
