//! End-to-end: `trustdeck demo` (headless), `trustdeck status` and `trustdeck watch` against
//! it, an upstream outage, and the interactive console driven through tmux.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trustdeck_e2e::tmux::Tmux;
use trustdeck_e2e::*;

fn segment<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .find(|s| s["segment"] == name)
        .unwrap_or_else(|| panic!("no segment {name}: {report}"))
}

fn tiers(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["tiers"].as_array().expect("tiers")
}

fn rfc3339(v: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("time"))
        .expect("RFC 3339")
        .timestamp()
}

#[test]
fn demo_and_status_report_real_values_with_threshold_exit_codes() {
    let demo = DemoProc::start(&[]);
    let fleet = &demo.fleet;
    assert_eq!(fleet["trust_domain"], "demo.trustdeck");
    let servers = fleet["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 3, "{fleet}");
    assert_eq!(
        servers.iter().filter(|s| s["role"] == "downstream").count(),
        2
    );
    for a in fleet["agents"].as_array().expect("agents") {
        assert!(alive(a["pid"].as_u64().expect("pid") as u32), "{a}");
        let ws = a["workload_socket"].as_str().expect("workload_socket");
        assert!(Path::new(ws).is_absolute() && Path::new(ws).exists(), "{a}");
        assert!(a["admin"].as_str().expect("admin").starts_with("unix:///"));
    }
    // A standard SPIFFE client run by this user gets an SVID named per seed 001.
    let gcp_ws = fleet["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["serves"] == "workloads" && a["segment"] == "gcp")
        .expect("gcp workload agent")["workload_socket"]
        .as_str()
        .expect("socket")
        .to_string();
    let py = py_spiffe(Path::new(&gcp_ws), &["x509", "--timeout", "20"]);
    let got = py["x509"][0]["spiffe_id"]
        .as_str()
        .expect("spiffe_id")
        .to_string();
    assert!(got.starts_with("spiffe://demo.trustdeck/prod/gcp/"), "{py}");

    let (code, r) = demo.status(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["health"], "ok");
    let now = chrono::Utc::now().timestamp();
    // The root CA tier is the upstream's real root.
    let up_admin = servers[0]["admin"]
        .as_str()
        .expect("admin")
        .trim_start_matches("unix://");
    let pem = Command::new(bin("trustdeck-server"))
        .args(["bundle", "show", "--format", "pem", "--socket", up_admin])
        .output()
        .expect("bundle show");
    let roots =
        trustdeck_spiffe::pem::decode_certs(&String::from_utf8_lossy(&pem.stdout)).expect("pem");
    let (_, root_na) = trustdeck_spiffe::x509::cert_validity(&roots[0]).expect("root");
    let root = tiers(&r)
        .iter()
        .find(|t| {
            t["kind"] == "X509_AUTHORITY" && t["state"] == "active" && t["daemon"] == "upstream"
        })
        .expect("root tier");
    assert_eq!(rfc3339(&root["not_after"]), root_na.timestamp());
    // The demo keeps CA keys in SoftHSM2 tokens, as the key policy wants.
    assert_eq!(root["key_storage"]["backend"], "pkcs11", "{root}");
    assert!(root["key_policy"].is_null(), "{root}");
    let left = root["seconds_remaining"].as_i64().expect("seconds");
    assert!((left - (root_na.timestamp() - now)).abs() <= 10, "{root}");
    for seg in ["gcp", "dmz"] {
        let s = segment(&r, seg);
        assert_eq!(s["upstream"], "connected", "{s}");
        let inter = tiers(&r)
            .iter()
            .find(|t| t["kind"] == "X509_AUTHORITY" && t["state"] == "active" && t["daemon"] == seg)
            .unwrap_or_else(|| panic!("{seg} intermediate"));
        assert_eq!(
            s["if_upstream_lost"]["x509_until"], inter["not_after"],
            "{s}"
        );
        assert_eq!(inter["key_storage"]["backend"], "pkcs11", "{inter}");
        assert_eq!(s["if_upstream_lost"]["jwt_stops_now"], true);
        let secs = s["if_server_lost"]["seconds"].as_i64().expect("seconds");
        // Workload SVIDs live 5 minutes (not_after is rounded up to the next second).
        assert!(secs > 0 && secs <= 301, "{s}");
        assert_eq!(s["if_server_lost"]["workload_svids"], 3, "{s}");
        // The earliest expiry among the SVIDs the segment's server issued, as the tiers list
        // them (reported by the segment's workload agents, or by its server).
        let earliest = tiers(&r)
            .iter()
            .filter(|t| {
                let d = t["daemon"].as_str().unwrap_or_default();
                t["kind"] == "WORKLOAD_SVID"
                    && (d == seg || d.starts_with(&format!("{seg}-workloads")))
            })
            .map(|t| rfc3339(&t["not_after"]))
            .min()
            .expect("workload tiers");
        assert_eq!(rfc3339(&s["if_server_lost"]["workloads_fail_at"]), earliest);
    }
    assert!(
        r["daemons"]
            .as_array()
            .expect("daemons")
            .iter()
            .all(|d| d["reachable"] == true)
    );

    // Exit codes follow the thresholds, on the same real data.
    let (code, r) = demo.status(&["--warn-fraction", "0.999", "--crit-fraction", "0"]);
    assert_eq!(code, 1, "{}", r["reasons"]);
    assert_eq!(r["health"], "warning");
    let (code, r) = demo.status(&["--warn-fraction", "0.999", "--crit-fraction", "0.999"]);
    assert_eq!(code, 2, "{}", r["reasons"]);
    let (code, text) = demo.trustdeck(&["status", "--output", "table"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("AUTONOMOUS WINDOWS") && text.contains("JWT stops now"),
        "{text}"
    );
    // On a jump host (C locale, vt100) the table is plain ASCII.
    let out = Command::new(bin("trustdeck"))
        .args(["status", "--output", "table", "--fleet"])
        .arg(demo.fleet_path())
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .env("TERM", "vt100")
        .output()
        .expect("run trustdeck");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("AUTONOMOUS WINDOWS"), "{text}");
    assert!(out.stdout.is_ascii(), "non-ASCII output:\n{text}");
    let (code, text) = demo.trustdeck(&["status", "--warn-fraction", "7"]);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("--warn-fraction"), "{text}");
}

#[test]
fn upstream_loss_shows_in_status_and_watch_and_demo_stops_cleanly() {
    let mut demo = DemoProc::start(&[]);
    let (mut watch, rx) = watch_lines(&demo);
    // Healthy first.
    let first_health = loop {
        let v = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("watch output");
        if v["type"] == "health" {
            break v;
        }
    };
    assert_eq!(first_health["exit_code"], 0, "{first_health}");

    signal(demo.pid("upstream"), "KILL");
    let t0 = Instant::now();
    let report = wait_for(30, "both downstreams to report the upstream lost", || {
        let (code, r) = demo.status(&[]);
        let lost = ["gcp", "dmz"]
            .iter()
            .all(|s| segment(&r, s)["upstream"] == "lost");
        (code == 3 && lost).then_some(r)
    });
    eprintln!("upstream reported lost after {:?}", t0.elapsed());
    assert_eq!(report["unreachable"], serde_json::json!(["upstream"]));
    for seg in ["gcp", "dmz"] {
        let s = segment(&report, seg);
        assert!(
            !s["upstream_error"].as_str().unwrap_or_default().is_empty(),
            "{s}"
        );
        // X.509 keeps going on the intermediate.
        assert!(
            s["if_upstream_lost"]["x509_seconds"]
                .as_i64()
                .expect("x509")
                > 3000,
            "{s}"
        );
    }
    // This status run never reached the upstream: that is its own state, without an age.
    let root = segment(&report, "root");
    assert_eq!(root["server_state"], "never_reached", "{root}");
    assert!(root["stale_seconds"].is_null(), "{root}");

    // watch printed the losses as events and the health change.
    let mut kinds = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut unhealthy = false;
    while Instant::now() < deadline
        && !(unhealthy
            && kinds
                .iter()
                .filter(|k: &&(String, String)| k.1 == "upstream-lost")
                .count()
                >= 2)
    {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(500)) {
            if v["type"] == "event" {
                kinds.push((
                    v["daemon"].as_str().unwrap_or_default().to_string(),
                    v["kind"].as_str().unwrap_or_default().to_string(),
                ));
            } else if v["type"] == "health" && v["exit_code"] == 3 {
                unhealthy = true;
            }
        }
    }
    assert!(unhealthy, "watch reported the unreachable upstream");
    for seg in ["gcp", "dmz"] {
        assert!(
            kinds.iter().any(|(d, k)| d == seg && k == "upstream-lost"),
            "{seg}: {kinds:?}"
        );
    }
    assert!(
        kinds
            .iter()
            .any(|(d, k)| d == "upstream" && k == "console-unreachable"),
        "{kinds:?}"
    );
    let _ = watch.kill();
    let _ = watch.wait();

    // SIGTERM stops every daemon.
    let pids: Vec<u32> = ["servers", "agents"]
        .iter()
        .flat_map(|l| demo.fleet[*l].as_array().cloned().unwrap_or_default())
        .map(|d| d["pid"].as_u64().expect("pid") as u32)
        .collect();
    assert!(
        demo.stop(),
        "demo exits within 10 s of SIGTERM:\n{}",
        demo.log()
    );
    for p in pids {
        assert!(!alive(p), "daemon {p} still running after the demo stopped");
    }
}

