//! The federation view on ratatui's `TestBackend`: every foreign trust domain the upstream
//! reports (a fresh federated one, one whose refreshes keep failing, an imported one) and an
//! isolated peer's receipt behind our sequence; its tab appears only when a server reports
//! any, and its key help comes from the key map.

mod fixture;

use fixture::*;
use trustdeck_proto::admin::{
    FederationProfile, FetchFailureKind, ForeignBundleSource, ForeignTrustDomain, FreshnessWarning,
    PeerReceipt,
};
use trustdeck_topology::Delta;

fn federation() -> trustdeck_proto::admin::Federation {
    trustdeck_proto::admin::Federation {
        trust_domains: vec![
            ForeignTrustDomain {
                trust_domain: "partner.test".into(),
                source: ForeignBundleSource::Federation as i32,
                profile: FederationProfile::HttpsSpiffe as i32,
                endpoint_url: "https://partner.demo:8443/".into(),
                sequence: 4,
                has_bundle: true,
                last_success_at: t(-20),
                earliest_root_expiry: t(30 * D),
                latest_root_expiry: t(30 * D),
                refresh_interval_seconds: 300,
                next_refresh_at: t(280),
                ..Default::default()
            },
            ForeignTrustDomain {
                trust_domain: "web.test".into(),
                source: ForeignBundleSource::Federation as i32,
                profile: FederationProfile::HttpsWeb as i32,
                endpoint_url: "https://web.demo/bundle".into(),
                sequence: 9,
                has_bundle: true,
                last_success_at: t(-2 * H),
                earliest_root_expiry: t(2 * D),
                latest_root_expiry: t(2 * D),
                consecutive_failures: 5,
                failing_since: t(-H),
                last_failure: FetchFailureKind::Connect as i32,
                last_error: "connection refused".into(),
                refresh_interval_seconds: 300,
                warnings: vec![FreshnessWarning::RefreshesFailing as i32],
                ..Default::default()
            },
            ForeignTrustDomain {
                trust_domain: "isolated.test".into(),
                source: ForeignBundleSource::Import as i32,
                sequence: 2,
                has_bundle: true,
                last_success_at: t(-3 * D),
                earliest_root_expiry: t(300 * D),
                latest_root_expiry: t(300 * D),
                ..Default::default()
            },
        ],
        receipts: vec![PeerReceipt {
            peer_trust_domain: "isolated.test".into(),
            sequence: 1,
            received_at: t(-D),
        }],
        own_sequence: 2,
    }
}

/// The fixed fleet with the upstream reporting [`federation`].
fn federated_app(w: u16, h: u16) -> App {
    let mut f = fleet(2);
    let delta = WatchMessage {
        revision: 2,
        daemon_time_ms: now().timestamp_millis(),
        body: Some(Body::Delta(Delta {
            federation: Some(federation()),
            ..Default::default()
        })),
    };
    f.apply(0, delta, now()).expect("delta");
    app_sized(f, w, h)
}

#[test]
fn federation_view() {
    for (w, h) in SIZES {
        snap!(
            &format!("federation_{w}x{h}"),
            &with_view(federated_app(w, h), View::Federation),
            w,
            h,
        );
    }
}

#[test]
fn each_foreign_trust_domain_says_its_freshness_and_the_receipt_its_sequence() {
    let app = with_view(federated_app(160, 48), View::Federation);
    // The rows, not the title bar.
    let shown: Vec<String> = lines(&draw(&app, 160, 48, false))
        .into_iter()
        .filter(|l| !l.starts_with('─'))
        .collect();
    let row = |name: &str| {
        shown
            .iter()
            .find(|l| l.contains(name) && !l.contains(" receipt "))
            .unwrap_or_else(|| panic!("no row for {name}: {shown:#?}"))
            .clone()
    };
    let partner = row("partner.test");
    for word in ["ok", "federation https_spiffe", "4", "20s", "30d"] {
        assert!(partner.contains(word), "{word} in {partner}");
    }
    let web = row("web.test");
    for word in [
        "stale",
        "https_web",
        "5",
        "refreshes failed in a row (connect",
    ] {
        assert!(web.contains(word), "{word} in {web}");
    }
    assert!(row("isolated.test").contains("import"));
    let receipt = shown
        .iter()
        .find(|l| l.contains(" receipt "))
        .expect("receipt row");
    assert!(
        receipt.contains("behind") && receipt.contains("isolated.test holds 1 (ours: 2, behind)"),
        "{receipt}"
    );
    // The failing federation counts against health.
    assert!(
        app.health()
            .reasons
            .iter()
            .any(|r| r.starts_with("upstream: federation web.test: 5 refreshes failed")),
        "{:?}",
        app.health().reasons
    );
}

#[test]
fn the_tab_shows_only_with_something_to_show_and_enter_comes_from_the_key_map() {
    assert!(!base(160, 48).views().contains(&View::Federation));
    let app = federated_app(160, 48);
    assert!(app.views().contains(&View::Federation));
    let mut app = with_view(app, View::Timeline);
    update(&mut app, key(KeyCode::Tab), now());
    assert_eq!(app.view, View::Federation);
    let help = trustdeck_console::app::keymap::keymap(Mode::Normal, View::Federation);
    assert!(
        help.iter()
            .any(|b| b.keys == "enter" && b.hint == "in tree"),
        "the federation view's enter is in the key map"
    );
    let footer = lines(&draw(&app, 160, 48, false)).join("\n");
    assert!(footer.contains("in tree"), "{footer}");
    update(&mut app, key(KeyCode::Enter), now());
    assert_eq!(
        app.view,
        View::Tree,
        "enter shows the holding server in the tree"
    );
}

#[test]
fn the_view_and_the_status_section_are_ascii_under_the_ascii_choice() {
    use trustdeck_console::status;
    use trustdeck_console::text::glyphs::{ASCII, Charset};
    let mut app = with_view(federated_app(160, 48), View::Federation);
    app.charset = Charset::Ascii;
    let bad: Vec<String> = lines(&draw(&app, 160, 48, true))
        .into_iter()
        .filter(|l| !l.is_ascii())
        .collect();
    assert!(bad.is_empty(), "non-ASCII lines: {bad:#?}");
    let table = status::table_with(&app.fleet, now(), &Thresholds::default(), &ASCII);
    assert!(table.is_ascii(), "{table}");
    let section: Vec<&str> = table
        .lines()
        .skip_while(|l| *l != "FEDERATION")
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(section.len() > 4, "{table}");
    let text = section.join("\n");
    for words in [
        "partner.test",
        "federation https_spiffe",
        "seq 4",
        "last success 20s ago",
        "- 5 refreshes failed in a row (connect: connection refused)",
        "endpoint https://web.demo/bundle",
        "receipt  upstream: isolated.test holds 1 (ours: 2, behind)",
    ] {
        assert!(text.contains(words), "{words:?} not in:\n{text}");
    }
}
