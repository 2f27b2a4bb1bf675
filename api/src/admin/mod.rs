//! The receiver's admin API, as both sides speak it: it listens on its own
//! port ([`PORT`], never FusionAuth's), takes a scoped token (one Secret
//! per [`AdminScope`]) in [`TOKEN_HEADER`]
//! (the API server's proxy drops `Authorization`), and answers
//! `POST /v1/prove` ([`Challenge`] in, [`Proofs`] out) so that a client can
//! tell a real receiver from a pod that only carries its labels before it
//! shows it a token ([`proof`]). [`client`] (feature `kube`) is the one
//! client of it, for the operator and the plugin.

use serde::{Deserialize, Serialize};

use crate::names::AdminScope;

#[cfg(feature = "kube")]
pub mod client;

/// The methods the admin API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Reads.
    Get,
    /// Changes, and the proof.
    Post,
}

impl Method {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One endpoint of the admin API: the receiver serves exactly
/// [`ENDPOINTS`], each behind its scope's token, and the book's admin API
/// page is generated from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Its method.
    pub method: Method,
    /// The path, as axum writes it (`/v1/events/{id}`).
    pub path: &'static str,
    /// The token's scope it needs (a token of `admin.tokenFile` may do
    /// everything); `None`: no token.
    pub scope: Option<AdminScope>,
    /// What it takes.
    pub request: &'static str,
    /// What it answers.
    pub answer: &'static str,
}

impl Endpoint {
    /// A call of it (no path parameter).
    pub fn route(self) -> Route {
        self.route_to("")
    }

    /// A call of it with its `{id}` filled in (the caller percent-encodes
    /// `id`: event ids are UUIDs).
    pub fn route_to(self, id: &str) -> Route {
        Route { endpoint: self, path: self.path.trim_start_matches('/').replace("{id}", id) }
    }
}

/// A call of one endpoint: what a client sends it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its path without the leading slash, as the API server's pod proxy
    /// appends it (`v1/events/ID`).
    pub path: String,
}

impl Route {
    /// The scope whose token the call needs (the least: every scope may
    /// read, and `prove` needs none).
    pub fn scope(&self) -> AdminScope {
        self.endpoint.scope.unwrap_or(AdminScope::Read)
    }
}

/// `GET /v1/stats`: what the store holds.
pub const STATS: Endpoint = Endpoint {
    method: Method::Get,
    path: "/v1/stats",
    scope: Some(AdminScope::Read),
    request: "nothing",
    answer: "`store` (`none`, `embedded`, `postgres`); `pending`, `dead`, `delivered` in all and per route, `oldestPendingSeconds` in all (all null while the store cannot answer); with a store, `storeProblem`: why it cannot commit, or null; `quietSeconds` since the last event arrived (not while the store cannot answer)",
};

/// `GET /v1/deliveries`: one page of deliveries.
pub const DELIVERIES: Endpoint = Endpoint {
    method: Method::Get,
    path: "/v1/deliveries",
    scope: Some(AdminScope::Read),
    request: "query `state` (`pending`, `dead`, `delivered`), `route`, `eventType`, `eventId`, `since` (ms since the epoch or a duration back: `15m`), `id` (repeatable), `after` (a delivery id), `limit`; every one given applies",
    answer: "`deliveries` (id, route, state, event id and type, attempts, last error, next attempt), `next`: give it as `after` when more may follow",
};

/// `GET /v1/events/{id}`: one stored event.
pub const EVENT: Endpoint = Endpoint {
    method: Method::Get,
    path: "/v1/events/{id}",
    scope: Some(AdminScope::Read),
    request: "the event's `event.id` in the path",
    answer: "the event as received, with its deliveries and the last 10 attempts of each; 404 `[notFound]` when no stored event has the id",
};

