//! The audit hash chain against rows tampered with by SQL: the first bad record is named.

use sqlx::{AnyConnection, AssertSqlSafe, Connection};
use trustdeck_datastore::Datastore;
use trustdeck_datastore::DatastoreError;
use trustdeck_datastore::chain::{
    ChainBreak, ChainedRecord, Checkpoint, CheckpointBreak, verify_checkpoints,
};

use crate::common::*;

async fn exec(conn: &mut AnyConnection, sql: String) {
    sqlx::query(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .unwrap();
}

async fn stored(ds: &Datastore, id: &str) -> ChainedRecord {
    let (records, _) = ds.audit_chain().await.unwrap();
    records.into_iter().find(|c| c.record.id == id).unwrap()
}

async fn reinsert(conn: &mut AnyConnection, c: &ChainedRecord) {
    let r = &c.record;
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, target, detail, outcome, seq, prev_hash, \
         hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&r.id)
    .bind(r.at)
    .bind(&r.actor)
    .bind(&r.action)
    .bind(&r.target)
    .bind(&r.detail)
    .bind(&r.outcome)
    .bind(c.seq)
    .bind(&c.prev_hash)
    .bind(&c.hash)
    .execute(&mut *conn)
    .await
    .unwrap();
}

/// Issue 13: edit, reorder, delete and truncate records by SQL; `verify_audit` names the
/// first bad one each time, and the restored log verifies again.
pub async fn tampered_chain(ds: &Datastore, url: &str) {
    let before = ds.verify_audit().await.unwrap().expect("intact so far");
    assert!(before > 0, "the suite's records are chained");
    for (i, id) in ["chain-a", "chain-b", "chain-c", "chain-d"]
        .iter()
        .enumerate()
    {
        ds.append_audit(&audit(id, NOW + 1000 + i as i64))
            .await
            .unwrap();
    }
    let intact = ds.verify_audit().await.unwrap();
    assert_eq!(intact, Ok(before + 4));
    let [a, b, c, d] = [
        stored(ds, "chain-a").await,
        stored(ds, "chain-b").await,
        stored(ds, "chain-c").await,
        stored(ds, "chain-d").await,
    ];
    assert_eq!((a.seq, d.seq), (before + 1, before + 4));

    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url).await.unwrap();

    // Edited: one field changed.
    exec(
        &mut conn,
        "UPDATE audit_log SET outcome = 'denied' WHERE id = 'chain-b'".into(),
    )
    .await;
    assert_eq!(
        ds.verify_audit().await.unwrap(),
        Err(ChainBreak::Edited { seq: b.seq })
    );
    exec(
        &mut conn,
        "UPDATE audit_log SET outcome = 'ok' WHERE id = 'chain-b'".into(),
    )
    .await;
    assert_eq!(ds.verify_audit().await.unwrap(), intact);

    // Reordered: two records swap places.
    let swap = |x: i64, y: i64| {
        [
            format!("UPDATE audit_log SET seq = -1 WHERE seq = {x}"),
            format!("UPDATE audit_log SET seq = {x} WHERE seq = {y}"),
            format!("UPDATE audit_log SET seq = {y} WHERE seq = -1"),
        ]
    };
    for sql in swap(a.seq, c.seq) {
        exec(&mut conn, sql).await;
    }
    assert_eq!(
        ds.verify_audit().await.unwrap(),
        Err(ChainBreak::OutOfOrder {
            seq: a.seq,
            belongs_at: c.seq
        })
    );
    for sql in swap(a.seq, c.seq) {
        exec(&mut conn, sql).await;
    }
    assert_eq!(ds.verify_audit().await.unwrap(), intact);

    // Deleted from the middle.
    exec(
        &mut conn,
        "DELETE FROM audit_log WHERE id = 'chain-b'".into(),
    )
    .await;
    assert_eq!(
        ds.verify_audit().await.unwrap(),
        Err(ChainBreak::Missing { seq: b.seq })
    );
    reinsert(&mut conn, &b).await;
    assert_eq!(ds.verify_audit().await.unwrap(), intact);

    // Truncated: the last two records gone.
    exec(
        &mut conn,
        "DELETE FROM audit_log WHERE id IN ('chain-c', 'chain-d')".into(),
    )
    .await;
    let found = ds.verify_audit().await.unwrap();
    assert_eq!(
        found,
        Err(ChainBreak::Truncated {
            last: b.seq,
            head: d.seq
        })
    );
    assert_eq!(found.unwrap_err().seq(), c.seq);
    reinsert(&mut conn, &c).await;
    reinsert(&mut conn, &d).await;
    assert_eq!(ds.verify_audit().await.unwrap(), intact);
    conn.close().await.unwrap();
}

