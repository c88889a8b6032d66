//! Every typed call of the cell client against a stand-in cell that records
//! what it is sent: each document must be valid against the cell's
//! checked-in schema (`graphql/cell.graphql`), with the variables it
//! declares (input objects named by the fields the cell takes), and the
//! answer of the operation must come back decoded, or the cell's error
//! with its code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::parser::types::{
    BaseType, ExecutableDocument, OperationType, Selection, SelectionSet, Type, TypeKind,
    TypeSystemDefinition,
};
use async_graphql::parser::{parse_query, parse_schema};
use serde_json::{Value, json};
use shared::Code;
use shared::auth::{Keys, ServiceToken};
use shared::client::GraphqlClient;
use shared::ids::TenantId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::CellClient;
use crate::entity::cell;

/// A stand-in cell: records each request body and answers `answer` (plain
/// HTTP/1.1, one request per connection).
async fn stand_in(answer: Value) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = answer.to_string();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (seen, answer) = (recorded.clone(), answer.clone());
            tokio::spawn(async move {
                let Some(body) = read_request(&mut conn).await else {
                    return;
                };
                seen.lock().unwrap().push(body);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// The JSON body of one HTTP request (by its content-length).
async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Value> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return serde_json::from_slice(&buf[end + 4..end + 4 + len]).ok();
        }
    }
}

fn client() -> CellClient {
    let keys = Keys::hs256(
        &["a-test-secret-of-enough-length-for-hs256".into()],
        shared::auth::DEFAULT_ISSUER,
        shared::auth::DEFAULT_AUDIENCE,
    )
    .unwrap();
    let token = ServiceToken::new(Arc::new(keys), "global", None);
    CellClient::new(GraphqlClient::new(Arc::new(token), Duration::from_secs(5)))
}

fn cell_at(endpoint: &str) -> cell::Model {
    cell::Model {
        id: "test-cell-a".into(),
        region: "test-1".into(),
        endpoint: endpoint.into(),
        capacity: 10,
        status: "UP".into(),
        last_heartbeat_at: chrono::Utc::now(),
        registered_at: chrono::Utc::now(),
        weight: 1,
        labels: "{}".into(),
        state: "ACCEPTING".into(),
        version: 1,
    }
}

