//! The console's state and its pure update function: `update(&mut App, Msg, now) -> Vec<Effect>`.
//!
//! Nothing here does I/O or touches the terminal. Time comes in as an argument. The merged tree,
//! its visible rows, the autonomous windows, what expires next and fleet health are cached and
//! recomputed only when the fleet's generation, the collapsed set or the filter change (health
//! also once per second, as it depends on `now`), so a frame never walks 100k nodes.
//!
//! The key map is data ([`BINDINGS`], [`COMMANDS`]): the `?` help overlay and the footer hints
//! are generated from it, so they are always true.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::Rect;
use trustdeck_proto::admin::{Node, NodeDetail, NodeKind, WatchMessage};
use trustdeck_topology::fleet::{
    ApplyError, DaemonConn, Fleet, Health, Level, Row, SegmentWindow, Thresholds, Tree,
    counts_for_health,
};

/// Most rows the "expires next" list keeps (after the filter).
pub const EXPIRING_LIMIT: usize = 1000;

/// Above this many nodes, the tree is rebuilt at most every [`LARGE_REBUILD_SECS`] (a rebuild
/// of 100k nodes takes a few hundred milliseconds; deltas may arrive many times a second).
pub const LARGE_TREE: usize = 20_000;

/// Minimum seconds between two rebuilds of a large tree. Countdowns still move every second:
/// they are computed at render time from `now`.
pub const LARGE_REBUILD_SECS: i64 = 2;

/// Rows moved per mouse-wheel step.
const WHEEL_STEP: usize = 3;

/// A message into [`update`]. None carries time: `update` takes `now`.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A message from daemon `daemon`'s `Watch` stream.
    Stream {
        /// Index of the daemon in the fleet.
        daemon: usize,
        /// The stream message.
        msg: WatchMessage,
    },
    /// The console's connection to daemon `daemon` changed.
    Conn {
        /// Index of the daemon in the fleet.
        daemon: usize,
        /// The new state.
        conn: DaemonConn,
    },
    /// A key press.
    Key(KeyEvent),
    /// A mouse event (only delivered when mouse capture is on).
    Mouse(MouseEvent),
    /// The terminal is now `width × height`.
    Resize(u16, u16),
    /// One second passed (countdowns move).
    Tick,
    /// The answer to [`Effect::FetchDetail`].
    Detail {
        /// The node asked about.
        node_id: String,
        /// The detail, or why it could not be fetched.
        result: Result<NodeDetail, String>,
    },
}

/// What [`update`] asks the outside world to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Leave the console.
    Quit,
    /// Reopen daemon `n`'s `Watch` stream (a revision gap was seen).
    Resubscribe(usize),
    /// Fetch one node's detail from the daemon that reported it; answer with [`Msg::Detail`].
    FetchDetail {
        /// Index of the daemon.
        daemon: usize,
        /// The node.
        node_id: String,
    },
    /// Something visible changed: draw a frame.
    Redraw,
}

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
}

impl View {
    /// Every view, in `tab` order.
    pub const ALL: [View; 5] = [
        View::Tree,
        View::Expiring,
        View::Segments,
        View::Events,
        View::Daemons,
    ];

    /// The view's name (also its `:` command).
    pub fn name(self) -> &'static str {
        match self {
            View::Tree => "tree",
            View::Expiring => "expiring",
            View::Segments => "segments",
            View::Events => "events",
            View::Daemons => "daemons",
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
        }
    }

    fn next(self) -> View {
        View::ALL[(self.index() + 1) % View::ALL.len()]
    }

    fn prev(self) -> View {
        View::ALL[(self.index() + View::ALL.len() - 1) % View::ALL.len()]
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
}

/// Where a [`Binding`] applies; also the help overlay's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// In every mode.
    Always,
    /// Normal mode, every view.
    Global,
    /// Moving in any list, the help and the detail.
    Moving,
    /// The tree view.
    Tree,
    /// The "expires next" view.
    Expiring,
    /// The segments view.
    Segments,
    /// The events view.
    Events,
    /// The daemons view.
    Daemons,
    /// The detail popup.
    Detail,
    /// The help overlay.
    Help,
    /// Typing a filter.
    Filter,
    /// Typing a command.
    Command,
}

