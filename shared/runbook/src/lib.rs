//! Guided runbooks, as data and as a state machine.
//!
//! A runbook is a TOML file in the top-level `runbooks/` folder (shipped inside the binary,
//! overridable by a directory): typed inputs, then steps. Each step says why, what must hold
//! before it (`pre`), what it does (`action`: one of a fixed set of admin calls, or a manual
//! instruction), what exactly will change (`plan`), its risk and confirmation, how long its
//! verification may take, what must hold after it (`verify`), and how to undo it (`rollback`).
//!
//! - [`model`]: the file format, typed; [`param`]: values that may name a variable.
//! - [`load`]: parsing and validation; every error names the file, the step and the problem.
//! - [`inputs`]: inputs checked against the live fleet, defaults drawn from it.
//! - [`check`] (with `chains`): the predicates, evaluated over an [`Observation`] (the topology model plus
//!   what the admin API answered).
//! - [`peers`]: isolated peers and the receipts they sent back (`peers_hold`).
//! - [`plan`]: the dry run, rendered.
//! - [`exec`]: one execution as a state machine; the caller performs the I/O it asks for.
//!
//! No I/O and no clock: `now` is a parameter everywhere.
#![forbid(unsafe_code)]

mod chains;
pub mod check;
pub mod exec;
pub mod facts;
pub mod inputs;
pub mod load;
pub mod model;
pub mod param;
pub mod peers;
pub mod plan;
#[cfg(test)]
mod testfleet;

pub use check::{CheckResult, Observation, ServerReads};
pub use exec::{Confirmation, Execution, Next, Outcome, StepEvent};
pub use inputs::{InputError, Vars, resolve_inputs};
pub use load::{LoadError, Problem, RunbookSet, load_dir, shipped};
pub use model::{Action, AuthKind, AuthStatus, Check, ConfirmKind, Risk, Runbook, Step};
