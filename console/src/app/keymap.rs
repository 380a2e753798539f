//! The key map as data: where a binding applies ([`Context`]), what it does ([`Action`]),
//! and the lookup `update` uses. The `?` help and the footer hints are generated from the same
//! table ([`BINDINGS`]), so they are always true.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::screen::{Mode, View};

pub use super::bindings::BINDINGS;

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
    /// The timeline view.
    Timeline,
    /// The federation view.
    Federation,
    /// The detail popup.
    Detail,
    /// The event detail popup.
    EventDetail,
    /// The copy menu.
    Copy,
    /// The runbook list.
    Runbooks,
    /// The runbook pane.
    Runbook,
    /// A confirmation.
    Confirm,
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
            Context::Timeline => "Timeline view",
            Context::Federation => "Federation view",
            Context::Detail => "Detail popup",
            Context::EventDetail => "Event detail popup",
            Context::Copy => "Copy menu (OSC 52: works over SSH and in tmux)",
            Context::Runbooks => "Runbook list (:runbooks, R on a node)",
            Context::Runbook => "Runbook pane",
            Context::Confirm => "Confirmation (operator mode, a runbook step, an abort)",
            Context::Help => "Help",
            Context::Filter => "Filter (after /)",
            Context::Command => "Command (after :)",
        }
    }

    /// Every context, in help order.
    pub const ALL: [Context; 19] = [
        Context::Global,
        Context::Always,
        Context::Moving,
        Context::Tree,
        Context::Expiring,
        Context::Segments,
        Context::Events,
        Context::Daemons,
        Context::Timeline,
        Context::Federation,
        Context::Detail,
        Context::EventDetail,
        Context::Copy,
        Context::Runbooks,
        Context::Runbook,
        Context::Confirm,
        Context::Help,
        Context::Filter,
        Context::Command,
    ];
}

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Help,
    /// Start typing a filter.
    StartFilter,
    /// Start typing a command.
    StartCommand,
    NextView,
    PrevView,
    /// Switch to the timeline.
    ShowTimeline,
    /// Clear the filter, else back to the tree.
    Back,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
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
    ExpandAll,
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
    /// Events: the next severity filter.
    CycleSeverity,
    /// Events: only the selected event's daemon, or all again.
    DaemonFilter,
    /// Open the copy menu for the selection.
    Copy,
    /// The runbooks that apply to the selected node.
    Runbooks,
    /// Runbook list: show the plan only (never runs).
    Plan,
}

/// A key with its modifiers (shift is ignored: `G` arrives as shift-`G`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    /// Control and alt only: shift is ignored.
    pub mods: KeyModifiers,
}

pub(super) const fn ch(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::NONE,
    }
}

pub(super) const fn key(code: KeyCode) -> Key {
    Key {
        code,
        mods: KeyModifiers::NONE,
    }
}

pub(super) const fn ctrl(c: char) -> Key {
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
    pub help: &'static str,
    /// Footer hint ("" = not in the footer).
    pub hint: &'static str,
    /// Where it applies.
    pub context: Context,
}

pub(super) const fn b(
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
                View::Timeline => Context::Timeline,
                View::Federation => Context::Federation,
            },
            Context::Moving,
            Context::Global,
        ],
        Mode::Filter => vec![Context::Always, Context::Filter],
        Mode::Command => vec![Context::Always, Context::Command],
        Mode::Help => vec![Context::Always, Context::Help, Context::Moving],
        Mode::Detail => vec![Context::Always, Context::Detail, Context::Moving],
        Mode::Event => vec![Context::Always, Context::EventDetail, Context::Moving],
        Mode::Copy => vec![Context::Always, Context::Copy, Context::Moving],
        Mode::Runbooks => vec![Context::Always, Context::Runbooks, Context::Moving],
        Mode::Runbook => vec![Context::Always, Context::Runbook, Context::Moving],
        Mode::Confirm => vec![Context::Always, Context::Confirm],
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

pub(super) fn find_action(mode: Mode, view: View, ev: &KeyEvent) -> Option<Action> {
    let mods = ev.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT);
    keymap(mode, view).into_iter().find_map(|b| {
        b.codes
            .iter()
            .any(|k| k.code == ev.code && k.mods == mods)
            .then_some(b.action)
    })
}
