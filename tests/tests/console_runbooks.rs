//! End-to-end: the console's runbook pane against a live fleet (the demo's, CA keys in
//! SoftHSM2), driven through tmux as an operator would over SSH: `rotate-intermediate` on gcp
//! with its typed confirmations to the end, and the same run taken over by a new console
//! after the first one's session dropped mid-runbook. Each test then reads the fleet (the
//! authorities, the journal, `trustdeck status`). Waits come from a copy of the shipped
//! runbooks with shorter timeouts (`--runbooks DIR`).

use std::path::Path;
use std::time::Instant;

use trustdeck_e2e::runbook::*;
use trustdeck_e2e::tmux::Tmux;
use trustdeck_e2e::*;

/// Demo options: short SVID and intermediate lifetimes (as tests/tests/runbooks_more.rs).
const DEMO: &[&str] = &["--svid-ttl", "30s", "--intermediate-ttl", "15m"];

/// The steps of rotate-intermediate, in order.
const STEPS: [&str; 6] = [
    "preflight",
    "prepare",
    "activate",
    "move",
    "drain",
    "revoke",
];

/// The console on `demo` in operator mode with the runbooks of `rb`.
fn operator_console(demo: &DemoProc, tag: &str, rb: &Path) -> Tmux {
    let rb = rb.to_str().expect("UTF-8 path");
    Tmux::console_with(demo, tag, &["--operator", "--runbooks", rb])
}

/// Whether the runbook list's cursor is on rotate-intermediate (Unicode or ASCII mark).
fn on_rotate_intermediate(screen: &str) -> bool {
    screen
        .lines()
        .any(|l| l.contains("▸ rotate-intermediate") || l.contains("> rotate-intermediate"))
}

/// gcp's server selected in the tree, `R`, rotate-intermediate chosen and run: up to the
/// pane running it on gcp.
fn start_rotation(t: &Tmux) {
    t.wait_screen(60, "every daemon live, in operator mode", |s| {
        s.contains("daemons 7/7 live") && s.contains("OPERATOR")
    });
    t.keys(&["/"]);
    t.type_line("kind:server daemon:gcp");
    t.wait_screen(10, "the tree filtered to gcp's server", |s| {
        s.contains("match \"kind:server daemon:gcp\"")
    });
    // The last row is gcp's server (the first, the upstream, is its parent).
    t.keys(&["G", "R"]);
    t.wait_screen(10, "the runbooks that apply to gcp", |s| {
        s.contains("Runbooks that apply to gcp")
    });
    for _ in 0..8 {
        if on_rotate_intermediate(&t.capture()) {
            break;
        }
        t.keys(&["j"]);
    }
    t.wait_screen(
        5,
        "the cursor on rotate-intermediate",
        on_rotate_intermediate,
    );
    t.keys(&["Enter"]);
    t.wait_screen(30, "the pane running rotate-intermediate on gcp", |s| {
        s.contains("Runbook rotate-intermediate (running)") && s.contains("target server = gcp")
    });
}

/// Whether the screen shows the confirmation of step `n` (`id`), asking for `answer`.
fn asks(screen: &str, n: usize, id: &str, answer: &str) -> bool {
    let prompt = if answer == "yes" {
        "Type yes and press enter".to_string()
    } else {
        format!("Type {answer} to confirm")
    };
    let step = format!("{n} {id} ");
    screen.contains(&prompt)
        && screen
            .lines()
            .any(|l| l.contains(&step) && l.contains("waiting for"))
}

/// Waits for the confirmation of step `n` (`id`) and types `answer`.
fn confirm(t: &Tmux, n: usize, id: &str, answer: &str) {
    t.wait_screen(90, &format!("the confirmation of step {n} ({id})"), |s| {
        asks(s, n, id, answer)
    });
    t.type_line(answer);
}

/// The pane shows every step verified and the outcome.
fn assert_succeeded(t: &Tmux) {
    let done = t.wait_screen(120, "every step verified", |s| {
        s.contains("every step verified: done")
    });
    assert!(
        done.contains("Runbook rotate-intermediate (finished)"),
        "{done}"
    );
    for (i, id) in STEPS.iter().enumerate() {
        let step = format!("{} {id} ", i + 1);
        assert!(
            done.lines().any(|l| l
                .split_once(&step)
                .is_some_and(|(_, rest)| rest.contains("  verified"))),
            "step {id} is not shown verified:\n{done}"
        );
    }
}