/// Countdowns on screen, e.g. "4m 58s".
fn countdowns(screen: &str) -> Vec<String> {
    let mut out = Vec::new();
    let words: Vec<&str> = screen.split_whitespace().collect();
    for w in words.windows(2) {
        let (a, b) = (w[0].trim_start_matches('('), w[1].trim_end_matches(')'));
        if a.ends_with('m')
            && a[..a.len() - 1].chars().all(|c| c.is_ascii_digit())
            && b.ends_with('s')
            && b[..b.len() - 1].chars().all(|c| c.is_ascii_digit())
            && !a[..a.len() - 1].is_empty()
        {
            out.push(format!("{a} {b}"));
        }
    }
    out
}

#[test]
fn console_in_tmux_shows_the_tree_countdowns_and_the_upstream_loss() {
    let demo = DemoProc::start(&[]);
    let tmux = Tmux::console(&demo, "upstream");
    let screen = tmux.wait_screen(30, "the tree from every daemon", |s| {
        s.contains("daemons 7/7 live")
            && s.contains("X.509 until")
            && s.contains("gcp")
            && s.contains("dmz")
            && s.contains("payments")
    });
    assert!(screen.contains("READ-ONLY"), "{screen}");
    assert!(
        !countdowns(&screen).is_empty(),
        "a countdown is shown:\n{screen}"
    );
    assert!(
        screen.contains("X.509 until") && screen.contains("JWT stops now"),
        "autonomous window:\n{screen}"
    );
    assert!(screen.contains("workloads fail at"), "{screen}");

    // Navigate: down, collapse/expand, other views, help, back.
    tmux.keys(&["j", "j", "Enter"]);
    tmux.wait_screen(5, "the detail pane", |s| s.contains("Detail"));
    tmux.keys(&["Escape"]);
    tmux.keys(&[":", "expiring", "Enter"]);
    tmux.wait_screen(5, "the expiring view", |s| s.contains("[expiring]"));
    tmux.keys(&["?"]);
    tmux.wait_screen(5, "help", |s| {
        s.to_lowercase().contains("help") && s.contains("filter")
    });
    tmux.keys(&["Escape"]);
    tmux.keys(&["Tab"]);
    tmux.keys(&[":", "tree", "Enter"]);
    tmux.wait_screen(5, "the tree view again", |s| s.contains("[tree]"));

    // The upstream process is frozen (kill -STOP: no connection is refused, calls just hang):
    // within seconds both downstreams show it lost, and the console says its own view of the
    // upstream is stale. (The status/watch test kills it outright.)
    signal(demo.pid("upstream"), "STOP");
    let t0 = Instant::now();
    let lost = tmux.wait_screen(30, "upstream lost on both downstreams", |s| {
        s.lines().filter(|l| l.contains("lost for")).count() >= 2 && s.contains("STALE")
    });
    eprintln!("console showed the loss after {:?}", t0.elapsed());
    assert!(
        lost.contains("X.509 until"),
        "the window is still shown:\n{lost}"
    );
    // The window counts down.
    let before = countdowns(&lost);
    std::thread::sleep(Duration::from_secs(2));
    let after = countdowns(&tmux.capture());
    assert_ne!(before, after, "countdowns move");
    tmux.keys(&["q"]);
    tmux.wait_screen(10, "the console to exit", |s| !s.contains("READ-ONLY"));
}