fn input<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// Calls every typed operation once; returns the number of calls made and
/// each one's error code (None when it succeeded).
async fn call_all(c: &CellClient, cell: &cell::Model) -> Vec<(&'static str, Option<Code>)> {
    let t = TenantId::new();
    let tid = t.to_string();
    let code = |r: shared::Result<()>| r.err().map(|e| e.code());
    let new_tenant: crate::service::provisioning::NewTenant = input(json!({
        "slug": "acme", "name": "Acme", "region": "test-1", "plan": "pro", "owner": "alice",
    }));
    let question: shared::impact::Question = input(json!({ "flagKey": "f" }));
    vec![
        (
            "create_tenant",
            code(c.create_tenant(cell, t, &new_tenant).await.map(|_| ())),
        ),
        ("allocate", code(c.allocate(cell, t).await)),
        ("purge", code(c.purge(cell, t).await)),
        ("records", code(c.records(cell, None, 10).await.map(|_| ()))),
        ("tenants", code(c.tenants(cell, &[t]).await.map(|_| ()))),
        (
            "projects_of",
            code(c.projects_of(cell, &[t]).await.map(|_| ())),
        ),
        ("plans_of", code(c.plans_of(cell, &[t]).await.map(|_| ()))),
        (
            "impact_matches",
            code(c.impact_matches(cell, &[question]).await.map(|_| ())),
        ),
        (
            "sync_versions",
            code(c.sync_versions(cell, "flag", false).await.map(|_| ())),
        ),
        (
            "sync_versions full",
            code(c.sync_versions(cell, "flag", true).await.map(|_| ())),
        ),
        ("secret_refs", code(c.secret_refs(cell, t).await.map(|_| ()))),
        (
            "effective_config",
            code(
                c.effective_config(cell, t, Some("default"), Some("prod"))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "config_history",
            code(c.config_history(cell, t, 5).await.map(|_| ())),
        ),
        ("quotas", code(c.quotas(cell, t).await.map(|_| ()))),
        (
            "set_secret_ref",
            code(
                c.set_secret_ref(
                    cell,
                    &input(json!({ "tenantId": tid, "name": "db", "ref": "vault://kv/db", "expectedVersion": 0 })),
                    "alice",
                )
                .await
                .map(|_| ()),
            ),
        ),
        (
            "update_tenant_config",
            code(
                c.update_tenant_config(
                    cell,
                    &input(json!({ "tenantId": tid, "projectId": null, "environment": null, "set": [{ "key": "k", "value": 1 }], "unset": [], "expectedVersion": 0, "idempotencyKey": "k1" })),
                    "alice",
                )
                .await
                .map(|_| ()),
            ),
        ),
        (
            "rollback_tenant_config",
            code(
                c.rollback_tenant_config(
                    cell,
                    &input(json!({ "tenantId": tid, "toVersion": 1, "expectedVersion": 2, "idempotencyKey": "k2" })),
                    "alice",
                )
                .await
                .map(|_| ()),
            ),
        ),
        (
            "set_quota",
            code(
                c.set_quota(
                    cell,
                    &input(json!({ "tenantId": tid, "metric": "api_calls", "limit": 5, "period": null, "burst": null, "enforcement": "HARD", "expectedVersion": 0, "idempotencyKey": "k3" })),
                    "alice",
                )
                .await
                .map(|_| ()),
            ),
        ),
        (
            "clear_quota",
            code(
                c.clear_quota(
                    cell,
                    &input(json!({ "tenantId": tid, "metric": "api_calls", "expectedVersion": 1, "idempotencyKey": "k4" })),
                    "alice",
                )
                .await
                .map(|_| ()),
            ),
        ),
        (
            "change_plan",
            code(
                c.change_plan(
                    cell,
                    &input(json!({ "tenantId": tid, "plan": "pro", "expectedVersion": 1, "idempotencyKey": "k5" })),
                    "alice",
                )
                .await
                .map(|_| ()),
            ),
        ),
        (
            "set_entitlement_override",
            code(
                c.set_entitlement_override(
                    cell,
                    &input(json!({ "tenantId": tid, "name": "sso", "enabled": true, "expectedVersion": 1, "idempotencyKey": "k6" })),
                    "alice",
                )
                .await
                .map(|_| ()),
            ),
        ),
        (
            "create_project",
            code(
                c.create_project(
                    cell,
                    &input(json!({ "tenantId": tid, "name": "web", "idempotencyKey": "k7" })),
                    "alice",
                )
                .await
                .map(|_| ()),
            ),
        ),
        (
            "create_environment",
            code(
                c.create_environment(
                    cell,
                    &input(json!({ "tenantId": tid, "projectId": "web", "name": "qa", "idempotencyKey": "k8", "expectedVersion": 1 })),
                    "alice",
                )
                .await
                .map(|_| ()),
            ),
        ),
    ]
}

/// An object's field: its arguments by name, and its type.
type FieldDef = (HashMap<String, Type>, Type);

/// The cell's schema: every object and input object type by name, with its
/// fields (an object's: arguments and type; an input's: type).
struct CellSchema {
    objects: HashMap<String, HashMap<String, FieldDef>>,
    inputs: HashMap<String, HashMap<String, Type>>,
}

impl CellSchema {
    fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../graphql/cell.graphql");
        let doc = parse_schema(std::fs::read_to_string(path).unwrap()).unwrap();
        let mut out = CellSchema {
            objects: HashMap::new(),
            inputs: HashMap::new(),
        };
        for def in doc.definitions {
            let TypeSystemDefinition::Type(t) = def else {
                continue;
            };
            let name = t.node.name.node.to_string();
            match t.node.kind {
                TypeKind::Object(o) => {
                    let fields = o.fields.into_iter().map(|f| {
                        let args = f
                            .node
                            .arguments
                            .into_iter()
                            .map(|a| (a.node.name.node.to_string(), a.node.ty.node))
                            .collect();
                        (f.node.name.node.to_string(), (args, f.node.ty.node))
                    });
                    out.objects.insert(name, fields.collect());
                }
                TypeKind::InputObject(i) => {
                    let fields = i
                        .fields
                        .into_iter()
                        .map(|f| (f.node.name.node.to_string(), f.node.ty.node));
                    out.inputs.insert(name, fields.collect());
                }
                _ => {}
            }
        }
        out
    }

    /// Checks one request: problems found, as sentences.
    fn check(&self, body: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        let query = body["query"].as_str().unwrap_or_default();
        let doc: ExecutableDocument = match parse_query(query) {
            Ok(d) => d,
            Err(e) => return vec![format!("does not parse: {e}")],
        };
        for (_, op) in doc.operations.iter() {
            let root = match op.node.ty {
                OperationType::Query => "Query",
                OperationType::Mutation => "Mutation",
                OperationType::Subscription => "Subscription",
            };
            let mut vars = HashMap::new();
            for v in &op.node.variable_definitions {
                let name = v.node.name.node.to_string();
                let ty = v.node.var_type.node.clone();
                let given = &body["variables"][&name];
                if given.is_null() && !ty.nullable {
                    problems.push(format!("${name} is required and not given"));
                }
                self.check_value(&format!("${name}"), &ty, given, &mut problems);
                vars.insert(name, ty);
            }
            for given in body["variables"].as_object().into_iter().flatten() {
                if !vars.contains_key(given.0) {
                    problems.push(format!("${} is given but not declared", given.0));
                }
            }
            self.check_selection(root, &op.node.selection_set.node, &vars, &mut problems);
        }
        problems
    }

    fn check_selection(
        &self,
        on: &str,
        set: &SelectionSet,
        vars: &HashMap<String, Type>,
        problems: &mut Vec<String>,
    ) {
        let Some(fields) = self.objects.get(on) else {
            problems.push(format!("`{on}` is not an object type of the cell"));
            return;
        };
        for item in &set.items {
            let Selection::Field(f) = &item.node else {
                problems.push(format!("only fields are expected, in {on}"));
                continue;
            };
            let name = f.node.name.node.as_str();
            let Some((args, ty)) = fields.get(name) else {
                problems.push(format!("`{on}.{name}` does not exist"));
                continue;
            };
            for (arg, value) in &f.node.arguments {
                let Some(want) = args.get(arg.node.as_str()) else {
                    problems.push(format!("`{on}.{name}` takes no argument `{}`", arg.node));
                    continue;
                };
                // A variable prints as `$name`.
                if let Some(v) = value.node.to_string().strip_prefix('$') {
                    match vars.get(v) {
                        None => problems.push(format!("${v} is used but not declared")),
                        Some(have) => {
                            if have.base != want.base || (!want.nullable && have.nullable) {
                                problems.push(format!(
                                    "${v} is {have}, `{on}.{name}({})` takes {want}",
                                    arg.node
                                ));
                            }
                        }
                    }
                }
            }
            for (arg, want) in args {
                let given = f.node.arguments.iter().any(|(a, _)| a.node == arg.as_str());
                if !want.nullable && !given {
                    problems.push(format!("`{on}.{name}` needs `{arg}`"));
                }
            }
            let inner = named(ty);
            let is_object = self.objects.contains_key(inner);
            let selects = !f.node.selection_set.node.items.is_empty();
            if is_object && !selects {
                problems.push(format!("`{on}.{name}` is an object: select its fields"));
            } else if !is_object && selects {
                problems.push(format!("`{on}.{name}` is a leaf: it has no fields"));
            } else if is_object {
                self.check_selection(inner, &f.node.selection_set.node, vars, problems);
            }
        }
    }

    /// An input object's keys must be its fields, and its required fields given.
    fn check_value(&self, at: &str, ty: &Type, v: &Value, problems: &mut Vec<String>) {
        match (&ty.base, v) {
            (_, Value::Null) => {}
            (BaseType::List(inner), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_value(&format!("{at}[{i}]"), inner, item, problems);
                }
            }
            (BaseType::Named(n), Value::Object(o)) => {
                let Some(fields) = self.inputs.get(n.as_str()) else {
                    problems.push(format!("{at}: `{n}` is not an input object of the cell"));
                    return;
                };
                for (k, item) in o {
                    match fields.get(k) {
                        None => problems.push(format!("{at}: `{n}` has no field `{k}`")),
                        Some(t) => self.check_value(&format!("{at}.{k}"), t, item, problems),
                    }
                }
                for (k, t) in fields {
                    if !t.nullable && o.get(k).is_none_or(Value::is_null) {
                        problems.push(format!("{at}: `{n}.{k}` is required and not given"));
                    }
                }
            }
            _ => {}
        }
    }
}

