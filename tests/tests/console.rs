//! End-to-end: `trustdeck demo` (headless), `trustdeck status` and `trustdeck watch` against
//! it, an upstream outage, and the interactive console driven through tmux.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    // The root segment's last-known state is still reported, marked stale.
    assert!(segment(&report, "root")["stale_seconds"].as_i64().is_some());

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

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "console"])
    }
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "console"];
        args.extend_from_slice(keys);
        self.run(&args);
        std::thread::sleep(Duration::from_millis(300));
    }
    fn wait_screen(&self, secs: u64, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.capture();
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
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
    let tmux = Tmux {
        socket: format!("td-e2e-{}", std::process::id()),
    };
    let cmd = format!(
        "NO_COLOR=1 {} --fleet {} --log-file {}",
        bin("trustdeck").display(),
        demo.fleet_path().display(),
        demo.dir.path().join("console.log").display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "console",
        "-x",
        "160",
        "-y",
        "48",
        &cmd,
    ]);
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
