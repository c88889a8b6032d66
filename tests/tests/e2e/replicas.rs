//! Several replicas of the global tier on one database and one Redis.

use e2e::stack::global_settings;
use e2e::ws::{connect, next_json, subscribe};
use e2e::{Backend, Stack, backing};
use serde_json::json;

/// A stack on PostgreSQL, and a second replica of its global tier.
async fn with_second_replica() -> (Stack, global::App) {
    let s = Stack::start(Backend::Postgres).await;
    let replica = global::build(global_settings(
        &s.global_database_url,
        &s.keys,
        &s.options,
        &s.redis_prefix,
    ))
    .await
    .expect("second replica starts");
    (s, replica)
}

#[tokio::test]
async fn a_subscriber_on_one_replica_hears_of_tenants_made_on_another() {
    let (s, replica) = with_second_replica().await;
    let (mut ws, ack) = connect(
        &replica.url(),
        "graphql-transport-ws",
        json!({ "Authorization": format!("Bearer {}", s.admin()) }),
    )
    .await;
    assert_eq!(ack["type"], "connection_ack");
    subscribe(
        &mut ws,
        "graphql-transport-ws",
        "1",
        "subscription { tenantEvents { kind tenant { slug } } }",
    )
    .await;
    // Made on the first replica; repeated until the subscription is live.
    let mut msg = serde_json::Value::Null;
    for i in 0..10 {
        s.create_tenant(&format!("cross-replica-{i}"), "us-east-1")
            .await;
        if let Ok(m) =
            tokio::time::timeout(std::time::Duration::from_secs(1), next_json(&mut ws)).await
        {
            msg = m;
            break;
        }
    }
    let slug = msg["payload"]["data"]["tenantEvents"]["tenant"]["slug"]
        .as_str()
        .unwrap_or_else(|| panic!("{msg}"))
        .to_owned();
    assert!(slug.starts_with("cross-replica-"), "{msg}");
    let made = slug
        .trim_start_matches("cross-replica-")
        .parse::<usize>()
        .unwrap()
        + 1;

    // The second replica reads the same directory.
    let v = s
        .gql_at(
            &replica.url(),
            Some(&s.admin()),
            "query($s: String!) { tenantBySlug(slug: $s) { name cell { id } } }",
            json!({ "s": slug }),
        )
        .await
        .1;
    assert_eq!(
        v["data"]["tenantBySlug"]["cell"]["id"], "us-east-1-a",
        "{v}"
    );

    // The stream lives under this test's own prefix.
    let client = redis::Client::open(backing::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len: usize = redis::cmd("XLEN")
        .arg(format!("{}:global:tenant-events", s.redis_prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, made, "one stream entry per tenant made");
    replica.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let (name, url) = backing::create_database().await;
    let keys = std::sync::Arc::new(
        shared::auth::Keys::hs256(
            &[e2e::stack::SECRET.into()],
            shared::auth::DEFAULT_ISSUER,
            shared::auth::DEFAULT_AUDIENCE,
        )
        .unwrap(),
    );
    let o = e2e::Options::new(Backend::Postgres);
    let prefix = backing::redis_prefix().await;
    let (a, b, c) = tokio::join!(
        global::build(global_settings(&url, &keys, &o, &prefix)),
        global::build(global_settings(&url, &keys, &o, &prefix)),
        global::build(global_settings(&url, &keys, &o, &prefix)),
    );
    for app in [a, b, c] {
        let app = app.expect("every replica starts");
        let ready = reqwest::get(format!("{}/readyz", app.url())).await.unwrap();
        assert_eq!(ready.status(), 200);
        app.stop().await;
    }
    backing::drop_databases(&[name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollout_progress_reaches_subscribers_of_every_replica() {
    let (s, replica) = with_second_replica().await;
    let t = s.create_tenant("progress-x", "eu-west-1").await;
    e2e::flags::boolean_flag(&s, "fanned").await;
    let started = s
        .gql(
            &s.admin(),
            &e2e::flags::start_rollout(),
            json!({ "i": { "flagKey": "fanned", "environment": "prod", "variant": "on",
                "stages": [{ "name": "canary", "cohort": { "tenantIds": [t["id"]] }, "soakSeconds": 3600 }],
                "idempotencyKey": "fan-1" } }),
        )
        .await;
    let id = started["data"]["startRollout"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_owned();
    let (mut ws, ack) = connect(
        &replica.url(),
        "graphql-transport-ws",
        json!({ "Authorization": format!("Bearer {}", s.admin()) }),
    )
    .await;
    assert_eq!(ack["type"], "connection_ack");
    subscribe(
        &mut ws,
        "graphql-transport-ws",
        "1",
        &format!("subscription {{ rolloutProgress(id: \"{id}\") {{ event state }} }}"),
    )
    .await;
    // Operated on the first replica (only it publishes PAUSED and RESUMED);
    // repeated until the subscription is live.
    let mut heard = None;
    'ops: for i in 0..10 {
        let name = if i % 2 == 0 {
            "pauseRollout"
        } else {
            "resumeRollout"
        };
        let r = s
            .gql(
                &s.admin(),
                &format!("mutation($id: ID!) {{ {name}(id: $id) {{ state }} }}"),
                json!({ "id": id }),
            )
            .await;
        assert!(r.get("errors").is_none(), "{r}");
        while let Ok(m) =
            tokio::time::timeout(std::time::Duration::from_secs(1), next_json(&mut ws)).await
        {
            let p = m["payload"]["data"]["rolloutProgress"].clone();
            if p["event"] == "PAUSED" || p["event"] == "RESUMED" {
                heard = Some(p);
                break 'ops;
            }
        }
    }
    let heard = heard.expect("the other replica's subscriber heard an operator's step");
    let want = if heard["event"] == "PAUSED" {
        "PAUSED"
    } else {
        "RUNNING"
    };
    assert_eq!(heard["state"], want, "{heard}");
    replica.stop().await;
    s.stop().await;
}

/// Each replica answers impact queries from its own copy of the directory,
/// which follows the directory's change log: a change made through one
/// replica is in the very next answer of the other, without waiting.
#[tokio::test]
async fn impact_answers_on_one_replica_see_changes_made_on_another_at_once() {
    let (s, replica) = with_second_replica().await;
    let ask = |scope: serde_json::Value| {
        let s = &s;
        let url = replica.url();
        async move {
            let v = s
                .gql_at(
                    &url,
                    Some(&s.admin()),
                    "query($s: ImpactScope!) { impactedTenants(scope: $s, first: 100) { totalCount tenants { edges { node { tenant { id } } } } } }",
                    json!({ "s": scope }),
                )
                .await
                .1;
            assert!(v.get("errors").is_none(), "{v}");
            let ids: Vec<String> = v["data"]["impactedTenants"]["tenants"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["tenant"]["id"].as_str().unwrap().to_owned())
                .collect();
            ids
        }
    };
    assert!(ask(json!({ "regions": ["us-east-1"] })).await.is_empty());
    let made = s.create_tenant("replica-impact", "us-east-1").await;
    let id = made["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_owned();
    // Placed and ACTIVE, as the first replica reads it.
    let mut version = 0;
    for _ in 0..100 {
        let v = s
            .gql(
                &s.admin(),
                "query($id: ID!) { tenant(id: $id) { status version } }",
                json!({ "id": id }),
            )
            .await;
        if v["data"]["tenant"]["status"] == "ACTIVE" {
            version = v["data"]["tenant"]["version"].as_i64().unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(version > 0, "the tenant never became ACTIVE");
    assert_eq!(
        ask(json!({ "regions": ["us-east-1"] })).await,
        vec![id.clone()]
    );
    assert_eq!(
        ask(json!({ "tenantVersion": version })).await,
        vec![id.clone()]
    );
    let suspended = s
        .gql(
            &s.admin(),
            "mutation($i: ChangeTenantStatusInput!) { suspendTenant(input: $i) { version } }",
            json!({ "i": { "tenantId": id, "expectedVersion": version, "idempotencyKey": "suspend-replica-impact" } }),
        )
        .await;
    let now = suspended["data"]["suspendTenant"]["version"]
        .as_i64()
        .unwrap_or_else(|| panic!("{suspended}"));
    assert!(ask(json!({ "tenantVersion": version })).await.is_empty());
    assert_eq!(ask(json!({ "tenantVersion": now })).await, vec![id.clone()]);
    replica.stop().await;
    s.stop().await;
}
