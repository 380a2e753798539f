//! Runbooks at the console's edge: the I/O an execution of `trustdeck_runbook` asks for
//! ([`io`]: admin calls, observations, the server-side journal), and the loop that drives an
//! execution against the live fleet ([`drive`]). The console's runbook pane and
//! `trustdeck runbook ...` (a module of the binary) both drive executions through them.

pub mod drive;
pub mod io;
