//! The console's `/` filter, parsed into typed terms (all must match).
//!
//! A plain word matches a node's name, label, SPIFFE ID, id or segment as a substring, and an
//! event's daemon, kind, message or node name; but a level word (`ok`, `warning`, `critical`,
//! `error`, `info`) or a state word (`held`, `active`, …) is a level or a state, never a piece
//! of another word (`ok` does not match `join_token`). Field terms say exactly what they test:
//! `level:warning`, `state:held`, `kind:agent` (or an event kind), `segment:dmz`,
//! `daemon:dmz`. A field value may be cut to a unique prefix (`level:w`).

use std::fmt;

use trustdeck_proto::admin::{Event, EventKind, Node, NodeKind, NodeState, Severity};
use trustdeck_proto::vocab::Vocabulary;

use crate::ttl::Level;

/// A field of a field term (`level:`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Level,
    State,
    Kind,
    Segment,
    Daemon,
}

impl Field {
    /// Every field, in the order the errors list them.
    pub const ALL: [Field; 5] = [
        Field::Level,
        Field::State,
        Field::Kind,
        Field::Segment,
        Field::Daemon,
    ];

    /// The field's name, as typed before the `:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Level => "level",
            Field::State => "state",
            Field::Kind => "kind",
            Field::Segment => "segment",
            Field::Daemon => "daemon",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind: of node, or of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindWord {
    Node(NodeKind),
    Event(EventKind),
}

/// One term of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// A piece of a name (lower case).
    Text(String),
    Level(Level),
    State(NodeState),
    Kind(KindWord),
    /// A segment, exactly (lower case).
    Segment(String),
    /// A daemon's fleet name, exactly (lower case).
    Daemon(String),
}

/// A parsed filter: every term must match. Empty: everything matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    pub terms: Vec<Term>,
}

/// Why a filter could not be parsed (shown in the console's footer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// `word:` where `word` is no field.
    #[error("unknown filter field \"{0}:\" (fields: level: state: kind: segment: daemon:)")]
    UnknownField(String),
    /// `field:` with nothing after it.
    #[error("\"{field}:\" needs a value, one of {expected}")]
    NoValue {
        field: Field,
        /// The values it takes.
        expected: String,
    },
    /// A value the field does not take (or a prefix of several).
    #[error("\"{field}:{value}\": {field} is one of {expected}")]
    BadValue {
        field: Field,
        value: String,
        /// The values it takes.
        expected: String,
    },
}

/// Level words: the console's levels and the events' severities.
const LEVELS: [(&str, Level); 5] = [
    ("ok", Level::Ok),
    ("warning", Level::Warning),
    ("critical", Level::Critical),
    ("info", Level::Ok),
    ("error", Level::Critical),
];

/// Node kind words: names and the tree's tags.
const NODE_KINDS: [(&str, NodeKind); 11] = [
    ("server", NodeKind::Server),
    ("srv", NodeKind::Server),
    ("ca", NodeKind::X509Authority),
    ("x509", NodeKind::X509Authority),
    ("root", NodeKind::X509Authority),
    ("int", NodeKind::X509Authority),
    ("jwt", NodeKind::JwtAuthority),
    ("agent", NodeKind::Agent),
    ("agt", NodeKind::Agent),
    ("svid", NodeKind::WorkloadSvid),
    ("workload", NodeKind::WorkloadSvid),
];

/// Node id prefixes (`x509:11aa41` is a plain word, not a field term).
const ID_PREFIXES: [&str; 5] = ["server", "x509", "jwt", "agent", "svid"];

/// The level of an event's severity.
pub fn severity_level(s: Severity) -> Level {
    match s {
        Severity::Error => Level::Critical,
        Severity::Warning => Level::Warning,
        Severity::Info | Severity::Unspecified => Level::Ok,
    }
}

impl Filter {
    /// Parses a typed filter (case does not matter).
    pub fn parse(s: &str) -> Result<Self, FilterError> {
        let terms = s
            .split_whitespace()
            .map(|w| term(&w.to_lowercase()))
            .collect::<Result<_, _>>()?;
        Ok(Self { terms })
    }

    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether a term needs levels (which move with time).
    pub fn uses_levels(&self) -> bool {
        self.terms.iter().any(|t| matches!(t, Term::Level(_)))
    }

    /// Whether node `f` matches every term.
    pub fn matches_node(&self, f: &NodeFacts<'_>) -> bool {
        self.terms.iter().all(|t| f.matches(t))
    }

    /// Whether event `f` matches every term.
    pub fn matches_event(&self, f: &EventFacts<'_>) -> bool {
        self.terms.iter().all(|t| f.matches(t))
    }
}

