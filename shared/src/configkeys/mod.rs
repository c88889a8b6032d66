//! The config schema registry's key definitions: a key's type, default,
//! bounds and the scopes it may be set at, and how a value is checked
//! against them. The global tier owns definitions; cells apply them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The type of a config key's values.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "ConfigType")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValueType {
    /// `true` or `false`.
    Bool,
    /// A 64-bit integer, within the key's `min` and `max` when set.
    Int,
    /// A string, one of the key's `enum` values and matching its `pattern` when set.
    String,
    /// A string such as `250ms`, `30s`, `5m`, `2h` or `1d`.
    Duration,
    /// Any JSON value, satisfying the key's `jsonSchema` when set.
    Json,
}

/// A level a config value is set at. The narrower scope wins: ENVIRONMENT
/// over PROJECT over TENANT over the key's default.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "ConfigScope")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Scope {
    /// The whole tenant.
    Tenant,
    /// One of the tenant's projects.
    Project,
    /// One environment (`dev`, `prod`, …) of one project.
    Environment,
}

/// One key of the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyDef {
    /// 1 to 128 of `a-z 0-9 . _ -`, starting with a letter, e.g. `limits.max_users`.
    pub key: String,
    /// The type every value must have.
    pub value_type: ValueType,
    /// The value where no scope sets one; valid for the key.
    pub default: Value,
    /// The scopes a value may be set at; at least one.
    pub scopes: Vec<Scope>,
    /// Free text for people.
    pub description: String,
    /// The least value of an INT key, inclusive.
    pub min: Option<i64>,
    /// The greatest value of an INT key, inclusive; at least `min`.
    pub max: Option<i64>,
    /// Allowed values of a STRING key.
    pub allowed: Option<Vec<String>>,
    /// A regular expression a STRING value must match in full.
    pub pattern: Option<String>,
    /// A JSON Schema (draft 2020-12 unless `$schema` says otherwise) a JSON
    /// value must satisfy. Remote `$ref`s are not fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<Value>,
    /// Values stay and still apply; new uses are discouraged.
    pub deprecated: bool,
}

/// Parses `250ms`, `30s`, `5m`, `2h`, `1d` (a whole number and one unit)
/// into milliseconds; `None` for anything else or on overflow.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