impl Context {
    /// Section title in the help overlay.
    pub fn title(self) -> &'static str {
        match self {
            Context::Always => "Anywhere",
            Context::Global => "Global",
            Context::Moving => "Moving",
            Context::Tree => "Tree view",
            Context::Expiring => "Expiring view",
            Context::Segments => "Segments view",
            Context::Events => "Events view",
            Context::Daemons => "Daemons view",
            Context::Detail => "Detail popup",
            Context::Help => "Help",
            Context::Filter => "Filter (after /)",
            Context::Command => "Command (after :)",
        }
    }

    /// Every context, in help order.
    pub const ALL: [Context; 12] = [
        Context::Global,
        Context::Always,
        Context::Moving,
        Context::Tree,
        Context::Expiring,
        Context::Segments,
        Context::Events,
        Context::Daemons,
        Context::Detail,
        Context::Help,
        Context::Filter,
        Context::Command,
    ];
}

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave the console.
    Quit,
    /// Open the help overlay.
    Help,
    /// Start typing a filter.
    StartFilter,
    /// Start typing a command.
    StartCommand,
    /// Next view.
    NextView,
    /// Previous view.
    PrevView,
    /// Clear the filter, else back to the tree.
    Back,
    /// One row up.
    Up,
    /// One row down.
    Down,
    /// One page up.
    PageUp,
    /// One page down.
    PageDown,
    /// First row.
    Home,
    /// Last row.
    End,
    /// Tree: expand/collapse, or the detail of a leaf.
    Activate,
    /// The detail of the selected node.
    Detail,
    /// Show the selected item's node in the tree.
    ShowInTree,
    /// Collapse, or go to the parent.
    Collapse,
    /// Expand, or go to the first child.
    Expand,
    /// Collapse every agent.
    CollapseAll,
    /// Expand everything.
    ExpandAll,
    /// Close the overlay.
    Close,
    /// Accept the typed text.
    Submit,
    /// Drop the typed text.
    Cancel,
    /// Delete the last typed character.
    DeleteChar,
    /// Clear the typed text.
    ClearInput,
    /// Complete the command name.
    Complete,
    /// Typed characters (display only; any printable key).
    Insert,
}

/// A key with its modifiers (shift is ignored: `G` arrives as shift-`G`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key.
    pub code: KeyCode,
    /// Control/alt.
    pub mods: KeyModifiers,
}

const fn ch(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::NONE,
    }
}

const fn key(code: KeyCode) -> Key {
    Key {
        code,
        mods: KeyModifiers::NONE,
    }
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::CONTROL,
    }
}

/// One entry of the key map.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The keys as shown, e.g. `j/↓`.
    pub keys: &'static str,
    /// The keys matched.
    pub codes: &'static [Key],
    /// What they do.
    pub action: Action,
    /// Help text.
    pub help: &'static str,
    /// Footer hint ("" = not in the footer).
    pub hint: &'static str,
    /// Where it applies.
    pub context: Context,
}

const fn b(
    context: Context,
    keys: &'static str,
    codes: &'static [Key],
    action: Action,
    hint: &'static str,
    help: &'static str,
) -> Binding {
    Binding {
        keys,
        codes,
        action,
        help,
        hint,
        context,
    }
}

