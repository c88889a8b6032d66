//! Bad input to incidents, maintenance windows and impact queries gets a
//! clear BAD_USER_INPUT (or NOT_FOUND / FORBIDDEN) and changes nothing.

use chrono::{Duration, Utc};
use e2e::stack::{code, message};
use e2e::{Backend, Stack};
use serde_json::{Value, json};
use shared::auth::Role;

const SCHEDULE: &str =
    "mutation($i: ScheduleMaintenanceInput!) { scheduleMaintenance(input: $i) { id } }";
const CREATE_INCIDENT: &str =
    "mutation($i: CreateIncidentInput!) { createIncident(input: $i) { id } }";
const IMPACT: &str =
    "query($s: ImpactScope!, $a: String) { impactedTenants(scope: $s, after: $a) { totalCount } }";

fn field(v: &Value) -> Option<&str> {
    v["errors"][0]["extensions"]["field"].as_str()
}

fn window(scope: Value, starts: chrono::DateTime<Utc>, ends: chrono::DateTime<Utc>) -> Value {
    json!({ "i": { "scope": scope, "startsAt": starts, "endsAt": ends,
        "description": "work", "idempotencyKey": format!("mw-{}", uuid::Uuid::new_v4()) } })
}

#[tokio::test]
async fn bad_ops_input_is_refused_and_changes_nothing() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let now = Utc::now();
    let cell = json!({ "cellIds": ["eu-west-1-a"] });

    let cases = [
        (
            window(
                cell.clone(),
                now + Duration::hours(2),
                now + Duration::hours(1),
            ),
            "input.endsAt",
        ),
        (
            window(
                cell.clone(),
                now - Duration::hours(2),
                now + Duration::hours(1),
            ),
            "input.startsAt",
        ),
        (
            window(json!({}), now, now + Duration::hours(1)),
            "input.scope",
        ),
        (
            window(
                json!({ "cellIds": ["nowhere-1-a"] }),
                now,
                now + Duration::hours(1),
            ),
            "input.scope.cellIds",
        ),
        (
            window(
                json!({ "tenantIds": [uuid::Uuid::new_v4()] }),
                now,
                now + Duration::hours(1),
            ),
            "input.scope.tenantIds",
        ),
    ];
    for (input, f) in cases {
        let v = s.gql(&admin, SCHEDULE, input).await;
        assert_eq!(code(&v), Some("BAD_USER_INPUT"), "{v}");
        assert_eq!(field(&v), Some(f), "{v}");
    }
    let none = s
        .gql(&admin, "{ maintenanceWindows { id } }", json!({}))
        .await;
    assert_eq!(none["data"]["maintenanceWindows"], json!([]), "{none}");

    let incident = |title: &str, scope: Value| json!({ "i": { "title": title, "severity": "SEV3", "scope": scope, "idempotencyKey": format!("i-{title}-{}", uuid::Uuid::new_v4()) } });
    for (input, f) in [
        (incident("", cell.clone()), "input.title"),
        (incident("empty", json!({})), "input.scope"),
        (
            incident("flag", json!({ "flagKeys": ["no-such-flag"] })),
            "input.scope.flagKeys",
        ),
        (
            incident("region", json!({ "regions": ["mars-1"] })),
            "input.scope.regions",
        ),
    ] {
        let v = s.gql(&admin, CREATE_INCIDENT, input).await;
        assert_eq!(code(&v), Some("BAD_USER_INPUT"), "{v}");
        assert_eq!(field(&v), Some(f), "{v}");
    }
    let none = s.gql(&admin, "{ incidents { id } }", json!({})).await;
    assert_eq!(none["data"]["incidents"], json!([]), "{none}");

    // Impact scopes that are empty or name what does not exist.
    for (scope, f) in [
        (json!({}), "scope"),
        (json!({ "cellIds": ["nowhere-1-a"] }), "scope.cellIds"),
        (json!({ "flagKey": "no-such-flag" }), "scope.flagKey"),
        (
            json!({ "incidentId": uuid::Uuid::new_v4() }),
            "scope.incidentId",
        ),
        (
            json!({ "maintenanceWindowId": uuid::Uuid::new_v4() }),
            "scope.maintenanceWindowId",
        ),
        (json!({ "incidentId": "not-an-id" }), "scope.incidentId"),
        (json!({ "plans": ["platinum"] }), "scope.plans"),
        (
            json!({ "configKey": "no.such.key", "configValue": "1" }),
            "scope.configKey",
        ),
        (json!({ "configKey": "no.such.key" }), "scope.configValue"),
        (json!({ "flagVariant": "on" }), "scope.flagVariant"),
    ] {
        let v = s.gql(&admin, IMPACT, json!({ "s": scope })).await;
        assert_eq!(code(&v), Some("BAD_USER_INPUT"), "{scope}: {v}");
        assert_eq!(field(&v), Some(f), "{v}");
    }
    let cursor = s
        .gql(&admin, IMPACT, json!({ "s": cell, "a": "garbage" }))
        .await;
    assert_eq!(code(&cursor), Some("BAD_USER_INPUT"), "{cursor}");
    let unknown = s
        .gql(
            &admin,
            "query($id: ID!) { incident(id: $id) { id } }",
            json!({ "id": uuid::Uuid::new_v4() }),
        )
        .await;
    assert_eq!(code(&unknown), Some("NOT_FOUND"), "{unknown}");

    // Tenant roles cannot touch ops records.
    let tenant_admin = s.token("ta", &[Role::TenantAdmin], &[], None);
    let v = s
        .gql(
            &tenant_admin,
            CREATE_INCIDENT,
            incident("mine", json!({ "cellIds": ["eu-west-1-a"] })),
        )
        .await;
    assert_eq!(code(&v), Some("FORBIDDEN"), "{v}");
    assert!(message(&v).contains("createIncident"), "{v}");
    s.stop().await;
}
