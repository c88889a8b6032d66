//! The in-process transport of the embedded dev stack: the same semantics
//! as Redis Streams consumer groups, kept in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Claimed, Delivery, Event, GroupIdle, GroupStatus, Transport};
use crate::Result;

#[derive(Default)]
struct Group {
    /// Index of the next entry never delivered to this group.
    next: usize,
    /// Delivered, not yet acked: position → (consumer, delivered at).
    pending: BTreeMap<u64, (String, Instant)>,
    /// When a consumer last read or claimed.
    last_read: Option<Instant>,
}

#[derive(Default)]
struct Stream {
    entries: Vec<(u64, Event)>,
    groups: HashMap<String, Group>,
}

/// An in-memory [`Transport`]: streams live as long as the value and are
/// never trimmed. Share one (in an `Arc`) between the tiers of a process.
#[derive(Default)]
pub struct Memory {
    streams: Mutex<HashMap<String, Stream>>,
    appended: Notify,
}

impl Memory {
    /// A transport with no streams yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Stream>) -> R) -> R {
        f(&mut self.streams.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn event_at(s: &Stream, pos: u64) -> Option<Event> {
    s.entries
        .binary_search_by_key(&pos, |(p, _)| *p)
        .ok()
        .map(|i| s.entries[i].1.clone())
}

#[async_trait::async_trait]
impl Transport for Memory {
    async fn publish(&self, stream: &str, event: &Event) -> Result<String> {
        let pos = self.with(|m| {
            let s = m.entry(stream.to_owned()).or_default();
            let pos = s.entries.last().map(|(p, _)| p + 1).unwrap_or(1);
            s.entries.push((pos, event.clone()));
            pos
        });
        self.appended.notify_waiters();
        Ok(pos.to_string())
    }

    async fn ensure_group(&self, stream: &str, group: &str) -> Result<()> {
        self.with(|m| {
            m.entry(stream.to_owned())
                .or_default()
                .groups
                .entry(group.to_owned())
                .or_default();
        });
        Ok(())
    }

    async fn read(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + block;
        loop {
            let notified = self.appended.notified();
            let batch = self.with(|m| {
                let s = m.entry(stream.to_owned()).or_default();
                let g = s.groups.entry(group.to_owned()).or_default();
                g.last_read = Some(Instant::now());
                let end = (g.next + count).min(s.entries.len());
                let out: Vec<Delivery> = s.entries[g.next..end]
                    .iter()
                    .map(|(p, e)| Delivery {
                        position: p.to_string(),
                        event: e.clone(),
                    })
                    .collect();
                for (p, _) in &s.entries[g.next..end] {
                    g.pending.insert(*p, (consumer.to_owned(), Instant::now()));
                }
                g.next = end;
                out
            });
            let now = Instant::now();
            if !batch.is_empty() || now >= deadline {
                return Ok(batch);
            }
            let _ = tokio::time::timeout(deadline - now, notified).await;
        }
    }

    async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Claimed> {
        Ok(self.with(|m| {
            let s = m.entry(stream.to_owned()).or_default();
            let stale: Vec<u64> = {
                let g = s.groups.entry(group.to_owned()).or_default();
                g.last_read = Some(Instant::now());
                let stale: Vec<u64> = g
                    .pending
                    .iter()
                    .filter(|(_, (_, at))| at.elapsed() >= min_idle)
                    .map(|(p, _)| *p)
                    .take(count)
                    .collect();
                for p in &stale {
                    g.pending.insert(*p, (consumer.to_owned(), Instant::now()));
                }
                stale
            };
            let mut claimed = Claimed::default();
            for p in stale {
                match event_at(s, p) {
                    Some(event) => claimed.deliveries.push(Delivery {
                        position: p.to_string(),
                        event,
                    }),
                    None => claimed.trimmed.push(p.to_string()),
                }
            }
            claimed
        }))
    }

    async fn group_status(&self, stream: &str, group: &str) -> Result<GroupStatus> {
        Ok(self.with(|m| {
            let Some(s) = m.get(stream) else {
                return GroupStatus::default();
            };
            let Some(g) = s.groups.get(group) else {
                return GroupStatus::default();
            };
            let oldest_pending = g.pending.keys().next().copied();
            // Everything before the oldest pending entry (or before the next
            // undelivered one) was applied.
            let first_unapplied_index = match oldest_pending {
                Some(p) => s.entries.partition_point(|(q, _)| *q < p),
                None => g.next,
            };
            let last_applied = first_unapplied_index
                .checked_sub(1)
                .map(|i| s.entries[i].0.to_string());
            let oldest_unapplied = s
                .entries
                .get(first_unapplied_index)
                .map(|(_, e)| e.created_at);
            GroupStatus {
                exists: true,
                last_applied,
                pending: g.pending.len() as u64,
                undelivered: (s.entries.len() - g.next) as u64,
                oldest_unapplied,
            }
        }))
    }

    async fn ack(&self, stream: &str, group: &str, positions: &[String]) -> Result<()> {
        self.with(|m| {
            if let Some(g) = m.get_mut(stream).and_then(|s| s.groups.get_mut(group)) {
                for p in positions {
                    if let Ok(p) = p.parse::<u64>() {
                        g.pending.remove(&p);
                    }
                }
            }
        });
        Ok(())
    }

    async fn groups(&self, stream: &str) -> Result<Vec<GroupIdle>> {
        Ok(self.with(|m| {
            let mut out: Vec<GroupIdle> = m
                .get(stream)
                .map(|s| {
                    s.groups
                        .iter()
                        .map(|(name, g)| GroupIdle {
                            name: name.clone(),
                            idle: g.last_read.map(|at| at.elapsed()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            out
        }))
    }

    async fn drop_group(&self, stream: &str, group: &str) -> Result<()> {
        self.with(|m| {
            if let Some(s) = m.get_mut(stream) {
                s.groups.remove(group);
            }
        });
        Ok(())
    }
}