/// The whole key map. No ctrl-a/ctrl-b/ctrl-d (tmux and screen prefixes).
pub static BINDINGS: &[Binding] = &[
    // Global (normal mode, every view).
    b(
        Context::Global,
        "?",
        &[ch('?')],
        Action::Help,
        "help",
        "show this help",
    ),
    b(
        Context::Global,
        "/",
        &[ch('/')],
        Action::StartFilter,
        "filter",
        "filter by label, SPIFFE ID, segment or state",
    ),
    b(
        Context::Global,
        ":",
        &[ch(':')],
        Action::StartCommand,
        "command",
        "command mode (the commands are listed below)",
    ),
    b(
        Context::Global,
        "tab",
        &[key(KeyCode::Tab)],
        Action::NextView,
        "views",
        "next view (tree → expiring → segments → events → daemons)",
    ),
    b(
        Context::Global,
        "shift-tab",
        &[key(KeyCode::BackTab)],
        Action::PrevView,
        "",
        "previous view",
    ),
    b(
        Context::Global,
        "esc",
        &[key(KeyCode::Esc)],
        Action::Back,
        "",
        "clear the filter, else back to the tree",
    ),
    b(
        Context::Global,
        "q",
        &[ch('q')],
        Action::Quit,
        "quit",
        "quit",
    ),
    // Anywhere.
    b(
        Context::Always,
        "ctrl-c",
        &[ctrl('c')],
        Action::Quit,
        "",
        "quit at once",
    ),
    // Moving.
    b(
        Context::Moving,
        "j/↓",
        &[ch('j'), key(KeyCode::Down)],
        Action::Down,
        "",
        "down",
    ),
    b(
        Context::Moving,
        "k/↑",
        &[ch('k'), key(KeyCode::Up)],
        Action::Up,
        "",
        "up",
    ),
    b(
        Context::Moving,
        "PgDn/ctrl-f",
        &[key(KeyCode::PageDown), ctrl('f')],
        Action::PageDown,
        "",
        "page down",
    ),
    b(
        Context::Moving,
        "PgUp/ctrl-u",
        &[key(KeyCode::PageUp), ctrl('u')],
        Action::PageUp,
        "",
        "page up",
    ),
    b(
        Context::Moving,
        "g/Home",
        &[ch('g'), key(KeyCode::Home)],
        Action::Home,
        "",
        "first row",
    ),
    b(
        Context::Moving,
        "G/End",
        &[ch('G'), key(KeyCode::End)],
        Action::End,
        "",
        "last row",
    ),
    // Tree.
    b(
        Context::Tree,
        "enter",
        &[key(KeyCode::Enter)],
        Action::Activate,
        "expand",
        "expand/collapse; on a leaf, open its detail",
    ),
    b(
        Context::Tree,
        "d",
        &[ch('d')],
        Action::Detail,
        "detail",
        "detail of the selected node (all fields, chain)",
    ),
    b(
        Context::Tree,
        "h/←",
        &[ch('h'), key(KeyCode::Left)],
        Action::Collapse,
        "",
        "collapse, or go to the parent",
    ),
    b(
        Context::Tree,
        "l/→",
        &[ch('l'), key(KeyCode::Right)],
        Action::Expand,
        "",
        "expand, or go to the first child",
    ),
    b(
        Context::Tree,
        "c",
        &[ch('c')],
        Action::CollapseAll,
        "",
        "collapse all agents (hide workload SVIDs)",
    ),
    b(
        Context::Tree,
        "e",
        &[ch('e')],
        Action::ExpandAll,
        "",
        "expand everything",
    ),
    // Expiring.
    b(
        Context::Expiring,
        "enter/d",
        &[key(KeyCode::Enter), ch('d')],
        Action::Detail,
        "detail",
        "detail of the selected node",
    ),
    b(
        Context::Expiring,
        "t",
        &[ch('t')],
        Action::ShowInTree,
        "in tree",
        "show the selected node in the tree",
    ),
    // Segments.
    b(
        Context::Segments,
        "enter",
        &[key(KeyCode::Enter)],
        Action::ShowInTree,
        "in tree",
        "show the segment's server in the tree",
    ),
    // Events.
    b(
        Context::Events,
        "enter",
        &[key(KeyCode::Enter)],
        Action::ShowInTree,
        "in tree",
        "show the event's node in the tree",
    ),
    // Daemons.
    b(
        Context::Daemons,
        "enter",
        &[key(KeyCode::Enter)],
        Action::ShowInTree,
        "in tree",
        "show the daemon's own node in the tree",
    ),
    // Detail popup.
    b(
        Context::Detail,
        "esc/q",
        &[key(KeyCode::Esc), ch('q')],
        Action::Close,
        "close",
        "close the detail",
    ),
    // Help overlay.
    b(
        Context::Help,
        "esc/q/?",
        &[key(KeyCode::Esc), ch('q'), ch('?')],
        Action::Close,
        "close",
        "close the help",
    ),
    // Filter.
    b(
        Context::Filter,
        "text",
        &[],
        Action::Insert,
        "",
        "typed text filters as you type",
    ),
    b(
        Context::Filter,
        "enter",
        &[key(KeyCode::Enter)],
        Action::Submit,
        "keep",
        "keep the filter",
    ),
    b(
        Context::Filter,
        "esc",
        &[key(KeyCode::Esc)],
        Action::Cancel,
        "clear",
        "clear the filter",
    ),
    b(
        Context::Filter,
        "backspace",
        &[key(KeyCode::Backspace)],
        Action::DeleteChar,
        "",
        "delete a character",
    ),
    b(
        Context::Filter,
        "ctrl-u",
        &[ctrl('u')],
        Action::ClearInput,
        "",
        "clear the input",
    ),
    // Command.
    b(
        Context::Command,
        "enter",
        &[key(KeyCode::Enter)],
        Action::Submit,
        "run",
        "run the command",
    ),
    b(
        Context::Command,
        "tab",
        &[key(KeyCode::Tab)],
        Action::Complete,
        "complete",
        "complete the command name",
    ),
    b(
        Context::Command,
        "esc",
        &[key(KeyCode::Esc)],
        Action::Cancel,
        "cancel",
        "cancel",
    ),
    b(
        Context::Command,
        "backspace",
        &[key(KeyCode::Backspace)],
        Action::DeleteChar,
        "",
        "delete a character",
    ),
    b(
        Context::Command,
        "ctrl-u",
        &[ctrl('u')],
        Action::ClearInput,
        "",
        "clear the input",
    ),
];

