//! A compiled program with its arena: validated inputs in, kernels run in order, outputs out.

use crate::arena::Arena;
use kiln_compiler::codegen::{compile, CompileOptions, Executable, Slot};
use kiln_compiler::ir::{Graph, NodeId};
use kiln_compiler::{Error, Result, Tensor};

/// A graph compiled for one batch size, with its memory. Parameters persist across runs.
pub struct Program {
    exe: Executable,
    arena: Arena,
}

fn describe(dims: &[usize], dtype: impl std::fmt::Display) -> String {
    format!("{dtype} {dims:?}")
}

impl Program {
    /// Compiles `outputs` (and the `(parameter, new value)` updates applied after each run) of
    /// `graph` for `batch`.
    pub fn compile(
        graph: &Graph,
        outputs: &[NodeId],
        updates: &[(NodeId, NodeId)],
        batch: usize,
    ) -> Result<Self> {
        Self::with_options(graph, outputs, updates, batch, &CompileOptions::default())
    }

    /// [`Program::compile`] with explicit options.
    pub fn with_options(
        graph: &Graph,
        outputs: &[NodeId],
        updates: &[(NodeId, NodeId)],
        batch: usize,
        options: &CompileOptions,
    ) -> Result<Self> {
        let exe = compile(graph, outputs, updates, batch, options)?;
        let mut arena = Arena::new(exe.arena_bytes);
        for (offset, words) in &exe.constants {
            arena.write_words(*offset, words);
        }
        Ok(Program { exe, arena })
    }

    /// The compiled executable (kernels, layout, compile time).
    pub fn executable(&self) -> &Executable {
        &self.exe
    }

    /// The input slots the program expects.
    pub fn inputs(&self) -> &[Slot] {
        &self.exe.inputs
    }

    fn parameter_slot(&self, name: &str) -> Result<&Slot> {
        self.exe
            .parameters
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::UnknownTensor(name.to_string()))
    }

    /// Sets a parameter's value.
    pub fn set_parameter(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let slot = self.parameter_slot(name)?.clone();
        check_tensor(&slot, value)?;
        self.arena.write_words(slot.offset, &value.to_bits());
        Ok(())
    }

    /// A parameter's current value.
    pub fn parameter(&self, name: &str) -> Result<Tensor> {
        let slot = self.parameter_slot(name)?;
        Tensor::from_bits(
            &slot.dims,
            slot.dtype,
            self.arena.words(slot.offset, slot.len()),
        )
    }

    /// Runs the program on named inputs and returns its outputs. Every input is checked (name,
    /// shape, dtype, and the range of index inputs) before any kernel runs.
    pub fn run(&mut self, feeds: &[(&str, &Tensor)]) -> Result<Vec<Tensor>> {
        for (name, _) in feeds {
            if !self.exe.inputs.iter().any(|s| s.name == *name) {
                return Err(Error::UnknownTensor(name.to_string()));
            }
        }
        for slot in &self.exe.inputs {
            let value = feeds
                .iter()
                .find(|(n, _)| *n == slot.name)
                .map(|(_, t)| *t)
                .ok_or_else(|| Error::InputMismatch {
                    name: slot.name.clone(),
                    expected: describe(&slot.dims, slot.dtype),
                    found: "nothing (the input was not given)".into(),
                })?;
            check_tensor(slot, value)?;
        }
        for b in &self.exe.index_bounds {
            let (_, t) = feeds
                .iter()
                .find(|(n, _)| *n == b.input)
                .expect("checked above");
            let values = t.as_i32()?;
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
        for slot in &self.exe.inputs {
            let (_, t) = feeds
                .iter()
                .find(|(n, _)| *n == slot.name)
                .expect("checked above");
            self.arena.write_words(slot.offset, &t.to_bits());
        }
        self.arena.write_words(self.exe.status_offset, &[0]);
        let base = self.arena.as_ptr();
        for k in &self.exe.kernels {
            // SAFETY: the kernel was compiled for this arena layout; every input was checked
            // to fill exactly its slot, and kernels check computed indices themselves.
            unsafe { (k.func)(base) };
        }
        let status = self.arena.words(self.exe.status_offset, 1)[0];
        if status != 0 {
            let kernel = self
                .exe
                .kernels
                .get(status as usize - 1)
                .map_or("?".to_string(), |k| k.name.clone());
            return Err(Error::Kernel {
                kernel,
                message: "an index computed by the program is out of range".into(),
            });
        }
        self.exe
            .outputs
            .iter()
            .map(|s| Tensor::from_bits(&s.dims, s.dtype, self.arena.words(s.offset, s.len())))
            .collect()
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
