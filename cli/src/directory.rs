//! `tenantctl directory`: disaster recovery of the global directory.

use serde_json::json;

use crate::api::Conn;

#[derive(clap::Subcommand)]
pub enum DirectoryCmd {
    /// Restore every tenant's directory row from the cells' records
    /// (safe to run again; rows already up to date are left alone).
    Rebuild {
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn run(cmd: DirectoryCmd) -> anyhow::Result<()> {
    match cmd {
        DirectoryCmd::Rebuild { conn } => {
            let q = "mutation { rebuildDirectory { restored updated complete cells { cellId seen restored updated error } } }";
            let data = conn.query(q, json!({})).await?;
            let r = &data["rebuildDirectory"];
            println!("{}", serde_json::to_string_pretty(r)?);
            if r["complete"] != true {
                anyhow::bail!(
                    "some cells could not be read: the directory may still miss their tenants"
                );
            }
            Ok(())
        }
    }
}