/// What a `:` command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Switch to a view.
    View(View),
    /// Open the help.
    Help,
    /// Toggle mouse capture.
    Mouse,
    /// Leave.
    Quit,
}

/// One `:` command.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Its names; the first is the one shown first.
    pub names: &'static [&'static str],
    /// What it does.
    pub cmd: Cmd,
    /// Help text.
    pub help: &'static str,
}

/// Every `:` command.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        names: &["tree", "t"],
        cmd: Cmd::View(View::Tree),
        help: "the merged tree",
    },
    CommandSpec {
        names: &["expiring", "exp", "x"],
        cmd: Cmd::View(View::Expiring),
        help: "what expires next, fleet-wide",
    },
    CommandSpec {
        names: &["segments", "seg", "windows"],
        cmd: Cmd::View(View::Segments),
        help: "autonomous window per segment",
    },
    CommandSpec {
        names: &["events", "ev"],
        cmd: Cmd::View(View::Events),
        help: "fleet events, newest first",
    },
    CommandSpec {
        names: &["daemons", "dm"],
        cmd: Cmd::View(View::Daemons),
        help: "the console's connection to each daemon",
    },
    CommandSpec {
        names: &["help"],
        cmd: Cmd::Help,
        help: "this help",
    },
    CommandSpec {
        names: &["mouse"],
        cmd: Cmd::Mouse,
        help: "mouse capture on/off (wheel, click)",
    },
    CommandSpec {
        names: &["q", "quit"],
        cmd: Cmd::Quit,
        help: "quit",
    },
];

/// The contexts active in `mode` on `view`, first match wins.
pub fn contexts(mode: Mode, view: View) -> Vec<Context> {
    match mode {
        Mode::Normal => vec![
            Context::Always,
            match view {
                View::Tree => Context::Tree,
                View::Expiring => Context::Expiring,
                View::Segments => Context::Segments,
                View::Events => Context::Events,
                View::Daemons => Context::Daemons,
            },
            Context::Moving,
            Context::Global,
        ],
        Mode::Filter => vec![Context::Always, Context::Filter],
        Mode::Command => vec![Context::Always, Context::Command],
        Mode::Help => vec![Context::Always, Context::Help, Context::Moving],
        Mode::Detail => vec![Context::Always, Context::Detail, Context::Moving],
    }
}

/// The bindings active in `mode` on `view`, in lookup order.
pub fn keymap(mode: Mode, view: View) -> Vec<&'static Binding> {
    contexts(mode, view)
        .into_iter()
        .flat_map(|c| BINDINGS.iter().filter(move |b| b.context == c))
        .collect()
}

/// The help overlay's content: every context with its bindings, in help order.
pub fn help_sections() -> Vec<(Context, Vec<&'static Binding>)> {
    Context::ALL
        .iter()
        .map(|&c| (c, BINDINGS.iter().filter(|b| b.context == c).collect()))
        .collect()
}

fn find_action(mode: Mode, view: View, ev: &KeyEvent) -> Option<Action> {
    let mods = ev.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT);
    keymap(mode, view).into_iter().find_map(|b| {
        b.codes
            .iter()
            .any(|k| k.code == ev.code && k.mods == mods)
            .then_some(b.action)
    })
}

/// A one-line message in the footer until the next key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// How bad.
    pub level: Level,
    /// The message.
    pub text: String,
}

/// The detail popup of one node.
#[derive(Debug, Clone)]
pub struct DetailState {
    /// The node's id.
    pub node_id: String,
    /// The daemon asked for the detail.
    pub daemon: usize,
    /// The node as the tree has it (shown at once).
    pub node: Node,
    /// The daemon's answer (None: still loading).
    pub fetched: Option<Result<NodeDetail, String>>,
    /// First line shown.
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
    /// When the tree was last rebuilt (Unix seconds).
    built_at: Option<i64>,
}

/// The console's whole state.
#[derive(Debug)]
pub struct App {
    /// Every daemon's last-known state. The caches key on `fleet.generation`.
    pub fleet: Fleet,
    /// Warning/critical thresholds.
    pub thresholds: Thresholds,
    /// The console cannot change anything (always true today, always shown).
    pub read_only: bool,
    /// Mouse capture (wheel scrolls, click selects).
    pub mouse: bool,
    /// The main area's view.
    pub view: View,
    /// What keys do.
    pub mode: Mode,
    /// Ids of collapsed tree nodes.
    pub collapsed: HashSet<String>,
    /// The filter (applies to the tree, the expiring list and the events).
    pub filter: String,
    /// The command being typed.
    pub command: String,
    /// Footer message.
    pub status: Option<Status>,
    /// The open detail popup.
    pub detail: Option<DetailState>,
    /// First line of the help overlay shown.
    pub help_scroll: u16,
    /// Terminal size.
    pub size: (u16, u16),
    selected: Option<String>,
    cursors: [usize; 5],
    offsets: [usize; 5],
    cache: Cache,
}

