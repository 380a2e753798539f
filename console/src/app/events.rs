//! The events view's own state: its severity and daemon filters, the list after every filter,
//! and the detail of one event.

use std::borrow::Cow;

use trustdeck_topology::Severity;
use trustdeck_topology::fleet::{EventFacts, FleetEvent};

use super::model::App;
use super::screen::{Mode, View};

/// Which severities the events view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeverityFilter {
    #[default]
    All,
    /// Warnings and errors.
    WarningUp,
    Errors,
}

impl SeverityFilter {
    /// The next one (`s` cycles all → warnings and worse → errors → all).
    pub fn next(self) -> Self {
        match self {
            Self::All => Self::WarningUp,
            Self::WarningUp => Self::Errors,
            Self::Errors => Self::All,
        }
    }

    /// Whether an event of severity `s` is shown (a severity this build does not know is
    /// shown whatever the filter: it may be worse than an error).
    pub fn admits(self, s: Option<Severity>) -> bool {
        match (self, s) {
            (Self::All, _) | (_, None) => true,
            (Self::WarningUp, Some(s)) => matches!(s, Severity::Warning | Severity::Error),
            (Self::Errors, Some(s)) => s == Severity::Error,
        }
    }

    /// How the pane title says it (None: everything).
    pub fn label(self) -> Option<&'static str> {
        match self {
            Self::All => None,
            Self::WarningUp => Some("warnings and errors"),
            Self::Errors => Some("errors"),
        }
    }
}

/// The events view's filters, besides the `/` filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub severity: SeverityFilter,
    /// Only events from this daemon (fleet name).
    pub daemon: Option<String>,
}

impl EventFilter {
    /// `errors, from dmz` (None: no filter).
    pub fn describe(&self) -> Option<String> {
        let parts: Vec<String> = self
            .severity
            .label()
            .map(str::to_string)
            .into_iter()
            .chain(self.daemon.as_ref().map(|d| format!("from {d}")))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// The open event detail: the event (a copy: the list moves on) and its scroll.
#[derive(Debug, Clone)]
pub struct EventDetail {
    pub event: FleetEvent,
    pub scroll: u16,
}

impl App {
    /// Indices into `fleet.events`, newest first, after the `/` filter and the events view's
    /// filters.
    pub fn events(&self) -> Vec<usize> {
        let filter = match self.filter_parsed() {
            Ok(f) => f,
            Err(_) => return Vec::new(),
        };
        let ef = &self.event_filter;
        let mut v: Vec<usize> = self
            .fleet
            .events
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, fe)| {
                ef.severity.admits(fe.event.severity_wire().known())
                    && ef.daemon.as_ref().is_none_or(|d| *d == fe.daemon)
                    && (filter.is_empty() || filter.matches_event(&self.event_facts(fe)))
            })
            .map(|(i, _)| i)
            .collect();
        // Daemons send their history in batches: order by time, newest first (stable).
        v.sort_by_key(|&i| std::cmp::Reverse(self.fleet.events[i].event.at_ms));
        v
    }

    fn event_facts<'a>(&'a self, fe: &'a FleetEvent) -> EventFacts<'a> {
        let segment = self
            .fleet
            .daemons
            .iter()
            .find(|d| d.name == fe.daemon)
            .map_or("", |d| d.segment());
        EventFacts {
            event: &fe.event,
            daemon: &fe.daemon,
            segment,
            node: self.event_node(fe).map(|i| {
                let n = &self.tree().nodes[i].node;
                (&**n, self.fleet.node_name(n))
            }),
        }
    }

    /// The event under the events view's cursor.
    pub fn selected_event(&self) -> Option<&FleetEvent> {
        let i = *self.events().get(self.cursor(View::Events))?;
        self.fleet.events.get(i)
    }

    /// The tree node an event is about, when the console has it.
    pub fn event_node(&self, fe: &FleetEvent) -> Option<usize> {
        if fe.event.node_id.is_empty() {
            return None;
        }
        self.tree().by_id.get(&fe.event.node_id).copied()
    }

    /// An event's message with the daemon's peer named as in the fleet file: every mention of
    /// the peer's address (`server 127.0.0.1:42161 lost`, `attested to 127.0.0.1:42161`) reads
    /// as its name (the address stays in the detail).
    pub fn event_message<'a>(&self, fe: &'a FleetEvent) -> Cow<'a, str> {
        let up = self
            .fleet
            .daemons
            .iter()
            .find(|d| d.name == fe.daemon)
            .and_then(|d| d.upstream.as_ref());
        let Some(c) = up else {
            return Cow::Borrowed(&fe.event.message);
        };
        match (self.fleet.peer_name(c), c.peer.split_whitespace().last()) {
            (Some(name), Some(addr)) if fe.event.message.contains(addr) => {
                Cow::Owned(fe.event.message.replace(addr, name))
            }
            _ => Cow::Borrowed(&fe.event.message),
        }
    }

    /// Opens the detail of the selected event.
    pub(super) fn open_event(&mut self) {
        if let Some(fe) = self.selected_event().cloned() {
            self.event_detail = Some(EventDetail {
                event: fe,
                scroll: 0,
            });
            self.mode = Mode::Event;
        }
    }

    /// `s`: the next severity filter.
    pub(super) fn cycle_severity(&mut self) {
        self.event_filter.severity = self.event_filter.severity.next();
        self.clamp(View::Events);
    }

    /// `f`: only the selected event's daemon, or every daemon again.
    pub(super) fn toggle_event_daemon(&mut self) {
        self.event_filter.daemon = match self.event_filter.daemon {
            Some(_) => None,
            None => self.selected_event().map(|fe| fe.daemon.clone()),
        };
        self.clamp(View::Events);
    }
}