/// `POST /v1/replay`: deliver again.
pub const REPLAY: Endpoint = Endpoint {
    method: Method::Post,
    path: "/v1/replay",
    scope: Some(AdminScope::Replay),
    request: "`{\"ids\": [...]}` and/or a filter (`state`, `route`, `eventType`, `eventId`, `since`, `after`, `limit`), `\"dryRun\": true` to only list",
    answer: "`ids` replayed (or that would be), `dryRun`, `next`",
};

/// `POST /v1/discard`: give deliveries up.
pub const DISCARD: Endpoint = Endpoint {
    method: Method::Post,
    path: "/v1/discard",
    scope: Some(AdminScope::Replay),
    request: "as replay",
    answer: "`ids` discarded (or that would be), `dryRun`, `next`",
};

/// `POST /v1/ingest`: run an event through the routes.
pub const INGEST: Endpoint = Endpoint {
    method: Method::Post,
    path: "/v1/ingest",
    scope: Some(AdminScope::Ingest),
    request: "an event exactly as FusionAuth sends it; handled as a delivery of its `event.id` (routes, dedupe, store) without FusionAuth's credentials",
    answer: "`outcome`: `handled` (a sync route ran it), `stored` (committed; deliveries follow), `duplicate` or `unmatched`; or the public port's refusal (400 for a malformed event, 500 when an action failed)",
};

/// `POST /v1/prove`: the pod proves it holds a token.
pub const PROVE: Endpoint = Endpoint {
    method: Method::Post,
    path: "/v1/prove",
    scope: None,
    request: "`nonce` (fresh 16 to 128 characters), `scope` (`read`, `replay`, `ingest`)",
    answer: "`pod`, its name; `proofs`, hex HMAC-SHA256 of a fixed label, the pod's name and the nonce under each value of that scope's token it accepts (two shortly after a rotation); a client shows a pod its token only after this",
};

/// Every endpoint, in the order the book lists them.
pub const ENDPOINTS: [Endpoint; 7] = [STATS, DELIVERIES, EVENT, REPLAY, DISCARD, INGEST, PROVE];

/// The admin API's port in a receiver pod.
pub const PORT: u16 = 8081;

/// The header that carries the token through the API server's service and
/// pod proxy, which removes `Authorization` before proxying.
pub const TOKEN_HEADER: &str = "x-fusionhook-token";

/// The body of `POST /v1/prove`: a fresh nonce, and the scope whose token
/// the pod is to prove it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// 16 to 128 characters, fresh for each challenge.
    pub nonce: String,
    /// `read`, `replay` or `ingest`.
    pub scope: String,
}

/// The answer to `POST /v1/prove`: the pod's own name and a [`proof`] for
/// each value of the scope's token it accepts (two, shortly after a rotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proofs {
    /// The pod's name, as it knows it.
    pub pod: String,
    /// Hex HMAC-SHA256 proofs.
    pub proofs: Vec<String>,
}

/// The proof that the holder of `token` is pod `pod`, for a client's
/// `nonce`: hex HMAC-SHA256 under the token of a fixed label, the pod's
/// name and the nonce. The pod's name is bound in so a pod that relays a
/// challenge to a real receiver gets a proof for that receiver's name,
/// not its own.
pub fn proof(token: &[u8], pod: &str, nonce: &str) -> String {
    use hmac::Mac;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(token) else { return String::new() };
    mac.update(format!("fusionhook admin proof v1\n{pod}\n{nonce}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_binds_the_token_the_pod_and_the_nonce() {
        let p = proof(b"token", "hook-receiver-0", "0123456789abcdef");
        assert_eq!(p.len(), 64);
        assert_ne!(p, proof(b"other", "hook-receiver-0", "0123456789abcdef"));
        assert_ne!(p, proof(b"token", "hook-receiver-1", "0123456789abcdef"));
        assert_ne!(p, proof(b"token", "hook-receiver-0", "0123456789abcdeF"));
        let wire = serde_json::json!({"nonce": "n", "scope": "read", "extra": 1});
        assert!(serde_json::from_value::<Challenge>(wire).is_err(), "unknown fields are refused");
    }
}