/// gcp's authorities after the rotation: a new one active, `old` revoked; nothing running.
fn assert_rotated(demo: &DemoProc, rb: &Path, old: &str) {
    let (after, _) = authorities_of(&config_of(demo, "gcp"));
    let active = ids_with(&after, "active");
    assert_eq!(active.len(), 1, "{after:?}");
    assert_ne!(active[0], old, "a new intermediate is active: {after:?}");
    assert_eq!(
        status_in(&after, old).as_deref(),
        Some("revoked"),
        "{after:?}"
    );
    assert_eq!(journal(&demo.fleet_path(), rb), Vec::<Json>::new());
    assert_healthy(&demo.fleet_path());
}

/// gcp's one active intermediate.
fn active_on_gcp(demo: &DemoProc) -> String {
    let (before, _) = authorities_of(&config_of(demo, "gcp"));
    let old = ids_with(&before, "active");
    assert_eq!(old.len(), 1, "{before:?}");
    old[0].clone()
}

#[test]
fn console_drives_rotate_intermediate_with_typed_confirmations_to_the_end() {
    let t0 = Instant::now();
    let demo = DemoProc::start(DEMO);
    let rb = runbooks_dir(demo.dir.path(), "runbooks", 60, |_, t| t);
    let old = active_on_gcp(&demo);
    let v = validators(&demo);
    let t = operator_console(&demo, "rotate", &rb);
    start_rotation(&t);
    confirm(&t, 2, "prepare", "yes");

    // Activate: the wrong name changes nothing, and says so.
    t.wait_screen(60, "the confirmation of activate", |s| {
        asks(s, 3, "activate", "gcp")
    });
    t.type_line("dmz");
    t.wait_screen(10, "the mismatch", |s| {
        s.contains("typed \"dmz\", expected \"gcp\": nothing done")
    });
    let (mid, _) = authorities_of(&config_of(&demo, "gcp"));
    assert_eq!(status_in(&mid, &old).as_deref(), Some("active"), "{mid:?}");
    assert_eq!(ids_with(&mid, "prepared").len(), 1, "{mid:?}");
    t.type_line("gcp");
    confirm(&t, 4, "move", "gcp");
    confirm(&t, 6, "revoke", "gcp");
    assert_succeeded(&t);

    assert_rotated(&demo, &rb, &old);
    assert_clean(v);
    eprintln!("rotate-intermediate from the console: {:?}", t0.elapsed());
}

#[test]
fn console_resumes_a_runbook_after_the_session_drops() {
    let t0 = Instant::now();
    let demo = DemoProc::start(DEMO);
    let rb = runbooks_dir(demo.dir.path(), "runbooks", 60, |_, t| t);
    let old = active_on_gcp(&demo);
    let first = operator_console(&demo, "drop", &rb);
    start_rotation(&first);
    confirm(&first, 2, "prepare", "yes");
    first.wait_screen(60, "the confirmation of activate", |s| {
        asks(s, 3, "activate", "gcp")
    });
    let held = journal(&demo.fleet_path(), &rb);
    assert_eq!(held.len(), 1, "{held:?}");
    let e = &held[0];
    assert_eq!(e["runbook"], "rotate-intermediate", "{e}");
    assert_eq!(
        (e["step"].as_u64(), e["step_id"].as_str()),
        (Some(2), Some("activate")),
        "{e}"
    );
    assert_eq!(e["state"], "RUNBOOK_STATE_RUNNING", "{e}");
    let started_by = e["started_by"].as_str().expect("started_by").to_string();
    let recorded = e["updated_at"].as_i64().expect("updated_at");

    // The SSH session drops: the console goes with it, the execution stays in the journal.
    first.kill();
    let second = operator_console(&demo, "resume", &rb);
    let banner = format!(
        "runbook rotate-intermediate in progress at step 3/6 (activate), started by {started_by}"
    );
    second.wait_screen(60, "the in-progress banner", |s| s.contains(&banner));
    let quiet = chrono::Utc::now().timestamp() - recorded;
    second.keys(&[":"]);
    second.type_line("resume");
    second.wait_screen(10, "the pane resuming it", |s| {
        s.contains("resuming rotate-intermediate at step 3")
    });
    // The journal keeps it for the dropped session until that one has been quiet for 30 s:
    // the console says it waits, then takes it over.
    eprintln!("resumed {quiet} s after the dropped session's last record");
    if quiet < 25 {
        second.wait_screen(10, "the console waiting for the hold", |s| {
            s.contains("waiting for it to let go")
        });
    }
    confirm(&second, 3, "activate", "gcp");
    confirm(&second, 4, "move", "gcp");
    confirm(&second, 6, "revoke", "gcp");
    assert_succeeded(&second);
    assert_rotated(&demo, &rb, &old);
    eprintln!("dropped and resumed from the console: {:?}", t0.elapsed());
}