/// Lines of a `trustdeck watch` over the demo, as JSON values, on a channel.
fn watch_lines(
    demo: &DemoProc,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    let mut watch = Command::new(bin("trustdeck"))
        .args(["watch", "--output", "json", "--fleet"])
        .arg(demo.fleet_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: serde_json::Value =
                serde_json::from_str(&line).expect("one JSON object per line");
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    (watch, rx)
}

/// Reads lines until `done` says so (at most `secs`); returns them all.
fn read_until(
    rx: &std::sync::mpsc::Receiver<serde_json::Value>,
    secs: u64,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    while !done(&got) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {got:#?}"
        );
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(200)) {
            got.push(v);
        }
    }
    got
}

/// Every health line says one word, the same in `health` and its deprecated alias `level`, and
/// the exit code that word means.
fn health_is_consistent(v: &serde_json::Value) {
    let code = match v["health"].as_str().expect("health") {
        "ok" => 0,
        "warning" => 1,
        "critical" => 2,
        "unreachable" => 3,
        other => panic!("unknown health {other}"),
    };
    assert_eq!(v["level"], v["health"], "{v}");
    assert_eq!(v["exit_code"], code, "{v}");
    assert_eq!(
        v["unreachable"].as_array().is_some_and(|u| !u.is_empty()),
        code == 3,
        "{v}"
    );
}

