//! End-to-end: bundles of isolated trust domains moved by hand as signed files (issue 15,
//! seed 001 §3.3), between two real servers of two trust domains, through the CLI: the first
//! import confirmed by fingerprint, the receipt carried back, a root rotation carried by
//! continuity, and every refusal (tampered, replayed older, wrong trust domain, unknown key,
//! truncated) exiting non-zero with its reason while the stored bundle stays as it was.

use std::path::{Path, PathBuf};

use serde_json::Value;
use trustdeck_e2e::*;

fn server(td: &str) -> ServerProc {
    ServerProc::start(&format!("trust_domain = \"{td}\"\n"))
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn foreign(s: &ServerProc) -> Value {
    json(&s.cli_ok(&["bundle", "foreign", "--output", "json"]))
}

/// An import refused: non-zero, the rule and the reason named, nothing stored.
fn refused(s: &ServerProc, td: &str, file: &Path, fp: Option<&str>, rule: &str, why: &str) {
    let before = foreign(s);
    let out = s.cli(&import_args(td, file, fp));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{file:?} as {td} was accepted");
    assert!(
        err.contains(&format!("refused: {rule}: ")),
        "{file:?}: {err}"
    );
    assert!(err.contains(why), "{file:?}: {err}");
    assert_eq!(foreign(s), before, "{file:?} changed what is held");
}

fn held<'a>(foreign: &'a Value, td: &str) -> &'a Value {
    foreign["bundles"]
        .as_array()
        .expect("bundles")
        .iter()
        .find(|b| b["trust_domain"] == td)
        .unwrap_or_else(|| panic!("{td} in {foreign}"))
}

fn roots_of(export: &Value) -> Value {
    Value::Array(
        export["roots"]
            .as_array()
            .expect("roots")
            .iter()
            .map(|r| r["sha256"].clone())
            .collect(),
    )
}

