//! The questions the global tier asks cells to answer "which tenants are
//! impacted?" for facts only a cell holds (the variant a flag serves a
//! tenant, a tenant's effective config value), and their answers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The environment flag questions evaluate in when none is named.
pub const DEFAULT_ENVIRONMENT: &str = "prod";

/// One question about every tenant of a cell. It names either `flagKey`
/// (with optional `flagVariant` and `environment`) or `configKey` with
/// `configValue`; anything else is BAD_USER_INPUT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, async_graphql::InputObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "ImpactQuestion")]
pub struct Question {
    /// Tenants the flag serves `flagVariant` (any variant but the flag's
    /// off variant when unset) in `environment` (default `prod`).
    pub flag_key: Option<String>,
    /// With `flagKey`: the variant asked about.
    pub flag_variant: Option<String>,
    /// With `flagKey`: the environment evaluated (default `prod`).
    pub environment: Option<String>,
    /// Tenants whose effective tenant-level value of `configKey` (their
    /// TENANT layer, else the key's default) equals `configValue` (JSON).
    pub config_key: Option<String>,
    /// With `configKey`: the value, as JSON (plain text reads as a string).
    pub config_value: Option<String>,
}

/// Reads a value given on the command line or in a query: JSON when it
/// parses as JSON, else the text itself.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// The tenants of one cell that answer each question, in question order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// Per question, the matching tenant ids (hyphenated UUIDs), sorted.
    pub matches: Vec<Vec<uuid::Uuid>>,
    /// How many tenants the cell checked.
    pub checked: i64,
}

/// Packs sorted ids as concatenated 32-hex-digit UUIDs: a cell's answer
/// for tens of thousands of tenants stays one compact string.
pub fn pack(ids: &[uuid::Uuid]) -> String {
    let mut s = String::with_capacity(ids.len() * 32);
    let mut buf = uuid::Uuid::encode_buffer();
    for id in ids {
        s.push_str(id.simple().encode_lower(&mut buf));
    }
    s
}

/// The ids `pack` packed; `None` when the text is not such a list.
pub fn unpack(text: &str) -> Option<Vec<uuid::Uuid>> {
    if !text.len().is_multiple_of(32) || !text.is_ascii() {
        return None;
    }
    (0..text.len() / 32)
        .map(|i| uuid::Uuid::try_parse(&text[i * 32..(i + 1) * 32]).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_ids_round_trip() {
        let ids: Vec<uuid::Uuid> = (0..5).map(|_| uuid::Uuid::new_v4()).collect();
        assert_eq!(unpack(&pack(&ids)), Some(ids));
        assert_eq!(unpack(""), Some(vec![]));
        assert_eq!(unpack("abc"), None);
        assert_eq!(unpack(&"z".repeat(32)), None);
    }

    #[test]
    fn values_parse_as_json_or_text() {
        assert_eq!(parse_value("42"), Value::from(42));
        assert_eq!(parse_value("true"), Value::Bool(true));
        assert_eq!(parse_value("\"x\""), Value::String("x".into()));
        assert_eq!(parse_value("eu"), Value::String("eu".into()));
        assert_eq!(parse_value("{\"a\":1}"), serde_json::json!({"a": 1}));
    }
}