fn named(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(n) => n.as_str(),
        BaseType::List(inner) => named(inner),
    }
}

#[tokio::test]
async fn every_call_is_a_valid_cell_request_and_carries_the_cells_error_code() {
    let (url, seen) = stand_in(json!({
        "data": null,
        "errors": [{ "message": "tenant not found", "extensions": { "code": "NOT_FOUND" } }],
    }))
    .await;
    let cell = cell_at(&url);
    let outcomes = call_all(&client(), &cell).await;
    for (name, code) in &outcomes {
        assert_eq!(
            *code,
            Some(Code::NotFound),
            "{name}: the cell's NOT_FOUND must reach the caller as NOT_FOUND"
        );
    }
    let schema = CellSchema::load();
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), outcomes.len(), "one request per call");
    for ((name, _), body) in outcomes.iter().zip(&bodies) {
        let problems = schema.check(body);
        assert!(
            problems.is_empty(),
            "{name} sends a request the cell would refuse: {problems:?}\n{body}"
        );
    }
}

#[tokio::test]
async fn a_write_is_sent_on_behalf_of_the_caller_and_answers_its_field() {
    let (url, seen) = stand_in(json!({ "data": { "updateTenantConfig": { "version": 7 } } })).await;
    let cell = cell_at(&url);
    let t = TenantId::new();
    let change: shared::configkeys::api::UpdateTenantConfigInput = input(json!({
        "tenantId": t.to_string(), "set": [], "unset": ["k"], "expectedVersion": 6, "idempotencyKey": "k1",
    }));
    let out = client()
        .update_tenant_config(&cell, &change, "alice")
        .await
        .unwrap();
    assert_eq!(out.version, 7);
    let body = seen.lock().unwrap()[0].clone();
    assert_eq!(body["variables"]["who"], "alice");
    assert_eq!(
        body["variables"]["i"],
        serde_json::to_value(&change).unwrap()
    );
}