#[test]
fn bundles_move_by_hand_between_isolated_trust_domains() {
    let a = server("a.test");
    let b = server("b.test");
    let carry = tempfile::tempdir().expect("tmp");
    let dir = carry.path();

    // Bootstrap: the first import needs the root's fingerprint, the one A printed.
    let (a1, ex1) = export_signed(&a, dir, "a1.bundle");
    assert_eq!(ex1["trust_domain"], "a.test");
    let a_root = signing_root(&ex1);
    let text_out = dir.join("text.bundle");
    let text = a.cli_ok(&[
        "bundle",
        "export",
        "--signed",
        "--out",
        text_out.to_str().expect("utf-8"),
    ]);
    assert!(
        text.contains(&format!("{a_root}  ")) && text.contains("(signs this file)"),
        "{text}"
    );
    let (_, b_ex) = export_signed(&b, dir, "unused.bundle");
    let b_root = signing_root(&b_ex);
    refused(
        &b,
        "a.test",
        &a1,
        None,
        "first import needs --fingerprint",
        "--fingerprint",
    );
    refused(
        &b,
        "a.test",
        &a1,
        Some(&b_root),
        "fingerprint mismatch",
        "do not import it",
    );
    let got = import_file(&b, "a.test", &a1, Some(&a_root.to_uppercase()));
    assert_eq!(got["bootstrap"], true, "{got}");
    assert_eq!(got["sequence"], ex1["sequence"]);
    assert_eq!(got["roots"], roots_of(&ex1));
    let receipt1 = PathBuf::from(got["receipt"].as_str().expect("receipt path"));
    assert_eq!(receipt1, dir.join("a1.bundle.receipt"));
    assert_eq!(held(&foreign(&b), "a.test")["source"], "import");

    // The receipt is checked against B's roots: A must hold B's bundle first.
    refused(
        &a,
        "b.test",
        &receipt1,
        None,
        "no bundle held for the peer",
        "first",
    );
    let (b1, _) = export_signed(&b, dir, "b1.bundle");
    import_file(&a, "b.test", &b1, Some(&b_root));
    let r = import_file(&a, "b.test", &receipt1, None);
    assert_eq!(r["kind"], "receipt", "{r}");
    let receipts = foreign(&a)["receipts"].clone();
    assert_eq!(receipts[0]["peer_trust_domain"], "b.test");
    assert_eq!(receipts[0]["sequence"], ex1["sequence"]);
    assert_eq!(
        receipts[0]["roots"],
        Value::Array(vec![a_root.clone().into()])
    );
    refused(
        &a,
        "b.test",
        &receipt1,
        None,
        "not newer than the bundle held",
        "replayed",
    );

    // A rotates its root: the prepared root travels signed by the active one (continuity).
    let prep = json(&a.cli_ok(&["authority", "x509", "prepare", "--output", "json"]));
    let new_id = prep["authority"]["id"].as_str().expect("id").to_string();
    let (a2, ex2) = export_signed(&a, dir, "a2.bundle");
    assert_eq!(signing_root(&ex2), a_root, "the old root still signs");
    assert_eq!(ex2["roots"].as_array().expect("roots").len(), 2);
    let got = import_file(&b, "a.test", &a2, None);
    assert_eq!(got["bootstrap"], false);
    assert_eq!(got["previous_sequence"], ex1["sequence"]);
    assert_eq!(got["roots"], roots_of(&ex2));
    let r = import_file(
        &a,
        "b.test",
        Path::new(got["receipt"].as_str().expect("receipt")),
        None,
    );
    assert_eq!(r["sequence"], ex2["sequence"]);
    assert_eq!(foreign(&a)["receipts"][0]["roots"], roots_of(&ex2));

    a.cli_ok(&["authority", "x509", "activate", "--id", &new_id]);
    let (a3, ex3) = export_signed(&a, dir, "a3.bundle");
    assert_ne!(signing_root(&ex3), a_root, "the new root signs");

    // Every refusal of the issue, through the CLI, before a3 is imported.
    let text = std::fs::read(&a3).expect("a3");
    let tampered = dir.join("tampered.bundle");
    let mut t = text.clone();
    // One byte of the signed payload (its base64), as a bad copy or an edit would change it.
    let at = String::from_utf8_lossy(&text)
        .find("\"payload\": \"")
        .expect("payload")
        + 200;
    t[at] = if t[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&tampered, &t).expect("write");
    refused(
        &b,
        "a.test",
        &tampered,
        None,
        "tampered file",
        "altered after it was signed",
    );
    let truncated = dir.join("truncated.bundle");
    std::fs::write(&truncated, &text[..text.len() * 2 / 3]).expect("write");
    refused(
        &b,
        "a.test",
        &truncated,
        None,
        "truncated file",
        "copy it again",
    );
    refused(
        &b,
        "c.test",
        &a3,
        None,
        "wrong trust domain",
        "not \"c.test\"",
    );
    refused(
        &b,
        "a.test",
        &a1,
        None,
        "not newer than the bundle held",
        "replayed",
    );
    let impostor = server("a.test");
    let (fake, _) = export_signed(&impostor, dir, "impostor.bundle");
    refused(
        &b,
        "a.test",
        &fake,
        None,
        "unknown signer",
        "not signed by a root we hold",
    );
    refused(
        &b,
        "b.test",
        &b1,
        None,
        "our own trust domain",
        "own trust domain",
    );

    // Signed by the new root, held since a2: accepted without a fingerprint.
    let got = import_file(&b, "a.test", &a3, None);
    assert_eq!(got["sequence"], ex3["sequence"]);
    assert_eq!(held(&foreign(&b), "a.test")["sequence"], ex3["sequence"]);
    refused(
        &b,
        "a.test",
        &a2,
        None,
        "not newer than the bundle held",
        "replayed",
    );

    // Every import and export is in the audit log, refused ones as failed.
    let log = b.audit_log();
    let ok = log
        .iter()
        .filter(|l| l.contains("|bundle.import|ok|"))
        .count();
    assert_eq!(ok, 3, "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("|bundle.import|failed: ")
            && l.contains("the file was altered after it was signed")),
        "{log:#?}"
    );
    assert!(
        a.audit_log()
            .iter()
            .any(|l| l.contains("|bundle.receipt|ok|"))
    );
}

#[test]
fn the_hsm_key_signs_the_export() {
    let hsm = trustdeck_e2e::hsm::SoftHsm::new("td-bundle", "td-pin-4410");
    let pin = hsm.pin_file("td-pin-4410");
    let env = hsm.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let extra = format!("trust_domain = \"h.test\"\n{}", hsm.key_manager_toml(&pin));
    let h = ServerProc::start_with_env(&extra, &env);
    let show = json(&h.cli_ok(&["authority", "x509", "show", "--output", "json"]));
    assert_eq!(show["authorities"][0]["key_storage"], "pkcs11", "{show}");
    let b = server("b.test");
    let carry = tempfile::tempdir().expect("tmp");
    let (file, ex) = export_signed(&h, carry.path(), "h.bundle");
    let got = import_file(&b, "h.test", &file, Some(&signing_root(&ex)));
    assert_eq!(got["bootstrap"], true, "{got}");
    // B's receipt, back on the HSM side (after H holds B's bundle).
    let (b1, b_ex) = export_signed(&b, carry.path(), "b.bundle");
    import_file(&h, "b.test", &b1, Some(&signing_root(&b_ex)));
    let receipt = Path::new(got["receipt"].as_str().expect("receipt")).to_path_buf();
    let r = import_file(&h, "b.test", &receipt, None);
    assert_eq!(r["sequence"], ex["sequence"], "{r}");
}

