//! The timeline's model: the health of each segment and each daemon over the last hour, so
//! "when did this start" has an answer. Pure and bounded: one ring of [`SLOTS`] cells per row
//! (one cell per [`INTERVAL_SECS`], the worst state seen within it), at most [`MAX_ROWS`] rows,
//! whatever the fleet's size or the console's run time. Fed from `update` on each tick with
//! `now`; it never reads the clock. Minutes without a sample (the console was not running, or
//! was stopped) stay unknown.

use chrono::{DateTime, Utc};
use trustdeck_topology::fleet::{DaemonConn, Fleet, Level, Thresholds, Tree, conn_level};

/// Seconds per cell.
pub const INTERVAL_SECS: i64 = 60;
/// Cells per row: one hour.
pub const SLOTS: usize = 60;
/// Most rows kept (segments and daemons together).
pub const MAX_ROWS: usize = 256;

/// A health state in the timeline, mildest first (so `max` is the worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    Ok,
    Warning,
    Critical,
    /// The console cannot reach the daemon: the worst, since nothing else is known.
    Unreachable,
}

impl Mark {
    /// The word for it.
    pub fn word(self) -> &'static str {
        match self {
            Mark::Ok => "ok",
            Mark::Warning => "warning",
            Mark::Critical => "critical",
            Mark::Unreachable => "unreachable",
        }
    }

    /// The level its colour and symbol follow.
    pub fn level(self) -> Level {
        match self {
            Mark::Ok => Level::Ok,
            Mark::Warning => Level::Warning,
            Mark::Critical | Mark::Unreachable => Level::Critical,
        }
    }

    fn of(l: Level) -> Self {
        match l {
            Level::Ok => Mark::Ok,
            Level::Warning => Mark::Warning,
            Level::Critical => Mark::Critical,
        }
    }
}

/// What a row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Segment,
    Daemon,
}

/// One row: a segment or a daemon, its ring of cells and its current state.
#[derive(Debug, Clone)]
pub struct Series {
    pub subject: Subject,
    pub name: String,
    /// Cell of interval `n` at `n % SLOTS`; None: no sample in it.
    cells: [Option<Mark>; SLOTS],
    /// The newest interval written (Unix seconds / [`INTERVAL_SECS`]).
    newest: Option<i64>,
    /// When the newest sample was taken (Unix seconds).
    last_at: Option<i64>,
    /// The current state, and since when (Unix seconds).
    pub current: Option<(Mark, i64)>,
    /// Whether `current` began while the console watched, within one interval of the sample
    /// before (else: it already held at the first sample, or began in a gap without samples,
    /// and `since` is only when the console first saw it).
    pub seen_start: bool,
}

impl Series {
    fn new(subject: Subject, name: &str) -> Self {
        Self {
            subject,
            name: name.to_string(),
            cells: [None; SLOTS],
            newest: None,
            last_at: None,
            current: None,
            seen_start: false,
        }
    }

    fn record(&mut self, at: i64, mark: Mark) {
        let n = at.div_euclid(INTERVAL_SECS);
        match self.newest {
            Some(newest) if n < newest => {
                // A sample from the past (the clock stepped back): merged if still in the ring.
                if newest - n < SLOTS as i64 {
                    let c = &mut self.cells[slot(n)];
                    *c = Some(c.map_or(mark, |m| m.max(mark)));
                }
                return;
            }
            Some(newest) if n > newest => {
                // Intervals skipped without a sample are unknown.
                for k in (newest + 1..n).rev().take(SLOTS) {
                    self.cells[slot(k)] = None;
                }
                self.cells[slot(n)] = Some(mark);
            }
            Some(_) => {
                let c = &mut self.cells[slot(n)];
                *c = Some(c.map_or(mark, |m| m.max(mark)));
            }
            None => self.cells[slot(n)] = Some(mark),
        }
        self.newest = Some(n);
        let gap = self.last_at.is_none_or(|t| at - t > INTERVAL_SECS);
        self.last_at = Some(at);
        match self.current {
            Some((m, _)) if m == mark => {}
            _ => {
                self.current = Some((mark, at));
                self.seen_start = !gap;
            }
        }
    }

    /// The last `n` cells (at most [`SLOTS`]), oldest first, ending with the interval of
    /// `now`.
    pub fn cells(&self, now: DateTime<Utc>, n: usize) -> Vec<Option<Mark>> {
        let end = now.timestamp().div_euclid(INTERVAL_SECS);
        let n = n.min(SLOTS) as i64;
        (end - n + 1..=end)
            .map(|k| match self.newest {
                Some(newest) if k <= newest && newest - k < SLOTS as i64 => self.cells[slot(k)],
                _ => None,
            })
            .collect()
    }
}

