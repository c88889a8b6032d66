//! `tenantctl backup` and `tenantctl restore`: a consistent snapshot of the
//! global database, and its restore into a new, empty database.

use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct BackupArgs {
    /// The global tier's database (PostgreSQL or SQLite URL).
    #[arg(long, env = "TENANT_GLOBAL_DATABASE_URL")]
    database_url: String,
    /// The backup file to write (written aside, then renamed into place).
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The database to restore into: new and empty, of the backup's kind.
    #[arg(long, env = "TENANT_GLOBAL_DATABASE_URL")]
    database_url: String,
    /// The backup file `tenantctl backup` wrote.
    #[arg(long, short)]
    from: PathBuf,
}

fn print(verb: &str, s: &global::backup::Summary) {
    println!("{verb} {} rows in {} tables", s.total(), s.rows.len());
    for (table, n) in &s.rows {
        println!("  {table:<32} {n}");
    }
}

pub async fn backup(a: BackupArgs) -> anyhow::Result<()> {
    let db = shared::db::connect(&a.database_url, 2).await?;
    let part = a.out.with_extension("partial");
    let file = std::fs::File::create(&part)
        .with_context(|| format!("cannot create {}", part.display()))?;
    let mut out = BufWriter::new(file);
    let summary = global::backup::dump(&db, &mut out).await?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&part, &a.out)
        .with_context(|| format!("cannot move the backup to {}", a.out.display()))?;
    print("backed up", &summary);
    Ok(())
}

pub async fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&a.from)
        .with_context(|| format!("cannot open {}", a.from.display()))?;
    let db = shared::db::connect(&a.database_url, 2).await?;
    let summary = global::backup::restore(&db, BufReader::new(file)).await?;
    print("restored", &summary);
    Ok(())
}
