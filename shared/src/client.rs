//! The GraphQL client one tier uses to call another (global → cell, cell →
//! global): a service token, the request id and W3C trace context on every
//! call, and remote errors turned back into the same codes.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::ServiceToken;
use crate::error::{Code, Error, Result};
use crate::request::RequestId;

/// A GraphQL client authenticated as the control plane's service identity.
/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct GraphqlClient {
    http: reqwest::Client,
    token: Arc<ServiceToken>,
}

impl GraphqlClient {
    /// A client whose calls each take at most `timeout` (connecting at most
    /// 2 s of it), authenticated with `token`.
    pub fn new(token: Arc<ServiceToken>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_max_idle_per_host(32)
            .build()
            .expect("HTTP client builds");
        Self { http, token }
    }

    /// Runs `query` on `base_url` (`http://host:port`) and decodes `data`.
    /// `target` names the callee in errors (`cell us-east-1-a`). An
    /// unreachable callee or unreadable answer is UNAVAILABLE; the first
    /// GraphQL error comes back with its code and field, except that a
    /// refusal of the service token is INTERNAL.
    pub async fn call<T: DeserializeOwned>(
        &self,
        target: &str,
        base_url: &str,
        query: &str,
        variables: Value,
    ) -> Result<T> {
        let url = format!("{}/graphql", base_url.trim_end_matches('/'));
        let token = self.token.get()?;
        let mut req = self
            .http
            .post(&url)
            .bearer_auth(token)
            .header("x-request-id", RequestId::current_or_new().as_str())
            .json(&serde_json::json!({ "query": query, "variables": variables }));
        if let Some(bg) = crate::breakglass::current() {
            req = req.header(crate::breakglass::HEADER, bg.to_string());
        }
        for (k, v) in crate::telemetry::current_trace_headers() {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| {
            tracing::warn!(target_name = target, error = %e, "call failed");
            Error::Unavailable(format!("{target} is unreachable"))
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| {
            tracing::warn!(target_name = target, %status, error = %e, "unreadable answer");
            Error::Unavailable(format!(
                "{target} gave an unreadable answer (HTTP {status})"
            ))
        })?;
        if let Some(err) = body
            .get("errors")
            .and_then(|e| e.as_array())
            .and_then(|a| a.first())
        {
            return Err(remote_error(target, err));
        }
        let data = body.get("data").cloned().unwrap_or(Value::Null);
        serde_json::from_value(data).map_err(|e| {
            Error::internal(anyhow::anyhow!(
                "{target} answered an unexpected shape: {e}"
            ))
        })
    }
}

fn remote_error(target: &str, err: &Value) -> Error {
    let message = err
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("unknown error")
        .to_owned();
    let ext = err.get("extensions");
    let code = ext
        .and_then(|e| e.get("code"))
        .and_then(|c| c.as_str())
        .and_then(Code::parse)
        .unwrap_or(Code::Internal);
    let field = ext
        .and_then(|e| e.get("field"))
        .and_then(|c| c.as_str())
        .map(str::to_owned);
    match code {
        // The callee refused our own service identity: that is our fault, not the client's.
        Code::Unauthenticated | Code::Forbidden => Error::internal(anyhow::anyhow!(
            "{target} refused the service call: {message}"
        )),
        _ => Error::from_remote(code, message, field),
    }
}
