//! What the global tier publishes to its subscribers, below the GraphQL
//! layer: services publish these on `State.events` and the API turns them
//! into its own types (`graphql::subscription`).

use serde::{Deserialize, Serialize};

use crate::entity::tenant;

/// What happened to a tenant's directory row.
#[derive(Copy, Clone, Eq, PartialEq, Debug, Serialize, Deserialize)]
pub enum TenantEventKind {
    Created,
    Updated,
}

/// A change to a tenant's directory row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TenantEvent {
    pub kind: TenantEventKind,
    pub tenant: tenant::Model,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replicas exchange events through Redis: the wire form must not change.
    #[test]
    fn kinds_keep_their_wire_names() {
        assert_eq!(
            serde_json::to_string(&TenantEventKind::Created).unwrap(),
            "\"Created\""
        );
        assert_eq!(
            serde_json::from_str::<TenantEventKind>("\"Updated\"").unwrap(),
            TenantEventKind::Updated
        );
    }
}
