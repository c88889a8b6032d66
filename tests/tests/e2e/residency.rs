//! Residency and purge completeness (issue 16), on PostgreSQL, by scanning
//! every text, JSON, UUID and binary column of every table:
//!
//! - what a cell holds for its tenants (configuration values, secret
//!   references) never reaches the global database: the cell ships its
//!   audit entries without their values (the global copy names the fields
//!   changed, carries a hash of the values and says which cell serves the
//!   full entry);
//! - a purge leaves, in either tier, only the tombstone and ids in the
//!   places listed in [`PURGE_ALLOWED`] (docs/DATA-MODEL.md, "What a purge
//!   leaves").

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::quota::{data_plane, define, hook, wait_synced};
use e2e::stack::{CREATE, code};
use e2e::{Backend, Options, Stack};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::{Value, json};
use shared::auth::Role;
use shared::quota::hooks::USAGE;

const EU: &str = "eu-west-1-a";
const LOG: &str = "query($f: AuditFilter) { auditLog(filter: $f, first: 200) { nodes { action tenantId target outcome detail diff changedFields valuesHash detailAt erased source seq } } }";
const VERIFY: &str = "query($cell: String) { verifyAuditChain(cellId: $cell) { valid checked firstBroken { seq reason } } }";
const VERIFY_CELL: &str = "{ verifyAuditChain { valid checked firstBroken { seq reason } } }";
const DEFINE_KEY: &str =
    "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }";
const UPDATE: &str =
    "mutation($i: UpdateTenantConfigInput!) { updateTenantConfig(input: $i) { version } }";
const SECRET: &str = "mutation($i: SetSecretRefInput!) { setSecretRef(input: $i) { version } }";

/// One place a needle was found: table, column and which needle.
type Hit = (String, String, &'static str);

/// Every column of the database at `url` that can hold text: text,
/// varchar, char, JSON, JSONB, UUID, arrays and bytea (PostgreSQL).
async fn text_columns(db: &sea_orm::DatabaseConnection) -> Vec<(String, String, String)> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS d \
             FROM information_schema.columns WHERE table_schema = 'public' \
             AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', \
             'uuid', 'ARRAY', 'bytea') ORDER BY 1, 2",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get::<String>("", "t").unwrap(),
                r.try_get::<String>("", "c").unwrap(),
                r.try_get::<String>("", "d").unwrap(),
            )
        })
        .collect()
}

/// Where each of `needles` occurs in the database at `url`: every table,
/// every column that can hold text, compared as text.
async fn scan(url: &str, needles: &[(&'static str, String)]) -> BTreeSet<Hit> {
    let db = Database::connect(url).await.expect("database");
    let columns = text_columns(&db).await;
    assert!(columns.len() > 20, "the scan sees the schema: {columns:?}");
    let mut hits = BTreeSet::new();
    for (table, column, kind) in &columns {
        let as_text = if kind == "bytea" {
            format!("encode(\"{column}\", 'escape')")
        } else {
            format!("\"{column}\"::text")
        };
        for (label, needle) in needles {
            let sql = format!(
                "SELECT COUNT(*) AS n FROM \"{table}\" WHERE strpos(lower({as_text}), lower($1)) > 0"
            );
            let n: i64 = db
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    sql,
                    [needle.clone().into()],
                ))
                .await
                .unwrap_or_else(|e| panic!("{table}.{column}: {e}"))
                .unwrap()
                .try_get("", "n")
                .unwrap();
            if n > 0 {
                hits.insert((table.clone(), column.clone(), *label));
            }
        }
    }
    let _ = db.close().await;
    hits
}

