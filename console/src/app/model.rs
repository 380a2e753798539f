//! The console's state: what the fleet reported, what the user chose (view, mode, cursors,
//! collapsed nodes, filter), and the caches derived from both.
//!
//! The merged tree, its visible rows, the autonomous windows, what expires next and fleet
//! health are cached and recomputed only when the fleet's generation, the collapsed set or the
//! filter change (health and the windows also once per second, as they depend on `now`), so a
//! frame never walks 100k nodes.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use trustdeck_proto::admin::{Node, NodeDetail};
use trustdeck_topology::fleet::{
    Filter, FilterError, Fleet, Health, Level, NodeFacts, Row, SegmentWindow, Thresholds, Tree,
    counts_for_health,
};

use super::copy::CopyMenu;
use super::events::{EventDetail, EventFilter};
use super::history::{self, History};
use super::msg::DetailError;
use super::runbooks::Runbooks;
use super::screen::{Mode, View};
use crate::layout;
use crate::text::glyphs::Charset;

/// Most rows the "expires next" list keeps (after the filter).
pub const EXPIRING_LIMIT: usize = 1000;

/// Above this many nodes, the tree is rebuilt at most every [`LARGE_REBUILD_SECS`] (a rebuild
/// of 100k nodes takes a few hundred milliseconds; deltas may arrive many times a second).
pub const LARGE_TREE: usize = 20_000;

/// Minimum seconds between two rebuilds of a large tree. Countdowns still move every second:
/// they are computed at render time from `now`.
pub const LARGE_REBUILD_SECS: i64 = 2;

/// A one-line message in the footer until the next key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Its level (symbol and colour).
    pub level: Level,
    pub text: String,
}

/// The detail popup of one node.
#[derive(Debug, Clone)]
pub struct DetailState {
    pub node_id: String,
    /// The daemon asked for the detail.
    pub daemon: usize,
    /// The node as the tree has it (shown at once).
    pub node: Node,
    /// The daemon's answer (None: still loading).
    pub fetched: Option<Result<NodeDetail, DetailError>>,
    /// First line shown (clamped to the document by `update`).
    pub scroll: u16,
}

#[derive(Debug, Default)]
struct Cache {
    tree: Tree,
    tree_gen: Option<u64>,
    rows: Vec<Row>,
    rows_dirty: bool,
    windows: Vec<SegmentWindow>,
    /// Every node that counts for health, soonest expiry first.
    expiring_all: Vec<usize>,
    /// `expiring_all` after the filter, truncated to [`EXPIRING_LIMIT`].
    expiring: Vec<usize>,
    health: Health,
    health_at: Option<i64>,
    /// `App::filter`, parsed (when the rows were last rebuilt), or why it does not parse.
    filter: Filter,
    filter_error: Option<FilterError>,
    /// When the tree was last rebuilt (Unix seconds).
    built_at: Option<i64>,
}

/// The console's whole state.
#[derive(Debug)]
pub struct App {
    /// Every daemon's last-known state. The caches key on `fleet.generation`.
    pub fleet: Fleet,
    /// Warning and critical thresholds, and whether the key policy is checked.
    pub thresholds: Thresholds,
    /// The console changes nothing (the default, always shown); `--operator` or a confirmed
    /// `:operator` turns it off so runbooks can act.
    pub read_only: bool,
    /// The runbooks: list, pane, confirmation, the journal's executions.
    pub runbooks: Runbooks,
    /// Mouse capture (wheel scrolls, click selects).
    pub mouse: bool,
    /// The symbols the terminal can show (chosen once at start).
    pub charset: Charset,
    pub view: View,
    pub mode: Mode,
    /// Ids of collapsed tree nodes.
    pub collapsed: HashSet<String>,
    /// The filter (applies to the tree, the expiring list and the events).
    pub filter: String,
    /// The command being typed (after `:`).
    pub command: String,
    /// The footer's message, until the next key.
    pub status: Option<Status>,
    pub detail: Option<DetailState>,
    /// The events view's severity and daemon filters.
    pub event_filter: EventFilter,
    /// The open event detail.
    pub event_detail: Option<EventDetail>,
    /// The open copy menu.
    pub copy_menu: Option<CopyMenu>,
    /// First line of the help overlay shown.
    pub help_scroll: u16,
    /// Terminal size (width, height).
    pub size: (u16, u16),
    /// The id of the tree node the tree cursor follows across rebuilds.
    pub(super) selected: Option<String>,
    /// Health per segment and daemon over the last hour (the timeline).
    pub history: History,
    cursors: [usize; View::ALL.len()],
    offsets: [usize; View::ALL.len()],
    cache: Cache,
}

