//! The one way code reads the time: a [`Clock`] passed in. Pure cores take `now` as a
//! parameter; the layer that calls them asks its clock.

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A source of the current time; tests inject their own.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
