//! Runbooks at the console's edge: the I/O an execution of `trustdeck_runbook` asks for
//! ([`io`]: admin calls, observations, the server-side journal). The console's runbook pane
//! and `trustdeck runbook ...` both drive executions through it.

pub mod io;
