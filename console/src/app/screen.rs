//! What is on screen: the main area's view and what keys do. Layout, update and the views all
//! read these two.

/// The views of the main area, in `tab` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum View {
    /// The merged tree: servers, CAs, agents, workload SVIDs.
    #[default]
    Tree,
    /// Everything that counts for health, soonest expiry first.
    Expiring,
    /// The autonomous window of every segment.
    Segments,
    /// Fleet events, newest first.
    Events,
    /// The console's own connection to every daemon.
    Daemons,
    /// Health per segment and daemon over the last hour.
    Timeline,
    /// Foreign trust domains (federated or imported) and peers' receipts.
    Federation,
}

impl View {
    /// Every view, in `tab` order.
    pub const ALL: [View; 7] = [
        View::Tree,
        View::Expiring,
        View::Segments,
        View::Events,
        View::Daemons,
        View::Timeline,
        View::Federation,
    ];

    /// The view's name (also its `:` command).
    pub fn name(self) -> &'static str {
        match self {
            View::Tree => "tree",
            View::Expiring => "expiring",
            View::Segments => "segments",
            View::Events => "events",
            View::Daemons => "daemons",
            View::Timeline => "timeline",
            View::Federation => "federation",
        }
    }

    /// Position in [`View::ALL`].
    pub fn index(self) -> usize {
        match self {
            View::Tree => 0,
            View::Expiring => 1,
            View::Segments => 2,
            View::Events => 3,
            View::Daemons => 4,
            View::Timeline => 5,
            View::Federation => 6,
        }
    }

    /// The next of `shown` after this one (`tab`), wrapping.
    pub(crate) fn next_in(self, shown: &[View]) -> View {
        let i = shown.iter().position(|&v| v == self).unwrap_or(0);
        shown
            .get((i + 1) % shown.len().max(1))
            .copied()
            .unwrap_or(self)
    }

    /// The one of `shown` before this one (`shift-tab`), wrapping.
    pub(crate) fn prev_in(self, shown: &[View]) -> View {
        let n = shown.len().max(1);
        let i = shown.iter().position(|&v| v == self).unwrap_or(0);
        shown.get((i + n - 1) % n).copied().unwrap_or(self)
    }
}

/// What keys currently do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Browsing the current view.
    #[default]
    Normal,
    /// Typing a filter after `/`.
    Filter,
    /// Typing a command after `:`.
    Command,
    /// The help overlay.
    Help,
    /// The detail popup of one node.
    Detail,
    /// The detail popup of one event.
    Event,
    /// The copy menu.
    Copy,
    /// The list of runbooks (all, or those that apply to the selected node).
    Runbooks,
    /// The runbook pane: a plan, or an execution under way.
    Runbook,
    /// A confirmation being answered (operator mode, a runbook step, an abort).
    Confirm,
}
