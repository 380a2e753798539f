//! The runbook execution journal: begin refused on a busy target (inside the transaction),
//! lock and update, listing, audit records committed with each change, corrupt rows.

use std::collections::BTreeMap;

use sqlx::Connection;
use trustdeck_datastore::{
    Begun, Datastore, DatastoreError, RunbookPhase, RunbookRecord, RunbookState,
};

use crate::common::*;

fn execution(id: &str, target: &str, at: i64) -> RunbookRecord {
    RunbookRecord {
        id: id.into(),
        runbook: "rotate-root-ca".into(),
        target: target.into(),
        started_by: "uid:0".into(),
        held_by: "uid:0".into(),
        session: "s1".into(),
        started_at: at,
        updated_at: at,
        state: RunbookState::Running,
        step: 0,
        step_id: String::new(),
        phase: RunbookPhase::Checking,
        steps: 3,
        inputs: BTreeMap::from([("server".to_string(), "root".to_string())]),
        saved: BTreeMap::new(),
        reason: String::new(),
        rolled_back: false,
        runbook_digest: "d".repeat(64),
    }
}

async fn begin(ds: &Datastore, rec: &RunbookRecord, audit_id: &str) -> Begun {
    let mut tx = ds.begin_audited().await.unwrap();
    let begun = tx.begin_runbook(rec).await.unwrap();
    if matches!(begun, Begun::Started(_)) {
        tx.commit(&audit(audit_id, NOW)).await.unwrap();
    }
    begun
}

pub async fn runbooks(ds: &Datastore) {
    assert!(ds.list_runbooks(true).await.unwrap().is_empty());
    let a = execution("rb-a", "root", NOW);
    assert_eq!(begin(ds, &a, "rb-audit-1").await, Begun::Started(a.clone()));
    assert_eq!(ds.get_runbook("rb-a").await.unwrap(), Some(a.clone()));

    // A second execution on the same target finds the first and stores nothing.
    let b = execution("rb-b", "root", NOW + 1);
    assert_eq!(begin(ds, &b, "unused").await, Begun::Busy(a.clone()));
    assert_eq!(ds.get_runbook("rb-b").await.unwrap(), None);

    // A heartbeat moves only the last record's time, for the holding session only.
    assert!(!ds.touch_runbook("rb-a", "s2", NOW + 5).await.unwrap());
    assert!(ds.touch_runbook("rb-a", "s1", NOW + 5).await.unwrap());
    let touched = ds.get_runbook("rb-a").await.unwrap().expect("rb-a");
    assert_eq!(touched.updated_at, NOW + 5);
    assert_eq!(
        RunbookRecord {
            updated_at: NOW,
            ..touched
        },
        a
    );
    let a = RunbookRecord {
        updated_at: NOW + 5,
        ..a
    };

    // A dropped change stores nothing.
    {
        let mut tx = ds.begin_audited().await.unwrap();
        let mut locked = tx.lock_runbook("rb-a").await.unwrap().expect("locked");
        locked.step = 2;
        tx.update_runbook(&locked).await.unwrap();
    }
    assert_eq!(ds.get_runbook("rb-a").await.unwrap(), Some(a.clone()));

    // Stopped still holds the target; finished frees it.
    let mut tx = ds.begin_audited().await.unwrap();
    assert_eq!(tx.lock_runbook("nope").await.unwrap(), None);
    let mut stopped = tx.lock_runbook("rb-a").await.unwrap().expect("locked");
    stopped.state = RunbookState::Stopped;
    stopped.phase = RunbookPhase::Failed;
    stopped.step = 1;
    stopped.step_id = "prepare".into();
    stopped.saved.insert("prepared".into(), "x509-1".into());
    stopped.reason = "timed out".into();
    stopped.rolled_back = true;
    stopped.updated_at = NOW + 5;
    tx.update_runbook(&stopped).await.unwrap();
    tx.commit(&audit("rb-audit-2", NOW + 5)).await.unwrap();
    assert_eq!(ds.get_runbook("rb-a").await.unwrap(), Some(stopped.clone()));
    assert_eq!(begin(ds, &b, "unused").await, Begun::Busy(stopped.clone()));

    let mut tx = ds.begin_audited().await.unwrap();
    let mut done = tx.lock_runbook("rb-a").await.unwrap().expect("locked");
    done.state = RunbookState::Succeeded;
    done.updated_at = NOW + 6;
    tx.update_runbook(&done).await.unwrap();
    tx.commit(&audit("rb-audit-3", NOW + 6)).await.unwrap();
    assert_eq!(begin(ds, &b, "rb-audit-4").await, Begun::Started(b.clone()));

    assert_eq!(ds.list_runbooks(false).await.unwrap(), vec![b.clone()]);
    assert_eq!(
        ds.list_runbooks(true).await.unwrap(),
        vec![done.clone(), b.clone()],
        "newest update first"
    );
    let audited: Vec<String> = ds
        .list_audit_links(100)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.record.id)
        .filter(|id| id.starts_with("rb-audit"))
        .collect();
    assert_eq!(audited.len(), 4, "each change with its record: {audited:?}");
}

/// Of many concurrent begins on one free target, exactly one stores its execution; every
/// other finds it.
pub async fn concurrent_begins(ds: &Datastore) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let ds = ds.clone();
            tokio::spawn(async move {
                let rec = execution(&format!("rb-c{i}"), "contended", NOW + 10);
                begin(&ds, &rec, &format!("rb-c-audit-{i}")).await
            })
        })
        .collect();
    let mut started = Vec::new();
    let mut busy = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Begun::Started(r) => started.push(r.id),
            Begun::Busy(h) => busy.push(h.id),
        }
    }
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(busy.iter().all(|h| *h == started[0]), "{busy:?}");
    let holding: Vec<_> = ds
        .list_runbooks(false)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.target == "contended")
        .collect();
    assert_eq!(holding.len(), 1);
}

pub async fn corrupt_runbooks(ds: &Datastore, url: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let insert = |id: &str, state: &str, inputs: &str| {
        format!(
            "INSERT INTO runbook_executions (id, runbook, target, started_by, held_by, session, \
             started_at, updated_at, state, step, step_id, phase, steps, inputs, saved, reason, \
             rolled_back, runbook_digest) VALUES ('{id}', 'r', 't-{id}', 'a', 'a', 's', 0, 0, \
             '{state}', 0, '', 'checking', 1, '{inputs}', '{{}}', '', 0, 'd')"
        )
    };
    sqlx::query(sqlx::AssertSqlSafe(insert("rb-bad-json", "running", "[1]")))
        .execute(&mut conn)
        .await
        .unwrap();
    match ds.get_runbook("rb-bad-json").await {
        Err(DatastoreError::Corrupt { what }) => {
            assert!(
                what.contains("rb-bad-json") && what.contains("inputs"),
                "{what}"
            )
        }
        other => panic!("bad inputs: {other:?}"),
    }
    sqlx::query(sqlx::AssertSqlSafe(insert("rb-bad-state", "paused", "{}")))
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        ds.get_runbook("rb-bad-state").await,
        Err(DatastoreError::UnknownValue {
            column: "state",
            ..
        })
    ));
    assert!(ds.list_runbooks(true).await.is_err());
    sqlx::query("DELETE FROM runbook_executions WHERE id LIKE 'rb-bad-%'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}
