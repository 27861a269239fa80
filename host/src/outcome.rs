//! How a call ended and what it printed: plain data, low enough in the layering that the
//! execution store keeps them without knowing how calls run.

use std::time::Duration;

use serde_json::{Value, json};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The call ran longer than the function's `timeout` limit.
    #[error("timed out after {limit:?} (limit `timeout`)")]
    Timeout {
        /// The configured limit.
        limit: Duration,
    },
    /// The guest tried to grow its memory past the function's `memory` limit.
    #[error("memory limit exceeded: the guest asked for {requested} bytes, limit `memory` is {limit} bytes")]
    MemoryLimit {
        /// The configured limit in bytes.
        limit: u64,
        /// The memory size the guest asked for.
        requested: u64,
    },
    /// The guest ran out of stack (usually unbounded recursion).
    #[error("stack overflow in the guest (deep recursion?)")]
    StackOverflow,
    /// The guest trapped (panic, `unreachable`, bad memory access, ...).
    #[error("guest trapped: {message}")]
    Trap {
        /// The trap and the guest backtrace.
        message: String,
    },
    /// The function returned the `err` case of its `result`.
    #[error("function returned an error: {value}")]
    Guest {
        /// The error value as JSON.
        value: Value,
    },
    /// The host could not run the call (instantiation failed, resource table full, ...).
    #[error("call failed: {message}")]
    Host {
        /// What went wrong.
        message: String,
    },
    /// An operator paused the function; no instance was made.
    #[error("function `{function}` is paused (resume it with POST .../resume)")]
    Paused {
        /// The manifest function that is paused.
        function: String,
    },
    /// The execution was cancelled (`POST /v1/executions/ID/cancel`) while it ran.
    #[error("cancelled by request")]
    Cancelled,
    /// An argument `{"$execution": ID}` refers to an execution without a result.
    #[error("argument `{{\"$execution\": \"{execution}\"}}`: {message}")]
    Reference {
        /// The execution referred to.
        execution: String,
        /// Why it has no result.
        message: String,
    },
}

impl CallError {
    /// A stable, machine-readable name of the failure, used in API errors and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::Timeout { .. } => "timeout",
            CallError::MemoryLimit { .. } => "memory-limit",
            CallError::StackOverflow => "stack-overflow",
            CallError::Trap { .. } => "trap",
            CallError::Guest { .. } => "guest-error",
            CallError::Host { .. } => "host-error",
            CallError::Paused { .. } => "paused",
            CallError::Reference { .. } => "bad-reference",
            CallError::Cancelled => "cancelled",
        }
    }
}

/// Output a guest wrote during one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logs {
    /// Captured stdout (up to the `output` limit).
    pub stdout: String,
    /// Captured stderr (up to the `output` limit).
    pub stderr: String,
    /// Bytes written past the `output` limit and dropped (stdout + stderr).
    pub dropped: u64,
}

/// The error of a failed call as an execution record keeps it: `{"code", "message"}`, plus the
/// guest's `error` value for guest errors.
pub fn error_json(error: &CallError) -> Value {
    let mut value = json!({ "code": error.code(), "message": error.to_string() });
    if let CallError::Guest { value: guest } = error {
        value["error"] = guest.clone();
    }
    value
}
