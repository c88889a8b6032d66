//! The dev stack's signing key, kept in the data dir so tokens outlive restarts.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, Keys};

const FILE: &str = "signing.key";

/// Reads the key, creating it (owner-only) on first use.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(FILE);
    if path.exists() {
        let k = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return Ok(k.trim().to_owned());
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let bytes: [u8; 32] = rand::random();
    let key = hex::encode(bytes);
    write_private(&path, &key)?;
    Ok(key)
}

/// Reads an existing key; the dev stack must have run once in `data_dir`.
pub fn load(data_dir: &Path) -> anyhow::Result<Arc<Keys>> {
    let path = data_dir.join(FILE);
    let key = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no dev signing key at {}: run `tenantctl dev --data-dir {}` first",
            path.display(),
            data_dir.display()
        )
    })?;
    keys(key.trim())
}

pub fn keys(secret: &str) -> anyhow::Result<Arc<Keys>> {
    Ok(Arc::new(
        Keys::hs256(&[secret.to_owned()], DEFAULT_ISSUER, DEFAULT_AUDIENCE)
            .map_err(|e| anyhow::anyhow!(e.0))?,
    ))
}

#[cfg(unix)]
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content)?;
    Ok(())
}
