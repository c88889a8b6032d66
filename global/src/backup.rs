//! Backups of the global database: a consistent snapshot of every table,
//! written as JSON lines, and its restore into an empty database.
//!
//! The snapshot is read in one transaction (REPEATABLE READ on PostgreSQL,
//! a read transaction on SQLite's WAL), so it is consistent while the
//! global tier keeps serving. The file holds one header line (format,
//! backend, the migrations the schema had), one line per row
//! (`{"table", "row"}`) and a trailer with the row count of each table, so
//! that a truncated file is refused. A restore runs the migrations on an
//! empty database of the same backend, then inserts every row in one
//! transaction.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DbBackend, IsolationLevel, Statement,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::{Error, Result};

pub const FORMAT: &str = "tenant-control-plane/global-backup";
pub const VERSION: u32 = 1;
/// Rows inserted per statement on restore.
const BATCH: usize = 500;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    format: String,
    version: u32,
    backend: String,
    created_at: chrono::DateTime<chrono::Utc>,
    migrations: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    table: String,
    row: Value,
}

#[derive(Serialize, Deserialize)]
struct Trailer {
    end: bool,
    rows: BTreeMap<String, u64>,
}

/// What a backup or a restore moved: rows per table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub rows: BTreeMap<String, u64>,
}

impl Summary {
    pub fn total(&self) -> u64 {
        self.rows.values().sum()
    }
}

fn backend_name(b: DbBackend) -> &'static str {
    match b {
        DbBackend::Postgres => "postgres",
        _ => "sqlite",
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

async fn strings<C: ConnectionTrait>(db: &C, sql: &str, column: &str) -> Result<Vec<String>> {
    let backend = db.get_database_backend();
    db.query_all_raw(Statement::from_string(backend, sql.to_owned()))
        .await?
        .iter()
        .map(|r| r.try_get::<String>("", column).map_err(Error::from))
        .collect()
}

/// The application's tables (not the migration bookkeeping), sorted.
async fn tables<C: ConnectionTrait>(db: &C) -> Result<Vec<String>> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT table_name::text AS t FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             AND table_name <> 'seaql_migrations' ORDER BY 1"
        }
        _ => {
            "SELECT name AS t FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> 'seaql_migrations' ORDER BY 1"
        }
    };
    strings(db, sql, "t").await
}

async fn columns<C: ConnectionTrait>(db: &C, table: &str) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT name AS c FROM pragma_table_info('{}') ORDER BY cid",
        table.replace('\'', "''")
    );
    strings(db, &sql, "c").await
}

async fn migrations<C: ConnectionTrait>(db: &C) -> Result<Vec<String>> {
    strings(
        db,
        "SELECT version AS v FROM seaql_migrations ORDER BY version",
        "v",
    )
    .await
}

/// Each row of `table` as JSON text. SQLite BLOBs (UUIDs) become
/// `{"blob": "<hex>"}`, which [`restore`] turns back into bytes.
async fn rows<C: ConnectionTrait>(db: &C, table: &str) -> Result<Vec<String>> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => format!("SELECT row_to_json(t)::text AS j FROM {} t", quote(table)),
        _ => {
            let fields: Vec<String> = columns(db, table)
                .await?
                .iter()
                .map(|c| {
                    let q = quote(c);
                    format!(
                        "'{}', CASE WHEN typeof({q}) = 'blob' THEN json_object('blob', hex({q})) ELSE {q} END",
                        c.replace('\'', "''")
                    )
                })
                .collect();
            format!(
                "SELECT json_object({}) AS j FROM {}",
                fields.join(", "),
                quote(table)
            )
        }
    };
    strings(db, &sql, "j").await
}