#[test]
fn a_federated_trust_domain_is_not_moved_by_file() {
    let (a, b) = (server("a.test"), server("b.test"));
    let dir = tempfile::tempdir().expect("tmp");
    let (file, exp) = export_signed(&b, dir.path(), "b.bundle");
    let pem = dir.path().join("b.pem");
    std::fs::write(&pem, b.cli_ok(&["bundle", "show", "--format", "pem"])).expect("pem");
    // A federates with B (its endpoint keeps B's bundle): a file does not replace it.
    a.cli_ok(&[
        "federation",
        "create",
        "--trust-domain",
        "b.test",
        "--endpoint-url",
        "https://127.0.0.1:9/",
        "--profile",
        "https_spiffe",
        "--endpoint-spiffe-id",
        &b.server_spiffe_id(),
        "--bootstrap-bundle",
        pem.to_str().expect("utf-8 path"),
    ]);
    refused(
        &a,
        "b.test",
        &file,
        Some(&signing_root(&exp)),
        "kept by a federation relationship",
        "federation delete --trust-domain b.test",
    );
}

/// A receipt lost on its way back is written again; a decommissioned peer's bundle is
/// forgotten, never while an entry federates with it, and its receipt record goes with it.
#[test]
fn a_lost_receipt_is_reissued_and_a_peer_forgotten() {
    let a = server("a.test");
    let b = server("b.test");
    let carry = tempfile::tempdir().expect("tmp");
    let dir = carry.path();
    let (b1, b_ex) = export_signed(&b, dir, "b1.bundle");
    import_file(&a, "b.test", &b1, Some(&signing_root(&b_ex)));
    let (a1, a_ex) = export_signed(&a, dir, "a1.bundle");
    let got = import_file(&b, "a.test", &a1, Some(&signing_root(&a_ex)));
    // The receipt is lost; the same file cannot be imported again (not newer).
    std::fs::remove_file(got["receipt"].as_str().expect("receipt")).expect("lose it");
    refused(
        &b,
        "a.test",
        &a1,
        None,
        "not newer than the bundle held",
        "",
    );
    let again = dir.join("again.receipt");
    let out = b.cli_ok(&[
        "bundle",
        "receipt",
        "--trust-domain",
        "a.test",
        "--out",
        again.to_str().expect("utf-8"),
    ]);
    assert!(
        out.contains(&format!("sequence {}", a_ex["sequence"])),
        "{out}"
    );
    let r = import_file(&a, "b.test", &again, None);
    assert_eq!(r["kind"], "receipt", "{r}");
    assert_eq!(foreign(&a)["receipts"][0]["sequence"], a_ex["sequence"]);
    // No receipt is due for a trust domain never imported.
    let none = b.cli(&[
        "bundle",
        "receipt",
        "--trust-domain",
        "c.test",
        "--out",
        "/dev/null",
    ]);
    assert!(!none.status.success());

    // Forget: refused while an entry federates with it, then done, receipt record included.
    let token = a.token("10m");
    let parent = format!("spiffe://a.test/trustdeck/agent/join_token/{token}");
    let entry = federating_entry(&a, &parent, "spiffe://a.test/w", &["b.test"]);
    assert!(
        entry.status.success(),
        "{}",
        String::from_utf8_lossy(&entry.stderr)
    );
    let out = a.cli(&["bundle", "forget", "--trust-domain", "b.test"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("refused: entries federate with it"),
        "{err}"
    );
    assert_eq!(held(&foreign(&a), "b.test")["sequence"], b_ex["sequence"]);
    let id = json(&a.cli_ok(&["entry", "show", "--output", "json"]))[0]["id"]
        .as_str()
        .expect("entry id")
        .to_string();
    a.cli_ok(&["entry", "delete", "--id", &id]);
    a.cli_ok(&["bundle", "forget", "--trust-domain", "b.test"]);
    let after = foreign(&a);
    assert_eq!(after["bundles"], serde_json::json!([]), "{after}");
    assert_eq!(after["receipts"], serde_json::json!([]), "{after}");
    assert!(a.audit_log().join("\n").contains("bundle.forget"));
    assert!(b.audit_log().join("\n").contains("bundle.receipt.reissue"));
}
