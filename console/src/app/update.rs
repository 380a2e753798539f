//! The pure update function: `update(&mut App, Msg, now) -> Vec<Effect>`. Nothing here does
//! I/O or touches the terminal; time comes in as an argument, page sizes and click targets
//! from [`layout`].

use chrono::{DateTime, Utc};
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use trustdeck_proto::admin::NodeKind;
use trustdeck_topology::fleet::{ApplyError, Level};

use super::history::Subject;
use super::keymap::{Action, find_action};
use super::model::{App, DetailState};
use super::msg::{Effect, Msg};
use super::screen::{Mode, View};
use crate::layout;
use crate::text;

/// Longest typed confirmation answer.
const MAX_TYPED: usize = 256;

/// Rows moved per mouse-wheel step.
const WHEEL_STEP: usize = 3;

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
    let mut tick = false;
    for m in msgs {
        tick |= matches!(m, Msg::Tick);
        app.handle(m, now, &mut fx);
    }
    app.refresh(now);
    if tick {
        app.record_history(now);
    }
    let redraw = fx.contains(&Effect::Redraw);
    fx.retain(|e| *e != Effect::Redraw);
    fx.dedup();
    if redraw {
        fx.push(Effect::Redraw);
    }
    fx
}

impl App {
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
            Msg::Tick => {
                self.refresh(now);
                self.derive_events(now);
                self.runbook_tick(now, fx);
                fx.push(Effect::Redraw);
            }
            Msg::Dumped(result) => {
                match result {
                    Ok((path, size)) => self.flash(
                        Level::Ok,
                        format!("dumped the fleet to {} ({size} bytes)", path.display()),
                    ),
                    Err(e) => self.flash(Level::Critical, format!(":dump failed: {e}")),
                }
                fx.push(Effect::Redraw);
            }
            Msg::Detail { node_id, result } => {
                if let Some(d) = &mut self.detail
                    && d.node_id == node_id
                {
                    d.fetched = Some(result);
                    fx.push(Effect::Redraw);
                }
            }
            Msg::Runbook(m) => {
                self.runbook_msg(m, now, fx);
                fx.push(Effect::Redraw);
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
            Mode::Copy => match action {
                Some(a) => {
                    self.copy_action(a, fx);
                    true
                }
                None => false,
            },
            Mode::Help | Mode::Detail | Mode::Event => match action {
                Some(a) => {
                    self.overlay_action(a, now, fx);
                    true
                }
                None => false,
            },
            Mode::Runbooks | Mode::Runbook => match action {
                Some(a) => {
                    self.runbook_key(a, now, fx);
                    true
                }
                None => false,
            },
            Mode::Confirm => {
                match action {
                    Some(Action::Submit) => self.submit_confirm(now, fx),
                    Some(Action::Cancel) => self.decline_confirm(now, fx),
                    Some(Action::DeleteChar) => {
                        self.runbooks.typed.pop();
                    }
                    Some(Action::ClearInput) => self.runbooks.typed.clear(),
                    Some(Action::Quit) => fx.push(Effect::Quit),
                    _ => match ev.code {
                        KeyCode::Char(c)
                            if !ev
                                .modifiers
                                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
                                && self.runbooks.typed.len() < MAX_TYPED =>
                        {
                            self.runbooks.typed.push(c)
                        }
                        _ => return false,
                    },
                }
                true
            }
        }
    }

    /// A key in the runbook list or pane.
    fn runbook_key(&mut self, a: Action, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let list = self.mode == Mode::Runbooks;
        match a {
            Action::Quit => fx.push(Effect::Quit),
            Action::Close => self.mode = Mode::Normal,
            Action::Submit if list => self.choose_runbook(false, now, fx),
            Action::Plan if list => self.choose_runbook(true, now, fx),
            Action::Up
            | Action::Down
            | Action::Home
            | Action::End
            | Action::PageUp
            | Action::PageDown => {
                let (cur, len) = if list {
                    (self.runbooks.cursor, self.runbooks.shown.len())
                } else {
                    (usize::from(self.runbooks.scroll), usize::from(u16::MAX))
                };
                let to = match a {
                    Action::Up => cur.saturating_sub(1),
                    Action::Down => cur + 1,
                    Action::PageUp => cur.saturating_sub(10),
                    Action::PageDown => cur + 10,
                    Action::Home => 0,
                    _ => len,
                }
                .min(len.saturating_sub(1));
                if list {
                    self.runbooks.cursor = to;
                } else {
                    self.runbooks.scroll = u16::try_from(to).unwrap_or(u16::MAX);
                }
            }
            _ => {}
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

    /// A key while typing a filter or a command.
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
                self.clear_input(filter);
            }
            Action::DeleteChar => {
                if filter {
                    self.filter.pop();
                    self.mark_rows_dirty();
                } else {
                    self.command.pop();
                }
            }
            Action::ClearInput => self.clear_input(filter),
            Action::Complete => self.complete_command(),
            _ => {}
        }
        self.refresh(now);
    }

    fn clear_input(&mut self, filter: bool) {
        if filter {
            self.filter.clear();
            self.mark_rows_dirty();
        } else {
            self.command.clear();
        }
    }

    /// A key in normal mode.
    fn normal_action(&mut self, a: Action, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let v = self.view;
        match a {
            Action::Quit => fx.push(Effect::Quit),
            Action::Help => {
                self.mode = Mode::Help;
                self.help_scroll = 0;
            }
            Action::StartFilter => self.mode = Mode::Filter,
            Action::StartCommand => {
                self.mode = Mode::Command;
                self.command.clear();
            }
            Action::NextView => self.view = v.next_in(&self.views()),
            Action::ShowTimeline => self.view = View::Timeline,
            Action::PrevView => self.view = v.prev_in(&self.views()),
            Action::Back => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.mark_rows_dirty();
                } else if v != View::Tree {
                    self.view = View::Tree;
                }
            }
            Action::Up | Action::Down | Action::PageUp | Action::PageDown => {
                let page = self.page(v) as isize;
                let delta = match a {
                    Action::Up => -1,
                    Action::Down => 1,
                    Action::PageUp => -page,
                    _ => page,
                };
                self.move_by(v, delta);
            }
            Action::Home => self.set_cursor(v, 0),
            Action::End => self.set_cursor(v, self.len(v).saturating_sub(1)),
            Action::Detail if v == View::Events => self.open_event(),
            Action::Detail => self.detail_action(v, fx),
            Action::ShowInTree => match self.item_node_id(v) {
                Some(id) => {
                    self.show_in_tree(&id, now);
                }
                None if v == View::Events => {
                    self.flash(Level::Warning, "this event is about no node in the tree")
                }
                None => self.flash(Level::Warning, "nothing to show in the tree for this row"),
            },
            Action::CycleSeverity => self.cycle_severity(),
            Action::DaemonFilter => self.toggle_event_daemon(),
            Action::Copy => self.open_copy(),
            Action::Runbooks => self.offer_runbooks(),
            _ => self.tree_action(a, fx),
        }
        self.refresh(now);
    }

    /// The tree's own keys: expand, collapse, open a leaf.
    fn tree_action(&mut self, a: Action, fx: &mut Vec<Effect>) {
        let row = self.rows().get(self.cursor(View::Tree)).copied();
        match a {
            Action::Activate => {
                if let Some(row) = row {
                    if row.has_children {
                        self.toggle(row);
                    } else {
                        self.open_detail(row.idx, fx);
                    }
                }
            }
            Action::Collapse => {
                let Some(row) = row else { return };
                if row.has_children && row.expanded && self.filter.is_empty() {
                    self.toggle(row);
                } else if let Some(p) = self.tree().nodes[row.idx].parent {
                    let cur = self.cursor(View::Tree);
                    if let Some(pos) = self.rows()[..cur].iter().rposition(|r| r.idx == p) {
                        self.set_cursor(View::Tree, pos);
                    }
                }
            }
            Action::Expand => {
                if let Some(row) = row
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
                self.collapsed = self
                    .tree()
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
    }

    /// Opens the detail of the selected node (tree and expiring views).
    fn detail_action(&mut self, v: View, fx: &mut Vec<Effect>) {
        let idx = match v {
            View::Tree => self.selected_node(),
            View::Expiring => self.expiring().get(self.cursor(v)).copied(),
            _ => None,
        };
        if let Some(i) = idx {
            self.open_detail(i, fx);
        }
    }

    fn open_detail(&mut self, idx: usize, fx: &mut Vec<Effect>) {
        let Some(t) = self.tree().nodes.get(idx) else {
            return;
        };
        let (node_id, daemon) = (t.node.id.clone(), t.source);
        self.detail = Some(DetailState {
            node_id: node_id.clone(),
            daemon,
            node: (*t.node).clone(),
            fetched: None,
            scroll: 0,
        });
        self.mode = Mode::Detail;
        fx.push(Effect::FetchDetail { daemon, node_id });
    }

    /// The tree node id behind the selected row of `v`.
    fn item_node_id(&self, v: View) -> Option<String> {
        let c = self.cursor(v);
        match v {
            View::Tree => self.selected_id().map(str::to_string),
            View::Expiring => self
                .expiring()
                .get(c)
                .map(|&i| self.tree().nodes[i].node.id.clone()),
            View::Segments => {
                let w = self.windows().get(c)?;
                let d = self.fleet.daemons.iter().find(|d| d.name == w.server)?;
                daemon_node_id(d)
            }
            View::Events => {
                let i = *self.events().get(c)?;
                let id = &self.fleet.events.get(i)?.event.node_id;
                (!id.is_empty()).then(|| id.clone())
            }
            View::Daemons => daemon_node_id(self.fleet.daemons.get(c)?),
            View::Federation => {
                let foreign = self.fleet.foreign();
                let d = match foreign.get(c) {
                    Some(r) => r.daemon,
                    None => self.fleet.receipts().get(c - foreign.len())?.daemon,
                };
                daemon_node_id(self.fleet.daemons.get(d)?)
            }
            View::Timeline => {
                let r = self.history.rows.get(c)?;
                let d = match r.subject {
                    Subject::Daemon => self.fleet.daemons.iter().find(|d| d.name == r.name)?,
                    Subject::Segment => {
                        let w = self.windows().iter().find(|w| w.segment == r.name)?;
                        self.fleet.daemons.iter().find(|d| d.name == w.server)?
                    }
                };
                daemon_node_id(d)
            }
        }
    }

    /// Screen lines of the open overlay's document.
    fn overlay_len(&self, now: DateTime<Utc>) -> usize {
        let doc = match self.mode {
            Mode::Help => text::help::lines(self.charset.glyphs()),
            Mode::Detail => text::detail::lines(self, now),
            Mode::Event => text::event::lines(self, now),
            _ => return 0,
        };
        layout::overlay_len(&doc, layout::screen(self.size))
    }

    /// A key in the help or the detail overlay: scroll or close.
    fn overlay_action(&mut self, a: Action, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let page = layout::overlay_page(layout::screen(self.size));
        let max = self.overlay_len(now).saturating_sub(page);
        match a {
            Action::Copy => return self.open_copy(),
            Action::ShowInTree => return self.event_to_tree(now),
            _ => {}
        }
        let scroll = match (self.mode, &mut self.detail, &mut self.event_detail) {
            (Mode::Detail, Some(d), _) => &mut d.scroll,
            (Mode::Event, _, Some(e)) => &mut e.scroll,
            _ => &mut self.help_scroll,
        };
        let cur = usize::from(*scroll);
        let to = match a {
            Action::Quit => {
                fx.push(Effect::Quit);
                return;
            }
            Action::Close => {
                self.detail = None;
                self.event_detail = None;
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

    /// The open event's node in the tree (the detail closes), or why not.
    fn event_to_tree(&mut self, now: DateTime<Utc>) {
        let id = self
            .event_detail
            .as_ref()
            .map(|d| d.event.event.node_id.clone())
            .unwrap_or_default();
        if id.is_empty() {
            self.flash(Level::Warning, "this event is about no node");
            return;
        }
        if self.show_in_tree(&id, now) {
            self.event_detail = None;
            self.mode = Mode::Normal;
        }
    }

    /// A key in the copy menu.
    fn copy_action(&mut self, a: Action, fx: &mut Vec<Effect>) {
        match a {
            Action::Quit => fx.push(Effect::Quit),
            Action::Up => self.copy_move(-1),
            Action::Down => self.copy_move(1),
            Action::Home => self.copy_move(isize::MIN),
            Action::End => self.copy_move(isize::MAX),
            Action::Submit => self.close_copy(true, fx),
            Action::Close => self.close_copy(false, fx),
            _ => {}
        }
    }

    fn wheel(&mut self, down: bool, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        match self.mode {
            Mode::Help | Mode::Detail | Mode::Event => {
                let a = if down { Action::Down } else { Action::Up };
                for _ in 0..WHEEL_STEP {
                    self.overlay_action(a, now, fx);
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
                self.wheel(true, now, fx);
                true
            }
            MouseEventKind::ScrollUp => {
                self.wheel(false, now, fx);
                true
            }
            MouseEventKind::Down(MouseButton::Left) if self.mode == Mode::Normal => {
                self.click(ev.column, ev.row, now, fx)
            }
            _ => false,
        }
    }

    /// A left click: selects the row under it, or acts on it when already selected.
    fn click(&mut self, x: u16, y: u16, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> bool {
        let area = layout::list_area(
            layout::screen(self.size),
            self.view,
            self.content(self.view),
        );
        let inside =
            x >= area.x && x < area.x + area.width && y >= area.y && y < area.y + area.height;
        if !inside {
            return false;
        }
        let idx = self.offset(self.view) + usize::from(y - area.y);
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
}

/// The tree node id of a daemon's own node.
fn daemon_node_id(d: &trustdeck_topology::DaemonState) -> Option<String> {
    let id = d.identity.as_ref()?;
    Some(if d.role() == trustdeck_topology::DaemonRole::Agent {
        format!("agent:{}", id.spiffe_id)
    } else {
        format!("server:{}", id.spiffe_id)
    })
}