#[test]
fn watch_marks_replays_keys_events_and_says_one_health_word() {
    let demo = DemoProc::start(&["--segments", "dmz", "--svid-ttl", "30s"]);
    let (mut first, rx) = watch_lines(&demo);
    let start = read_until(&rx, 20, "the first health line", |l| {
        l.iter().any(|v| v["type"] == "health")
    });
    // Every daemon's history is a replay; nothing is a loss at start-up.
    let events: Vec<&serde_json::Value> = start.iter().filter(|v| v["type"] == "event").collect();
    assert!(!events.is_empty());
    assert!(events.iter().all(|v| v["replayed"] == true), "{events:#?}");
    assert!(
        events.iter().all(|v| v["kind"] != "upstream-lost"
            && !v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not connected yet")),
        "{events:#?}"
    );
    let keys: Vec<&str> = events
        .iter()
        .map(|v| v["key"].as_str().expect("key"))
        .collect();
    let unique: std::collections::HashSet<&&str> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "keys are unique: {keys:?}");
    for v in start.iter().filter(|v| v["type"] == "health") {
        health_is_consistent(v);
    }

    // The dmz server freezes: the loss is news, not a replay, and health says unreachable.
    signal(demo.pid("dmz"), "STOP");
    let lost = read_until(&rx, 20, "dmz unreachable", |l| {
        l.iter()
            .any(|v| v["type"] == "health" && v["health"] == "unreachable")
            && l.iter()
                .any(|v| v["kind"] == "console-unreachable" && v["daemon"] == "dmz")
    });
    for v in &lost {
        if v["type"] == "health" {
            health_is_consistent(v);
        } else {
            assert_eq!(v["replayed"], false, "{v}");
        }
    }

    // A watch started during the outage: the same history has the same keys, still replayed.
    let (mut second, rx2) = watch_lines(&demo);
    let later = read_until(&rx2, 20, "the second watch's health", |l| {
        l.iter().any(|v| v["type"] == "health")
    });
    let again: Vec<(&str, bool)> = later
        .iter()
        .filter(|v| v["type"] == "event")
        .map(|v| (v["key"].as_str().expect("key"), v["replayed"] == true))
        .collect();
    for e in events.iter().filter(|v| v["daemon"] != "dmz") {
        let k = e["key"].as_str().expect("key");
        assert!(
            again.contains(&(k, true)),
            "{k}: the same event, the same key, replayed: {again:?}"
        );
    }
    let h = later
        .iter()
        .find(|v| v["type"] == "health")
        .expect("health");
    health_is_consistent(h);
    assert_eq!(h["health"], "unreachable", "{h}");
    let _ = second.kill();
    let _ = second.wait();

    // Back: the console says so, as news.
    signal(demo.pid("dmz"), "CONT");
    let back = read_until(&rx, 30, "dmz back", |l| {
        l.iter()
            .any(|v| v["kind"] == "console-reconnected" && v["daemon"] == "dmz")
    });
    let r = back
        .iter()
        .find(|v| v["kind"] == "console-reconnected")
        .expect("reconnected");
    assert_eq!(r["replayed"], false, "{r}");
    assert!(
        r["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("console:reconnected:dmz:"))
    );
    for v in back.iter().filter(|v| v["type"] == "health") {
        health_is_consistent(v);
    }
    let _ = first.kill();
    let _ = first.wait();
}

/// The number in the tab bar's `N nodes`.
fn node_count(screen: &str) -> Option<usize> {
    let words: Vec<&str> = screen.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1] == "nodes")
        .and_then(|w| w[0].parse().ok())
}

