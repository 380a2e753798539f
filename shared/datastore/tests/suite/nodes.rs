//! Attested nodes and join tokens.

use trustdeck_datastore::{AttestedNode, Datastore, DatastoreError, NodeCert};

use crate::common::*;

pub async fn nodes(ds: &Datastore) {
    assert_eq!(
        ds.get_node("spiffe://td.example/agent/1").await.unwrap(),
        None
    );
    let n1 = node("spiffe://td.example/agent/1", NOW);
    ds.upsert_node(&n1).await.unwrap();
    assert_eq!(ds.get_node(&n1.spiffe_id).await.unwrap(), Some(n1.clone()));

    // Re-attestation: everything but created_at is replaced.
    let mut n1b = node("spiffe://td.example/agent/1", NOW + 100);
    n1b.attestation_type = "x509pop".to_owned();
    n1b.selectors = vec!["x509pop:cn:agent1".to_owned(), "x509pop:ca:root".to_owned()];
    n1b.banned = true;
    ds.upsert_node(&n1b).await.unwrap();
    let stored = ds.get_node(&n1.spiffe_id).await.unwrap().unwrap();
    assert_eq!(
        stored,
        AttestedNode {
            created_at: NOW,
            ..n1b.clone()
        }
    );
    n1b.banned = false;
    ds.upsert_node(&n1b).await.unwrap();

    let n0 = node("spiffe://td.example/agent/0", NOW + 5);
    ds.upsert_node(&n0).await.unwrap();

    // Renewal: only the new certificate is written; the current one stays.
    let new = NodeCert {
        serial: "0abc".to_owned(),
        not_after: NOW + 7200,
    };
    assert!(
        ds.set_node_new_cert(&n1.spiffe_id, &new, NOW + 200)
            .await
            .unwrap()
    );
    assert!(
        !ds.set_node_new_cert("spiffe://td.example/agent/none", &new, NOW)
            .await
            .unwrap()
    );
    let stored = ds.get_node(&n1.spiffe_id).await.unwrap().unwrap();
    assert_eq!(stored.cert_serial, n1b.cert_serial);
    assert_eq!(stored.cert_not_after, n1b.cert_not_after);
    assert_eq!(stored.new_cert, Some(new.clone()));
    assert_eq!(stored.updated_at, NOW + 200);
    assert!(!stored.banned);
    // A second renewal whose answer was lost replaces the unused new one.
    let newer = NodeCert {
        serial: "0def".to_owned(),
        not_after: NOW + 7300,
    };
    ds.set_node_new_cert(&n1.spiffe_id, &newer, NOW + 210)
        .await
        .unwrap();
    // Only the pending serial promotes; the replaced one and the current one do not.
    for other in ["0abc", n1b.cert_serial.as_str(), ""] {
        assert!(
            !ds.promote_node_cert(&n1.spiffe_id, other, NOW + 220)
                .await
                .unwrap(),
            "{other:?} promoted"
        );
    }
    assert!(
        ds.promote_node_cert(&n1.spiffe_id, "0def", NOW + 230)
            .await
            .unwrap()
    );
    let stored = ds.get_node(&n1.spiffe_id).await.unwrap().unwrap();
    assert_eq!(
        (stored.cert_serial.as_str(), stored.cert_not_after),
        ("0def", NOW + 7300)
    );
    assert_eq!(stored.new_cert, None);
    assert_eq!(stored.updated_at, NOW + 230);
    // Promoted once: a second promotion of the same serial finds nothing pending.
    assert!(
        !ds.promote_node_cert(&n1.spiffe_id, "0def", NOW + 240)
            .await
            .unwrap()
    );
    // Re-attestation clears a pending new certificate.
    ds.set_node_new_cert(&n0.spiffe_id, &new, NOW + 6)
        .await
        .unwrap();
    ds.upsert_node(&n0).await.unwrap();
    assert_eq!(
        ds.get_node(&n0.spiffe_id).await.unwrap().unwrap().new_cert,
        None
    );

    assert!(
        ds.set_node_banned(&n1.spiffe_id, true, NOW + 300)
            .await
            .unwrap()
    );
    let banned = ds.get_node(&n1.spiffe_id).await.unwrap().unwrap();
    assert!(banned.banned);
    assert_eq!(banned.updated_at, NOW + 300);
    assert!(
        !ds.set_node_banned("spiffe://td.example/agent/none", true, NOW)
            .await
            .unwrap()
    );

    let listed = ds.list_nodes().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|n| n.spiffe_id.as_str())
            .collect::<Vec<_>>(),
        vec!["spiffe://td.example/agent/0", "spiffe://td.example/agent/1"]
    );
    assert_eq!(listed[0], n0);
    assert_eq!(listed[1], banned);

    // Evict.
    assert!(ds.delete_node(&n0.spiffe_id).await.unwrap());
    assert!(!ds.delete_node(&n0.spiffe_id).await.unwrap());
    assert_eq!(ds.get_node(&n0.spiffe_id).await.unwrap(), None);
    assert_eq!(ds.list_nodes().await.unwrap(), vec![banned]);
}

pub async fn join_tokens(ds: &Datastore) {
    ds.create_join_token("tok-once", NOW + 600, NOW)
        .await
        .unwrap();
    ds.create_join_token("tok-short", NOW + 10, NOW + 1)
        .await
        .unwrap();
    assert!(matches!(
        ds.create_join_token("tok-once", NOW + 900, NOW + 2).await,
        Err(DatastoreError::AlreadyExists { .. })
    ));

    ds.consume_join_token("tok-once", NOW + 5).await.unwrap();
    match ds.consume_join_token("tok-once", NOW + 6).await {
        Err(DatastoreError::TokenUsed { used_at }) => assert_eq!(used_at, NOW + 5),
        other => panic!("second consumption: {other:?}"),
    }

    // Valid while now < expires_at.
    match ds.consume_join_token("tok-short", NOW + 10).await {
        Err(DatastoreError::TokenExpired { expired_at }) => assert_eq!(expired_at, NOW + 10),
        other => panic!("expired token: {other:?}"),
    }
    match ds.consume_join_token("no-such-token", NOW).await {
        Err(DatastoreError::TokenNotFound) => {}
        other => panic!("unknown token: {other:?}"),
    }
    // An expired, unconsumed token stays unconsumed; a used token reports
    // TokenUsed even after expiry.
    assert!(matches!(
        ds.consume_join_token("tok-once", NOW + 10_000).await,
        Err(DatastoreError::TokenUsed { .. })
    ));

    // Concurrent consumption: exactly one winner.
    ds.create_join_token("tok-race", NOW + 600, NOW + 3)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let ds = ds.clone();
        tasks.push(tokio::spawn(async move {
            ds.consume_join_token("tok-race", NOW + 20 + i).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(DatastoreError::TokenUsed { .. }) => {}
            Err(e) => panic!("concurrent consumption: {e}"),
        }
    }
    assert_eq!(ok, 1);

    let tokens = ds.list_join_tokens().await.unwrap();
    let summary: Vec<_> = tokens
        .iter()
        .map(|t| {
            (
                t.token.as_str(),
                t.expires_at,
                t.used_at.is_some(),
                t.created_at,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("tok-once", NOW + 600, true, NOW),
            ("tok-short", NOW + 10, false, NOW + 1),
            ("tok-race", NOW + 600, true, NOW + 3),
        ]
    );
    assert_eq!(tokens[0].used_at, Some(NOW + 5));
    let race_used = tokens[2].used_at.unwrap();
    assert!((NOW + 20..NOW + 28).contains(&race_used));
}
