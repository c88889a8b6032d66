//! Secret references: the control plane stores where a secret lives, never
//! the secret. A value that is not a well-formed reference is refused, and
//! errors never repeat the value (it may be the secret itself).

use crate::ids::Invalid;

/// The schemes a secret reference may use, as in `vault://…`.
pub const SCHEMES: [&str; 5] = ["vault", "aws-sm", "gcp-sm", "azure-kv", "k8s-secret"];

fn dns_label(s: &str) -> bool {
    crate::ids::Label::parse(s).is_ok()
}

fn path_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks `r`; the error names the rule broken, never the value.
pub fn validate(r: &str) -> Result<(), Invalid> {
    let refuse = |why: &str| Err(Invalid(format!("not a valid secret reference: {why}")));
    if r.len() > 1024 {
        return refuse("longer than 1024 characters");
    }
    let Some((scheme, rest)) = r.split_once("://") else {
        return refuse(
            "expected one of vault://, aws-sm://, gcp-sm://, azure-kv://, k8s-secret://",
        );
    };
    let (path, fragment) = match rest.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (rest, None),
    };
    if fragment.is_some_and(|f| !path_segment(f)) {
        return refuse("the #field must be letters, digits, '-', '_' or '.'");
    }
    let segs: Vec<&str> = path.split('/').collect();
    match scheme {
        "vault" => {
            if segs.len() < 2 || !segs.iter().all(|s| path_segment(s)) {
                return refuse("vault://MOUNT/PATH[#field] with at least two path segments");
            }
        }
        "aws-sm" => {
            let ok = !path.is_empty()
                && path.len() <= 512
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-:".contains(&b));
            if !ok {
                return refuse("aws-sm://NAME-OR-ARN[#field]");
            }
        }
        "gcp-sm" => {
            let ok = matches!(segs.as_slice(), ["projects", p, "secrets", s] if path_segment(p) && path_segment(s))
                || matches!(segs.as_slice(), ["projects", p, "secrets", s, "versions", v] if path_segment(p) && path_segment(s) && path_segment(v));
            if !ok {
                return refuse("gcp-sm://projects/PROJECT/secrets/SECRET[/versions/VERSION]");
            }
        }
        "azure-kv" => {
            let vault_ok = |v: &str| {
                (3..=24).contains(&v.len())
                    && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            let secret_ok = |s: &str| {
                (1..=127).contains(&s.len())
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            let ok = matches!(segs.as_slice(), [v, s] if vault_ok(v) && secret_ok(s))
                || matches!(segs.as_slice(), [v, s, ver] if vault_ok(v) && secret_ok(s) && path_segment(ver));
            if !ok {
                return refuse("azure-kv://VAULT/SECRET[/VERSION]");
            }
        }
        "k8s-secret" => {
            let ok = matches!(segs.as_slice(), [ns, name] if dns_label(ns) && name.split('.').all(dns_label));
            if !ok {
                return refuse("k8s-secret://NAMESPACE/NAME[#key]");
            }
        }
        _ => {
            return refuse(
                "unknown scheme; expected one of vault://, aws-sm://, gcp-sm://, azure-kv://, k8s-secret://",
            );
        }
    }
    Ok(())
}

/// The scheme of a reference, safe to log.
pub fn scheme(r: &str) -> &str {
    r.split_once("://")
        .map(|(s, _)| s)
        .filter(|s| SCHEMES.contains(s))
        .unwrap_or("invalid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_each_scheme() {
        for r in [
            "vault://secret/data/acme#password",
            "aws-sm://prod/acme/db",
            "aws-sm://arn:aws:secretsmanager:us-east-1:123456789012:secret:acme-AbCdEf",
            "gcp-sm://projects/acme-prod/secrets/db-password",
            "gcp-sm://projects/acme-prod/secrets/db-password/versions/3",
            "azure-kv://acme-vault/db-password",
            "k8s-secret://tenants/acme-db#password",
        ] {
            assert!(validate(r).is_ok(), "{r}");
        }
    }

    #[test]
    fn refuses_values_and_malformed_references_without_echoing_them() {
        for r in [
            "hunter2",
            "postgres://user:hunter2@db/app",
            "vault://onlyone",
            "gcp-sm://projects/x/keys/y",
            "azure-kv://v/s",
            "k8s-secret://Bad_NS/name",
            "ftp://x/y",
        ] {
            let e = validate(r).unwrap_err();
            assert!(!e.0.contains("hunter2") && !e.0.contains(r), "{r}: {}", e.0);
        }
    }

    proptest! {
        #[test]
        fn errors_never_contain_the_value(s in "[a-zA-Z0-9:/#._-]{8,40}") {
            if let Err(e) = validate(&s) {
                prop_assert!(!e.0.contains(&s));
            }
        }
    }
}