impl App {
    /// A console over `fleet`, in the tree view, read-only, without mouse capture.
    pub fn new(fleet: Fleet, thresholds: Thresholds) -> Self {
        Self {
            fleet,
            thresholds,
            read_only: true,
            runbooks: Runbooks::shipped(),
            mouse: false,
            charset: Charset::Unicode,
            view: View::Tree,
            mode: Mode::Normal,
            collapsed: HashSet::new(),
            filter: String::new(),
            command: String::new(),
            status: None,
            detail: None,
            event_filter: EventFilter::default(),
            event_detail: None,
            copy_menu: None,
            help_scroll: 0,
            size: (80, 24),
            selected: None,
            history: History::default(),
            cursors: [0; View::ALL.len()],
            offsets: [0; View::ALL.len()],
            cache: Cache {
                rows_dirty: true,
                ..Cache::default()
            },
        }
    }

    /// The merged tree (cached).
    pub fn tree(&self) -> &Tree {
        &self.cache.tree
    }

    /// The tree's visible rows (cached).
    pub fn rows(&self) -> &[Row] {
        &self.cache.rows
    }

    /// Autonomous window per segment (recomputed at most once per second).
    pub fn windows(&self) -> &[SegmentWindow] {
        &self.cache.windows
    }

    /// Tree indices, soonest expiry first, after the filter.
    pub fn expiring(&self) -> &[usize] {
        &self.cache.expiring
    }

    /// Fleet health (recomputed at most once per second).
    pub fn health(&self) -> &Health {
        &self.cache.health
    }

    /// The filter as parsed, or why it does not parse.
    pub fn filter_parsed(&self) -> Result<&Filter, &FilterError> {
        match &self.cache.filter_error {
            Some(e) => Err(e),
            None => Ok(&self.cache.filter),
        }
    }

    /// Whether tree node `i` matches the filter (a filter that does not parse matches
    /// nothing).
    pub fn node_matches(&self, i: usize, now: DateTime<Utc>) -> bool {
        let f = self.filter_parsed().ok();
        node_matches(&self.fleet, &self.cache.tree, f, &self.thresholds, i, now)
    }

    /// The cursor (row index) of `view`.
    pub fn cursor(&self, view: View) -> usize {
        self.cursors[view.index()]
    }

    /// The first row shown of `view`.
    pub fn offset(&self, view: View) -> usize {
        self.offsets[view.index()]
    }

    /// The tree node under the tree cursor.
    pub fn selected_node(&self) -> Option<usize> {
        self.cache.rows.get(self.cursor(View::Tree)).map(|r| r.idx)
    }

    /// The id of the tree node under the tree cursor.
    pub fn selected_id(&self) -> Option<&str> {
        self.selected_node()
            .map(|i| self.cache.tree.nodes[i].node.id.as_str())
    }

    /// Rows in `view`.
    pub fn len(&self, view: View) -> usize {
        match view {
            View::Tree => self.cache.rows.len(),
            View::Expiring => self.cache.expiring.len(),
            View::Segments => self.cache.windows.len(),
            View::Events => self.events().len(),
            View::Daemons => self.fleet.daemons.len(),
            View::Timeline => self.history.rows.len(),
            View::Federation => self.fleet.foreign().len() + self.fleet.receipts().len(),
        }
    }

    /// The views offered as tabs: every view, but the federation view only when a server
    /// reports a foreign trust domain or a receipt (or it is the current view, by `:`).
    pub fn views(&self) -> Vec<View> {
        let federation = self.view == View::Federation
            || !self.fleet.foreign().is_empty()
            || !self.fleet.receipts().is_empty();
        View::ALL
            .into_iter()
            .filter(|&v| v != View::Federation || federation)
            .collect()
    }

    /// The trust domain, as the first daemon that said reports it.
    pub fn trust_domain(&self) -> Option<&str> {
        self.fleet
            .daemons
            .iter()
            .filter_map(|d| d.identity.as_ref())
            .map(|i| i.trust_domain.as_str())
            .find(|t| !t.is_empty())
    }