/// Concurrent appends never fork the chain: every one gets its own place.
pub async fn concurrent_appends(ds: &Datastore) {
    let before = ds.verify_audit().await.unwrap().expect("intact so far");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let ds = ds.clone();
            tokio::spawn(async move {
                ds.append_audit(&audit(&format!("conc-{i}"), NOW + 2000))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(ds.verify_audit().await.unwrap(), Ok(before + 16));
}

/// Issue 13: a checkpoint is stored and read back; deleting the records after it and moving
/// the head back by SQL fools the chain but not the checkpoint.
pub async fn checkpoints(ds: &Datastore, url: &str) {
    for id in ["cp-a", "cp-b", "cp-c"] {
        ds.append_audit(&audit(id, NOW + 3000)).await.unwrap();
    }
    let head = ds.audit_head().await.unwrap();
    let cp = Checkpoint {
        seq: head.seq,
        hash: head.hash.clone(),
        at: NOW + 3001,
        signer: vec![0x30, 0x00, 0xff],
        signature: b"sig".to_vec(),
    };
    let before = ds.last_checkpoint_seq().await.unwrap();
    ds.append_checkpoint(&cp).await.unwrap();
    assert!(matches!(
        ds.append_checkpoint(&cp).await,
        Err(DatastoreError::AlreadyExists { .. })
    ));
    assert_eq!(ds.last_checkpoint_seq().await.unwrap(), head.seq);
    assert!(before < head.seq);
    let cps = ds.audit_checkpoints().await.unwrap();
    assert_eq!(cps.last(), Some(&cp));
    let sig_ok = |c: &Checkpoint| c.signature == b"sig";
    let (records, _) = ds.audit_chain().await.unwrap();
    assert_eq!(verify_checkpoints(&records, &cps, sig_ok), Ok(cps.len()));

    let [b, c] = [stored(ds, "cp-b").await, stored(ds, "cp-c").await];
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url).await.unwrap();
    exec(
        &mut conn,
        "DELETE FROM audit_log WHERE id IN ('cp-b', 'cp-c')".into(),
    )
    .await;
    exec(
        &mut conn,
        format!(
            "UPDATE audit_head SET seq = {}, hash = '{}' WHERE id = 'audit'",
            b.seq - 1,
            b.prev_hash
        ),
    )
    .await;
    let (records, _) = ds.audit_chain().await.unwrap();
    assert_eq!(
        ds.verify_audit().await.unwrap(),
        Ok(b.seq - 1),
        "the chain alone is fooled"
    );
    assert_eq!(
        verify_checkpoints(&records, &cps, sig_ok),
        Err(CheckpointBreak::TruncatedAfter {
            seq: c.seq,
            last: b.seq - 1
        })
    );
    reinsert(&mut conn, &b).await;
    reinsert(&mut conn, &c).await;
    exec(
        &mut conn,
        format!(
            "UPDATE audit_head SET seq = {}, hash = '{}' WHERE id = 'audit'",
            head.seq, head.hash
        ),
    )
    .await;
    assert_eq!(ds.verify_audit().await.unwrap(), Ok(head.seq));
    conn.close().await.unwrap();
}
