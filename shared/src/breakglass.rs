//! Break-glass tokens across the tiers: the revocation list every process
//! keeps in memory (checked on every request that carries a `bg` claim),
//! the stream revocations travel on, and the request's break-glass id as a
//! task-local, so audits and calls to the other tier carry it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Principal, TokenError};

/// Revocations, global tier → every process of every tier.
pub const STREAM: &str = "global.break-glass";

/// The header the global tier names the break-glass request with when it
/// calls a cell on behalf of a break-glass token; honoured only from the
/// control plane's own service identity.
pub const HEADER: &str = "x-break-glass-id";

/// One revoked request: its tokens are refused until `until`, after which
/// they have expired anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    /// The break-glass request (the tokens' `bg` claim).
    pub id: Uuid,
    /// When its last token expires; the entry can be dropped after that.
    pub until: DateTime<Utc>,
}

/// The revoked break-glass requests this process knows of: one hash lookup
/// per request that carries a `bg` claim. A list made [`unloaded`]
/// (a cell's, before it has read the global tier's list) refuses every
/// break-glass token until [`mark_loaded`]: a token revoked while the
/// process was down must not get through in the moments after it starts.
///
/// [`unloaded`]: Revocations::unloaded
/// [`mark_loaded`]: Revocations::mark_loaded
#[derive(Clone)]
pub struct Revocations(Arc<RwLock<HashMap<Uuid, i64>>>, Arc<AtomicBool>);

impl Default for Revocations {
    /// A list that is complete as it is (the global tier fills it from its
    /// database before it serves).
    fn default() -> Self {
        Self(Arc::default(), Arc::new(AtomicBool::new(true)))
    }
}

impl Revocations {
    /// A list that refuses break-glass tokens until it is loaded.
    pub fn unloaded() -> Self {
        Self(Arc::default(), Arc::new(AtomicBool::new(false)))
    }

    /// The whole list has been read (from the global tier).
    pub fn mark_loaded(&self) {
        self.1.store(true, Ordering::Release);
    }

    /// Whether break-glass tokens may be accepted at all: the list is complete.
    pub fn is_loaded(&self) -> bool {
        self.1.load(Ordering::Acquire)
    }

    /// Adds (or replaces) a revocation, dropping entries whose `until` has passed.
    pub fn revoke(&self, r: &Revoked) {
        let mut m = self.0.write().unwrap_or_else(|p| p.into_inner());
        let now = Utc::now().timestamp();
        m.retain(|_, until| *until >= now);
        m.insert(r.id, r.until.timestamp());
    }

    /// Whether break-glass request `id` was revoked.
    pub fn is_revoked(&self, id: Uuid) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&id)
    }

    /// How many revocations the list holds, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the list holds no revocation.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses a principal whose break-glass request was revoked, and every
    /// break-glass principal while the list is not loaded yet.
    pub fn check(&self, p: &Principal) -> Result<(), TokenError> {
        match p.break_glass {
            Some(id) if self.is_revoked(id) => Err(TokenError::Invalid(format!(
                "break-glass access {id} was revoked"
            ))),
            Some(_) if !self.is_loaded() => Err(TokenError::Invalid(
                "break-glass tokens are refused until this process has loaded the \
                 revocation list from the global tier; retry shortly"
                    .into(),
            )),
            _ => Ok(()),
        }
    }
}

tokio::task_local! {
    static CURRENT: Uuid;
}

/// The break-glass request the current request acts under, if any.
pub fn current() -> Option<Uuid> {
    CURRENT.try_with(|id| *id).ok()
}

/// Runs `fut` acting under break-glass request `id` (when there is one).
pub async fn scope<F: Future>(id: Option<Uuid>, fut: F) -> F::Output {
    match id {
        Some(id) => CURRENT.scope(id, fut).await,
        None => fut.await,
    }
}

/// The break-glass request a request acts under: the caller's own `bg`
/// claim, or the one the control plane names in [`HEADER`] when it calls on
/// behalf of a break-glass token.
pub fn of_request(p: &Principal, header: Option<&str>) -> Option<Uuid> {
    p.break_glass.or_else(|| {
        if p.is_control_plane() {
            header.and_then(|h| Uuid::parse_str(h.trim()).ok())
        } else {
            None
        }
    })
}

