//! The `trustdeck-server` command that shows a node, for the incident ticket. Only commands
//! the server's CLI has (`entry show`, `agent list`, `bundle show`, `healthcheck`); a kind no
//! command shows (an intermediate CA: `bundle show` prints only roots) gets none.

use trustdeck_proto::admin::{Node, NodeKind};

/// The admin socket path of a fleet file endpoint (`unix:///path` or `/path`); None for TCP.
pub fn admin_socket(endpoint: &str) -> Option<&str> {
    let p = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    p.starts_with('/').then_some(p)
}

/// The command that shows node `n`, run against its segment's server (`socket`: that server's
/// admin socket, when the fleet file has one); `root`: an X.509 authority with no issuer in
/// the fleet (a root CA, in the bundle).
pub fn command(n: &Node, root: bool, socket: Option<&str>) -> Option<String> {
    let sub = match n.kind_wire().known()? {
        NodeKind::WorkloadSvid if !n.entry_id.is_empty() => {
            format!("entry show --id {}", quote(&n.entry_id))
        }
        NodeKind::Agent => "agent list".to_string(),
        NodeKind::X509Authority if root => "bundle show --format pem".to_string(),
        NodeKind::JwtAuthority => "bundle show --format spiffe".to_string(),
        NodeKind::Server => "healthcheck".to_string(),
        _ => return None,
    };
    Some(match socket {
        Some(s) => format!("trustdeck-server {sub} --socket {}", quote(s)),
        None => format!("trustdeck-server {sub}"),
    })
}

/// `s` as one shell word.
fn quote(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=@#".contains(c));
    // A word that starts with `#` is a comment to the shell.
    if plain && !s.is_empty() && !s.starts_with('#') {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: NodeKind, entry: &str) -> Node {
        Node {
            kind: kind as i32,
            entry_id: entry.into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_kind_gets_a_command_that_exists_or_none() {
        let s = Some("/run/dmz/admin.sock");
        assert_eq!(
            command(&node(NodeKind::WorkloadSvid, "e-3e01"), false, s).as_deref(),
            Some("trustdeck-server entry show --id e-3e01 --socket /run/dmz/admin.sock")
        );
        assert_eq!(
            command(&node(NodeKind::Agent, ""), false, None).as_deref(),
            Some("trustdeck-server agent list")
        );
        assert_eq!(
            command(&node(NodeKind::X509Authority, ""), true, None).as_deref(),
            Some("trustdeck-server bundle show --format pem")
        );
        assert_eq!(
            command(&node(NodeKind::X509Authority, ""), false, None),
            None
        );
        assert_eq!(
            command(&node(NodeKind::WorkloadSvid, ""), false, None),
            None
        );
        assert_eq!(command(&node(NodeKind::Unspecified, ""), false, None), None);
    }

    #[test]
    fn sockets_come_from_unix_endpoints_only() {
        assert_eq!(admin_socket("unix:///run/a.sock"), Some("/run/a.sock"));
        assert_eq!(admin_socket("/run/a.sock"), Some("/run/a.sock"));
        assert_eq!(admin_socket("https://dmz:8443"), None);
    }

    #[test]
    fn odd_words_are_quoted() {
        assert_eq!(
            command(
                &node(NodeKind::Server, ""),
                false,
                Some("/tmp/my dir/a.sock")
            )
            .as_deref(),
            Some("trustdeck-server healthcheck --socket '/tmp/my dir/a.sock'")
        );
        // A leading `#` would turn the rest of the line into a comment.
        assert_eq!(
            command(&node(NodeKind::WorkloadSvid, "#e-1"), false, None).as_deref(),
            Some("trustdeck-server entry show --id '#e-1'")
        );
    }
}
