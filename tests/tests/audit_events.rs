//! End-to-end: every audit record the server appends reaches its `Watch` stream as an event
//! naming the record's seq, so a console user finds it in `audit list` (issue 13, "the
//! console's events include audit records"): a start with `--reinitialize`, an operator's
//! change, a failed call.

use std::collections::BTreeMap;
use std::time::Duration;

use trustdeck_e2e::*;
use trustdeck_proto::admin::observe_client::ObserveClient;
use trustdeck_proto::admin::watch_message::Body;
use trustdeck_proto::admin::*;

type Stream = tonic::Streaming<WatchMessage>;

/// The audit events (seq → event) the stream has sent so far, snapshot history included.
async fn audit_events_until(
    s: &mut Stream,
    seen: &mut BTreeMap<u64, Event>,
    done: impl Fn(&BTreeMap<u64, Event>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(seen) {
        let m = tokio::time::timeout_at(deadline, s.message())
            .await
            .unwrap_or_else(|_| panic!("audit events missing after 20 s; got {seen:?}"))
            .expect("stream ok")
            .expect("stream open");
        let events = match m.body {
            Some(Body::Snapshot(snap)) => snap.events,
            Some(Body::Delta(d)) => d.events,
            _ => Vec::new(),
        };
        for e in events {
            if e.audit_seq != 0 {
                assert_eq!(e.kind_wire(), EventKind::OperatorAction, "{e:?}");
                assert!(
                    seen.insert(e.audit_seq, e.clone()).is_none(),
                    "audit record {} told twice",
                    e.audit_seq
                );
            }
        }
    }
}

fn has_action(seen: &BTreeMap<u64, Event>, action: &str) -> bool {
    seen.values().any(|e| e.message.contains(action))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audit_record_reaches_watch_naming_its_seq() {
    // A server re-initialised on an emptied datastore: its start is an audit record.
    let mut server = ServerProc::start("");
    server.stop();
    let db = server.data_dir.join("datastore.sqlite3");
    std::fs::write(&db, b"").expect("truncate the datastore");
    for f in ["datastore.sqlite3-wal", "datastore.sqlite3-shm"] {
        let _ = std::fs::remove_file(server.data_dir.join(f));
    }
    server.run_args = vec!["--reinitialize".into()];
    server.spawn();

    let channel =
        trustdeck_transport::connect::watch_channel_uds(server.info().admin_socket.clone())
            .expect("channel");
    let mut c = ObserveClient::new(channel).max_decoding_message_size(64 << 20);
    let mut s = c.watch(WatchRequest {}).await.expect("watch").into_inner();
    let mut seen = BTreeMap::new();
    audit_events_until(&mut s, &mut seen, |seen| {
        has_action(seen, "server.reinitialize")
    })
    .await;

    // An operator's change and a failed call, each told once with its seq.
    server.create_entry(
        "spiffe://example.org/trustdeck/agent/x",
        "spiffe://example.org/audit/one",
    );
    let failed = server.cli(&["entry", "delete", "--id", "no-such-entry"]);
    assert!(!failed.status.success());
    audit_events_until(&mut s, &mut seen, |seen| {
        has_action(seen, "entry.create") && has_action(seen, "entry.delete")
    })
    .await;

    // Each event names a record `audit list` shows with that seq, and says what it says.
    let listed: serde_json::Value = serde_json::from_str(
        &server.cli_ok(&["audit", "list", "--limit", "1000", "--output", "json"]),
    )
    .expect("audit json");
    let records = listed.as_array().expect("an array");
    for (seq, e) in &seen {
        let r = records
            .iter()
            .find(|r| r["seq"].as_u64() == Some(*seq))
            .unwrap_or_else(|| panic!("event names record {seq}, which audit list lacks: {e:?}"));
        let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        assert!(
            e.message.starts_with(&format!(
                "audit #{seq} {}: {}",
                field("actor"),
                field("action")
            )),
            "{e:?} vs {r}"
        );
        assert!(e.message.contains(&field("outcome")), "{e:?} vs {r}");
    }
    let delete = seen
        .values()
        .find(|e| e.message.contains("entry.delete"))
        .expect("told");
    assert_eq!(
        delete.severity_wire(),
        Severity::Warning,
        "a failed call warns"
    );
    assert!(delete.message.contains("failed"), "{delete:?}");
    // Every chained record since the start was told: the seqs have no gap.
    let seqs: Vec<u64> = seen.keys().copied().collect();
    let first = seqs[0];
    assert_eq!(
        seqs,
        (first..first + seqs.len() as u64).collect::<Vec<_>>(),
        "no record skipped"
    );
}