/// Applies revocations from [`STREAM`] into `list` until `shutdown`. Each
/// process reads the stream in a group of its own (`group`), so every
/// replica of every tier hears every revocation.
pub fn spawn_consumer(
    transport: Arc<dyn crate::sync::Transport>,
    group: String,
    list: Revocations,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    use crate::sync::{Event, consumer};
    let handler: consumer::Handler = Arc::new(move |events: Vec<Event>| {
        let list = list.clone();
        Box::pin(async move {
            for e in events {
                match serde_json::from_value::<Revoked>(e.payload) {
                    Ok(r) => list.revoke(&r),
                    Err(err) => tracing::warn!(error = %err, "unreadable revocation skipped"),
                }
            }
            Ok(())
        })
    });
    let cfg = consumer::Config {
        stream: STREAM.into(),
        consumer: group.clone(),
        group,
        batch: 100,
        block: std::time::Duration::from_secs(1),
        claim_idle: std::time::Duration::from_secs(30),
    };
    tokio::spawn(consumer::run(transport, cfg, handler, None, shutdown))
}

/// Groups on [`STREAM`] that no process has read for `idle` (each process
/// reads it in a group of its own, so a stopped or crashed process leaves
/// its group behind): dropped by [`GroupSweeper::sweep`]. A group no consumer has
/// read yet counts from the first sweep that saw it so.
#[derive(Default)]
pub struct GroupSweeper {
    unread_since: HashMap<String, std::time::Instant>,
}

impl GroupSweeper {
    /// Drops the groups idle for `idle` or longer; returns their names.
    pub async fn sweep(
        &mut self,
        transport: &dyn crate::sync::Transport,
        idle: std::time::Duration,
    ) -> crate::Result<Vec<String>> {
        let groups = transport.groups(STREAM).await?;
        let now = std::time::Instant::now();
        self.unread_since
            .retain(|name, _| groups.iter().any(|g| &g.name == name && g.idle.is_none()));
        let mut dropped = Vec::new();
        for g in groups {
            let stale = match g.idle {
                Some(i) => i >= idle,
                None => {
                    let since = *self.unread_since.entry(g.name.clone()).or_insert(now);
                    now.duration_since(since) >= idle
                }
            };
            if stale {
                transport.drop_group(STREAM, &g.name).await?;
                self.unread_since.remove(&g.name);
                dropped.push(g.name);
            }
        }
        Ok(dropped)
    }
}

/// Drops the groups of dead processes on [`STREAM`] every `idle / 2` (at
/// most every minute) until `shutdown`. Every global replica runs it;
/// dropping a group twice is harmless, and a live process whose group was
/// dropped (cut off from Redis for longer than `idle`) recreates it.
pub fn spawn_group_sweeper(
    transport: Arc<dyn crate::sync::Transport>,
    idle: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let every = (idle / 2).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(60),
    );
    tokio::spawn(async move {
        let mut sweeper = GroupSweeper::default();
        loop {
            match sweeper.sweep(transport.as_ref(), idle).await {
                Ok(dropped) if !dropped.is_empty() => {
                    tracing::info!(
                        stream = STREAM,
                        ?dropped,
                        "idle consumer groups of stopped processes dropped"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "consumer group sweep skipped"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_requests_are_refused_until_their_tokens_expire() {
        let r = Revocations::default();
        let id = Uuid::now_v7();
        let p = Principal {
            subject: "a".into(),
            roles: vec![],
            tenants: vec![],
            cell: None,
            break_glass: Some(id),
        };
        assert!(r.check(&p).is_ok());
        r.revoke(&Revoked {
            id,
            until: Utc::now() + chrono::Duration::seconds(60),
        });
        assert!(r.check(&p).is_err());
        // An entry past its tokens' expiry is dropped on the next revocation.
        r.revoke(&Revoked {
            id: Uuid::now_v7(),
            until: Utc::now(),
        });
        let old = Uuid::now_v7();
        r.0.write()
            .unwrap()
            .insert(old, Utc::now().timestamp() - 10);
        r.revoke(&Revoked {
            id: Uuid::now_v7(),
            until: Utc::now() + chrono::Duration::seconds(5),
        });
        assert!(!r.is_revoked(old));
        assert!(r.is_revoked(id));
    }

    #[test]
    fn an_unloaded_list_refuses_break_glass_tokens_only() {
        let r = Revocations::unloaded();
        let mut p = Principal {
            subject: "a".into(),
            roles: vec![],
            tenants: vec![],
            cell: None,
            break_glass: None,
        };
        assert!(r.check(&p).is_ok(), "other tokens pass");
        p.break_glass = Some(Uuid::now_v7());
        assert!(r.check(&p).is_err());
        r.mark_loaded();
        assert!(r.check(&p).is_ok());
    }
}
