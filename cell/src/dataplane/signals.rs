//! `POST /v1/signals`: the data plane's request and error counts per tenant,
//! flag and variant, forwarded to the global tier (`cell.signals`) through
//! the outbox, where they judge rollout health gates.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use shared::error::Error;
use shared::flags::def::check_environment;
use shared::flags::report::{Signal, Signals};
use shared::flags::{self as f};
use shared::sync::{Event, outbox};

use super::auth::{Access, authorize, may_act_for};
use super::error::rejected;
use super::{Plane, error};

/// The most requests (and so errors) one signal may count: the global
/// tier's sums cannot overflow from a batch.
pub const MAX_COUNT: i64 = 1_000_000_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalsRequest {
    pub environment: String,
    pub signals: Vec<Signal>,
}

fn check(p: &Plane, req: &SignalsRequest) -> Result<(), Error> {
    check_environment(&req.environment).map_err(|m| Error::bad_input("environment", m))?;
    if req.signals.is_empty() || req.signals.len() > 1000 {
        return Err(Error::bad_input(
            "signals",
            "send 1 to 1000 signals at once",
        ));
    }
    let engine = p.st.flags.engine();
    for (i, s) in req.signals.iter().enumerate() {
        let field = format!("signals[{i}]");
        if s.requests < 0 || s.errors < 0 || s.errors > s.requests {
            return Err(Error::bad_input(
                field,
                "requests and errors must be non-negative, errors at most requests",
            ));
        }
        if s.requests > MAX_COUNT {
            return Err(Error::bad_input(
                format!("{field}.requests"),
                format!(
                    "a signal counts at most {MAX_COUNT} requests, got {}",
                    s.requests
                ),
            ));
        }
        if engine.tenant(s.tenant_id).is_none() {
            return Err(Error::bad_input(
                format!("{field}.tenantId"),
                format!("tenant {} is not a tenant of this cell", s.tenant_id),
            ));
        }
    }
    Ok(())
}

pub async fn post(
    State(p): State<Arc<Plane>>,
    headers: HeaderMap,
    body: Result<Json<SignalsRequest>, JsonRejection>,
) -> Response {
    let run = async {
        let principal = authorize(&p, &headers, Access::Write)?;
        let req = match body {
            Ok(Json(b)) => b,
            Err(r) => return Ok(Err(rejected(r.status(), "body", r.body_text()))),
        };
        check(&p, &req)?;
        for s in &req.signals {
            may_act_for(&principal, s.tenant_id)?;
        }
        let n = req.signals.len();
        let cell = p.st.cell_id.to_string();
        let payload = serde_json::to_value(Signals {
            cell: cell.clone(),
            environment: req.environment,
            signals: req.signals,
        })
        .map_err(Error::internal)?;
        // Each batch is its own version: redelivery applies it once.
        let version = chrono::Utc::now().timestamp_micros();
        let event = Event::new(
            f::SIGNAL_STREAM,
            &format!("signals:{cell}"),
            version,
            &cell,
            payload,
        );
        outbox::enqueue(&p.st.db, &event).await?;
        p.st.relay.nudge();
        Ok::<_, Error>(Ok(n))
    };
    match run.await {
        Ok(Ok(n)) => (StatusCode::ACCEPTED, Json(json!({ "accepted": n }))).into_response(),
        Ok(Err(refused)) => refused,
        Err(e) => error(e),
    }
}
