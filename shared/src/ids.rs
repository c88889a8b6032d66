//! Validated identifiers shared by both tiers.
//!
//! Every id or key that crosses an API boundary is parsed into one of these
//! newtypes once, at the edge; code behind the edge never re-validates.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a value was refused, phrased for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A tenant's immutable id (UUID v7, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub Uuid);

impl TenantId {
    /// A fresh id (UUID v7, so ids sort by creation time).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TenantId {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| Invalid(format!("`{s}` is not a tenant id (a UUID)")))
    }
}

/// Checks a DNS label: lowercase letters, digits and `-`, not starting or
/// ending with `-`, between `min` and 63 characters.
fn check_dns_label(what: &str, s: &str, min: usize) -> Result<(), Invalid> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if s.len() < min || s.len() > 63 {
        return Err(Invalid(format!(
            "{what} must be {min} to 63 characters long, got {}",
            s.len()
        )));
    }
    if !ok_chars || s.starts_with('-') || s.ends_with('-') {
        return Err(Invalid(format!(
            "{what} `{s}` must be a DNS label: lowercase letters, digits and '-', not starting or ending with '-'"
        )));
    }
    Ok(())
}

macro_rules! label_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $min:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks `s` is a DNS label of the allowed length; the [`Invalid`] says what is wrong otherwise.
            pub fn parse(s: &str) -> Result<Self, Invalid> {
                check_dns_label($what, s, $min)?;
                Ok(Self(s.to_owned()))
            }
            /// The value as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Invalid;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

label_newtype!(
    /// A tenant's slug: a DNS label of 3 to 63 characters, unique platform-wide.
    Slug, "slug", 3
);
label_newtype!(
    /// A cell id such as `us-east-1-a`.
    CellId, "cell id", 1
);
label_newtype!(
    /// A region name such as `eu-west-1`. Regions are data, not schema enums.
    Region, "region", 1
);
label_newtype!(
    /// A plan name such as `pro`. Plans are data, not schema enums.
    Plan, "plan", 1
);
label_newtype!(
    /// A project's or an environment's name (`default`, `prod`): a DNS label.
    Label, "name", 1
);

/// A client-chosen key that makes a mutation safe to retry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key accepted, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Checks `s` is 1 to [`Self::MAX_LEN`] printable ASCII characters without spaces.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(Invalid(format!(
                "idempotency key must be 1 to {} characters long",
                Self::MAX_LEN
            )));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Invalid(
                "idempotency key must be printable ASCII without spaces".into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slug_examples() {
        assert!(Slug::parse("acme").is_ok());
        assert!(Slug::parse("acme-corp-42").is_ok());
        assert!(Slug::parse("ab").is_err());
        assert!(Slug::parse("Acme").is_err());
        assert!(Slug::parse("-acme").is_err());
        assert!(Slug::parse("acme-").is_err());
        assert!(Slug::parse("ac_me").is_err());
        assert!(Slug::parse(&"a".repeat(64)).is_err());
        assert!(Slug::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn tenant_id_round_trips_and_rejects_garbage() {
        let id = TenantId::new();
        assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
        assert!("not-a-uuid".parse::<TenantId>().is_err());
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<Slug>("\"UPPER\"").is_err());
        assert!(serde_json::from_str::<Slug>("\"lower\"").is_ok());
        assert!(serde_json::from_str::<IdempotencyKey>("\"\"").is_err());
    }

    proptest! {
        #[test]
        fn valid_labels_are_accepted(s in "[a-z0-9]([a-z0-9-]{1,61}[a-z0-9])") {
            let slug = Slug::parse(&s).unwrap();
            prop_assert_eq!(slug.as_str(), s.as_str());
        }

        #[test]
        fn accepted_slugs_are_dns_labels(s in "\\PC{0,70}") {
            if let Ok(slug) = Slug::parse(&s) {
                let v = slug.as_str();
                prop_assert!((3..=63).contains(&v.len()));
                prop_assert!(v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                prop_assert!(!v.starts_with('-') && !v.ends_with('-'));
            }
        }

        #[test]
        fn idempotency_keys_bounded(s in "\\PC{0,200}") {
            if let Ok(k) = IdempotencyKey::parse(&s) {
                prop_assert!(!k.as_str().is_empty() && k.as_str().len() <= IdempotencyKey::MAX_LEN);
                prop_assert!(!k.as_str().contains(' '));
            }
        }

        #[test]
        fn tenant_ids_round_trip(a in any::<u128>()) {
            let id = TenantId(Uuid::from_u128(a));
            prop_assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
        }
    }
}
