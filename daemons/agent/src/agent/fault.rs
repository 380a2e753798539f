//! Faults the end-to-end tests inject into the agent. Only debug builds read them: in a
//! release build this module is empty and nothing here exists.
//!
//! `TRUSTDECK_AGENT_FAULT_DROP_RENEWAL=N`: the answers to the first `N` agent SVID renewals
//! are dropped after the server issued them, as if the connection broke on the way back.

#[cfg(debug_assertions)]
mod imp {
    use std::sync::Mutex;

    /// The environment variable naming how many renewal answers to drop.
    pub const DROP_RENEWAL: &str = "TRUSTDECK_AGENT_FAULT_DROP_RENEWAL";

    /// Renewal answers still to drop; `None` until the environment was read.
    static LEFT: Mutex<Option<u32>> = Mutex::new(None);

    /// Whether to drop this renewal's answer (counting it).
    pub fn drop_renewal_answer() -> bool {
        let mut left = LEFT.lock().unwrap_or_else(|p| p.into_inner());
        let n = left.get_or_insert_with(|| {
            std::env::var(DROP_RENEWAL)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        });
        if *n == 0 {
            return false;
        }
        *n -= 1;
        true
    }
}

/// Whether to drop this renewal's answer: never in a release build.
pub(super) fn drop_renewal_answer() -> bool {
    #[cfg(debug_assertions)]
    {
        imp::drop_renewal_answer()
    }
    #[cfg(not(debug_assertions))]
    {
        false
    }
}