/// The time of day (UTC, with seconds) of `rfc`: the console writes it in every form of a
/// window sentence's moment, whatever the date (`09:12:03Z`, `11-25 09:12:03Z`).
fn time_of_day(rfc: &serde_json::Value) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc.as_str().expect("time"))
        .expect("RFC 3339")
        .with_timezone(&chrono::Utc)
        .format("%H:%M:%SZ")
        .to_string()
}

/// Whether a line of `screen` says X.509 issuance continues until `tod`.
fn x509_until(screen: &str, tod: &str) -> bool {
    screen
        .lines()
        .any(|l| l.contains("X.509") && l.contains(" until ") && l.contains(tod))
}

#[test]
fn console_in_tmux_tells_the_truth_while_a_downstream_is_stopped() {
    // Workload SVIDs of 30 s: renewal is due after 15 s, overdue 5 s later.
    let demo = DemoProc::start(&["--segments", "dmz", "--svid-ttl", "30s"]);
    let (_, r) = demo.status(&[]);
    let inter = tiers(&r)
        .iter()
        .find(|t| t["kind"] == "X509_AUTHORITY" && t["state"] == "active" && t["daemon"] == "dmz")
        .expect("dmz intermediate");
    let until = time_of_day(&inter["not_after"]);
    let tmux = Tmux::console(&demo, "stop");
    let calm = tmux.wait_screen(30, "every daemon live", |s| {
        s.contains("daemons 4/4 live") && x509_until(s, &until) && node_count(s).is_some()
    });
    let nodes = node_count(&calm).expect("node count");

    // In the tree's state column (the events pane says it too, and keeps saying it).
    let overdue_row = |s: &str| {
        s.lines()
            .any(|l| l.contains(" SVID ") && l.contains("renewal overdue "))
    };
    signal(demo.pid("dmz"), "STOP");
    let stopped = tmux.wait_screen(30, "dmz unreachable, renewals overdue", |s| {
        s.contains("server unreachable since") && overdue_row(s)
    });
    assert!(stopped.contains("UNREACHABLE"), "{stopped}");
    assert!(
        x509_until(&stopped, &until),
        "the intermediate's real not_after:\n{stopped}"
    );
    assert!(!stopped.contains("X.509 stops now"), "{stopped}");
    assert!(!stopped.contains("(in -"), "{stopped}");
    assert_eq!(
        node_count(&stopped),
        Some(nodes),
        "the tree keeps its shape:\n{stopped}"
    );

    signal(demo.pid("dmz"), "CONT");
    let back = tmux.wait_screen(40, "dmz back and renewed", |s| {
        s.contains("daemons 4/4 live") && !s.contains("UNREACHABLE") && !overdue_row(s)
    });
    assert_eq!(node_count(&back), Some(nodes), "{back}");
    assert!(x509_until(&back, &until), "{back}");
    tmux.keys(&["q"]);
    tmux.wait_screen(10, "the console to exit", |s| !s.contains("READ-ONLY"));
}
