//! JWT claims, roles and verification.
//!
//! Tokens are HS256 (pinned: any other `alg`, including `none`, is refused)
//! with `exp`, `iss` and `aud` required, `nbf` honoured when present and a
//! non-empty `sub`. Every refusal answers the same [`REFUSED`] message; which
//! check failed is logged, never told to the caller. Several verification secrets may be
//! configured at once so that keys rotate without downtime; the first one
//! signs, and each token names its key with a `kid`.

use std::fmt;
use std::str::FromStr;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::ids::{CellId, Invalid, TenantId};

/// The `iss` tokens carry and must carry unless configured otherwise.
pub const DEFAULT_ISSUER: &str = "tenantctl";
/// The `aud` tokens carry and must carry unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "tenant-control-plane";
const ALGORITHM: Algorithm = Algorithm::HS256;

/// What a caller whose token was refused (missing, malformed, expired, not
/// yet valid, wrongly signed, revoked…) is told, whatever the reason.
pub const REFUSED: &str = "invalid or missing token";

/// What a principal may do; a token carries one or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything, everywhere.
    PlatformAdmin,
    /// Reads everything and runs operations; cannot create tenants.
    Sre,
    /// Reads and changes the tenants named in the token.
    TenantAdmin,
    /// Reads the tenants named in the token.
    TenantViewer,
    /// Calls one cell's data-plane hooks.
    DataPlane,
    /// A tier of the control plane calling another (global → cell, cell → global).
    Service,
}

impl Role {
    /// Every role, in the order help texts list them.
    pub const ALL: [Role; 6] = [
        Role::PlatformAdmin,
        Role::Sre,
        Role::TenantAdmin,
        Role::TenantViewer,
        Role::DataPlane,
        Role::Service,
    ];

    /// The role's name in tokens and on the command line, such as `tenant-admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform-admin",
            Role::Sre => "sre",
            Role::TenantAdmin => "tenant-admin",
            Role::TenantViewer => "tenant-viewer",
            Role::DataPlane => "data-plane",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let valid: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
                Invalid(format!(
                    "unknown role `{s}`; valid roles: {}",
                    valid.join(", ")
                ))
            })
    }
}

/// The JWT payload the control plane signs and accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token speaks for; must be non-empty.
    pub sub: String,
    /// Who issued the token; must match the configured issuer.
    pub iss: String,
    /// Who the token is for; must match the configured audience.
    pub aud: String,
    /// Expiry, in seconds since the epoch (30 s of leeway, none for break-glass tokens).
    pub exp: i64,
    /// When the token was minted, in seconds since the epoch.
    pub iat: i64,
    /// What the bearer may do.
    pub roles: Vec<Role>,
    /// Tenants a tenant-scoped role applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<TenantId>,
    /// The cell a `data-plane` or cell `service` token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<CellId>,
    /// The break-glass request a break-glass token was minted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bg: Option<uuid::Uuid>,
}

/// Who is calling, once the token is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: who is calling.
    pub subject: String,
    /// What the caller may do.
    pub roles: Vec<Role>,
    /// The tenants a tenant-scoped role applies to; empty for platform roles.
    pub tenants: Vec<TenantId>,
    /// The cell a `data-plane` or cell `service` caller is bound to.
    pub cell: Option<CellId>,
    /// The break-glass request this token was minted for, if it is one.
    pub break_glass: Option<uuid::Uuid>,
}

impl From<Claims> for Principal {
    fn from(c: Claims) -> Self {
        Self {
            subject: c.sub,
            roles: c.roles,
            tenants: c.tenants,
            cell: c.cell,
            break_glass: c.bg,
        }
    }
}

impl Principal {
    /// Whether the principal holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the principal holds any of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    /// The global tier's own service identity (not bound to a cell).
    pub fn is_control_plane(&self) -> bool {
        self.has(Role::Service) && self.cell.is_none()
    }

    /// Platform-wide readers: they may see every tenant. A cell's service
    /// identity is not one of them: it may only speak for its own cell.
    pub fn reads_everything(&self) -> bool {
        self.has_any(&[Role::PlatformAdmin, Role::Sre]) || self.is_control_plane()
    }

    /// Whether this principal may see tenant `id` at all. Callers answer
    /// NOT_FOUND, never FORBIDDEN, when this is false, so that a tenant
    /// principal learns nothing of other tenants' existence.
    pub fn can_read_tenant(&self, id: TenantId) -> bool {
        self.reads_everything()
            || (self.has_any(&[Role::TenantAdmin, Role::TenantViewer])
                && self.tenants.contains(&id))
    }

    /// Whether this principal may change tenant `id`: a platform admin, the global tier, or a tenant admin of that tenant.
    pub fn can_write_tenant(&self, id: TenantId) -> bool {
        self.has(Role::PlatformAdmin)
            || self.is_control_plane()
            || (self.has(Role::TenantAdmin) && self.tenants.contains(&id))
    }

