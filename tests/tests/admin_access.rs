//! End-to-end, with real users made by `useradd`: the admin sockets let in the configured
//! uids, and only them (issue 12, defect 4); refused calls are audited at a bounded rate,
//! and an entry's deletion keeps its SPIFFE ID in the audit log (defect 5).
//!
//! Tests run as root: they add users and groups with unique names and remove them again,
//! even when a test fails.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trustdeck_e2e::*;

/// A local user made for one test.
struct User {
    uid: u32,
    gid: u32,
}

/// The users and groups a test made; removed on drop.
#[derive(Default)]
struct Accounts {
    users: Vec<String>,
    groups: Vec<String>,
}

/// A name no other test or run uses (`useradd` allows 32 characters).
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("td{tag}{}x{nanos:x}", std::process::id())
}

fn id_of(flag: &str, name: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {flag} {name}: {out:?}"))
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

impl Accounts {
    /// A new group; its name and gid.
    fn group(&mut self, tag: &str) -> (String, u32) {
        let name = unique(tag);
        run_ok(Command::new("groupadd").arg(&name));
        self.groups.push(name.clone());
        let gid = std::fs::read_to_string("/etc/group")
            .expect("/etc/group")
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name.as_str())).then(|| f.get(2)?.parse().ok())?
            })
            .expect("the new group's gid");
        (name, gid)
    }

    /// A new user without a home or a login shell, in `groups` besides its own.
    fn user(&mut self, tag: &str, groups: &[&str]) -> User {
        let name = unique(tag);
        let mut cmd = Command::new("useradd");
        cmd.args(["--no-create-home", "--shell", "/usr/sbin/nologin"]);
        if !groups.is_empty() {
            cmd.arg("--groups").arg(groups.join(","));
        }
        run_ok(cmd.arg(&name));
        self.users.push(name.clone());
        User {
            uid: id_of("-u", &name),
            gid: id_of("-g", &name),
        }
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").arg(u).output();
        }
        for g in &self.groups {
            let _ = Command::new("groupdel").arg(g).output();
        }
    }
}

/// Runs `program args` as `user` (with its groups), from `/`.
fn as_user(user: &User, program: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--init-groups")
        .arg("--")
        .arg(program)
        .args(args)
        .current_dir("/")
        .env_remove("HOME")
        .output()
        .expect("setpriv")
}