impl KeyDef {
    /// Checks the definition itself (key syntax, scopes, bounds that fit the
    /// type, a valid pattern and schema, a valid default); every problem is
    /// listed, one message each.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        let key_ok = !self.key.is_empty()
            && self.key.len() <= 128
            && self.key.starts_with(|c: char| c.is_ascii_lowercase())
            && self.key.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if !key_ok {
            errs.push(format!(
                "key `{}` must start with a lowercase letter and hold only a-z, 0-9, '.', '_' or '-' (at most 128)",
                self.key
            ));
        }
        if self.scopes.is_empty() {
            errs.push("scopes must name at least one of TENANT, PROJECT, ENVIRONMENT".into());
        }
        if let (Some(min), Some(max)) = (self.min, self.max)
            && min > max
        {
            errs.push(format!("min {min} is greater than max {max}"));
        }
        if (self.min.is_some() || self.max.is_some()) && self.value_type != ValueType::Int {
            errs.push("min and max apply to INT keys only".into());
        }
        if (self.allowed.is_some() || self.pattern.is_some())
            && self.value_type != ValueType::String
        {
            errs.push("enum and pattern apply to STRING keys only".into());
        }
        if let Some(schema) = &self.json_schema {
            if self.value_type != ValueType::Json {
                errs.push("jsonSchema applies to JSON keys only".into());
            } else if let Err(e) = jsonschema::validator_for(schema) {
                errs.push(format!("jsonSchema is not a valid JSON Schema: {e}"));
            }
        }
        if let Some(p) = &self.pattern
            && regex::Regex::new(p).is_err()
        {
            errs.push(format!("pattern `{p}` is not a valid regular expression"));
        }
        if errs.is_empty()
            && let Err(e) = self.validate(&self.default)
        {
            errs.push(format!("default: {e}"));
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// Checks a value against the key's type and bounds; the error is one
    /// message for the user naming the key.
    pub fn validate(&self, v: &Value) -> Result<(), String> {
        match self.value_type {
            ValueType::Bool => v
                .as_bool()
                .map(|_| ())
                .ok_or_else(|| format!("{} must be a boolean", self.key)),
            ValueType::Int => {
                let n = v
                    .as_i64()
                    .ok_or_else(|| format!("{} must be an integer", self.key))?;
                if let Some(min) = self.min
                    && n < min
                {
                    return Err(format!("{} must be at least {min}, got {n}", self.key));
                }
                if let Some(max) = self.max
                    && n > max
                {
                    return Err(format!("{} must be at most {max}, got {n}", self.key));
                }
                Ok(())
            }
            ValueType::String => {
                let s = v
                    .as_str()
                    .ok_or_else(|| format!("{} must be a string", self.key))?;
                if let Some(allowed) = &self.allowed
                    && !allowed.iter().any(|a| a == s)
                {
                    return Err(format!(
                        "{} must be one of {}, got `{s}`",
                        self.key,
                        allowed.join(", ")
                    ));
                }
                if let Some(p) = &self.pattern {
                    let re = regex::Regex::new(&format!("^(?:{p})$"))
                        .map_err(|_| format!("{}: bad pattern", self.key))?;
                    if !re.is_match(s) {
                        return Err(format!("{} must match `{p}`, got `{s}`", self.key));
                    }
                }
                Ok(())
            }
            ValueType::Duration => v
                .as_str()
                .and_then(parse_duration_ms)
                .map(|_| ())
                .ok_or_else(|| {
                    format!(
                        "{} must be a duration such as 250ms, 30s, 5m, 2h or 1d",
                        self.key
                    )
                }),
            ValueType::Json => match &self.json_schema {
                None => Ok(()),
                Some(schema) => {
                    let validator = jsonschema::validator_for(schema)
                        .map_err(|_| format!("{}: bad jsonSchema", self.key))?;
                    let problems: Vec<String> = validator
                        .iter_errors(v)
                        .map(|e| {
                            let at = e.instance_path().to_string();
                            if at.is_empty() {
                                e.to_string()
                            } else {
                                format!("at {at}: {e}")
                            }
                        })
                        .collect();
                    if problems.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} does not match its JSON Schema: {}",
                            self.key,
                            problems.join("; ")
                        ))
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(t: ValueType, default: Value) -> KeyDef {
        KeyDef {
            key: "limits.max_users".into(),
            value_type: t,
            default,
            scopes: vec![Scope::Tenant],
            description: String::new(),
            min: None,
            max: None,
            allowed: None,
            pattern: None,
            json_schema: None,
            deprecated: false,
        }
    }

    #[test]
    fn json_values_follow_their_schema() {
        let d = KeyDef {
            json_schema: Some(json!({
                "type": "object",
                "properties": { "retries": { "type": "integer", "minimum": 0 } },
                "required": ["retries"],
                "additionalProperties": false
            })),
            ..def(ValueType::Json, json!({ "retries": 3 }))
        };
        assert!(d.check().is_ok());
        assert!(d.validate(&json!({ "retries": 1 })).is_ok());
        let err = d.validate(&json!({ "retries": -1 })).unwrap_err();
        assert!(err.contains("/retries"), "{err}");
        assert!(d.validate(&json!({})).is_err());
        assert!(d.validate(&json!({ "retries": 1, "x": 1 })).is_err());
        let bad_default = KeyDef {
            default: json!({ "retries": "three" }),
            ..d.clone()
        };
        assert!(bad_default.check().unwrap_err()[0].starts_with("default:"));
        let bad_schema = KeyDef {
            json_schema: Some(json!({ "type": "no-such-type" })),
            ..d.clone()
        };
        assert!(bad_schema.check().unwrap_err()[0].contains("not a valid JSON Schema"));
        let not_json = KeyDef {
            json_schema: Some(json!({ "type": "string" })),
            ..def(ValueType::String, json!("a"))
        };
        assert!(not_json.check().is_err());
    }

    #[test]
    fn ints_respect_bounds() {
        let d = KeyDef {
            min: Some(1),
            max: Some(10),
            ..def(ValueType::Int, json!(5))
        };
        assert!(d.check().is_ok());
        assert!(d.validate(&json!(0)).is_err());
        assert!(d.validate(&json!(11)).is_err());
        assert!(d.validate(&json!("5")).is_err());
        assert!(d.validate(&json!(10)).is_ok());
    }

    #[test]
    fn strings_respect_enum_and_pattern() {
        let d = KeyDef {
            allowed: Some(vec!["a".into(), "b".into()]),
            ..def(ValueType::String, json!("a"))
        };
        assert!(d.validate(&json!("c")).is_err());
        let p = KeyDef {
            pattern: Some("[a-z]+".into()),
            ..def(ValueType::String, json!("abc"))
        };
        assert!(p.check().is_ok());
        assert!(
            p.validate(&json!("abc1")).is_err(),
            "the pattern matches the whole value"
        );
    }

    #[test]
    fn bad_definitions_list_every_problem() {
        let d = KeyDef {
            key: "Bad Key".into(),
            scopes: vec![],
            min: Some(5),
            max: Some(1),
            ..def(ValueType::Int, json!(3))
        };
        assert_eq!(d.check().unwrap_err().len(), 3);
        let wrong_default = def(ValueType::Bool, json!("yes"));
        assert!(wrong_default.check().unwrap_err()[0].starts_with("default:"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
        assert_eq!(parse_duration_ms("5"), None);
        assert_eq!(parse_duration_ms("5x"), None);
    }
}

pub mod api;
pub mod store;

/// The stream that carries key definitions from the global tier to cells.
pub const STREAM: &str = "global.config-keys";

/// The sync entity of a key.
pub fn entity(key: &str) -> String {
    format!("config-key:{key}")
}

/// A key as both APIs show it.
#[derive(async_graphql::SimpleObject, Debug, Clone)]
#[graphql(name = "ConfigKey")]
pub struct View {
    /// The key, e.g. `limits.max_users`.
    pub key: String,
    /// The type every value must have.
    #[graphql(name = "type")]
    pub value_type: ValueType,
    /// The value where no scope sets one.
    pub default: async_graphql::Json<Value>,
    /// The scopes a value may be set at.
    pub scopes: Vec<Scope>,
    /// What the key is for.
    pub description: String,
    /// The least value of an INT key, inclusive.
    pub min: Option<i64>,
    /// The greatest value of an INT key, inclusive.
    pub max: Option<i64>,
    /// The values a STRING key allows; null: any.
    #[graphql(name = "enum")]
    pub allowed: Option<Vec<String>>,
    /// A regular expression a STRING value must match in full.
    pub pattern: Option<String>,
    /// A JSON Schema a JSON value must satisfy.
    pub json_schema: Option<async_graphql::Json<Value>>,
    /// Values stay and still apply; new uses are discouraged.
    pub deprecated: bool,
    /// Increases with every change to the definition.
    pub version: i64,
}

impl From<store::Stored> for View {
    fn from(s: store::Stored) -> Self {
        let d = s.def;
        Self {
            key: d.key,
            value_type: d.value_type,
            default: async_graphql::Json(d.default),
            scopes: d.scopes,
            description: d.description,
            min: d.min,
            max: d.max,
            allowed: d.allowed,
            pattern: d.pattern,
            json_schema: d.json_schema.map(async_graphql::Json),
            deprecated: d.deprecated,
            version: s.version,
        }
    }
}

/// Applies definitions received from the global tier, in one transaction,
/// each only if it is newer than what this database holds. Returns how
/// many changed anything.
pub async fn apply(
    db: &sea_orm::DatabaseConnection,
    defs: &[(KeyDef, i64)],
) -> crate::Result<usize> {
    apply_paced(db, defs, std::time::Duration::ZERO).await
}

/// [`apply`] of the global tier's whole registry (a resync), which also
/// repairs a key whose row no longer matches the definition at the version
/// this database applied: changed or deleted behind the consumer's back,
/// which version-based sync and anti-entropy digests cannot see. Returns
/// `(changed, repaired)`.
pub async fn repair(
    db: &sea_orm::DatabaseConnection,
    defs: &[(KeyDef, i64)],
) -> crate::Result<(usize, usize)> {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    let (mut changed, mut repaired) = (0, 0);
    for (def, version) in defs {
        let id = entity(&def.key);
        if crate::sync::applied::advance(&txn, &id, *version).await? {
            store::put(&txn, def, *version).await?;
            changed += 1;
        } else if crate::sync::applied::current(&txn, &id).await? == Some(*version) {
            let want = store::Stored {
                def: def.clone(),
                version: *version,
            };
            if store::get(&txn, &def.key).await?.as_ref() != Some(&want) {
                store::put(&txn, def, *version).await?;
                repaired += 1;
            }
        }
    }
    txn.commit().await?;
    Ok((changed, repaired))
}

/// [`apply`], pausing `delay` before the commit: fault injection for tests
/// that kill a consumer in the middle of a batch.
pub async fn apply_paced(
    db: &sea_orm::DatabaseConnection,
    defs: &[(KeyDef, i64)],
    delay: std::time::Duration,
) -> crate::Result<usize> {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    crate::sync::applied::relaxed_commit(&txn).await?;
    let mut changed = 0;
    for (def, version) in defs {
        if crate::sync::applied::advance(&txn, &entity(&def.key), *version).await? {
            store::put(&txn, def, *version).await?;
            changed += 1;
        }
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    txn.commit().await?;
    Ok(changed)
}
