//! The memory a call may use: the guest's linear memory, and the host memory made or held for it
//! (values read for it, `wasi:nn` tensors, table elements), all against its `memory` limit. The
//! call installs the [`Limiter`] in its store; capability views use it to refuse values that
//! could not fit in the guest.

use wasmtime::ResourceLimiter;

/// Host bytes per table element (wasmtime keeps a pointer per element).
const TABLE_ELEMENT_BYTES: u64 = std::mem::size_of::<usize>() as u64;

/// Enforces the memory and table limits and remembers a denied memory growth, so that the trap
/// that usually follows (an allocator abort) is reported as what it is. Host memory held for the
/// guest (`wasi:nn` tensors, the elements of all its tables) counts against the same `memory`
/// limit as its linear memory; `table-entries` limits each table.
pub struct Limiter {
    memory: u64,
    table_entries: usize,
    /// Bytes of linear memory of all the instance's memories together.
    memory_used: u64,
    /// Bytes of host memory held for the guest: tensors and table elements.
    host_held: u64,
    /// The total asked for when memory was last refused.
    denied_memory: Option<u64>,
}

impl Limiter {
    /// `memory` bytes in all; `table_entries` per table.
    pub fn new(memory: u64, table_entries: usize) -> Limiter {
        Limiter { memory, table_entries, memory_used: 0, host_held: 0, denied_memory: None }
    }

    /// The total asked for when memory was last refused: a trap that follows is reported as
    /// the memory limit it is.
    pub fn denied_memory(&self) -> Option<u64> {
        self.denied_memory
    }

    /// Whether `total` bytes (linear memory and host memory together) fit the `memory` limit;
    /// a denial is remembered.
    fn fits(&mut self, total: u64) -> bool {
        if total > self.memory {
            self.denied_memory = Some(total);
            return false;
        }
        true
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.memory_used.saturating_sub(current as u64) + desired as u64;
        if !self.fits(total.saturating_add(self.host_held)) {
            return Ok(false);
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let bytes = desired.saturating_sub(current) as u64 * TABLE_ELEMENT_BYTES;
        if desired > self.table_entries || !self.fits(self.memory_used + self.host_held + bytes) {
            return Ok(false);
        }
        self.host_held += bytes;
        Ok(true)
    }
}

impl Limiter {
    /// The largest value the host may build to hand the guest now: the `memory` limit less the
    /// host memory the call holds ([`Limiter::hold`]). A bigger value could never be copied into
    /// the guest's memory, so the host refuses it before reading it ([`Limiter::too_big`]).
    pub fn value_budget(&self) -> u64 {
        self.memory.saturating_sub(self.host_held)
    }

    /// The error that ends the call when the host would need `bytes` of host memory for the
    /// guest (`what`, e.g. `bucket read`) past what its `memory` limit leaves:
    /// `CallError::MemoryLimit`, as when the guest's own memory cannot grow.
    pub fn too_big(&mut self, what: &str, bytes: u64) -> wasmtime::Error {
        self.refused(what, self.host_held.saturating_add(bytes))
    }

    /// Take `bytes` of host memory held for the guest across host calls (`wasi:nn` tensors): it
    /// counts against the `memory` limit together with the guest's linear memory, or the call
    /// ends with `CallError::MemoryLimit`.
    pub fn hold(&mut self, what: &str, bytes: u64) -> wasmtime::Result<()> {
        let held = self.host_held.saturating_add(bytes);
        let total = self.memory_used.saturating_add(held);
        if !self.fits(total) {
            return Err(self.refused(what, total));
        }
        self.host_held = held;
        Ok(())
    }

    /// The error for a refusal of `requested` bytes in all, remembered as a denied memory growth.
    fn refused(&mut self, what: &str, requested: u64) -> wasmtime::Error {
        let limit = self.memory;
        tracing::debug!(what, requested, limit, "host memory for the guest refused");
        self.denied_memory = Some(requested);
        wasmtime::format_err!("{what} would need {requested} bytes, more than the `memory` limit of {limit} bytes")
    }

    /// Give back `bytes` taken with [`Limiter::hold`].
    pub fn release(&mut self, bytes: u64) {
        self.host_held = self.host_held.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_elements_of_all_tables_count_against_the_memory_limit() {
        // 1 MiB and 10 000 entries per table: each full table holds 80 KB of host memory.
        let mut limits = Limiter::new(1 << 20, 10_000);
        assert!(!limits.table_growing(0, 10_001, None).unwrap(), "`table-entries` limits each table");
        let full_tables = (1 << 20) / (10_000 * TABLE_ELEMENT_BYTES);
        for _ in 0..full_tables {
            assert!(limits.table_growing(0, 10_000, None).unwrap());
        }
        assert_eq!(limits.denied_memory, None);
        assert!(!limits.table_growing(0, 10_000, None).unwrap(), "one table more does not fit in all");
        assert!(limits.denied_memory.unwrap() > 1 << 20);
        // What the tables hold is not there for linear memory.
        let room = (1 << 20) - limits.host_held as usize;
        assert!(!limits.memory_growing(0, room + 1, None).unwrap());
        assert!(limits.memory_growing(0, room, None).unwrap());
    }
}
