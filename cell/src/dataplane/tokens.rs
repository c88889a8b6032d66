//! Verified data-plane tokens, remembered until they expire: the data plane
//! sends the same token on every call, and verifying it (base64, JSON, an
//! HMAC) costs more than the quota decision itself.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;
use shared::auth::{Keys, Principal, TokenError};

const SHARDS: usize = 16;
/// Most tokens remembered per shard; a full shard starts over.
const PER_SHARD: usize = 1024;

struct Verified {
    token: Box<str>,
    principal: Arc<Principal>,
    exp: i64,
}

#[derive(Default)]
pub struct Tokens {
    shards: [Mutex<FxHashMap<u64, Verified>>; SHARDS],
}

impl Tokens {
    /// The token's principal: remembered if this exact token was verified
    /// and has not expired at `now` (seconds since the epoch), else verified.
    pub fn verify(&self, keys: &Keys, token: &str, now: i64) -> Result<Arc<Principal>, TokenError> {
        let h = xxhash_rust::xxh3::xxh3_64(token.as_bytes());
        let shard = &self.shards[(h as usize) % SHARDS];
        if let Some(v) = shard.lock().unwrap_or_else(|p| p.into_inner()).get(&h)
            && now < v.exp
            && &*v.token == token
        {
            return Ok(v.principal.clone());
        }
        let (p, exp) = keys.verify_expiring(token)?;
        let principal = Arc::new(p);
        let mut m = shard.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= PER_SHARD {
            m.clear();
        }
        m.insert(
            h,
            Verified {
                token: token.into(),
                principal: principal.clone(),
                exp,
            },
        );
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, Role};

    #[test]
    fn a_token_is_remembered_until_it_expires_and_only_that_exact_token() {
        let keys = Keys::hs256(
            &["a-secret-of-at-least-32-characters!!".into()],
            DEFAULT_ISSUER,
            DEFAULT_AUDIENCE,
        )
        .unwrap();
        let t = Tokens::default();
        let tok = keys
            .mint("edge", vec![Role::DataPlane], vec![], None, 60)
            .unwrap();
        let now = chrono::Utc::now().timestamp();
        let p = t.verify(&keys, &tok, now).unwrap();
        assert_eq!(p.subject, "edge");
        assert!(
            Arc::ptr_eq(&p, &t.verify(&keys, &tok, now).unwrap()),
            "remembered"
        );
        // Past its expiry it is not served from memory: verified again.
        let again = t.verify(&keys, &tok, now + 3600).unwrap();
        assert!(!Arc::ptr_eq(&p, &again));
        let mut forged = tok.clone();
        forged.push('x');
        assert!(
            t.verify(&keys, &forged, now).is_err(),
            "another string is verified"
        );
    }
}