    /// Whether the fleet changed since the caches were built (a large tree waits for the next
    /// tick).
    pub fn behind(&self) -> bool {
        self.cache.tree_gen != Some(self.fleet.generation)
    }

    /// Brings the caches up to date (cheap when nothing changed).
    pub fn refresh(&mut self, now: DateTime<Utc>) {
        let mut rebuilt = false;
        let throttled = self.cache.tree.nodes.len() > LARGE_TREE
            && self
                .cache
                .built_at
                .is_some_and(|t| now.timestamp() - t < LARGE_REBUILD_SECS);
        if self.cache.tree_gen != Some(self.fleet.generation) && !throttled {
            // Drop the old tree first: two trees of 100k nodes at once would double the peak.
            self.cache.tree = Tree::default();
            self.cache.rows.clear();
            let tree = self.fleet.tree();
            let mut all: Vec<usize> = (0..tree.nodes.len())
                .filter(|&i| counts_for_health(&tree.nodes[i].node))
                .collect();
            all.sort_unstable_by(|&a, &b| {
                let (x, y) = (&tree.nodes[a].node, &tree.nodes[b].node);
                (x.not_after, &x.id).cmp(&(y.not_after, &y.id))
            });
            self.cache.expiring_all = all;
            self.cache.tree = tree;
            self.cache.tree_gen = Some(self.fleet.generation);
            self.cache.built_at = Some(now.timestamp());
            self.cache.rows_dirty = true;
            rebuilt = true;
        }
        let tick = self.cache.health_at != Some(now.timestamp());
        let levels = self.cache.filter.uses_levels();
        if self.cache.rows_dirty || (tick && levels) {
            self.rebuild_rows(now);
        }
        if rebuilt || tick {
            self.cache.health = self.fleet.health(&self.cache.tree, now, &self.thresholds);
            // Renewals fall overdue and losses age with `now`.
            self.cache.windows = self.fleet.windows(&self.cache.tree, now);
            self.cache.health_at = Some(now.timestamp());
        }
        for v in View::ALL {
            self.clamp(v);
        }
    }

    /// Records the events the console derives at `now` (renewals overdue, expiries, JWT
    /// unavailable), once each; the caches follow at the next refresh.
    pub fn derive_events(&mut self, now: DateTime<Utc>) {
        self.fleet.derive_events(&self.cache.tree, now);
    }

    fn rebuild_rows(&mut self, now: DateTime<Utc>) {
        (self.cache.filter, self.cache.filter_error) = match Filter::parse(&self.filter) {
            Ok(f) => (f, None),
            Err(e) => (Filter::default(), Some(e)),
        };
        let tree = &self.cache.tree;
        let filter = self
            .cache
            .filter_error
            .is_none()
            .then_some(&self.cache.filter);
        let (fleet, th) = (&self.fleet, &self.thresholds);
        let all = filter.is_some_and(|f| f.is_empty());
        let m = |i: usize| node_matches(fleet, tree, filter, th, i, now);
        let matches: Option<&dyn Fn(usize) -> bool> = (!all).then_some(&m);
        let rows = tree.rows_matching(&self.collapsed, matches);
        let expiring = self
            .cache
            .expiring_all
            .iter()
            .copied()
            .filter(|&i| all || m(i))
            .take(EXPIRING_LIMIT)
            .collect();
        self.cache.rows = rows;
        self.cache.expiring = expiring;
        self.cache.rows_dirty = false;
        // Keep the selection on the same node; if it is hidden, on its nearest visible
        // ancestor.
        if let Some(sel) = &self.selected
            && let Some(&start) = tree.by_id.get(sel)
        {
            let mut pos: Option<usize> = None;
            let mut cur = Some(start);
            while let (None, Some(i)) = (pos, cur) {
                pos = self.cache.rows.iter().position(|r| r.idx == i);
                cur = tree.nodes[i].parent;
            }
            if let Some(p) = pos {
                self.cursors[View::Tree.index()] = p;
            }
        }
    }

