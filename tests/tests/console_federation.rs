//! End-to-end: the console in tmux on the default demo (issue 15). Each trust domain is its
//! own tree (three roots: the demo's upstream first, then the isolated one's and the
//! partner's), and
//! `:federation` lists every foreign bundle the servers hold with its freshness: the partner's
//! (fetched over https_spiffe), ours at the partner (over https_web), the isolated domain's
//! and ours at it (imported), and the isolated peer's receipt. Stopping the partner makes its
//! row stale while the tree still shows the last-known partner nodes.

use trustdeck_e2e::tmux::Tmux;
use trustdeck_e2e::*;

/// The screen's lines that name `td`.
fn rows<'a>(screen: &'a str, td: &str) -> Vec<&'a str> {
    screen.lines().filter(|l| l.contains(td)).collect()
}

#[test]
fn the_console_shows_each_trust_domain_and_the_federation_view() {
    let demo = DemoProc::start_full(&[]);
    let tmux = Tmux::console(&demo, "federation");
    // The fleet's own trust domain's tree first; the other trust domains' trees below it.
    let tree = tmux.wait_screen(30, "the demo's tree first", |s| {
        s.contains("daemons 11/11 live") && s.contains("29 nodes")
    });
    let first_root = tree
        .lines()
        .find(|l| l.contains(" SRV "))
        .expect("a server row");
    assert!(
        first_root.contains("SRV  upstream  spiffe://demo.trustdeck/"),
        "{tree}"
    );
    assert!(tree.contains("READ-ONLY"), "{tree}");
    tmux.keys(&["End"]);
    tmux.wait_screen(30, "the partner's tree at the end", |s| {
        s.contains("SRV  partner  spiffe://partner.trustdeck/") && s.contains("partner-workloads")
    });

    tmux.keys(&[":", "federation", "Enter"]);
    let fed = tmux.wait_screen(30, "the federation view", |s| {
        s.contains("[federation]")
            && rows(s, "partner.trustdeck")
                .iter()
                .any(|l| l.contains("https_spiffe"))
            && rows(s, "demo.trustdeck")
                .iter()
                .any(|l| l.contains("https_web"))
            && rows(s, "isolated.trustdeck")
                .iter()
                .any(|l| l.contains("import"))
            && rows(s, "isolated.trustdeck")
                .iter()
                .any(|l| l.contains("receipt"))
    });
    for l in rows(&fed, "partner.trustdeck") {
        assert!(
            l.contains("ok"),
            "the partner's bundle is fresh: {l}\n{fed}"
        );
    }

    // The partner stops: its bundle at our upstream goes stale, the rest stays ok.
    signal(demo.pid("partner"), "STOP");
    let stale = tmux.wait_screen(90, "the partner's bundle stale", |s| {
        rows(s, "partner.trustdeck")
            .iter()
            .any(|l| l.contains("stale") || l.contains("refreshes failed"))
    });
    assert!(
        rows(&stale, "isolated.trustdeck")
            .iter()
            .all(|l| !l.contains("stale")),
        "{stale}"
    );
    signal(demo.pid("partner"), "CONT");
    tmux.keys(&["q"]);
}
