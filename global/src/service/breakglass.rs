//! Break-glass access: an SRE asks for READ or WRITE access to one tenant
//! for a while; another SRE (or platform admin) approves or denies it; the
//! requester activates it for a token scoped to that tenant whose expiry
//! never passes approval + the approved duration; anyone of them may
//! revoke it, and the revocation reaches every process of both tiers on
//! `global.break-glass`. Unapproved requests expire. Every state change is
//! versioned and audited in its own transaction.
//!
//! [`rules`] says who may do what and which change each action makes;
//! [`store`] runs the actions on the database.

mod rules;
mod store;

#[cfg(test)]
mod tests;

pub use rules::{
    ACTIVE, APPROVED, DENIED, EXPIRED, NewRequest, OPERATORS, PENDING, REVOKED, Scope,
};
pub use store::{
    activate, activity, approve, deny, expire, get, list, live_revocations, request, revoke,
    visible,
};