#[tokio::test]
async fn an_answer_without_the_operations_field_is_internal() {
    let (url, _) = stand_in(json!({ "data": { "somethingElse": { "version": 7 } } })).await;
    let cell = cell_at(&url);
    let err = client()
        .quotas(&cell, TenantId::new())
        .await
        .expect_err("the answer lacks `quotas`");
    let shared::Error::Internal(why) = err else {
        panic!("expected INTERNAL, got {err:?}");
    };
    assert!(why.to_string().contains("without quotas"), "{why}");
}

#[tokio::test]
async fn a_cell_that_does_not_answer_is_unavailable_and_named() {
    // Bound, then dropped: nothing listens there any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cell = cell_at(&format!("http://127.0.0.1:{port}"));
    let err = client()
        .secret_refs(&cell, TenantId::new())
        .await
        .expect_err("nobody answers");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.to_string().contains("cell test-cell-a"), "{err}");
}

#[test]
fn the_schema_check_finds_what_the_cell_would_refuse() {
    let schema = CellSchema::load();
    let check = |query: &str, variables: Value| {
        schema.check(&json!({ "query": query, "variables": variables }))
    };
    assert!(check("query { nope }", json!({}))[0].contains("`Query.nope` does not exist"));
    assert!(
        check(
            "query($t: ID!) { quotas(tenantId: $t) }",
            json!({ "t": "x" })
        )[0]
        .contains("select its fields")
    );
    assert!(
        check(
            "query($t: String!) { secretRefs(tenantId: $t) { name } }",
            json!({ "t": "x" })
        )[0]
        .contains("takes ID!")
    );
    let problems = check(
        "mutation($i: ClearQuotaInput!, $who: String) { clearQuota(input: $i, onBehalfOf: $who) { metric } }",
        json!({ "i": { "tenantId": "x", "metrik": "m" }, "who": "a" }),
    );
    assert!(
        problems.iter().any(|p| p.contains("has no field `metrik`")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`ClearQuotaInput.metric` is required")),
        "{problems:?}"
    );
    assert!(check("query { quotas { metric } }", json!({}))[0].contains("needs `tenantId`"));
}