/// Retries `query` until it answers without errors (a registry key or
/// metric reaches the cell through a stream).
async fn until_ok(s: &Stack, token: &str, query: &str, vars: Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = s.gql(token, query, vars.clone()).await;
        if r.get("errors").is_none() {
            return r;
        }
        assert!(Instant::now() < deadline, "never succeeded: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The global audit log's entries for `f`, once `pred` holds.
async fn log_until(
    s: &Stack,
    token: &str,
    f: Value,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = s.gql(token, LOG, json!({ "f": f })).await;
        let nodes = log["data"]["auditLog"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{log}"))
            .clone();
        if pred(&nodes) {
            return nodes;
        }
        assert!(Instant::now() < deadline, "never held: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates an EU tenant with a key that does not name it.
async fn eu_tenant(s: &Stack, slug: &str, name: &str) -> String {
    let t = s
        .gql(
            &s.admin(),
            CREATE,
            json!({ "input": { "idempotencyKey": uuid::Uuid::new_v4().to_string(), "slug": slug,
                "name": name, "region": "eu-west-1", "plan": "pro" } }),
        )
        .await;
    assert_eq!(t["data"]["createTenant"]["status"], "ACTIVE", "{t}");
    t["data"]["createTenant"]["id"].as_str().unwrap().to_owned()
}

/// A config key of the registry: a free string, and one with a pattern.
async fn define_keys(s: &Stack) {
    let admin = s.admin();
    for def in [
        json!({ "key": "residency.note", "type": "STRING", "default": "none", "scopes": ["TENANT"] }),
        json!({ "key": "residency.code", "type": "STRING", "default": "aa", "scopes": ["TENANT"], "pattern": "[a-z]{2}" }),
    ] {
        let r = s.gql(&admin, DEFINE_KEY, json!({ "i": def })).await;
        assert!(r.get("errors").is_none(), "{r}");
    }
}

/// Writes `canary` into the tenant's configuration and a secret reference,
/// and makes a write that the cell refuses with a message quoting it.
async fn write_canaries(s: &Stack, id: &str, canary: &str) {
    let admin = s.admin();
    let w = until_ok(
        s,
        &admin,
        UPDATE,
        json!({ "i": { "tenantId": id, "idempotencyKey": "c1", "expectedVersion": 0,
            "set": [{ "key": "residency.note", "value": canary }] } }),
    )
    .await;
    assert_eq!(w["data"]["updateTenantConfig"]["version"], 1, "{w}");
    let r = s
        .gql(
            &admin,
            SECRET,
            json!({ "i": { "tenantId": id, "name": "db.password",
                "ref": format!("vault://secret/{canary}#password") } }),
        )
        .await;
    assert!(r.get("errors").is_none(), "{r}");
    // Refused by the cell with a message that quotes the value: the global
    // tier records the refusal's code, not the message.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let refused = s
            .gql(
                &admin,
                UPDATE,
                json!({ "i": { "tenantId": id, "idempotencyKey": "c2", "expectedVersion": 1,
                    "set": [{ "key": "residency.code", "value": canary }] } }),
            )
            .await;
        assert_eq!(code(&refused), Some("BAD_USER_INPUT"), "{refused}");
        // Until the cell has the key, it is refused as unknown.
        if refused.to_string().contains(canary) {
            break;
        }
        assert!(Instant::now() < deadline, "{refused}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_cells_tenant_values_never_reach_the_global_database() {
    let s = Stack::start(Backend::Postgres).await;
    define_keys(&s).await;
    let canary = format!("canary{}", uuid::Uuid::new_v4().simple());
    let id = eu_tenant(&s, "resident", "Resident GmbH").await;
    write_canaries(&s, &id, &canary).await;

    // The cell's entries reach the global log without their values.
    let sre = s.token("oncall", &[Role::Sre], &[], None);
    let shipped = log_until(&s, &sre, json!({ "tenantId": id, "source": EU }), |n| {
        ["updateTenantConfig", "setSecretRef"]
            .iter()
            .all(|a| n.iter().any(|e| e["action"] == *a && e["outcome"] == "OK"))
            && n.iter().any(|e| e["outcome"] == "REFUSED")
    })
    .await;
    let config = shipped
        .iter()
        .find(|e| e["action"] == "updateTenantConfig" && e["outcome"] == "OK")
        .unwrap();
    assert!(config["diff"].is_null(), "{config}");
    assert!(config["target"].is_null(), "{config}");
    assert_eq!(config["detail"], "{}", "{config}");
    assert_eq!(config["detailAt"], EU, "{config}");
    assert_eq!(config["erased"], false, "{config}");
    assert_eq!(
        config["valuesHash"].as_str().map(str::len),
        Some(64),
        "{config}"
    );
    let fields: Vec<&str> = config["changedFields"]
        .as_array()
        .unwrap_or_else(|| panic!("{config}"))
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"doc.tenant.residency.note") && fields.contains(&"version"),
        "{fields:?}"
    );
    for e in &shipped {
        assert!(
            !e.to_string().contains(&canary),
            "shipped with a value: {e}"
        );
    }

    // The cell's own audit query serves the full entry, by its seq.
    let seq = config["seq"].as_i64().unwrap();
    let (_, full) = s
        .gql_at(
            &s.cell(EU).url(),
            Some(&sre),
            LOG,
            json!({ "f": { "source": EU, "seq": seq } }),
        )
        .await;
    let full = &full["data"]["auditLog"]["nodes"];
    assert_eq!(full.as_array().map(Vec::len), Some(1), "{full}");
    let diff: Value = serde_json::from_str(full[0]["diff"].as_str().unwrap()).unwrap();
    assert_eq!(diff["after"]["doc"]["tenant"]["residency.note"], canary);
    assert_eq!(full[0]["valuesHash"], config["valuesHash"]);
    assert!(full[0]["detailAt"].is_null(), "{full}");

    // Both chains verify: the cell's, and the copy the global tier holds.
    let copy = s.gql(&sre, VERIFY, json!({ "cell": EU })).await;
    assert_eq!(copy["data"]["verifyAuditChain"]["valid"], true, "{copy}");
    let own = s.gql(&sre, VERIFY, json!({})).await;
    assert_eq!(own["data"]["verifyAuditChain"]["valid"], true, "{own}");
    let (_, cell) = s
        .gql_at(&s.cell(EU).url(), Some(&sre), VERIFY_CELL, json!({}))
        .await;
    assert_eq!(cell["data"]["verifyAuditChain"]["valid"], true, "{cell}");

    // Not one column of one table of the global database holds the canary.
    let hits = scan(&s.global_database_url, &[("canary", canary.clone())]).await;
    assert!(hits.is_empty(), "values reached the global tier: {hits:?}");
    // The cell holds it (the scan finds what is there).
    let hits = scan(&s.cell_database_urls[EU], &[("canary", canary.clone())]).await;
    for want in ["tenant_config", "secret_refs", "audit_log"] {
        assert!(hits.iter().any(|(t, _, _)| t == want), "{want}: {hits:?}");
    }
    s.stop().await;
}

/// Where a purged tenant's id may remain, and why; nothing else of it (no
/// slug but the tombstone's, no name, no value) may remain anywhere.
const PURGE_ALLOWED: &[(&str, &str, &str, &str)] = &[
    // (tier, table, column, needle)
    // The tombstone: its id and its slug (reserved for slug_reuse_after_secs).
    ("global", "tenants", "id", "id"),
    ("global", "tenants", "slug", "slug"),
    // The directory's change log (keys only, pruned), which followers read.
    ("global", "tenants_log", "key", "id"),
    // The saga's statuses and steps (input, actor, key and errors erased).
    ("global", "provisioning_sagas", "tenant_id", "id"),
    ("global", "provisioning_steps", "tenant_id", "id"),
    // The keys of requests about it (answers erased): a retry gets the tombstone.
    ("global", "idempotency_keys", "resource_id", "id"),
    // The audit chains: each entry's tenant id (values erased, hashes kept).
    ("global", "audit_log", "tenant_id", "id"),
    ("cell", "audit_log", "tenant_id", "id"),
    // The versions applied of the tombstone (`tenant-record:<id>`,
    // `tenant:<id>`), so no late event brings the tenant back.
    ("global", "sync_applied", "entity", "id"),
    ("cell", "sync_applied", "entity", "id"),
    // The tombstone's own events (DELETED) until pruned after delivery.
    ("global", "sync_outbox", "event", "id"),
    ("cell", "sync_outbox", "event", "id"),
    // The cell's tombstone, which refuses a late create of the id.
    ("cell", "purged_tenants", "id", "id"),
    // The cell's config change log (keys only, pruned).
    ("cell", "tenant_config_log", "key", "id"),
];

#[tokio::test]
async fn a_purge_leaves_only_the_tombstone_and_ids_in_either_tier() {
    let mut o = Options::new(Backend::Postgres);
    o.provisioning.max_grace_period = Duration::from_secs(3600);
    let s = Stack::start_with(o).await;
    let admin = s.admin();
    define_keys(&s).await;
    define(&s, "residency.calls", "PERIODIC", "CLOSED").await;
    wait_synced(&s, &["residency.calls"]).await;
    let canary = format!("canary{}", uuid::Uuid::new_v4().simple());
    let slug = format!("gone{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let name = format!("Name{}", uuid::Uuid::new_v4().simple());
    let member = format!("member{}", uuid::Uuid::new_v4().simple());
    let id = eu_tenant(&s, &slug, &name).await;
    write_canaries(&s, &id, &canary).await;
    // A project of its own, a member, usage with a canary key.
    let p = s
        .gql(
            &admin,
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { id } }",
            json!({ "i": { "tenantId": id, "name": "web", "idempotencyKey": "p1" } }),
        )
        .await;
    assert!(p.get("errors").is_none(), "{p}");
    let m = s
        .gql(
            &admin,
            "mutation($i: AddMemberInput!) { addMember(input: $i) { subject } }",
            json!({ "i": { "tenantId": id, "subject": member, "role": "member", "idempotencyKey": "m1" } }),
        )
        .await;
    assert_eq!(m["data"]["addMember"]["subject"], member.as_str(), "{m}");
    let tok = data_plane(&s, EU, &[]);
    let (st, u) = hook(
        &s,
        &s.cell(EU).url(),
        USAGE,
        Some(&tok),
        json!({ "events": [{ "tenantId": id, "metric": "residency.calls", "amount": 3,
            "idempotencyKey": format!("usage-{canary}"), "timestamp": chrono::Utc::now() }] }),
    )
    .await;
    assert_eq!(
        (st, &u["results"][0]["status"]),
        (200, &json!("accepted")),
        "{u}"
    );
    // The rollup reaches the global tier before the purge.
    let sre = s.token("oncall", &[Role::Sre], &[], None);
    let usage = "query($t: ID!, $f: DateTime!, $to: DateTime!) { usage(tenantId: $t, metric: \"residency.calls\", from: $f, to: $to, granularity: DAY) { amount } }";
    let now = chrono::Utc::now();
    let span = json!({ "t": id, "f": now - chrono::Duration::days(1), "to": now + chrono::Duration::days(1) });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = s.gql(&admin, usage, span.clone()).await;
        if r["data"]["usage"][0]["amount"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no rollup: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Everything the cell wrote reached the global log before the purge.
    log_until(&s, &sre, json!({ "tenantId": id, "source": EU }), |n| {
        n.iter().any(|e| e["action"] == "createProject")
    })
    .await;

    let needles = |with_slug: bool| {
        let mut n = vec![
            ("id", id.clone()),
            ("name", name.clone()),
            ("canary", canary.clone()),
            ("member", member.clone()),
        ];
        if with_slug {
            n.push(("slug", slug.clone()));
        }
        n
    };
    // Before the purge both tiers hold the tenant (the scan finds it).
    let before = scan(&s.global_database_url, &needles(true)).await;
    for want in [
        "members",
        "usage_rollups",
        "provisioning_sagas",
        "idempotency_keys",
    ] {
        assert!(
            before.iter().any(|(t, _, _)| t == want),
            "{want}: {before:?}"
        );
    }
    assert!(before.iter().any(|h| h.2 == "name"), "{before:?}");

    let d = s
        .gql(
            &admin,
            "mutation($i: DeprovisionTenantInput!) { deprovisionTenant(input: $i) { status } }",
            json!({ "i": { "tenantId": id, "idempotencyKey": "bye", "gracePeriodSeconds": 1 } }),
        )
        .await;
    assert_eq!(
        d["data"]["deprovisionTenant"]["status"], "DEPROVISIONING",
        "{d}"
    );
    let read = "query($id: ID!) { tenant(id: $id) { status } }";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.gql(&admin, read, json!({ "id": id })).await;
        if r["data"]["tenant"]["status"] == "DELETED" {
            break;
        }
        assert!(Instant::now() < deadline, "never purged: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let relays publish the purge's events and late consumers settle.
    tokio::time::sleep(Duration::from_secs(2)).await;

    for (tier, url) in [
        ("global", s.global_database_url.clone()),
        ("cell", s.cell_database_urls[EU].clone()),
    ] {
        let hits = scan(&url, &needles(true)).await;
        let left: Vec<&Hit> = hits
            .iter()
            .filter(|(t, c, n)| {
                !PURGE_ALLOWED
                    .iter()
                    .any(|a| a.0 == tier && a.1 == t && a.2 == c && a.3 == *n)
            })
            .collect();
        assert!(left.is_empty(), "{tier} kept the tenant's data: {left:?}");
    }

    // The audit chains still verify, the values of the tenant's entries
    // are gone on both tiers, and the log says so.
    let copy = s.gql(&sre, VERIFY, json!({ "cell": EU })).await;
    assert_eq!(copy["data"]["verifyAuditChain"]["valid"], true, "{copy}");
    let own = s.gql(&sre, VERIFY, json!({})).await;
    assert_eq!(own["data"]["verifyAuditChain"]["valid"], true, "{own}");
    let (_, cell) = s
        .gql_at(&s.cell(EU).url(), Some(&sre), VERIFY_CELL, json!({}))
        .await;
    assert_eq!(cell["data"]["verifyAuditChain"]["valid"], true, "{cell}");
    let global_log = s
        .gql(
            &sre,
            LOG,
            json!({ "f": { "tenantId": id, "source": "global" } }),
        )
        .await;
    let entries = global_log["data"]["auditLog"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{global_log}"))
        .clone();
    let create = entries
        .iter()
        .find(|e| e["action"] == "createTenant")
        .unwrap_or_else(|| panic!("{global_log}"));
    assert_eq!(
        (&create["erased"], &create["diff"], &create["detail"]),
        (&json!(true), &json!(null), &json!("{}")),
        "{create}"
    );
    assert!(
        create["changedFields"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "slug")),
        "{create}"
    );
    let (_, cell_log) = s
        .gql_at(
            &s.cell(EU).url(),
            Some(&sre),
            LOG,
            json!({ "f": { "tenantId": id } }),
        )
        .await;
    let cell_entries = cell_log["data"]["auditLog"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{cell_log}"))
        .clone();
    assert!(cell_entries.len() >= 4, "{cell_log}");
    assert!(
        cell_entries
            .iter()
            .all(|e| e["erased"] == true && e["diff"].is_null()),
        "{cell_log}"
    );
    // The tenant's members and usage are gone from the API too.
    let members = s
        .gql(
            &admin,
            "query($t: ID!) { tenant(id: $t) { status members { subject } } }",
            json!({ "t": id }),
        )
        .await;
    assert_eq!(members["data"]["tenant"]["status"], "DELETED", "{members}");
    assert!(
        !members.to_string().contains(&member),
        "a member outlived the purge: {members}"
    );
    let r = s.gql(&admin, usage, span).await;
    assert_eq!(r["data"]["usage"], json!([]), "{r}");
    s.stop().await;
}