    /// FORBIDDEN unless the principal holds one of `roles`.
    pub fn require_any(&self, roles: &[Role], action: &str) -> Result<(), Error> {
        if self.has_any(roles) {
            return Ok(());
        }
        let need: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
        Err(Error::Forbidden(format!(
            "{action} needs one of the roles: {}",
            need.join(", ")
        )))
    }
}

/// Why a token was refused. Kept apart from `Error` so the reason is logged
/// while the client sees a uniform UNAUTHENTICATED.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The request carried no `Authorization: Bearer` token.
    #[error("no bearer token")]
    Missing,
    /// The token failed a check: signature, algorithm, key id, expiry, issuer, audience or subject.
    #[error("token refused: {0}")]
    Invalid(String),
}

impl From<TokenError> for Error {
    /// The reason goes to the log; the caller gets [`REFUSED`].
    fn from(e: TokenError) -> Self {
        tracing::info!(reason = %e, "token refused");
        Error::Unauthenticated(REFUSED.into())
    }
}

struct Key {
    kid: String,
    decoding: DecodingKey,
}

/// Verifies tokens and, when it holds the signing secret, mints them.
pub struct Keys {
    issuer: String,
    audience: String,
    signing: Option<(String, EncodingKey)>,
    verifying: Vec<Key>,
    validation: Validation,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field(
                "kids",
                &self.verifying.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The key id of a secret: a short digest, so tokens name their key without revealing it.
pub fn key_id(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    hex::encode(&digest[..6])
}

impl Keys {
    /// `secrets[0]` signs and verifies; the rest only verify (rotation).
    pub fn hs256(secrets: &[String], issuer: &str, audience: &str) -> Result<Self, Invalid> {
        let first = secrets
            .first()
            .ok_or_else(|| Invalid("at least one JWT secret is required".into()))?;
        let mut verifying = Vec::with_capacity(secrets.len());
        for s in secrets {
            if s.len() < 32 {
                return Err(Invalid(
                    "JWT secrets must be at least 32 characters long".into(),
                ));
            }
            verifying.push(Key {
                kid: key_id(s),
                decoding: DecodingKey::from_secret(s.as_bytes())
                    .map_err(|e| Invalid(format!("bad JWT secret: {e}")))?,
            });
        }
        let signing = EncodingKey::from_secret(first.as_bytes())
            .map_err(|e| Invalid(format!("bad JWT secret: {e}")))?;
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // `nbf` is optional, but a token that names one is refused before it.
        validation.validate_nbf = true;
        validation.leeway = 30;
        Ok(Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            signing: Some((key_id(first), signing)),
            verifying,
            validation,
        })
    }

    /// Checks the token's signature and claims and answers who it speaks for; every failure is a [`TokenError`].
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        self.verify_expiring(token).map(|(p, _)| p)
    }

    /// Like `verify`, with the token's expiry (`exp`, seconds since the
    /// epoch), so a caller may remember the answer until then.
    pub fn verify_expiring(&self, token: &str) -> Result<(Principal, i64), TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != ALGORITHM {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => self.verifying.iter().filter(|k| &k.kid == kid).collect(),
            None => self.verifying.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(TokenError::Invalid("unknown key id".into()));
        }
        let mut last = None;
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation) {
                // A break-glass token gets no leeway: it never outlives its grant.
                Ok(data)
                    if data.claims.bg.is_some()
                        && data.claims.exp <= chrono::Utc::now().timestamp() =>
                {
                    return Err(TokenError::Invalid("break-glass token expired".into()));
                }
                Ok(data) if data.claims.sub.trim().is_empty() => {
                    return Err(TokenError::Invalid("empty subject".into()));
                }
                Ok(data) => {
                    let exp = data.claims.exp;
                    return Ok((data.claims.into(), exp));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(TokenError::Invalid(
            last.map(|e| e.to_string()).unwrap_or_default(),
        ))
    }

    /// Mints a token; `ttl_secs` from now.
    pub fn mint(
        &self,
        subject: &str,
        roles: Vec<Role>,
        tenants: Vec<TenantId>,
        cell: Option<CellId>,
        ttl_secs: i64,
    ) -> Result<String, Error> {
        let now = chrono::Utc::now().timestamp();
        self.sign(Claims {
            sub: subject.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + ttl_secs,
            iat: now,
            roles,
            tenants,
            cell,
            bg: None,
        })
    }

    /// Mints a break-glass token: one role on one tenant, naming request
    /// `bg`, valid until `expires_at` (epoch seconds), checked without leeway.
    pub fn mint_break_glass(
        &self,
        subject: &str,
        role: Role,
        tenant: TenantId,
        bg: uuid::Uuid,
        expires_at: i64,
    ) -> Result<String, Error> {
        self.sign(Claims {
            sub: subject.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: expires_at,
            iat: chrono::Utc::now().timestamp(),
            roles: vec![role],
            tenants: vec![tenant],
            cell: None,
            bg: Some(bg),
        })
    }

    fn sign(&self, claims: Claims) -> Result<String, Error> {
        let (kid, key) = self
            .signing
            .as_ref()
            .ok_or_else(|| Error::internal(anyhow::anyhow!("no signing key configured")))?;
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, &claims, key).map_err(Error::internal)
    }
}