    pub(super) fn clamp(&mut self, v: View) {
        let len = self.len(v);
        let i = v.index();
        if self.cursors[i] >= len {
            self.cursors[i] = len.saturating_sub(1);
        }
        let page = self.page(v);
        if self.cursors[i] < self.offsets[i] {
            self.offsets[i] = self.cursors[i];
        } else if self.cursors[i] >= self.offsets[i] + page {
            self.offsets[i] = self.cursors[i] + 1 - page;
        }
        // No empty space below the last row when it can be avoided.
        self.offsets[i] = self.offsets[i].min(len.saturating_sub(page));
    }

    /// Adds the fleet's current health to the timeline (once per tick).
    pub(super) fn record_history(&mut self, now: DateTime<Utc>) {
        let s = history::sample(&self.fleet, &self.cache.tree, now, &self.thresholds);
        self.history.record(now, &s);
    }

    /// Rows of `view` that fit on screen.
    pub(super) fn page(&self, v: View) -> usize {
        layout::page(layout::screen(self.size), v, self.content(v))
    }

    /// What the panes have to show when `v` is the main view (for the layout).
    pub fn content(&self, v: View) -> layout::Content {
        let wins = self.windows();
        layout::Content {
            window_lines: wins.iter().map(layout::window_lines).sum(),
            segments: wins.len(),
            items: self.len(v),
            events: self.fleet.events.len(),
        }
    }

    pub(super) fn set_cursor(&mut self, v: View, to: usize) {
        self.cursors[v.index()] = to;
        self.clamp(v);
        if v == View::Tree {
            self.selected = self.selected_id().map(str::to_string);
        }
    }

    pub(super) fn move_by(&mut self, v: View, delta: isize) {
        let cur = self.cursor(v);
        let to = if delta < 0 {
            cur.saturating_sub(delta.unsigned_abs())
        } else {
            cur.saturating_add(delta.unsigned_abs())
                .min(self.len(v).saturating_sub(1))
        };
        self.set_cursor(v, to);
    }

    pub(super) fn flash(&mut self, level: Level, text: impl Into<String>) {
        self.status = Some(Status {
            level,
            text: text.into(),
        });
    }

    pub(super) fn mark_rows_dirty(&mut self) {
        self.cache.rows_dirty = true;
    }

    /// Selects `id` in the tree view: expands its ancestors and drops a filter that hides it.
    pub fn show_in_tree(&mut self, id: &str, now: DateTime<Utc>) -> bool {
        let Some(&start) = self.cache.tree.by_id.get(id) else {
            self.flash(Level::Warning, format!("{id} is not in the tree"));
            return false;
        };
        let mut p = self.cache.tree.nodes[start].parent;
        while let Some(i) = p {
            self.collapsed.remove(&self.cache.tree.nodes[i].node.id);
            p = self.cache.tree.nodes[i].parent;
        }
        if !self.filter.is_empty() && !self.node_matches(start, now) {
            self.filter.clear();
        }
        self.selected = Some(id.to_string());
        self.view = View::Tree;
        self.mark_rows_dirty();
        self.refresh(now);
        true
    }

    /// Expands or collapses the node of tree row `row` (not while a filter is set: the rows
    /// would not show it).
    pub(super) fn toggle(&mut self, row: Row) {
        if !self.filter.is_empty() {
            self.flash(
                Level::Warning,
                "expand/collapse is off while a filter is set (esc clears it)",
            );
            return;
        }
        let id = self.cache.tree.nodes[row.idx].node.id.clone();
        if row.expanded {
            self.collapsed.insert(id.clone());
        } else {
            self.collapsed.remove(&id);
        }
        self.selected = Some(id);
        self.mark_rows_dirty();
    }
}

/// Whether tree node `i` matches `filter`: by its name, SPIFFE ID, segment, state, kind, the
/// daemon that reported it, and its level at `now`.
fn node_matches(
    fleet: &Fleet,
    tree: &Tree,
    filter: Option<&Filter>,
    th: &Thresholds,
    i: usize,
    now: DateTime<Utc>,
) -> bool {
    let Some(f) = filter else { return false };
    if f.is_empty() {
        return true;
    }
    let t = &tree.nodes[i];
    let level =
        (t.node.not_after > 0 && f.uses_levels()).then(|| fleet.node_level(tree, i, now, th));
    f.matches_node(&NodeFacts {
        node: &t.node,
        name: fleet.node_name(&t.node),
        daemon: fleet.daemons.get(t.source).map_or("", |d| d.name.as_str()),
        level,
    })
}