fn term(w: &str) -> Result<Term, FilterError> {
    if let Some((_, l)) = LEVELS.iter().find(|(k, _)| *k == w) {
        return Ok(Term::Level(*l));
    }
    if let Some(s) = NodeState::parse(w).filter(|s| *s != NodeState::Unspecified) {
        return Ok(Term::State(s));
    }
    let Some((name, value)) = w.split_once(':') else {
        return Ok(Term::Text(w.to_string()));
    };
    let Some(field) = Field::ALL.into_iter().find(|f| f.as_str() == name) else {
        if ID_PREFIXES.contains(&name) || value.starts_with("//") {
            return Ok(Term::Text(w.to_string()));
        }
        return Err(FilterError::UnknownField(name.to_string()));
    };
    match field {
        Field::Level => pick(field, value, &LEVELS).map(Term::Level),
        Field::State => {
            let states: Vec<(&str, NodeState)> = NodeState::ALL
                .iter()
                .filter(|s| **s != NodeState::Unspecified)
                .map(|s| (s.as_str(), *s))
                .collect();
            pick(field, value, &states).map(Term::State)
        }
        Field::Kind => {
            let mut kinds: Vec<(&str, KindWord)> = NODE_KINDS
                .iter()
                .map(|(k, v)| (*k, KindWord::Node(*v)))
                .collect();
            kinds.extend(
                EventKind::ALL
                    .iter()
                    .filter(|k| **k != EventKind::Unspecified)
                    .map(|k| (k.as_str(), KindWord::Event(*k))),
            );
            pick(field, value, &kinds).map(Term::Kind)
        }
        Field::Segment | Field::Daemon if value.is_empty() => Err(FilterError::NoValue {
            field,
            expected: format!("the {field} names"),
        }),
        Field::Segment => Ok(Term::Segment(value.to_string())),
        Field::Daemon => Ok(Term::Daemon(value.to_string())),
    }
}

/// The value `typed` names: an exact word, else the one value all words it starts are for.
fn pick<T: Copy + PartialEq>(
    field: Field,
    typed: &str,
    words: &[(&str, T)],
) -> Result<T, FilterError> {
    let expected = || {
        let mut names: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
        names.dedup();
        names.join(" ")
    };
    if typed.is_empty() {
        return Err(FilterError::NoValue {
            field,
            expected: expected(),
        });
    }
    if let Some((_, v)) = words.iter().find(|(w, _)| *w == typed) {
        return Ok(*v);
    }
    let mut found: Option<T> = None;
    for (w, v) in words {
        if w.starts_with(typed) {
            if found.is_some_and(|f| f != *v) {
                found = None;
                break;
            }
            found = Some(*v);
        }
    }
    found.ok_or_else(|| FilterError::BadValue {
        field,
        value: typed.to_string(),
        expected: expected(),
    })
}

/// What the filter tests on a node.
#[derive(Debug, Clone, Copy)]
pub struct NodeFacts<'a> {
    pub node: &'a Node,
    /// Its name (see [`Fleet::node_name`](super::Fleet::node_name)).
    pub name: &'a str,
    /// The fleet name of the daemon that reported it.
    pub daemon: &'a str,
    /// Its level, when it has a lifetime.
    pub level: Option<Level>,
}

impl NodeFacts<'_> {
    fn matches(&self, t: &Term) -> bool {
        let n = self.node;
        match t {
            Term::Text(w) => {
                // A state this build does not know reads "unknown": a word, not a piece.
                n.state_wire().as_str() == w
                    || [&n.label, &n.spiffe_id, &n.id, &n.segment]
                        .into_iter()
                        .map(String::as_str)
                        .chain([self.name])
                        .any(|s| s.to_lowercase().contains(w.as_str()))
            }
            Term::Level(l) => self.level == Some(*l),
            Term::State(s) => n.state_wire().known() == Some(*s),
            Term::Kind(KindWord::Node(k)) => n.kind_wire().known() == Some(*k),
            Term::Kind(KindWord::Event(_)) => false,
            Term::Segment(s) => n.segment.eq_ignore_ascii_case(s),
            Term::Daemon(d) => self.daemon.eq_ignore_ascii_case(d),
        }
    }
}

/// What the filter tests on an event.
#[derive(Debug, Clone, Copy)]
pub struct EventFacts<'a> {
    pub event: &'a Event,
    /// The fleet name of the daemon it came from.
    pub daemon: &'a str,
    /// That daemon's segment.
    pub segment: &'a str,
    /// The node it is about, when the console has it, with its name.
    pub node: Option<(&'a Node, &'a str)>,
}

