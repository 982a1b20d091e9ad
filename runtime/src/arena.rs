//! The memory block a program's kernels read and write: cache-line aligned, zero-initialised.

use kiln_compiler::codegen::ALIGN;
use kiln_compiler::{limits, Result};

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; ALIGN]);

/// A zeroed, 64-byte-aligned byte buffer.
pub struct Arena {
    lines: Vec<Line>,
    len: usize,
}

impl Arena {
    /// A zeroed arena of `len` bytes; errors ([`kiln_compiler::Error::TooLarge`]) without
    /// allocating if it exceeds the allocation limit. `what` names it in the error.
    pub fn new(len: usize, what: impl FnOnce() -> String) -> Result<Self> {
        limits::check_bytes(what, len.checked_next_multiple_of(ALIGN))?;
        Ok(Arena {
            lines: vec![Line([0; ALIGN]); len.div_ceil(ALIGN)],
            len,
        })
    }

    pub fn as_ptr(&mut self) -> *mut u8 {
        self.lines.as_mut_ptr().cast()
    }

    /// Reads `n` 4-byte words at a byte offset (which must be 4-aligned and in bounds).
    pub fn words(&self, offset: usize, n: usize) -> &[u32] {
        assert!(
            offset.is_multiple_of(4)
                && n.checked_mul(4).and_then(|b| b.checked_add(offset)) <= Some(self.len),
            "arena read out of bounds"
        );
        // SAFETY: in bounds (checked above) and 4-aligned; `Line` is plain bytes.
        unsafe {
            std::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>().add(offset).cast(), n)
        }
    }

    /// Writes 4-byte words at a byte offset (which must be 4-aligned and in bounds).
    pub fn write_words(&mut self, offset: usize, words: &[u32]) {
        assert!(
            offset.is_multiple_of(4) && offset + 4 * words.len() <= self.len,
            "arena write out of bounds"
        );
        // SAFETY: in bounds (checked above) and 4-aligned.
        unsafe {
            let dst = self
                .lines
                .as_mut_ptr()
                .cast::<u8>()
                .add(offset)
                .cast::<u32>();
            std::ptr::copy_nonoverlapping(words.as_ptr(), dst, words.len());
        }
    }
}