fn slot(n: i64) -> usize {
    n.rem_euclid(SLOTS as i64) as usize
}

/// Every row of the timeline.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub rows: Vec<Series>,
}

impl History {
    /// Records one sample per row at `now` (rows are added as they first appear, up to
    /// [`MAX_ROWS`]; a row without a mark is added but nothing is recorded in it).
    pub fn record(&mut self, now: DateTime<Utc>, samples: &[(Subject, String, Option<Mark>)]) {
        for (subject, name, mark) in samples {
            let i = match self
                .rows
                .iter()
                .position(|r| r.subject == *subject && r.name == *name)
            {
                Some(i) => i,
                None if self.rows.len() < MAX_ROWS => {
                    self.rows.push(Series::new(*subject, name));
                    self.rows.len() - 1
                }
                None => continue,
            };
            if let Some(mark) = mark {
                self.rows[i].record(now.timestamp(), *mark);
            }
        }
        // Segments first, then daemons, each in the order first seen.
        self.rows.sort_by_key(|r| r.subject == Subject::Daemon);
    }
}

/// The adapter from the fleet's health functions to the timeline: the state of each segment
/// (its nodes' levels, its upstream link, and its server's reachability) and of each daemon
/// (its reachability, then its nodes and its upstream link). The one place that knows how
/// health is computed. A daemon the console has not reached yet (still connecting) gives no
/// mark: nothing is known of it, and its first seconds are not an outage.
pub fn sample(
    fleet: &Fleet,
    tree: &Tree,
    now: DateTime<Utc>,
    th: &Thresholds,
) -> Vec<(Subject, String, Option<Mark>)> {
    let mut daemon: Vec<Option<Mark>> = fleet
        .daemons
        .iter()
        .map(|ds| match ds.conn {
            DaemonConn::Connecting => None,
            DaemonConn::Live => Some(Mark::Ok),
            DaemonConn::Lost { .. } | DaemonConn::NeverReached { .. } => Some(Mark::Unreachable),
        })
        .collect();
    let mut segments: Vec<(String, Option<Mark>)> = Vec::new();
    let mut worsen = |seg: &str, m: Option<Mark>| match segments.iter_mut().find(|(s, _)| s == seg)
    {
        Some((_, w)) => *w = (*w).max(m),
        None => segments.push((seg.to_string(), m)),
    };
    for (d, ds) in fleet.daemons.iter().enumerate() {
        if let (Some(u), Some(Mark::Ok)) = (&ds.upstream, daemon[d]) {
            daemon[d] = Some(Mark::of(conn_level(u.state_wire())));
        }
        worsen(ds.segment(), daemon[d]);
    }
    for (i, t) in tree.nodes.iter().enumerate() {
        let m = Mark::of(fleet.node_level(tree, i, now, th));
        if let Some(Some(d)) = daemon.get_mut(t.source) {
            *d = (*d).max(m);
        }
        if !t.node.segment.is_empty() {
            worsen(&t.node.segment, Some(m));
        }
    }
    let mut out: Vec<(Subject, String, Option<Mark>)> = segments
        .into_iter()
        .map(|(s, m)| (Subject::Segment, s, m))
        .collect();
    out.extend(
        fleet
            .daemons
            .iter()
            .zip(daemon)
            .map(|(ds, m)| (Subject::Daemon, ds.name.clone(), m)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        // A whole minute, so offsets fall in the intervals the tests expect.
        DateTime::from_timestamp(1_799_999_940 + secs, 0).expect("time")
    }

    fn one(h: &mut History, secs: i64, m: Mark) {
        h.record(at(secs), &[(Subject::Segment, "dmz".into(), Some(m))]);
    }

    #[test]
    fn one_cell_per_interval_with_the_worst_level_seen_in_it() {
        let mut h = History::default();
        one(&mut h, 0, Mark::Ok);
        one(&mut h, 20, Mark::Critical);
        one(&mut h, 40, Mark::Ok);
        one(&mut h, 60, Mark::Warning);
        one(&mut h, 119, Mark::Ok);
        let cells = h.rows[0].cells(at(119), 3);
        assert_eq!(cells, [None, Some(Mark::Critical), Some(Mark::Warning)]);
    }

    #[test]
    fn gaps_without_samples_are_unknown() {
        let mut h = History::default();
        one(&mut h, 0, Mark::Critical);
        // The console was stopped for three minutes.
        one(&mut h, 4 * 60, Mark::Ok);
        let cells = h.rows[0].cells(at(4 * 60), 5);
        assert_eq!(
            cells,
            [Some(Mark::Critical), None, None, None, Some(Mark::Ok)]
        );
        // Nothing recorded since: the minutes after are unknown too.
        let later = h.rows[0].cells(at(6 * 60), 3);
        assert_eq!(later, [Some(Mark::Ok), None, None]);
    }

    #[test]
    fn the_ring_keeps_one_hour_and_the_rows_are_bounded() {
        let mut h = History::default();
        for k in 0..(3 * SLOTS as i64) {
            let m = if k % 2 == 0 { Mark::Ok } else { Mark::Warning };
            one(&mut h, k * 60, m);
        }
        let cells = h.rows[0].cells(at((3 * SLOTS as i64 - 1) * 60), SLOTS + 10);
        assert_eq!(cells.len(), SLOTS);
        assert!(cells.iter().all(Option::is_some));
        assert_eq!(cells[SLOTS - 1], Some(Mark::Warning));
        assert_eq!(cells[SLOTS - 2], Some(Mark::Ok));
        // A jump of more than an hour leaves nothing old behind.
        one(&mut h, 10 * SLOTS as i64 * 60, Mark::Ok);
        let cells = h.rows[0].cells(at(10 * SLOTS as i64 * 60), SLOTS);
        assert_eq!(cells.iter().filter(|c| c.is_some()).count(), 1);
        let many: Vec<(Subject, String, Option<Mark>)> = (0..MAX_ROWS + 50)
            .map(|i| (Subject::Daemon, format!("d{i}"), Some(Mark::Ok)))
            .collect();
        h.record(at(0), &many);
        assert_eq!(h.rows.len(), MAX_ROWS);
    }

    #[test]
    fn a_daemon_not_reached_yet_is_no_sample_not_unreachable() {
        use trustdeck_topology::{DaemonConn, DaemonRole};
        let mut f = Fleet::new([
            (
                "upstream".to_string(),
                "unix:///up.sock".to_string(),
                DaemonRole::Upstream,
                "root".to_string(),
            ),
            (
                "dmz".to_string(),
                "unix:///dmz.sock".to_string(),
                DaemonRole::Downstream,
                "dmz".to_string(),
            ),
        ]);
        f.set_conn(0, DaemonConn::Live, at(0));
        // The console's first tick comes before dmz answered: dmz is still connecting.
        let mut h = History::default();
        h.record(at(0), &sample(&f, &f.tree(), at(0), &Thresholds::default()));
        let row = |s: Subject, n: &str| {
            h.rows
                .iter()
                .find(|r| r.subject == s && r.name == n)
                .unwrap_or_else(|| panic!("{n}: {:?}", h.rows))
        };
        assert_eq!(
            row(Subject::Daemon, "upstream").current.map(|c| c.0),
            Some(Mark::Ok)
        );
        for s in [Subject::Daemon, Subject::Segment] {
            let r = row(s, "dmz");
            assert_eq!(r.current, None, "{r:?}");
            assert_eq!(r.cells(at(0), 1), [None]);
        }
        // Rows keep the fleet's order whoever answers first.
        let names: Vec<&str> = h.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["root", "dmz", "upstream", "dmz"]);
    }

    #[test]
    fn a_change_seen_after_a_gap_may_have_started_in_it() {
        let mut h = History::default();
        one(&mut h, 0, Mark::Ok);
        // The console was stopped (ctrl-z) for five minutes; dmz went down meanwhile.
        one(&mut h, 5 * 60 + 10, Mark::Unreachable);
        assert_eq!(
            h.rows[0].current,
            Some((Mark::Unreachable, at(5 * 60 + 10).timestamp()))
        );
        assert!(!h.rows[0].seen_start, "it began at some time in the gap");
        // Seen without a gap: the start is known.
        one(&mut h, 5 * 60 + 11, Mark::Ok);
        assert!(h.rows[0].seen_start);
    }

    #[test]
    fn the_current_state_says_since_when() {
        let mut h = History::default();
        one(&mut h, 0, Mark::Critical);
        assert_eq!(h.rows[0].current, Some((Mark::Critical, at(0).timestamp())));
        assert!(!h.rows[0].seen_start, "it already held at the first sample");
        one(&mut h, 30, Mark::Ok);
        one(&mut h, 65, Mark::Ok);
        one(&mut h, 95, Mark::Unreachable);
        one(&mut h, 130, Mark::Unreachable);
        assert_eq!(
            h.rows[0].current,
            Some((Mark::Unreachable, at(95).timestamp()))
        );
        assert!(h.rows[0].seen_start);
    }
}
