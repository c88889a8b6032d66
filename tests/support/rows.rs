//! Counts a tenant's rows in every tenant-scoped table of a database, found
//! from the schema itself (every table with a `tenant_id` column, plus
//! `tenants` by `id`), so a table added later is counted too.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

pub async fn tenant_rows(database_url: &str, tenant_id: &str) -> BTreeMap<String, i64> {
    let db = Database::connect(database_url).await.expect("database");
    let backend = db.get_database_backend();
    let tables: Vec<String> = match backend {
        DbBackend::Postgres => db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT table_name::text AS t FROM information_schema.columns \
                 WHERE table_schema = 'public' AND column_name = 'tenant_id'",
            ))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String>("", "t").unwrap())
            .collect(),
        _ => {
            let all: Vec<String> = db
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT name AS t FROM sqlite_master WHERE type = 'table'",
                ))
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<String>("", "t").unwrap())
                .collect();
            let mut with = Vec::new();
            for t in all {
                let cols = db
                    .query_all_raw(Statement::from_string(
                        backend,
                        format!("SELECT name FROM pragma_table_info('{t}')"),
                    ))
                    .await
                    .unwrap();
                if cols
                    .iter()
                    .any(|c| c.try_get::<String>("", "name").unwrap() == "tenant_id")
                {
                    with.push(t);
                }
            }
            with
        }
    };
    let id = uuid::Uuid::parse_str(tenant_id).expect("tenant id");
    let mut out = BTreeMap::new();
    for (table, col) in tables
        .into_iter()
        .map(|t| (t, "tenant_id"))
        .chain([("tenants".to_owned(), "id")])
    {
        // An audit entry counts while it holds the tenant's values: a purge
        // erases them and keeps the entry (ids and hashes), so the chain holds.
        let holding = if table == "audit_log" {
            " AND (salt IS NOT NULL OR values_hash IS NULL)"
        } else {
            ""
        };
        // UUID and text tenant columns alike.
        let (sql, values): (String, Vec<sea_orm::Value>) = match backend {
            DbBackend::Postgres => (
                format!("SELECT COUNT(*) AS n FROM {table} WHERE {col}::text = $1{holding}"),
                vec![id.to_string().into()],
            ),
            _ => (
                format!(
                    "SELECT COUNT(*) AS n FROM {table} WHERE ({col} = ? OR {col} = ?){holding}"
                ),
                vec![id.into(), id.to_string().into()],
            ),
        };
        let row = db
            .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .unwrap()
            .unwrap();
        out.insert(table, row.try_get::<i64>("", "n").unwrap());
    }
    let _ = db.close().await;
    out
}
