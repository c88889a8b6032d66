//! Projects and environments through the global API, and config writes
//! that must name a project and environment the tenant has.

use e2e::stack::code;
use e2e::{Backend, Stack};
use serde_json::{Value, json};
use shared::auth::Role;

const PROJECT: &str = "mutation($i: CreateProjectInput!) { createProject(input: $i) { id name version environments { name } } }";
const ENVIRONMENT: &str = "mutation($i: CreateEnvironmentInput!) { createEnvironment(input: $i) { id name version environments { name } } }";
const PROJECTS: &str =
    "query($id: ID!) { tenant(id: $id) { projects { id name version environments { name } } } }";
const CONFIG: &str =
    "mutation($i: UpdateTenantConfigInput!) { updateTenantConfig(input: $i) { version } }";

fn names(p: &Value) -> Vec<String> {
    let mut v: Vec<String> = p["environments"]
        .as_array()
        .unwrap_or_else(|| panic!("{p}"))
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

async fn projects(s: &Stack, id: &str) -> Value {
    s.gql(&s.admin(), PROJECTS, json!({ "id": id })).await["data"]["tenant"]["projects"].clone()
}

#[tokio::test]
async fn projects_and_environments_are_made_once_and_checked() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let id = s.create_tenant("projects", "us-east-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mk = |name: &str, key: &str| json!({ "i": { "tenantId": id, "name": name, "idempotencyKey": key } });

    let web = s.gql(&admin, PROJECT, mk("web", "p1")).await;
    let web = &web["data"]["createProject"];
    assert_eq!(web["id"], "web", "{web}");
    assert_eq!(web["version"], 1);
    assert_eq!(names(web), ["dev", "prod", "stage"]);
    // A retry with the same key answers the same; another key is a CONFLICT.
    let again = s.gql(&admin, PROJECT, mk("web", "p1")).await;
    assert_eq!(again["data"]["createProject"]["id"], "web", "{again}");
    let dup = s.gql(&admin, PROJECT, mk("web", "p2")).await;
    assert_eq!(code(&dup), Some("CONFLICT"), "{dup}");
    let reused = s.gql(&admin, PROJECT, mk("api", "p1")).await;
    assert_eq!(code(&reused), Some("CONFLICT"), "{reused}");
    let bad = s.gql(&admin, PROJECT, mk("Not A Label", "p3")).await;
    assert_eq!(code(&bad), Some("BAD_USER_INPUT"), "{bad}");
    assert_eq!(
        bad.pointer("/errors/0/extensions/field")
            .and_then(|f| f.as_str()),
        Some("input.name")
    );
    assert_eq!(projects(&s, &id).await.as_array().unwrap().len(), 2);

    let env = |name: &str, key: &str, expected: Option<i64>| json!({ "i": { "tenantId": id, "projectId": "web", "name": name, "idempotencyKey": key, "expectedVersion": expected } });
    let qa = s.gql(&admin, ENVIRONMENT, env("qa", "e1", Some(1))).await;
    let qa = &qa["data"]["createEnvironment"];
    assert_eq!(qa["version"], 2, "{qa}");
    assert_eq!(names(qa), ["dev", "prod", "qa", "stage"]);
    let replay = s.gql(&admin, ENVIRONMENT, env("qa", "e1", Some(1))).await;
    assert_eq!(
        replay["data"]["createEnvironment"]["version"], 2,
        "{replay}"
    );
    let stale = s.gql(&admin, ENVIRONMENT, env("perf", "e2", Some(1))).await;
    assert_eq!(code(&stale), Some("CONFLICT"), "{stale}");
    let exists = s.gql(&admin, ENVIRONMENT, env("prod", "e3", None)).await;
    assert_eq!(code(&exists), Some("CONFLICT"), "{exists}");
    let not_label = s.gql(&admin, ENVIRONMENT, env("-x-", "e4", None)).await;
    assert_eq!(code(&not_label), Some("BAD_USER_INPUT"), "{not_label}");
    let no_project = s
        .gql(
            &admin,
            ENVIRONMENT,
            json!({ "i": { "tenantId": id, "projectId": "nope", "name": "qa", "idempotencyKey": "e5" } }),
        )
        .await;
    assert_eq!(code(&no_project), Some("BAD_USER_INPUT"), "{no_project}");
    let all = projects(&s, &id).await;
    let web = all
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "web")
        .unwrap();
    assert_eq!(web["version"], 2, "refused writes changed nothing: {all}");
    assert_eq!(names(web), ["dev", "prod", "qa", "stage"]);

    // A viewer reads projects but may not make them.
    let tid: shared::ids::TenantId = id.parse().unwrap();
    let viewer = s.token("vic", &[Role::TenantViewer], &[tid], None);
    let seen = s.gql(&viewer, PROJECTS, json!({ "id": id })).await;
    assert_eq!(
        seen["data"]["tenant"]["projects"].as_array().unwrap().len(),
        2,
        "{seen}"
    );
    let refused = s.gql(&viewer, PROJECT, mk("api", "p9")).await;
    assert_eq!(code(&refused), Some("FORBIDDEN"), "{refused}");
    s.stop().await;
}

