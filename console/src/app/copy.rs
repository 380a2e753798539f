//! The copy menu: what can be copied from the selected node or event (SPIFFE ID, serial,
//! PKCS#11 URI, node id, the CLI command that shows it), built from the data; the chosen text
//! leaves as [`Effect::Copy`] and the terminal edge writes it as OSC 52.

use trustdeck_proto::admin::{KeyBackend, Node};
use trustdeck_topology::DaemonRole;
use trustdeck_topology::fleet::{FleetEvent, Level};

use super::model::App;
use super::msg::Effect;
use super::screen::{Mode, View};
use crate::clipboard::MAX_COPY;
use crate::text::cli;
use crate::text::format::kind_tag;

/// One line of the copy menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyItem {
    /// What it is ("serial"), shown and confirmed in the footer.
    pub what: &'static str,
    pub text: String,
}

/// The open copy menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyMenu {
    pub items: Vec<CopyItem>,
    pub cursor: usize,
    /// The mode to go back to.
    pub back: Mode,
}

/// An RFC 7512 PKCS#11 URI from a key storage detail `pkcs11:token=…;label=…` (the object is
/// named `object`, values percent-encoded).
pub fn pkcs11_uri(detail: &str) -> Option<String> {
    let attrs = detail.strip_prefix("pkcs11:")?;
    let parts: Vec<String> = attrs
        .split(';')
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| {
            let k = if k == "label" { "object" } else { k };
            format!("{k}={}", pct(v))
        })
        .collect();
    (!parts.is_empty()).then(|| format!("pkcs11:{}", parts.join(";")))
}

fn pct(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl App {
    /// What can be copied from tree node `i`.
    pub fn node_copy_items(&self, i: usize) -> Vec<CopyItem> {
        let Some(t) = self.tree().nodes.get(i) else {
            return Vec::new();
        };
        let n = &t.node;
        let mut v = Vec::new();
        let mut add = |what, text: String| {
            if !text.is_empty() {
                v.push(CopyItem { what, text });
            }
        };
        add("SPIFFE ID", n.spiffe_id.clone());
        add("serial", n.serial.clone());
        if let Some(k) = &n.key_storage
            && k.backend_wire().known() == Some(KeyBackend::Pkcs11)
        {
            add("PKCS#11 URI", pkcs11_uri(&k.detail).unwrap_or_default());
        }
        add("node id", n.id.clone());
        add("CLI command", self.node_command(i).unwrap_or_default());
        v
    }

    /// The `trustdeck-server` command that shows tree node `i` (see [`cli::command`]), run
    /// against the server of its segment.
    pub fn node_command(&self, i: usize) -> Option<String> {
        let n: &Node = &self.tree().nodes.get(i)?.node;
        let server = self.fleet.daemons.iter().find(|d| {
            matches!(
                d.role().known(),
                Some(DaemonRole::Upstream | DaemonRole::Downstream)
            ) && d.segment() == n.segment
        });
        let socket = server.and_then(|d| cli::admin_socket(&d.endpoint));
        cli::command(n, kind_tag(self.tree(), i) == "ROOT", socket)
    }

    /// What can be copied from an event: its message, its line, and its node's items.
    pub fn event_copy_items(&self, fe: &FleetEvent) -> Vec<CopyItem> {
        let mut v = vec![CopyItem {
            what: "message",
            text: fe.event.message.clone(),
        }];
        match self.event_node(fe) {
            Some(i) => v.extend(self.node_copy_items(i)),
            None if !fe.event.node_id.is_empty() => v.push(CopyItem {
                what: "node id",
                text: fe.event.node_id.clone(),
            }),
            None => {}
        }
        v
    }

    /// `y`: opens the copy menu for what is selected (or says there is nothing).
    pub(super) fn open_copy(&mut self) {
        let items = match (self.mode, self.view) {
            (Mode::Event, _) => match &self.event_detail {
                Some(d) => self.event_copy_items(&d.event.clone()),
                None => Vec::new(),
            },
            (Mode::Detail, _) => self
                .detail
                .as_ref()
                .and_then(|d| self.tree().by_id.get(&d.node_id).copied())
                .map(|i| self.node_copy_items(i))
                .unwrap_or_default(),
            (_, View::Events) => match self.selected_event().cloned() {
                Some(fe) => self.event_copy_items(&fe),
                None => Vec::new(),
            },
            (_, View::Tree) => self
                .selected_node()
                .map(|i| self.node_copy_items(i))
                .unwrap_or_default(),
            (_, View::Expiring) => self
                .expiring()
                .get(self.cursor(View::Expiring))
                .map(|&i| self.node_copy_items(i))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if items.is_empty() {
            self.flash(Level::Warning, "nothing to copy here");
            return;
        }
        self.copy_menu = Some(CopyMenu {
            items,
            cursor: 0,
            back: self.mode,
        });
        self.mode = Mode::Copy;
    }

    /// Moves in the copy menu.
    pub(super) fn copy_move(&mut self, delta: isize) {
        if let Some(m) = &mut self.copy_menu {
            let last = m.items.len().saturating_sub(1);
            m.cursor = m.cursor.saturating_add_signed(delta).min(last);
        }
    }

    /// Closes the copy menu; with `copy`, copies its selected item.
    pub(super) fn close_copy(&mut self, copy: bool, fx: &mut Vec<Effect>) {
        let Some(m) = self.copy_menu.take() else {
            self.mode = Mode::Normal;
            return;
        };
        self.mode = m.back;
        let Some(item) = m.items.get(m.cursor).filter(|_| copy) else {
            return;
        };
        if item.text.len() > MAX_COPY {
            self.flash(Level::Warning, format!("{} is too long to copy", item.what));
            return;
        }
        // Cut in the middle: the end tells SPIFFE IDs and URIs apart.
        let shown = crate::text::fit_middle(&item.text, 40, self.charset.glyphs().ellipsis);
        self.flash(Level::Ok, format!("copied {} {shown}", item.what));
        fx.push(Effect::Copy {
            what: item.what.to_string(),
            text: item.text.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::pkcs11_uri;

    #[test]
    fn pkcs11_uris_follow_rfc_7512() {
        assert_eq!(
            pkcs11_uri("pkcs11:token=trustdeck-root;label=root 2026").as_deref(),
            Some("pkcs11:token=trustdeck-root;object=root%202026")
        );
        assert_eq!(pkcs11_uri("disk:/var/lib/ca.key"), None);
    }
}