impl EventFacts<'_> {
    fn matches(&self, t: &Term) -> bool {
        let e = self.event;
        let node = self.node.map(|(n, _)| n);
        match t {
            Term::Text(w) => [
                self.daemon,
                e.kind_wire().as_str(),
                &e.message,
                self.node.map_or("", |(_, name)| name),
            ]
            .into_iter()
            .any(|s| s.to_lowercase().contains(w.as_str())),
            Term::Level(l) => e
                .severity_wire()
                .known()
                .is_some_and(|s| severity_level(s) == *l),
            Term::State(s) => node.is_some_and(|n| n.state_wire().known() == Some(*s)),
            Term::Kind(KindWord::Event(k)) => e.kind_wire().known() == Some(*k),
            Term::Kind(KindWord::Node(k)) => {
                node.is_some_and(|n| n.kind_wire().known() == Some(*k))
            }
            Term::Segment(s) => self.segment.eq_ignore_ascii_case(s),
            Term::Daemon(d) => self.daemon.eq_ignore_ascii_case(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Node {
        Node {
            id: "agent:spiffe://td/trustdeck/agent/join_token/5fb56b".into(),
            kind: NodeKind::Agent as i32,
            label: "agent".into(),
            spiffe_id: "spiffe://td/trustdeck/agent/join_token/5fb56b".into(),
            state: NodeState::Attested as i32,
            segment: "dmz".into(),
            ..Default::default()
        }
    }

    fn node_matches(filter: &str, level: Level) -> bool {
        let n = agent();
        let f = Filter::parse(filter).expect("parses");
        f.matches_node(&NodeFacts {
            node: &n,
            name: "dmz-workloads-1",
            daemon: "dmz",
            level: Some(level),
        })
    }

    #[test]
    fn level_words_are_levels_not_pieces_of_names() {
        // "join_token" contains "ok": the agent matched /ok whatever its level.
        assert!(!node_matches("ok", Level::Warning));
        assert!(node_matches("ok", Level::Ok));
        assert!(node_matches("warning", Level::Warning));
        assert!(node_matches("level:warning", Level::Warning));
        assert!(node_matches("level:w", Level::Warning));
        assert!(!node_matches("level:critical", Level::Warning));
    }

    #[test]
    fn state_words_are_states() {
        assert!(node_matches("attested", Level::Ok));
        assert!(!node_matches("held", Level::Ok));
        assert!(node_matches("state:att", Level::Ok));
    }

    #[test]
    fn text_matches_names_ids_and_segments() {
        for w in ["workloads-1", "join_token", "DMZ", "5fb56b"] {
            assert!(node_matches(w, Level::Ok), "{w}");
        }
        assert!(!node_matches("gcp", Level::Ok));
        // Typed ids and SPIFFE IDs are text, not fields.
        assert!(node_matches("spiffe://td/trustdeck/agent", Level::Ok));
        assert!(node_matches("agent:spiffe://td", Level::Ok));
    }

    #[test]
    fn fields_and_terms_combine() {
        assert!(node_matches("kind:agent segment:dmz daemon:dmz", Level::Ok));
        assert!(node_matches("kind:agt", Level::Ok));
        assert!(!node_matches("kind:svid", Level::Ok));
        assert!(!node_matches("segment:dm", Level::Ok));
        assert!(!node_matches("dmz level:critical", Level::Ok));
    }

    #[test]
    fn unknown_fields_and_values_are_errors() {
        assert_eq!(
            Filter::parse("colour:red"),
            Err(FilterError::UnknownField("colour".into()))
        );
        let e = Filter::parse("level:purple").expect_err("bad value");
        assert!(
            e.to_string()
                .contains("level is one of ok warning critical")
        );
        assert!(matches!(
            Filter::parse("level:"),
            Err(FilterError::NoValue { .. })
        ));
        assert!(matches!(
            Filter::parse("segment:"),
            Err(FilterError::NoValue { .. })
        ));
        // "jwt" is a node kind, "jwt-" the start of two event kinds.
        assert_eq!(
            Filter::parse("kind:jwt").map(|f| f.terms),
            Ok(vec![Term::Kind(KindWord::Node(NodeKind::JwtAuthority))])
        );
        assert!(Filter::parse("kind:jwt-").is_err());
    }

    #[test]
    fn events_match_by_severity_kind_daemon_and_node() {
        let n = agent();
        let e = Event {
            severity: Severity::Warning as i32,
            kind: EventKind::AttestationFailed as i32,
            message: "attestation from 10.0.0.7 refused".into(),
            ..Default::default()
        };
        let facts = EventFacts {
            event: &e,
            daemon: "dmz",
            segment: "dmz",
            node: Some((&n, "dmz-workloads-1")),
        };
        let m = |s: &str| Filter::parse(s).expect("parses").matches_event(&facts);
        assert!(m("warning"));
        assert!(m("level:warning"));
        assert!(!m("error"));
        assert!(m("kind:attestation-failed"));
        assert!(m("kind:agent"));
        assert!(m("daemon:dmz refused"));
        assert!(m("workloads-1"));
        assert!(m("attested"));
        assert!(!m("segment:gcp"));
    }
}
