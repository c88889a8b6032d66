//! Layered configuration: defaults → TOML file → environment and flags
//! (clap reads `PREFIX_` variables for each flag), validated at start.

use std::path::Path;
use std::sync::Arc;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::{self, Keys};

/// Merges `defaults`, then the file if given, then `overrides` (fields left
/// `None` in `overrides` must be skipped when serialized).
pub fn load<T, O>(defaults: T, file: Option<&Path>, overrides: &O) -> Result<T, String>
where
    T: Serialize + DeserializeOwned,
    O: Serialize,
{
    let mut fig = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = file {
        if !path.exists() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        fig = fig.merge(Toml::file(path));
    }
    fig.merge(Serialized::defaults(overrides))
        .extract()
        .map_err(|e| format!("invalid configuration: {e}"))
}

/// How tokens are verified (and service tokens signed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Jwt {
    /// The current HS256 secret: signs service tokens and verifies.
    pub secret: Option<String>,
    /// Older secrets still accepted while tokens signed with them expire.
    #[serde(default)]
    pub previous_secrets: Vec<String>,
    pub issuer: String,
    pub audience: String,
}

impl Default for Jwt {
    fn default() -> Self {
        Self {
            secret: None,
            previous_secrets: Vec::new(),
            issuer: auth::DEFAULT_ISSUER.into(),
            audience: auth::DEFAULT_AUDIENCE.into(),
        }
    }
}

impl Jwt {
    pub fn keys(&self) -> Result<Arc<Keys>, String> {
        let secret = self
            .secret
            .clone()
            .ok_or("jwt.secret is required (env *_JWT_SECRET)")?;
        let mut all = vec![secret];
        all.extend(self.previous_secrets.iter().filter(|s| !s.is_empty()).cloned());
        Keys::hs256(&all, &self.issuer, &self.audience)
            .map(Arc::new)
            .map_err(|e| e.0)
    }
}

/// Splits a comma-separated flag or variable into a list.
pub fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The database URL for an embedded SQLite file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct C {
        a: u32,
        b: String,
    }

    #[derive(Serialize)]
    struct O {
        #[serde(skip_serializing_if = "Option::is_none")]
        a: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<String>,
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "a = 2\nb = \"file\"\n").unwrap();
        let d = C { a: 1, b: "default".into() };
        let c: C = load(d, Some(&file), &O { a: Some(3), b: None }).unwrap();
        assert_eq!(c, C { a: 3, b: "file".into() });
        let missing = load(C { a: 1, b: "x".into() }, Some(&dir.join("nope.toml")), &O { a: None, b: None });
        assert!(missing.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn list_splitting() {
        assert_eq!(split_list(" a, b,,c "), vec!["a", "b", "c"]);
    }
}