#[tokio::test]
async fn config_writes_must_name_a_project_and_environment_the_tenant_has() {
    let s = Stack::start(Backend::Sqlite).await;
    let admin = s.admin();
    let id = s.create_tenant("configured", "eu-west-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let write = |project: Option<&str>, env: Option<&str>, key: &str| {
        json!({ "i": { "tenantId": id, "idempotencyKey": key, "expectedVersion": 0,
            "projectId": project, "environment": env, "set": [{ "key": "nothing.defined", "value": 1 }] } })
    };
    let unknown_project = s
        .gql(&admin, CONFIG, write(Some("ghost"), None, "c1"))
        .await;
    assert_eq!(
        code(&unknown_project),
        Some("BAD_USER_INPUT"),
        "{unknown_project}"
    );
    assert_eq!(
        unknown_project
            .pointer("/errors/0/extensions/field")
            .and_then(|f| f.as_str()),
        Some("input.projectId")
    );
    // Without projectId the default project is meant: it has dev, stage and prod only.
    let unknown_env = s.gql(&admin, CONFIG, write(None, Some("qa"), "c2")).await;
    assert_eq!(code(&unknown_env), Some("BAD_USER_INPUT"), "{unknown_env}");
    assert!(
        unknown_env["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no environment `qa`"),
        "{unknown_env}"
    );
    // A known target gets past the check (and on to the key check).
    let known = s.gql(&admin, CONFIG, write(None, Some("prod"), "c3")).await;
    assert_eq!(code(&known), Some("BAD_USER_INPUT"), "{known}");
    assert!(
        known["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no such config key"),
        "{known}"
    );
    s.stop().await;
}

/// GraphQL requests the cell at `url` has served so far (its own /metrics).
async fn cell_graphql_calls(url: &str) -> i64 {
    let text = e2e::stack::metrics_request(&reqwest::Client::new(), url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("tcp_http_requests_total") && l.contains("route=\"/graphql\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as i64)
        .sum()
}

/// A page of tenants with their projects and plans costs one call per cell
/// and kind, not one per tenant.
#[tokio::test]
async fn projects_and_plans_of_a_page_of_tenants_are_batched_per_cell() {
    let s = Stack::start(Backend::Sqlite).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let t = s.create_tenant(&format!("page-{i}"), "eu-west-1").await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    let url = s.cell("eu-west-1-a").url();
    let q = "{ tenants(first: 50) { edges { node { id projects { name environments { name } } planDetails { plan version } } } } }";
    let before = cell_graphql_calls(&url).await;
    let page = s.gql(&s.admin(), q, json!({})).await;
    let after = cell_graphql_calls(&url).await;
    assert!(page.get("errors").is_none(), "{page}");
    let edges = page["data"]["tenants"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 6, "{page}");
    for e in edges {
        assert_eq!(e["node"]["projects"][0]["name"], "default", "{e}");
        assert_eq!(
            e["node"]["projects"][0]["environments"]
                .as_array()
                .unwrap()
                .len(),
            3,
            "{e}"
        );
        assert_eq!(e["node"]["planDetails"]["plan"], "pro", "{e}");
    }
    // Two batched calls (projects, plans); background work may add one or two.
    let calls = after - before;
    assert!(
        (2..=4).contains(&calls),
        "{calls} calls to the cell for 6 tenants"
    );
    s.stop().await;
}
