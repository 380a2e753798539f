//! The `?` help: every binding of the key map by context, every `:` command, and how to read
//! the screen. Generated from [`BINDINGS`](crate::app::BINDINGS) and
//! [`COMMANDS`](crate::app::COMMANDS), so it cannot drift from what the keys do.

use crate::app::{COMMANDS, help_sections};

use super::glyphs::Glyphs;
use super::{Role, TextLine};

/// The symbols and words of the screen, explained.
fn legend(g: &Glyphs) -> [(String, &'static str); 7] {
    [
        (g.tagged(g.ok, "ok"), "within thresholds"),
        (
            g.tagged(g.warning, "warning"),
            "below the warning fraction of its lifetime",
        ),
        (
            g.tagged(g.critical, "critical"),
            "below the critical fraction, or expired, or lost",
        ),
        (
            g.not_counted.to_string(),
            "not counted (old authorities, kept for validation)",
        ),
        (
            "STALE 40s".to_string(),
            "last-known state from a daemon the console cannot reach",
        ),
        (
            "ROOT INT JWT".to_string(),
            "root CA, intermediate CA, JWT authority",
        ),
        ("SRV AGT SVID".to_string(), "server, agent, workload SVID"),
    ]
}

/// The help document, with the symbols of `g`.
pub fn lines(g: &Glyphs) -> Vec<TextLine> {
    let mut out = vec![TextLine::one(
        " trustdeck console: read-only view of the fleet's trust tree. Keys:",
        Role::Dim,
    )];
    for (ctx, bindings) in help_sections() {
        if bindings.is_empty() {
            continue;
        }
        out.push(TextLine::blank());
        out.push(TextLine::one(format!(" {}", ctx.title()), Role::Title));
        for b in bindings {
            let keys = format!("   {:<13}", g.keys(b.keys));
            out.push(TextLine::pair(
                keys,
                Role::Tag,
                g.prose(b.help),
                Role::Plain,
            ));
        }
    }
    out.push(TextLine::blank());
    out.push(TextLine::one(
        " Commands (type : then the name)",
        Role::Title,
    ));
    for c in COMMANDS {
        let names: Vec<String> = c.names.iter().map(|n| format!(":{n}")).collect();
        let names = format!("   {:<24}", names.join(" "));
        out.push(TextLine::pair(names, Role::Tag, c.help, Role::Plain));
    }
    out.push(TextLine::blank());
    out.push(TextLine::one(" Reading the screen", Role::Title));
    for (a, b) in legend(g) {
        out.push(TextLine::pair(
            format!("   {a:<13}"),
            Role::Tag,
            b,
            Role::Plain,
        ));
    }
    out
}