/// `trustdeck-server <args> --socket <socket>` as `user`.
fn server_cli(user: &User, socket: &Path, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    let socket = socket.to_str().expect("utf-8 path");
    all.extend(["--socket", socket]);
    as_user(user, &bin("trustdeck-server"), &all)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A directory every user may enter, for sockets and files the users read.
fn open_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("td-access-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn create_args(spiffe_id: &str) -> Vec<&str> {
    vec![
        "entry",
        "create",
        "--spiffe-id",
        spiffe_id,
        "--parent-id",
        "spiffe://example.org/node/n1",
        "--selector",
        "unix:uid:1",
    ]
}

/// Without `socket_group`, configured uids make the socket `0666` and the uid check decides:
/// a viewer reads and is refused a change, an operator changes, a stranger is refused. Each
/// refusal is audited, a refusal repeated within a minute only once.
#[test]
fn configured_uids_reach_the_server_socket_and_refusals_are_audited_once_a_minute() {
    let mut accounts = Accounts::default();
    let viewer = accounts.user("v", &[]);
    let operator = accounts.user("o", &[]);
    let stranger = accounts.user("s", &[]);
    let (_run, run) = open_dir();
    let socket = run.join("sock").join("admin.sock");
    let server = ServerProc::start(&format!(
        "admin_socket = \"{}\"\nadmin_allowed_uids = [{}]\n[admin]\nviewer_uids = [{}]\n",
        socket.display(),
        operator.uid,
        viewer.uid
    ));
    let meta = std::fs::metadata(&socket).expect("socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);

    let shown = server_cli(&viewer, &socket, &["entry", "show"]);
    assert!(shown.status.success(), "viewer reads: {}", stderr(&shown));
    let refused = server_cli(&viewer, &socket, &create_args("spiffe://example.org/v"));
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(&format!("uid:{} is a viewer", viewer.uid)),
        "{}",
        stderr(&refused)
    );

    // Authority operations: a viewer shows them, every change is refused and changes
    // nothing (the same show, the same bundle).
    let show = ["authority", "x509", "show", "--output", "json"];
    let before = server_cli(&viewer, &socket, &show);
    assert!(before.status.success(), "viewer shows: {}", stderr(&before));
    let bundle_before = server.bundle_roots();
    let old_id = {
        let v: serde_json::Value = serde_json::from_slice(&before.stdout).expect("show json");
        v["authorities"][0]["id"].as_str().expect("id").to_string()
    };
    for op in [
        vec!["authority", "x509", "prepare"],
        vec!["authority", "x509", "activate", "--id", &old_id],
        vec!["authority", "x509", "taint", "--id", &old_id],
        vec!["authority", "x509", "revoke", "--id", &old_id, "--force"],
        vec!["authority", "jwt", "prepare"],
    ] {
        let out = server_cli(&viewer, &socket, &op);
        assert!(!out.status.success(), "{op:?} by a viewer");
        assert!(
            stderr(&out).contains(&format!("uid:{} is a viewer", viewer.uid)),
            "{op:?}: {}",
            stderr(&out)
        );
    }
    let after = server_cli(&viewer, &socket, &show);
    assert_eq!(after.stdout, before.stdout, "nothing changed");
    assert_eq!(server.bundle_roots(), bundle_before);

    // Federation: a viewer lists relationships; creating or refreshing one is refused.
    let listed = server_cli(&viewer, &socket, &["federation", "list"]);
    assert!(listed.status.success(), "viewer lists: {}", stderr(&listed));
    for op in [
        vec![
            "federation",
            "create",
            "--trust-domain",
            "p.test",
            "--endpoint-url",
            "https://p.test/",
            "--profile",
            "https_web",
        ],
        vec!["federation", "refresh", "--trust-domain", "p.test"],
    ] {
        let out = server_cli(&viewer, &socket, &op);
        assert!(
            stderr(&out).contains(&format!("uid:{} is a viewer", viewer.uid)),
            "{op:?}: {}",
            stderr(&out)
        );
    }

    let created = server_cli(&operator, &socket, &create_args("spiffe://example.org/op"));
    assert!(created.status.success(), "operator: {}", stderr(&created));
    let listed = server.cli_ok(&["entry", "show", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&listed).expect("json");
    let id = v
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|e| e["spiffe_id"] == "spiffe://example.org/op")
        })
        .and_then(|e| e["id"].as_str())
        .unwrap_or_else(|| panic!("the operator's entry: {listed}"))
        .to_string();
    let deleted = server_cli(&operator, &socket, &["entry", "delete", "--id", &id]);
    assert!(deleted.status.success(), "operator: {}", stderr(&deleted));

    for _ in 0..20 {
        let out = server_cli(&stranger, &socket, &["entry", "show"]);
        assert!(!out.status.success());
        let why = format!("uid {} may not use this admin socket", stranger.uid);
        assert!(stderr(&out).contains(&why), "{}", stderr(&out));
    }

    let stranger_rows = |rows: &[String]| {
        rows.iter()
            .filter(|r| r.starts_with(&format!("uid:{}|ListEntries|refused|", stranger.uid)))
            .count()
    };
    // Refusals are recorded off the request path: wait for every one the test expects.
    let expected: Vec<String> = [
        "CreateEntry",
        "PrepareAuthority",
        "TaintAuthority",
        "RevokeAuthority",
    ]
    .iter()
    .map(|m| format!("uid:{}|{m}|refused|", viewer.uid))
    .collect();
    let rows = wait_for(10, "the refusals in the audit log", || {
        let rows = server.audit_log();
        let all = expected
            .iter()
            .all(|p| rows.iter().any(|r| r.starts_with(p.as_str())));
        (stranger_rows(&rows) > 0 && all).then_some(rows)
    });
    assert_eq!(
        stranger_rows(&rows),
        1,
        "20 refusals, one record: {rows:#?}"
    );
    let has = |prefix: String| rows.iter().any(|r| r.starts_with(&prefix));
    assert!(
        has(format!("uid:{}|CreateEntry|refused|", viewer.uid)),
        "{rows:#?}"
    );
    for method in ["PrepareAuthority", "TaintAuthority", "RevokeAuthority"] {
        assert!(
            has(format!("uid:{}|{method}|refused|", viewer.uid)),
            "{method}: {rows:#?}"
        );
    }
    assert!(
        has(format!("uid:{}|entry.create|ok|", operator.uid)),
        "{rows:#?}"
    );
    assert!(
        has(format!(
            "uid:{}|entry.delete|ok|spiffe_id=spiffe://example.org/op parent_id=spiffe://example.org/node/n1",
            operator.uid
        )),
        "the deletion names what was deleted: {rows:#?}"
    );
    drop(accounts);
}

