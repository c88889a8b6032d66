//! The lifecycle streams: `global.directory` applied monotonically in the
//! home cell (duplicates, older versions and other cells' tenants are
//! no-ops), and the anti-entropy hooks (authoritative versions, re-enqueue).

use std::time::Duration;

use e2e::{Backend, Stack};
use sea_orm::{ConnectionTrait, Statement};
use shared::ids::TenantId;
use shared::lifecycle::{DIRECTORY_STREAM, DirectoryChange, directory_entity};
use shared::model::TenantStatus;
use shared::sync::{Event, applied};

fn event(id: uuid::Uuid, cell: &str, version: i64, status: TenantStatus) -> Event {
    let change = DirectoryChange {
        tenant_id: id,
        cell_id: cell.into(),
        status,
        purge_at: None,
    };
    Event::new(
        DIRECTORY_STREAM,
        &directory_entity(id),
        version,
        "global",
        serde_json::to_value(change).unwrap(),
    )
}

async fn cell_status(s: &Stack, id: TenantId) -> TenantStatus {
    cell::service::tenants::get(&s.cell("eu-west-1-a").state.db, id)
        .await
        .unwrap()
        .unwrap()
        .status
}

#[tokio::test]
async fn directory_events_apply_once_per_newer_version_and_only_for_this_cell() {
    let s = Stack::start(Backend::Sqlite).await;
    let id: TenantId = s.create_tenant("streamed", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let db = &s.cell("eu-west-1-a").state.db;
    let apply = |events: Vec<Event>| async move {
        cell::service::tenants::apply_directory(db, "eu-west-1-a", &events)
            .await
            .unwrap()
    };
    apply(vec![event(
        id.0,
        "eu-west-1-a",
        10,
        TenantStatus::Suspended,
    )])
    .await;
    assert_eq!(cell_status(&s, id).await, TenantStatus::Suspended);
    // A duplicate of version 10 and an older version 5 change nothing.
    apply(vec![
        event(id.0, "eu-west-1-a", 10, TenantStatus::Active),
        event(id.0, "eu-west-1-a", 5, TenantStatus::Active),
    ])
    .await;
    assert_eq!(cell_status(&s, id).await, TenantStatus::Suspended);
    // Another cell's tenant entry is not this cell's to apply.
    apply(vec![event(id.0, "us-east-1-a", 11, TenantStatus::Active)]).await;
    assert_eq!(cell_status(&s, id).await, TenantStatus::Suspended);
    assert_eq!(
        applied::current(db, &directory_entity(id.0)).await.unwrap(),
        Some(10)
    );
    apply(vec![event(id.0, "eu-west-1-a", 11, TenantStatus::Active)]).await;
    assert_eq!(cell_status(&s, id).await, TenantStatus::Active);
    s.stop().await;
}

#[tokio::test]
async fn anti_entropy_lists_authoritative_versions_and_reenqueues_one_entity() {
    let s = Stack::start(Backend::Postgres).await;
    let t = s.create_tenant("repaired", "eu-west-1").await;
    let id: TenantId = t["id"].as_str().unwrap().parse().unwrap();
    let entity = directory_entity(id.0);
    let versions =
        global::service::tenant_status::authoritative_versions(&s.global.state.db, "eu-west-1-a")
            .await
            .unwrap()
            .into_iter()
            .map(|(e, v, _)| (e, v))
            .collect::<Vec<_>>();
    assert_eq!(versions, vec![(entity.clone(), 1)], "{t}");
    let db = s.cell("eu-west-1-a").state.db.clone();
    // Activation reached the cell over the stream: it holds the same version.
    let mut got = None;
    for _ in 0..200 {
        got = applied::current(&db, &entity).await.unwrap();
        if got == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(got, Some(1));

    // Drift: the cell lost the applied version and holds a wrong status.
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "DELETE FROM sync_applied WHERE entity = $1",
        [entity.clone().into()],
    ))
    .await
    .unwrap();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE tenants SET status = 'SUSPENDED' WHERE id = $1",
        [id.0.into()],
    ))
    .await
    .unwrap();
    global::service::tenant_status::reenqueue(&s.global.state, id)
        .await
        .unwrap();
    let mut status = TenantStatus::Suspended;
    for _ in 0..200 {
        status = cell_status(&s, id).await;
        if status == TenantStatus::Active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        status,
        TenantStatus::Active,
        "re-enqueued event repaired the cell"
    );
    assert_eq!(applied::current(&db, &entity).await.unwrap(), Some(1));
    s.stop().await;
}