/// Extracts the token from an `Authorization: Bearer …` value.
pub fn bearer(value: Option<&str>) -> Result<&str, TokenError> {
    let v = value.ok_or(TokenError::Missing)?.trim();
    let (scheme, token) = v.split_once(' ').ok_or(TokenError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::Missing);
    }
    Ok(token.trim())
}

/// Caches minted service tokens so hot paths do not sign on every call.
pub struct ServiceToken {
    keys: std::sync::Arc<Keys>,
    subject: String,
    cell: Option<CellId>,
    cached: std::sync::Mutex<Option<(String, i64)>>,
}

impl ServiceToken {
    const TTL: i64 = 600;

    /// Mints tokens for `subject` (bound to `cell` when given) with the signing secret of `keys`.
    pub fn new(keys: std::sync::Arc<Keys>, subject: &str, cell: Option<CellId>) -> Self {
        Self {
            keys,
            subject: subject.to_owned(),
            cell,
            cached: std::sync::Mutex::new(None),
        }
    }

    /// A service token valid for at least another minute, minted anew when the cached one is about to expire; fails without a signing secret.
    pub fn get(&self) -> Result<String, Error> {
        let now = chrono::Utc::now().timestamp();
        let mut guard = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((tok, exp)) = guard.as_ref()
            && *exp - 60 > now
        {
            return Ok(tok.clone());
        }
        let tok = self.keys.mint(
            &self.subject,
            vec![Role::Service],
            vec![],
            self.cell.clone(),
            Self::TTL,
        )?;
        *guard = Some((tok.clone(), now + Self::TTL));
        Ok(tok)
    }
}