/// With `socket_group`, the socket is `0660` in that group: a member reaches it, anyone else
/// is refused by the file system with a message saying so. `check-config` names a group
/// that does not exist, and a socket the configured uids cannot reach.
#[test]
fn a_socket_group_lets_in_its_members_only_and_check_config_explains() {
    let mut accounts = Accounts::default();
    let (group, gid) = accounts.group("g");
    let viewer = accounts.user("v", &[&group]);
    let stranger = accounts.user("s", &[]);
    let (_run, run) = open_dir();
    let socket = run.join("admin.sock");
    let admin = format!(
        "[admin]\nviewer_uids = [{}]\nsocket_group = \"{group}\"\n",
        viewer.uid
    );
    let server = ServerProc::start(&format!("admin_socket = \"{}\"\n{admin}", socket.display()));
    let meta = std::fs::metadata(&socket).expect("socket");
    assert_eq!(
        (meta.permissions().mode() & 0o777, meta.gid()),
        (0o660, gid)
    );
    let shown = server_cli(&viewer, &socket, &["entry", "show"]);
    assert!(shown.status.success(), "member: {}", stderr(&shown));
    let refused = server_cli(&stranger, &socket, &["entry", "show"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("permission denied opening admin socket"),
        "{}",
        stderr(&refused)
    );
    drop(server);

    let check = |extra: &str| {
        let cfg = run.join("check.toml");
        std::fs::write(&cfg, server_config(&run, extra)).expect("config");
        Command::new(bin("trustdeck-server"))
            .args(["check-config", "--config"])
            .arg(&cfg)
            .output()
            .expect("check-config")
    };
    let unknown = check("[admin]\nsocket_group = \"td-no-such-group\"\n");
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("admin.socket_group \"td-no-such-group\": no such group"),
        "{}",
        stderr(&unknown)
    );
    // The default socket is in the data directory, which the server keeps 0700.
    let hidden = check(&format!("[admin]\nviewer_uids = [{}]\n", viewer.uid));
    let said = String::from_utf8_lossy(&hidden.stdout).into_owned();
    assert!(hidden.status.success(), "{}", stderr(&hidden));
    assert!(
        said.contains(&format!(
            "uid {} cannot reach it; set admin_socket to a path outside it",
            viewer.uid
        )),
        "{said}"
    );
    drop(accounts);
}

/// The agent's admin socket follows the same rules: its viewer watches it with `trustdeck
/// status`, a stranger is refused by the uid check (and the agent logs it).
#[test]
fn configured_uids_reach_the_agent_socket() {
    let mut accounts = Accounts::default();
    let viewer = accounts.user("v", &[]);
    let stranger = accounts.user("s", &[]);
    let (_run, run) = open_dir();
    let socket = run.join("agent-admin.sock");
    let server = ServerProc::start("");
    let token = server.token("10m");
    let agent = AgentProc::start(
        &server,
        &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
        &format!(
            "admin_socket = \"{}\"\n[admin]\nviewer_uids = [{}]\n",
            socket.display(),
            viewer.uid
        ),
    );
    let meta = wait_for(10, "the agent's admin socket", || {
        std::fs::metadata(&socket).ok()
    });
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);
    let fleet = run.join("fleet.json");
    std::fs::write(
        &fleet,
        serde_json::json!({
            "trust_domain": "example.org",
            "agents": [{"name": "a1", "admin": format!("unix://{}", socket.display())}],
        })
        .to_string(),
    )
    .expect("fleet file");
    let fleet = fleet.to_str().expect("utf-8");
    let status = |user: &User| {
        let out = as_user(
            user,
            &bin("trustdeck"),
            &[
                "status",
                "--output",
                "json",
                "--no-key-policy",
                "--fleet",
                fleet,
            ],
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)))
    };
    let v = status(&viewer);
    assert_eq!(v["daemons"][0]["reachable"], true, "{v}");
    let v = status(&stranger);
    assert_eq!(v["daemons"][0]["reachable"], false, "{v}");
    let why = format!("uid {} may not use this admin socket", stranger.uid);
    assert!(
        v["daemons"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&why)),
        "{v}"
    );
    // The agent has no audit log: it logs the refusal.
    let actor = format!("uid:{}", stranger.uid);
    wait_for(10, "the refusal in the agent's log", || {
        let log = agent.log();
        log.lines()
            .any(|l| l.contains("admin call refused") && l.contains(&actor))
            .then_some(())
    });
    drop(accounts);
}

/// Issue 12, defect 5: a change whose audit record cannot be written does not happen, and
/// the caller is told (before, the change stayed and the failed write was only logged).
#[test]
fn a_change_whose_audit_record_fails_is_not_made() {
    let server = ServerProc::start("");
    let sql = |q: &str| {
        let out = Command::new("sqlite3")
            .arg(server.data_dir.join("datastore.sqlite3"))
            .arg(q)
            .output()
            .expect("sqlite3");
        assert!(out.status.success(), "{}", stderr(&out));
    };
    sql("CREATE TRIGGER audit_full BEFORE INSERT ON audit_log \
         BEGIN SELECT RAISE(ABORT, 'audit log full'); END;");
    let refused = server.cli(&create_args("spiffe://example.org/unaudited"));
    assert!(!refused.status.success(), "the change went through");
    let token = server.cli(&["token", "generate"]);
    assert!(!token.status.success(), "the token was made");
    let listed = server.cli_ok(&["entry", "show", "--output", "json"]);
    assert_eq!(listed.trim(), "[]", "nothing was stored");
    sql("DROP TRIGGER audit_full;");
    server.cli_ok(&create_args("spiffe://example.org/audited"));
    let rows = server.audit_log();
    assert!(
        rows.iter().any(|r| r.contains("|entry.create|ok|")),
        "{rows:#?}"
    );
}