impl App {
    /// A console over `fleet`, in the tree view, read-only, without mouse capture.
    pub fn new(fleet: Fleet, thresholds: Thresholds) -> Self {
        Self {
            fleet,
            thresholds,
            read_only: true,
            mouse: false,
            view: View::Tree,
            mode: Mode::Normal,
            collapsed: HashSet::new(),
            filter: String::new(),
            command: String::new(),
            status: None,
            detail: None,
            help_scroll: 0,
            size: (80, 24),
            selected: None,
            cursors: [0; 5],
            offsets: [0; 5],
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

    /// Autonomous window per segment (cached; `stale_secs` is as of the last rebuild).
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

    /// Indices into `fleet.events`, newest first, after the filter.
    pub fn events(&self) -> Vec<usize> {
        let f = self.filter.to_lowercase();
        let mut v: Vec<usize> = self
            .fleet
            .events
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, e)| {
                f.is_empty()
                    || e.daemon.to_lowercase().contains(&f)
                    || e.event.kind_wire().as_str().contains(&f)
                    || e.event.message.to_lowercase().contains(&f)
                    || e.event.severity_wire().as_str().contains(&f)
            })
            .map(|(i, _)| i)
            .collect();
        // Daemons send their history in batches: order by time, newest first (stable).
        v.sort_by_key(|&i| std::cmp::Reverse(self.fleet.events[i].event.at_ms));
        v
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
        }
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
            self.cache.windows = self.fleet.windows(&tree, now);
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
        if self.cache.rows_dirty {
            self.rebuild_rows();
        }
        if rebuilt || self.cache.health_at != Some(now.timestamp()) {
            self.cache.health = self.fleet.health(&self.cache.tree, now, &self.thresholds);
            self.cache.health_at = Some(now.timestamp());
        }
        for v in View::ALL {
            self.clamp(v);
        }
    }

    fn rebuild_rows(&mut self) {
        let tree = &self.cache.tree;
        self.cache.rows = tree.rows(&self.collapsed, &self.filter);
        let f = self.filter.to_lowercase();
        self.cache.expiring = self
            .cache
            .expiring_all
            .iter()
            .copied()
            .filter(|&i| f.is_empty() || node_matches(&tree.nodes[i].node, &f))
            .take(EXPIRING_LIMIT)
            .collect();
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

    fn clamp(&mut self, v: View) {
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

    /// Rows of `view` that fit on screen.
    fn page(&self, v: View) -> usize {
        let (w, h) = self.size;
        usize::from(crate::view::list_area(self, v, Rect::new(0, 0, w, h)).height).max(1)
    }

    fn set_cursor(&mut self, v: View, to: usize) {
        self.cursors[v.index()] = to;
        self.clamp(v);
        if v == View::Tree {
            self.selected = self.selected_id().map(str::to_string);
        }
    }

    fn move_by(&mut self, v: View, delta: isize) {
        let cur = self.cursor(v);
        let to = if delta < 0 {
            cur.saturating_sub(delta.unsigned_abs())
        } else {
            cur.saturating_add(delta.unsigned_abs())
                .min(self.len(v).saturating_sub(1))
        };
        self.set_cursor(v, to);
    }

    fn flash(&mut self, level: Level, text: impl Into<String>) {
        self.status = Some(Status {
            level,
            text: text.into(),
        });
    }

    fn mark_rows_dirty(&mut self) {
        self.cache.rows_dirty = true;
    }

    fn open_detail(&mut self, idx: usize, fx: &mut Vec<Effect>) {
        let Some(t) = self.cache.tree.nodes.get(idx) else {
            return;
        };
        let node_id = t.node.id.clone();
        self.detail = Some(DetailState {
            node_id: node_id.clone(),
            daemon: t.source,
            node: (*t.node).clone(),
            fetched: None,
            scroll: 0,
        });
        self.mode = Mode::Detail;
        fx.push(Effect::FetchDetail {
            daemon: t.source,
            node_id,
        });
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
        if !self.filter.is_empty()
            && !node_matches(
                &self.cache.tree.nodes[start].node,
                &self.filter.to_lowercase(),
            )
        {
            self.filter.clear();
        }
        self.selected = Some(id.to_string());
        self.view = View::Tree;
        self.mark_rows_dirty();
        self.refresh(now);
        true
    }

    fn handle(&mut self, msg: Msg, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        match msg {
            Msg::Stream { daemon, msg } => match self.fleet.apply(daemon, msg, now) {
                Ok(()) => fx.push(Effect::Redraw),
                Err(ApplyError::Gap { have, got }) => {
                    tracing::info!(daemon, have, got, "revision gap, resubscribing");
                    fx.push(Effect::Resubscribe(daemon));
                }
                Err(e) => tracing::warn!(daemon, error = %e, "stream message ignored"),
            },
            Msg::Conn { daemon, conn } => {
                let before = self.fleet.generation;
                self.fleet.set_conn(daemon, conn, now);
                if self.fleet.generation != before {
                    fx.push(Effect::Redraw);
                }
            }
            Msg::Resize(w, h) => {
                self.size = (w, h);
                for v in View::ALL {
                    self.clamp(v);
                }
                fx.push(Effect::Redraw);
            }
            Msg::Tick => fx.push(Effect::Redraw),
            Msg::Detail { node_id, result } => {
                if let Some(d) = &mut self.detail
                    && d.node_id == node_id
                {
                    d.fetched = Some(result);
                    fx.push(Effect::Redraw);
                }
            }
            Msg::Key(ev) => {
                if ev.kind == KeyEventKind::Release {
                    return;
                }
                self.refresh(now);
                if self.key(ev, now, fx) {
                    fx.push(Effect::Redraw);
                }
            }
            Msg::Mouse(ev) => {
                if !self.mouse {
                    return;
                }
                self.refresh(now);
                if self.mouse_event(ev, now, fx) {
                    fx.push(Effect::Redraw);
                }
            }
        }
    }

    /// Handles one key; returns whether something visible changed.
    fn key(&mut self, ev: KeyEvent, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> bool {
        let action = find_action(self.mode, self.view, &ev);
        match self.mode {
            Mode::Filter | Mode::Command => {
                let Some(action) = action else {
                    if let KeyCode::Char(c) = ev.code
                        && !ev
                            .modifiers
                            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
                    {
                        self.type_char(c, now);
                        return true;
                    }
                    return false;
                };
                self.input_action(action, now, fx);
                true
            }
            Mode::Normal => {
                let had_status = self.status.take().is_some();
                match action {
                    Some(a) => {
                        self.normal_action(a, now, fx);
                        true
                    }
                    None => had_status,
                }
            }
            Mode::Help | Mode::Detail => match action {
                Some(a) => {
                    self.overlay_action(a, fx);
                    true
                }
                None => false,
            },
        }
    }

    fn type_char(&mut self, c: char, now: DateTime<Utc>) {
        if self.mode == Mode::Filter {
            self.filter.push(c);
            self.mark_rows_dirty();
            self.refresh(now);
        } else {
            self.command.push(c);
        }
    }

    fn input_action(&mut self, a: Action, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let filter = self.mode == Mode::Filter;
        match a {
            Action::Quit => fx.push(Effect::Quit),
            Action::Submit => {
                self.mode = Mode::Normal;
                if !filter {
                    let cmd = std::mem::take(&mut self.command);
                    self.run_command(&cmd, now, fx);
                }
            }
            Action::Cancel => {
                self.mode = Mode::Normal;
                if filter {
                    self.filter.clear();
                    self.mark_rows_dirty();
                } else {
                    self.command.clear();
                }
            }
            Action::DeleteChar => {
                if filter {
                    self.filter.pop();
                    self.mark_rows_dirty();
                } else {
                    self.command.pop();
                }
            }
            Action::ClearInput => {
                if filter {
                    self.filter.clear();
                    self.mark_rows_dirty();
                } else {
                    self.command.clear();
                }
            }
            Action::Complete => self.complete_command(),
            _ => {}
        }
        self.refresh(now);
    }

    fn complete_command(&mut self) {
        let typed = self.command.trim().to_lowercase();
        let matches: Vec<&str> = COMMANDS
            .iter()
            .flat_map(|c| c.names.iter().copied())
            .filter(|n| n.starts_with(&typed))
            .collect();
        let Some(first) = matches.first() else {
            return;
        };
        let mut common = first.to_string();
        for m in &matches[1..] {
            while !m.starts_with(&common) {
                common.pop();
            }
        }
        if common.len() >= typed.len() {
            self.command = common;
        }
    }

    /// The commands whose names start with what is typed (for the command line's hint).
    pub fn command_matches(&self) -> Vec<&'static CommandSpec> {
        let typed = self.command.trim().to_lowercase();
        COMMANDS
            .iter()
            .filter(|c| c.names.iter().any(|n| n.starts_with(&typed)))
            .collect()
    }

    fn run_command(&mut self, line: &str, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let word = line
            .trim()
            .trim_start_matches(':')
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_lowercase();
        if word.is_empty() {
            return;
        }
        let Some(spec) = COMMANDS.iter().find(|c| c.names.contains(&word.as_str())) else {
            let known: Vec<String> = COMMANDS
                .iter()
                .filter(|c| matches!(c.cmd, Cmd::View(_)))
                .map(|c| format!(":{}", c.names[0]))
                .collect();
            self.flash(
                Level::Critical,
                format!("unknown command \":{word}\": try {} :q", known.join(" ")),
            );
            return;
        };
        match spec.cmd {
            Cmd::View(v) => {
                self.view = v;
                self.clamp(v);
            }
            Cmd::Help => {
                self.mode = Mode::Help;
                self.help_scroll = 0;
            }
            Cmd::Mouse => {
                self.mouse = !self.mouse;
                self.flash(
                    Level::Ok,
                    if self.mouse {
                        "mouse on: wheel scrolls, click selects (shift+drag to copy text)"
                    } else {
                        "mouse off"
                    },
                );
            }
            Cmd::Quit => fx.push(Effect::Quit),
        }
        self.refresh(now);
    }

    fn normal_action(&mut self, a: Action, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let v = self.view;
        let page = self.page(v) as isize;
        match a {
            Action::Quit => fx.push(Effect::Quit),
            Action::Help => {
                self.mode = Mode::Help;
                self.help_scroll = 0;
            }
            Action::StartFilter => {
                self.mode = Mode::Filter;
            }
            Action::StartCommand => {
                self.mode = Mode::Command;
                self.command.clear();
            }
            Action::NextView => self.view = v.next(),
            Action::PrevView => self.view = v.prev(),
            Action::Back => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.mark_rows_dirty();
                } else if v != View::Tree {
                    self.view = View::Tree;
                }
            }
            Action::Up => self.move_by(v, -1),
            Action::Down => self.move_by(v, 1),
            Action::PageUp => self.move_by(v, -page),
            Action::PageDown => self.move_by(v, page),
            Action::Home => self.set_cursor(v, 0),
            Action::End => self.set_cursor(v, self.len(v).saturating_sub(1)),
            Action::Activate => {
                if let Some(row) = self.cache.rows.get(self.cursor(View::Tree)).copied() {
                    if row.has_children {
                        self.toggle(row);
                    } else {
                        self.open_detail(row.idx, fx);
                    }
                }
            }
            Action::Detail => {
                let idx = match v {
                    View::Tree => self.selected_node(),
                    View::Expiring => self.cache.expiring.get(self.cursor(v)).copied(),
                    _ => None,
                };
                if let Some(i) = idx {
                    self.open_detail(i, fx);
                }
            }
            Action::ShowInTree => {
                if let Some(id) = self.item_node_id(v) {
                    self.show_in_tree(&id, now);
                } else {
                    self.flash(Level::Warning, "nothing to show in the tree for this row");
                }
            }
            Action::Collapse => {
                if let Some(row) = self.cache.rows.get(self.cursor(View::Tree)).copied() {
                    if row.has_children && row.expanded && self.filter.is_empty() {
                        self.toggle(row);
                    } else if let Some(p) = self.cache.tree.nodes[row.idx].parent {
                        let cur = self.cursor(View::Tree);
                        if let Some(pos) = self.cache.rows[..cur].iter().rposition(|r| r.idx == p) {
                            self.set_cursor(View::Tree, pos);
                        }
                    }
                }
            }
            Action::Expand => {
                if let Some(row) = self.cache.rows.get(self.cursor(View::Tree)).copied()
                    && row.has_children
                {
                    if row.expanded {
                        self.move_by(View::Tree, 1);
                    } else {
                        self.toggle(row);
                    }
                }
            }
            Action::CollapseAll => {
                let tree = &self.cache.tree;
                self.collapsed = tree
                    .nodes
                    .iter()
                    .filter(|t| t.node.kind == NodeKind::Agent as i32 && !t.children.is_empty())
                    .map(|t| t.node.id.clone())
                    .collect();
                self.mark_rows_dirty();
            }
            Action::ExpandAll => {
                self.collapsed.clear();
                self.mark_rows_dirty();
            }
            _ => {}
        }
        self.refresh(now);
    }

    fn toggle(&mut self, row: Row) {
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

    /// The tree node id behind the selected row of a non-tree view.
    fn item_node_id(&self, v: View) -> Option<String> {
        let c = self.cursor(v);
        match v {
            View::Tree => self.selected_id().map(str::to_string),
            View::Expiring => self
                .cache
                .expiring
                .get(c)
                .map(|&i| self.cache.tree.nodes[i].node.id.clone()),
            View::Segments => {
                let w = self.cache.windows.get(c)?;
                let d = self.fleet.daemons.iter().find(|d| d.name == w.server)?;
                daemon_node_id(d)
            }
            View::Events => {
                let i = *self.events().get(c)?;
                let id = &self.fleet.events.get(i)?.event.node_id;
                (!id.is_empty()).then(|| id.clone())
            }
            View::Daemons => daemon_node_id(self.fleet.daemons.get(c)?),
        }
    }

    fn overlay_action(&mut self, a: Action, fx: &mut Vec<Effect>) {
        let len = crate::view::overlay_len(self);
        let (w, h) = self.size;
        let page = crate::view::overlay_page(Rect::new(0, 0, w, h));
        let max = len.saturating_sub(page);
        let scroll = match self.mode {
            Mode::Help => &mut self.help_scroll,
            _ => match &mut self.detail {
                Some(d) => &mut d.scroll,
                None => &mut self.help_scroll,
            },
        };
        let cur = usize::from(*scroll);
        let to = match a {
            Action::Quit => {
                fx.push(Effect::Quit);
                return;
            }
            Action::Close => {
                if self.mode == Mode::Detail {
                    self.detail = None;
                }
                self.mode = Mode::Normal;
                return;
            }
            Action::Up => cur.saturating_sub(1),
            Action::Down => cur + 1,
            Action::PageUp => cur.saturating_sub(page),
            Action::PageDown => cur + page,
            Action::Home => 0,
            Action::End => max,
            _ => cur,
        };
        *scroll = u16::try_from(to.min(max)).unwrap_or(u16::MAX);
    }

    fn wheel(&mut self, down: bool, fx: &mut Vec<Effect>) {
        match self.mode {
            Mode::Help | Mode::Detail => {
                for _ in 0..WHEEL_STEP {
                    self.overlay_action(if down { Action::Down } else { Action::Up }, fx);
                }
            }
            _ => {
                let d = WHEEL_STEP as isize;
                self.move_by(self.view, if down { d } else { -d });
            }
        }
    }

    fn mouse_event(&mut self, ev: MouseEvent, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> bool {
        match ev.kind {
            MouseEventKind::ScrollDown => {
                self.wheel(true, fx);
                true
            }
            MouseEventKind::ScrollUp => {
                self.wheel(false, fx);
                true
            }
            MouseEventKind::Down(MouseButton::Left) if self.mode == Mode::Normal => {
                let (w, h) = self.size;
                let area = crate::view::list_area(self, self.view, Rect::new(0, 0, w, h));
                let inside = ev.column >= area.x
                    && ev.column < area.x + area.width
                    && ev.row >= area.y
                    && ev.row < area.y + area.height;
                if !inside {
                    return false;
                }
                let idx = self.offset(self.view) + usize::from(ev.row - area.y);
                if idx >= self.len(self.view) {
                    return false;
                }
                if idx == self.cursor(self.view) {
                    let a = match self.view {
                        View::Tree => Action::Activate,
                        View::Expiring => Action::Detail,
                        _ => Action::ShowInTree,
                    };
                    self.normal_action(a, now, fx);
                } else {
                    self.set_cursor(self.view, idx);
                }
                true
            }
            _ => false,
        }
    }
}

fn daemon_node_id(d: &trustdeck_topology::DaemonState) -> Option<String> {
    let id = d.identity.as_ref()?;
    Some(if d.role() == trustdeck_proto::admin::DaemonRole::Agent {
        format!("agent:{}", id.spiffe_id)
    } else {
        format!("server:{}", id.spiffe_id)
    })
}

pub use trustdeck_topology::fleet::node_matches;

/// Applies one message. See [`update_many`].
pub fn update(app: &mut App, msg: Msg, now: DateTime<Utc>) -> Vec<Effect> {
    update_many(app, std::iter::once(msg), now)
}

/// Applies a batch of messages (e.g. everything queued since the last frame), then brings the
/// caches up to date once. Returns the effects, with at most one [`Effect::Redraw`], last.
pub fn update_many(
    app: &mut App,
    msgs: impl IntoIterator<Item = Msg>,
    now: DateTime<Utc>,
) -> Vec<Effect> {
    let mut fx = Vec::new();
    for m in msgs {
        app.handle(m, now, &mut fx);
    }
    app.refresh(now);
    let redraw = fx.contains(&Effect::Redraw);
    fx.retain(|e| *e != Effect::Redraw);
    fx.dedup();
    if redraw {
        fx.push(Effect::Redraw);
    }
    fx
}
