//! Registration entries.

use trustdeck_datastore::{Datastore, DatastoreError};

use crate::common::*;

pub async fn entries(ds: &Datastore) {
    let web = ds
        .create_entry(
            &new_entry(
                "spiffe://td.example/web",
                "spiffe://td.example/node/a",
                &["unix:uid:1000", "k8s:ns:prod", "unix:uid:1000"],
            ),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(web.id.len(), 32);
    assert!(web.id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(web.selectors, vec!["k8s:ns:prod", "unix:uid:1000"]);
    assert_eq!(web.dns_names, vec!["b.example", "a.example"]);
    assert_eq!(web.created_at, NOW);
    assert_eq!(ds.get_entry(&web.id).await.unwrap(), Some(web.clone()));

    let mut db = new_entry(
        "spiffe://td.example/db",
        "spiffe://td.example/node/b",
        &["unix:uid:70"],
    );
    db.downstream = true;
    db.namespaces = vec!["/prod/gcp/".to_owned(), "/staging/gcp/".to_owned()];
    db.federates_with = ["partner.test", "isolated.test", "partner.test"]
        .map(String::from)
        .to_vec();
    db.dns_names.clear();
    db.x509_ttl_secs = i64::MAX;
    db.jwt_ttl_secs = -1;
    let db = ds.create_entry(&db, NOW + 1).await.unwrap();
    assert!(db.downstream);
    assert_eq!(db.namespaces, vec!["/prod/gcp/", "/staging/gcp/"]);
    assert_eq!(db.federates_with, vec!["isolated.test", "partner.test"]);
    assert!(web.federates_with.is_empty());
    assert_eq!(db.x509_ttl_secs, i64::MAX);
    assert_eq!(ds.get_entry(&db.id).await.unwrap(), Some(db.clone()));

    // Same SPIFFE ID and parent, different selectors: a different entry.
    let web2 = ds
        .create_entry(
            &new_entry(
                "spiffe://td.example/web",
                "spiffe://td.example/node/a",
                &["k8s:ns:staging"],
            ),
            NOW + 2,
        )
        .await
        .unwrap();
    let temp = ds
        .create_entry(
            &new_entry(
                "spiffe://td.example/zz-temp",
                "spiffe://td.example/node/c",
                &[],
            ),
            NOW + 3,
        )
        .await
        .unwrap();
    assert!(temp.selectors.is_empty());

    // Duplicate: same SPIFFE ID, parent and selector set (in another order).
    let before = ds.list_entries().await.unwrap();
    let err = ds
        .create_entry(
            &new_entry(
                "spiffe://td.example/web",
                "spiffe://td.example/node/a",
                &["unix:uid:1000", "k8s:ns:prod"],
            ),
            NOW + 10,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DatastoreError::AlreadyExists { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("spiffe://td.example/web"), "{err}");
    assert_eq!(ds.list_entries().await.unwrap(), before);

    // Ordered by SPIFFE ID, then id.
    let mut webs = vec![web.clone(), web2.clone()];
    webs.sort_by(|a, b| a.id.cmp(&b.id));
    let expected = vec![db.clone(), webs[0].clone(), webs[1].clone(), temp.clone()];
    assert_eq!(before, expected);

    let by_a = ds
        .list_entries_by_parent(&["spiffe://td.example/node/a".to_owned()])
        .await
        .unwrap();
    assert_eq!(by_a, webs);
    let by_ab = ds
        .list_entries_by_parent(&[
            "spiffe://td.example/node/b".to_owned(),
            "spiffe://td.example/node/a".to_owned(),
            "spiffe://td.example/node/a".to_owned(),
            "spiffe://td.example/nobody".to_owned(),
        ])
        .await
        .unwrap();
    assert_eq!(by_ab, vec![db.clone(), webs[0].clone(), webs[1].clone()]);
    assert!(ds.list_entries_by_parent(&[]).await.unwrap().is_empty());
    assert_eq!(
        ds.list_entries_by_spiffe_id("spiffe://td.example/db")
            .await
            .unwrap(),
        vec![db.clone()]
    );
    assert_eq!(
        ds.list_entries_by_spiffe_id("spiffe://td.example/web")
            .await
            .unwrap(),
        webs
    );
    assert!(
        ds.list_entries_by_spiffe_id("spiffe://td.example/nobody")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        ds.list_entries_by_parent(&["spiffe://td.example/nobody".to_owned()])
            .await
            .unwrap()
            .is_empty()
    );
    // More parents than fit in one IN list.
    let many: Vec<String> = (0..1203)
        .map(|i| format!("spiffe://td.example/node/x{i}"))
        .chain(["spiffe://td.example/node/c".to_owned()])
        .collect();
    assert_eq!(
        ds.list_entries_by_parent(&many).await.unwrap(),
        vec![temp.clone()]
    );

    assert!(ds.delete_entry(&temp.id).await.unwrap());
    assert!(!ds.delete_entry(&temp.id).await.unwrap());
    assert_eq!(ds.get_entry(&temp.id).await.unwrap(), None);
    assert_eq!(ds.get_entry("no-such-id").await.unwrap(), None);
    assert_eq!(ds.list_entries().await.unwrap().len(), 3);

    // A deleted entry's identity can be registered again.
    let again = ds
        .create_entry(
            &new_entry(
                "spiffe://td.example/zz-temp",
                "spiffe://td.example/node/c",
                &[],
            ),
            NOW + 4,
        )
        .await
        .unwrap();
    assert_ne!(again.id, temp.id);
    assert!(ds.delete_entry(&again.id).await.unwrap());
}