/// Writes a consistent snapshot of every table to `out`.
pub async fn dump(db: &DatabaseConnection, out: &mut impl Write) -> Result<Summary> {
    let backend = db.get_database_backend();
    let txn = match backend {
        DbBackend::Postgres => {
            db.begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?
        }
        _ => db.begin().await?,
    };
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        backend: backend_name(backend).into(),
        created_at: chrono::Utc::now(),
        migrations: migrations(&txn).await?,
    };
    let io = |e: std::io::Error| Error::internal(anyhow::anyhow!("writing the backup: {e}"));
    let json = |e: serde_json::Error| Error::internal(anyhow::anyhow!(e));
    writeln!(out, "{}", serde_json::to_string(&header).map_err(json)?).map_err(io)?;
    let mut summary = Summary::default();
    for table in tables(&txn).await? {
        let rows = rows(&txn, &table).await?;
        for r in &rows {
            let row: Value = serde_json::from_str(r).map_err(json)?;
            let line = Line {
                table: table.clone(),
                row,
            };
            writeln!(out, "{}", serde_json::to_string(&line).map_err(json)?).map_err(io)?;
        }
        summary.rows.insert(table, rows.len() as u64);
    }
    txn.commit().await?;
    let trailer = Trailer {
        end: true,
        rows: summary.rows.clone(),
    };
    writeln!(out, "{}", serde_json::to_string(&trailer).map_err(json)?).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(summary)
}

fn bad(message: impl Into<String>) -> Error {
    Error::bad_input("backup", message.into())
}

/// A backup file read whole and checked: header, rows by table, trailer.
struct Parsed {
    header: Header,
    rows: BTreeMap<String, Vec<Value>>,
}

fn parse(input: impl BufRead) -> Result<Parsed> {
    let mut lines = input.lines();
    let read = |l: Option<std::io::Result<String>>| -> Result<Option<String>> {
        l.transpose()
            .map_err(|e| bad(format!("the backup cannot be read: {e}")))
    };
    let first = read(lines.next())?.ok_or_else(|| bad("the backup is empty"))?;
    let header: Header =
        serde_json::from_str(&first).map_err(|e| bad(format!("not a backup header: {e}")))?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(bad(format!(
            "not a global backup of version {VERSION} (format `{}`, version {})",
            header.format, header.version
        )));
    }
    let mut rows: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut trailer = None;
    let mut n = 1;
    while let Some(line) = read(lines.next())? {
        n += 1;
        if trailer.is_some() {
            return Err(bad(format!("line {n}: data after the end of the backup")));
        }
        let v: Value =
            serde_json::from_str(&line).map_err(|e| bad(format!("line {n} is not JSON: {e}")))?;
        if v.get("end").is_some() {
            trailer = Some(
                serde_json::from_value::<Trailer>(v)
                    .map_err(|e| bad(format!("line {n}: bad trailer: {e}")))?,
            );
        } else {
            let l: Line = serde_json::from_value(v)
                .map_err(|e| bad(format!("line {n} is not a row: {e}")))?;
            rows.entry(l.table).or_default().push(l.row);
        }
    }
    let trailer =
        trailer.ok_or_else(|| bad("the backup has no end line: it is truncated or incomplete"))?;
    for (table, want) in &trailer.rows {
        let got = rows.get(table).map_or(0, |r| r.len() as u64);
        if got != *want {
            return Err(bad(format!(
                "table {table}: the backup holds {got} rows, its end line says {want}"
            )));
        }
    }
    if let Some(extra) = rows.keys().find(|t| !trailer.rows.contains_key(*t)) {
        return Err(bad(format!(
            "table {extra} has rows but is not in the end line"
        )));
    }
    for table in trailer.rows.keys() {
        rows.entry(table.clone()).or_default();
    }
    Ok(Parsed { header, rows })
}

