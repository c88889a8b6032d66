//! The first slice: create a tenant in a cell through the global API and
//! read it back, on PostgreSQL and on embedded SQLite.

use e2e::stack::{TENANT_FIELDS, code};
use e2e::{Backend, CellSpec, Options, Stack};
use serde_json::json;
use shared::auth::Role;

async fn create_and_read_back(backend: Backend) {
    let s = Stack::start(backend).await;
    let admin = s.admin();

    let t = s.create_tenant("acme", "eu-west-1").await;
    assert_eq!(t["status"], "ACTIVE");
    assert_eq!(t["cell"]["id"], "eu-west-1-a");
    assert_eq!(t["cell"]["region"], "eu-west-1");
    assert_eq!(t["region"], "eu-west-1");
    assert_eq!(t["plan"], "pro");
    assert_eq!(t["version"], 1);
    let id = t["id"].as_str().unwrap().to_owned();

    // Read back by id and by slug: the record comes from the cell.
    let q = format!("query($id: ID!) {{ tenant(id: $id) {{ {TENANT_FIELDS} updatedAt }} }}");
    let got = s.gql(&admin, &q, json!({ "id": id })).await;
    assert_eq!(got["data"]["tenant"]["name"], "Tenant acme", "{got}");
    assert_eq!(got["data"]["tenant"]["slug"], "acme");
    let q = format!("query($slug: String!) {{ tenantBySlug(slug: $slug) {{ {TENANT_FIELDS} }} }}");
    let by_slug = s.gql(&admin, &q, json!({ "slug": "acme" })).await;
    assert_eq!(by_slug["data"]["tenantBySlug"]["id"], id);

    // The record lives in the home cell, and only there.
    let svc = s.token("global", &[Role::Service], &[], None);
    let q = "query($id: ID!) { tenant(id: $id) { name plan version } }";
    let (_, in_cell) = s
        .gql_at(
            &s.cell("eu-west-1-a").url(),
            Some(&svc),
            q,
            json!({ "id": id }),
        )
        .await;
    assert_eq!(in_cell["data"]["tenant"]["name"], "Tenant acme");
    let (_, other) = s
        .gql_at(
            &s.cell("us-east-1-a").url(),
            Some(&svc),
            q,
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&other), Some("NOT_FOUND"));

    // The name shown through the global API is the cell's: the directory does not keep it.
    let cell_db = &s.cell("eu-west-1-a").state.db;
    use sea_orm::ConnectionTrait;
    cell_db
        .execute_unprepared("UPDATE tenants SET name = 'Renamed In Cell' WHERE slug = 'acme'")
        .await
        .unwrap();
    let q = "query($id: ID!) { tenant(id: $id) { name } }";
    let renamed = s.gql(&admin, q, json!({ "id": id })).await;
    assert_eq!(renamed["data"]["tenant"]["name"], "Renamed In Cell");

    s.stop().await;
}

#[tokio::test]
async fn create_and_read_back_postgres() {
    create_and_read_back(Backend::Postgres).await;
}

#[tokio::test]
async fn create_and_read_back_sqlite() {
    create_and_read_back(Backend::Sqlite).await;
}

async fn listing_filters_and_pages(backend: Backend) {
    let s = Stack::start(backend).await;
    let admin = s.admin();
    for (slug, region) in [
        ("alpha", "us-east-1"),
        ("bravo", "eu-west-1"),
        ("charlie", "us-east-1"),
    ] {
        s.create_tenant(slug, region).await;
    }
    let q = "query($first: Int, $after: String, $filter: TenantFilter) { tenants(first: $first, after: $after, filter: $filter) { totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { cursor node { slug region status cell { id } } } } }";

    let all = s.gql(&admin, q, json!({ "first": 2 })).await;
    let page = &all["data"]["tenants"];
    assert_eq!(page["totalCount"], 3, "{all}");
    assert_eq!(page["edges"].as_array().unwrap().len(), 2);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["edges"][0]["node"]["slug"], "alpha");
    let cursor = page["pageInfo"]["endCursor"].as_str().unwrap();
    let next = s
        .gql(&admin, q, json!({ "first": 2, "after": cursor }))
        .await;
    let page2 = &next["data"]["tenants"];
    assert_eq!(page2["edges"].as_array().unwrap().len(), 1);
    assert_eq!(page2["edges"][0]["node"]["slug"], "charlie");
    assert_eq!(page2["pageInfo"]["hasNextPage"], false);
    assert_eq!(page2["pageInfo"]["hasPreviousPage"], true);

    let us = s
        .gql(&admin, q, json!({ "filter": { "region": "us-east-1" } }))
        .await;
    assert_eq!(us["data"]["tenants"]["totalCount"], 2);
    let eu = s
        .gql(
            &admin,
            q,
            json!({ "filter": { "cellId": "eu-west-1-a", "status": "ACTIVE" } }),
        )
        .await;
    assert_eq!(eu["data"]["tenants"]["totalCount"], 1);
    assert_eq!(eu["data"]["tenants"]["edges"][0]["node"]["slug"], "bravo");
    let none = s
        .gql(&admin, q, json!({ "filter": { "status": "SUSPENDED" } }))
        .await;
    assert_eq!(none["data"]["tenants"]["totalCount"], 0);

    let bad = s.gql(&admin, q, json!({ "first": 0 })).await;
    assert_eq!(code(&bad), Some("BAD_USER_INPUT"));
    assert_eq!(bad.pointer("/errors/0/extensions/field").unwrap(), "first");
    let bad_cursor = s.gql(&admin, q, json!({ "after": "garbage" })).await;
    assert_eq!(code(&bad_cursor), Some("BAD_USER_INPUT"));

    let cells = s
        .gql(
            &admin,
            "{ cells { id region endpoint status tenantCount capacity } }",
            json!({}),
        )
        .await;
    let cells = cells["data"]["cells"].as_array().unwrap().clone();
    let us_cell = cells.iter().find(|c| c["id"] == "us-east-1-a").unwrap();
    assert_eq!(us_cell["tenantCount"], 2);
    assert_eq!(us_cell["status"], "UP");
    assert_eq!(us_cell["capacity"], 100);
    assert_eq!(us_cell["endpoint"], s.cell("us-east-1-a").url());
    s.stop().await;
}

#[tokio::test]
async fn listing_filters_and_pages_postgres() {
    listing_filters_and_pages(Backend::Postgres).await;
}

#[tokio::test]
async fn listing_filters_and_pages_sqlite() {
    listing_filters_and_pages(Backend::Sqlite).await;
}

#[tokio::test]
async fn placement_prefers_the_least_loaded_cell_and_stays_in_region() {
    let mut o = Options::new(Backend::Postgres);
    o.cells = vec![
        CellSpec {
            id: "us-east-1-a",
            region: "us-east-1",
            capacity: 10,
        },
        CellSpec {
            id: "us-east-1-b",
            region: "us-east-1",
            capacity: 10,
        },
        CellSpec {
            id: "eu-west-1-a",
            region: "eu-west-1",
            capacity: 10,
        },
    ];
    let s = Stack::start_with(o).await;
    let mut placed = std::collections::HashMap::<String, usize>::new();
    for i in 0..6 {
        let t = s.create_tenant(&format!("spread-{i}"), "us-east-1").await;
        *placed
            .entry(t["cell"]["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(placed.get("us-east-1-a"), Some(&3), "{placed:?}");
    assert_eq!(placed.get("us-east-1-b"), Some(&3), "{placed:?}");
    assert!(!placed.contains_key("eu-west-1-a"));
    s.stop().await;
}
