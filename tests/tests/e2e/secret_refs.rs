//! Secret references: only references are stored, each scheme is checked,
//! and the value never shows up in an error, a log or the audit.

use e2e::stack::{code, message};
use e2e::{Backend, Stack};
use serde_json::json;

const SET: &str =
    "mutation($i: SetSecretRefInput!) { setSecretRef(input: $i) { name ref version } }";

#[tokio::test]
async fn references_are_validated_versioned_and_never_leak() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let t = s.create_tenant("vaulted", "us-east-1").await;
    let id = t["id"].as_str().unwrap().to_owned();

    let ok = s.gql(&admin, SET, json!({ "i": { "tenantId": id, "name": "db.password", "ref": "vault://secret/data/vaulted#password" } })).await;
    assert_eq!(ok["data"]["setSecretRef"]["version"], 1, "{ok}");
    let same = s.gql(&admin, SET, json!({ "i": { "tenantId": id, "name": "db.password", "ref": "vault://secret/data/vaulted#password" } })).await;
    assert_eq!(
        same["data"]["setSecretRef"]["version"], 1,
        "the same reference again changes nothing"
    );
    let stale = s.gql(&admin, SET, json!({ "i": { "tenantId": id, "name": "db.password", "ref": "aws-sm://prod/vaulted/db" } })).await;
    assert_eq!(code(&stale), Some("CONFLICT"));
    let moved = s
        .gql(&admin, SET, json!({ "i": { "tenantId": id, "name": "db.password", "ref": "aws-sm://prod/vaulted/db", "expectedVersion": 1 } }))
        .await;
    assert_eq!(moved["data"]["setSecretRef"]["version"], 2, "{moved}");

    let secret = "s3cr3t-Hunter2-value";
    for bad in [
        secret.to_string(),
        format!("postgres://app:{secret}@db/app"),
        "k8s-secret://UPPER/x".into(),
    ] {
        let body = s
            .gql(
                &admin,
                SET,
                json!({ "i": { "tenantId": id, "name": "api.key", "ref": bad } }),
            )
            .await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
        assert_eq!(
            body.pointer("/errors/0/extensions/field").unwrap(),
            "input.ref"
        );
        assert!(
            !body.to_string().contains(secret),
            "the value leaked: {body}"
        );
        assert!(message(&body).contains("not a valid secret reference"));
    }

    let list = s
        .gql(
            &admin,
            "query($t: ID!) { secretRefs(tenantId: $t) { name ref version } }",
            json!({ "t": id }),
        )
        .await;
    assert_eq!(
        list["data"]["secretRefs"],
        json!([{ "name": "db.password", "ref": "aws-sm://prod/vaulted/db", "version": 2 }])
    );

    // Neither tier's audit holds the refused values.
    let audit = s
        .gql(
            &admin,
            "{ auditLog(filter: {action: \"setSecretRef\", source: \"global\"}) { nodes { outcome detail } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        audit["data"]["auditLog"]["nodes"].as_array().unwrap().len(),
        7,
        "{audit}"
    );
    assert!(!audit.to_string().contains(secret));
    let cell_audit = shared::audit::list(&s.cell("us-east-1-a").state.db, &Default::default(), 100)
        .await
        .unwrap();
    assert!(cell_audit.iter().all(|e| !e.detail.contains(secret)));
    s.stop().await;
}

#[tokio::test]
async fn a_deleted_tenant_s_configuration_is_frozen() {
    let s = Stack::start(Backend::Sqlite).await;
    let admin = s.admin();
    let t = s.create_tenant("leaving", "eu-west-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    use sea_orm::ConnectionTrait;
    s.cell("eu-west-1-a")
        .state
        .db
        .execute_unprepared("UPDATE tenants SET status = 'DEPROVISIONING' WHERE slug = 'leaving'")
        .await
        .unwrap();
    let body = s.gql(&admin, SET, json!({ "i": { "tenantId": id, "name": "db.password", "ref": "vault://secret/leaving" } })).await;
    assert_eq!(code(&body), Some("CONFLICT"), "{body}");
    assert!(message(&body).contains("DEPROVISIONING"));
    let update = s
        .gql(
            &admin,
            "mutation($i: UpdateTenantConfigInput!) { updateTenantConfig(input: $i) { version } }",
            json!({ "i": { "tenantId": id, "idempotencyKey": "k", "expectedVersion": 0, "set": [] } }),
        )
        .await;
    assert_eq!(code(&update), Some("CONFLICT"), "{update}");
    s.stop().await;
}