/// Restores a backup into `db`: migrates it, checks it is empty and of the
/// backup's backend and schema, then inserts every row in one transaction.
pub async fn restore(db: &DatabaseConnection, input: impl BufRead) -> Result<Summary> {
    let parsed = parse(input)?;
    let backend = db.get_database_backend();
    if parsed.header.backend != backend_name(backend) {
        return Err(bad(format!(
            "the backup is of a {} database; this one is {}",
            parsed.header.backend,
            backend_name(backend)
        )));
    }
    // A new database only: one that holds data (even one row the
    // migrations seed, as a global tier that ever started on it) is refused.
    for table in tables(db).await? {
        let n = strings(
            db,
            &format!("SELECT CAST(COUNT(*) AS TEXT) AS n FROM {}", quote(&table)),
            "n",
        )
        .await?;
        if n.first().map(String::as_str) != Some("0") {
            return Err(Error::Conflict(format!(
                "the target database is not empty (table {table} has rows): restore into a new database"
            )));
        }
    }
    shared::db::migrate::<crate::migration::Migrator>(db, 0x676c_6f62).await?;
    let known = migrations(db).await?;
    if let Some(m) = parsed.header.migrations.iter().find(|m| !known.contains(m)) {
        return Err(bad(format!(
            "the backup's schema has migration {m}, which this version does not know: restore it with the version that made it"
        )));
    }
    let present = tables(db).await?;
    if let Some(t) = parsed.rows.keys().find(|t| !present.contains(*t)) {
        return Err(bad(format!(
            "the backup has table {t}, which this schema has not"
        )));
    }
    let txn = db.begin().await?;
    let mut summary = Summary::default();
    for (table, rows) in &parsed.rows {
        // Rows the migrations seeded are replaced by the backup's.
        txn.execute_unprepared(&format!("DELETE FROM {}", quote(table)))
            .await?;
        let cols = match backend {
            DbBackend::Postgres => Vec::new(),
            _ => columns(&txn, table).await?,
        };
        for chunk in rows.chunks(BATCH) {
            let batch = Value::Array(chunk.to_vec()).to_string();
            let stmt = match backend {
                DbBackend::Postgres => Statement::from_sql_and_values(
                    backend,
                    format!(
                        "INSERT INTO {t} SELECT * FROM json_populate_recordset(NULL::{t}, $1::json)",
                        t = quote(table)
                    ),
                    [batch.into()],
                ),
                _ => {
                    let values: Vec<String> = cols
                        .iter()
                        .map(|c| {
                            let path =
                                format!("'$.\"{}\"'", c.replace('\'', "''").replace('"', "\\\""));
                            format!(
                                "CASE WHEN json_type(value, {path}) = 'object' \
                                 THEN unhex(json_extract(value, {path} || '.blob')) \
                                 ELSE json_extract(value, {path}) END"
                            )
                        })
                        .collect();
                    let names: Vec<String> = cols.iter().map(|c| quote(c)).collect();
                    Statement::from_sql_and_values(
                        backend,
                        format!(
                            "INSERT INTO {} ({}) SELECT {} FROM json_each(?)",
                            quote(table),
                            names.join(", "),
                            values.join(", ")
                        ),
                        [batch.into()],
                    )
                }
            };
            txn.execute_raw(stmt).await?;
        }
        summary.rows.insert(table.clone(), rows.len() as u64);
    }
    txn.commit().await?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_or_foreign_file_is_refused() {
        let header = serde_json::to_string(&Header {
            format: FORMAT.into(),
            version: VERSION,
            backend: "sqlite".into(),
            created_at: chrono::Utc::now(),
            migrations: vec![],
        })
        .unwrap();
        let row = r#"{"table":"cells","row":{"id":"a"}}"#;
        let end = r#"{"end":true,"rows":{"cells":1}}"#;
        let ok = format!("{header}\n{row}\n{end}\n");
        let parsed = parse(ok.as_bytes()).expect("a whole backup parses");
        assert_eq!(parsed.rows["cells"].len(), 1);
        for broken in [
            String::new(),
            format!("{header}\n{row}\n"),
            format!("{header}\n{end}\n"),
            format!("{header}\n{row}\n{row}\n{end}\n"),
            format!("{header}\n{row}\n{end}\n{row}\n"),
            format!("{{\"format\":\"other\"}}\n{row}\n{end}\n"),
        ] {
            let e = parse(broken.as_bytes()).err().expect("refused");
            assert!(matches!(e, Error::BadInput { .. }), "{broken}: {e:?}");
        }
    }
}
