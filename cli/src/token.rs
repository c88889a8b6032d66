use std::path::PathBuf;

use shared::auth::Role;
use shared::ids::{CellId, TenantId};

#[derive(clap::Args)]
pub struct Args {
    /// The dev stack's data dir (holds the signing key).
    #[arg(long, default_value = ".tenantctl")]
    data_dir: PathBuf,
    /// The token's subject (`sub`).
    #[arg(long)]
    subject: String,
    /// Role(s): platform-admin, sre, tenant-admin, tenant-viewer, data-plane. Repeat or comma-separate.
    #[arg(long = "role", required = true, value_delimiter = ',')]
    roles: Vec<Role>,
    /// Tenant id(s) a tenant-scoped role applies to.
    #[arg(long = "tenant", value_delimiter = ',')]
    tenants: Vec<TenantId>,
    /// The cell a data-plane token is bound to.
    #[arg(long)]
    cell: Option<CellId>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl_secs: i64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.roles
        .iter()
        .any(|r| matches!(r, Role::TenantAdmin | Role::TenantViewer))
        && a.tenants.is_empty()
    {
        anyhow::bail!("tenant-admin and tenant-viewer tokens need at least one --tenant");
    }
    if a.roles.contains(&Role::DataPlane) && a.cell.is_none() {
        anyhow::bail!("a data-plane token needs --cell");
    }
    if a.ttl_secs < 1 {
        anyhow::bail!("--ttl-secs must be positive");
    }
    let keys = crate::devkey::load(&a.data_dir)?;
    let token = keys
        .mint(&a.subject, a.roles, a.tenants, a.cell, a.ttl_secs)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{token}");
    Ok(())
}