/// Parses comma-separated role lists as given on the command line.
pub fn parse_roles(list: &str) -> Result<Vec<Role>, Invalid> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Role::from_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210";

    fn keys() -> Keys {
        Keys::hs256(&[SECRET.into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE).unwrap()
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let t = k.mint("alice", vec![Role::Sre], vec![], None, 60).unwrap();
        let p = k.verify(&t).unwrap();
        assert_eq!(p.subject, "alice");
        assert_eq!(p.roles, vec![Role::Sre]);
    }

    #[test]
    fn expired_is_refused() {
        let k = keys();
        let t = k
            .mint("alice", vec![Role::Sre], vec![], None, -120)
            .unwrap();
        assert!(k.verify(&t).is_err());
    }

    #[test]
    fn wrong_secret_is_refused() {
        let other = Keys::hs256(&[OTHER.into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE).unwrap();
        let t = other
            .mint("mallory", vec![Role::PlatformAdmin], vec![], None, 60)
            .unwrap();
        assert!(keys().verify(&t).is_err());
    }

    #[test]
    fn wrong_audience_and_issuer_are_refused() {
        let aud = Keys::hs256(&[SECRET.into()], DEFAULT_ISSUER, "someone-else").unwrap();
        let t = aud.mint("a", vec![Role::Sre], vec![], None, 60).unwrap();
        assert!(keys().verify(&t).is_err());
        let iss = Keys::hs256(&[SECRET.into()], "evil", DEFAULT_AUDIENCE).unwrap();
        let t = iss.mint("a", vec![Role::Sre], vec![], None, 60).unwrap();
        assert!(keys().verify(&t).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let exp = chrono::Utc::now().timestamp() + 600;
        let body = b64.encode(
            format!(r#"{{"sub":"x","iss":"{DEFAULT_ISSUER}","aud":"{DEFAULT_AUDIENCE}","exp":{exp},"iat":0,"roles":["platform-admin"]}}"#)
                .as_bytes(),
        );
        assert!(keys().verify(&format!("{header}.{body}.")).is_err());
    }

    #[test]
    fn rotation_accepts_previous_key() {
        let old = Keys::hs256(&[OTHER.into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE).unwrap();
        let t = old.mint("a", vec![Role::Sre], vec![], None, 60).unwrap();
        let rotated = Keys::hs256(
            &[SECRET.into(), OTHER.into()],
            DEFAULT_ISSUER,
            DEFAULT_AUDIENCE,
        )
        .unwrap();
        assert!(rotated.verify(&t).is_ok());
    }

    #[test]
    fn tenant_scope() {
        let a = TenantId::new();
        let b = TenantId::new();
        let viewer = Principal {
            subject: "v".into(),
            roles: vec![Role::TenantViewer],
            tenants: vec![a],
            cell: None,
            break_glass: None,
        };
        assert!(viewer.can_read_tenant(a));
        assert!(!viewer.can_read_tenant(b));
        assert!(!viewer.can_write_tenant(a));
    }

    #[test]
    fn a_cell_service_identity_speaks_only_for_its_cell() {
        let cell = Principal {
            subject: "cell:us-east-1-a".into(),
            roles: vec![Role::Service],
            tenants: vec![],
            cell: Some(CellId::parse("us-east-1-a").unwrap()),
            break_glass: None,
        };
        assert!(!cell.reads_everything());
        assert!(!cell.can_read_tenant(TenantId::new()));
        let global = Principal { cell: None, ..cell };
        assert!(global.reads_everything());
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer(Some("bearer  abc ")).unwrap(), "abc");
        assert!(bearer(Some("Basic abc")).is_err());
        assert!(bearer(None).is_err());
        assert!(bearer(Some("Bearer ")).is_err());
    }

    #[test]
    fn break_glass_tokens_carry_their_request_and_get_no_leeway() {
        let k = keys();
        let (t, bg) = (TenantId::new(), uuid::Uuid::now_v7());
        let now = chrono::Utc::now().timestamp();
        let tok = k
            .mint_break_glass("alice", Role::TenantAdmin, t, bg, now + 60)
            .unwrap();
        let p = k.verify(&tok).unwrap();
        assert_eq!(p.break_glass, Some(bg));
        assert_eq!(p.tenants, vec![t]);
        // Ordinary tokens get 30 s of leeway; a break-glass one none.
        let late = k
            .mint_break_glass("alice", Role::TenantAdmin, t, bg, now - 1)
            .unwrap();
        assert!(k.verify(&late).is_err());
        let ordinary = k.mint("a", vec![Role::Sre], vec![], None, -1).unwrap();
        assert!(k.verify(&ordinary).is_ok());
    }

    /// Signs arbitrary claims with `SECRET`, as `Keys` would.
    fn forge(claims: serde_json::Value) -> String {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(key_id(SECRET));
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn claims(sub: &str) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({
            "sub": sub, "iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE,
            "exp": now + 3600, "iat": now, "roles": ["platform-admin"],
        })
    }

    #[test]
    fn a_token_is_refused_before_its_nbf() {
        let now = chrono::Utc::now().timestamp();
        let mut later = claims("alice");
        later["nbf"] = (now + 3600).into();
        let err = keys().verify(&forge(later)).unwrap_err();
        assert!(err.to_string().contains("Immature"), "{err}");
        // Within the leeway, or past, it is valid.
        let mut now_ok = claims("alice");
        now_ok["nbf"] = (now + 5).into();
        assert!(keys().verify(&forge(now_ok)).is_ok());
        let mut past = claims("alice");
        past["nbf"] = (now - 60).into();
        assert!(keys().verify(&forge(past)).is_ok());
        // A wrongly typed nbf is no way around it.
        let mut string_nbf = claims("alice");
        string_nbf["nbf"] = "tomorrow".into();
        assert!(keys().verify(&forge(string_nbf)).is_err());
    }

    #[test]
    fn an_empty_or_missing_subject_is_refused() {
        for sub in ["", "   "] {
            assert!(keys().verify(&forge(claims(sub))).is_err(), "{sub:?}");
        }
        let mut none = claims("x");
        none.as_object_mut().unwrap().remove("sub");
        assert!(keys().verify(&forge(none)).is_err());
        assert!(keys().verify(&forge(claims("alice"))).is_ok());
    }

    #[test]
    fn every_refusal_tells_the_caller_the_same_thing() {
        let k = keys();
        let expired = k.mint("a", vec![Role::Sre], vec![], None, -600).unwrap();
        let mut bad_roles = claims("a");
        bad_roles["roles"] = serde_json::json!(["root"]);
        let reasons = [
            bearer(None).unwrap_err(),
            k.verify(&expired).unwrap_err(),
            k.verify("not.a.jwt").unwrap_err(),
            k.verify(&forge(bad_roles)).unwrap_err(),
            k.verify(&forge(claims(""))).unwrap_err(),
        ];
        for r in reasons {
            let detail = r.to_string();
            let public = Error::from(r);
            assert_eq!(public.code(), crate::error::Code::Unauthenticated);
            assert_eq!(public.to_string(), REFUSED, "detail was {detail}");
        }
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(Keys::hs256(&["short".into()], DEFAULT_ISSUER, DEFAULT_AUDIENCE).is_err());
    }
}
