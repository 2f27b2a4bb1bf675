//! The todo service of FusionAuth's "delete user data" example: todos per
//! user, and `DELETE /users/{id}/todos` to remove one user's todos. It also
//! records every request it receives, so tests can assert what arrived.
//! The store outlives the server, so a test can stop the service and start
//! it again on the same port ("the todo service was down").

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the service received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Todos by user id, plus the request log.
#[derive(Debug, Default)]
pub struct TodoStore {
    todos: Mutex<BTreeMap<String, Vec<String>>>,
    received: Mutex<Vec<Received>>,
    /// When set, every request answers this status and changes nothing.
    failing: Mutex<Option<StatusCode>>,
    /// When set, every request waits this long before it is handled.
    delay: Mutex<Option<std::time::Duration>>,
}

impl TodoStore {
    /// A store with todos for the given users.
    pub fn with(users: &[(&str, &[&str])]) -> Arc<Self> {
        let store = Self::default();
        if let Ok(mut todos) = store.todos.lock() {
            for (user, items) in users {
                todos.insert((*user).to_owned(), items.iter().map(|s| (*s).to_owned()).collect());
            }
        }
        Arc::new(store)
    }

    /// A user's todos.
    pub fn todos(&self, user: &str) -> Vec<String> {
        self.todos.lock().map(|t| t.get(user).cloned().unwrap_or_default()).unwrap_or_default()
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many times each event reached it, by `event.id` (requests whose
    /// body is an event, as a route with `body: event` sends it).
    pub fn event_counts(&self) -> BTreeMap<String, usize> {
        let mut ids = BTreeMap::new();
        for r in self.received() {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            if let Some(id) = body["event"]["id"].as_str() {
                *ids.entry(id.to_owned()).or_default() += 1;
            }
        }
        ids
    }

    /// Requests with this method.
    pub fn count(&self, method: &Method) -> usize {
        self.received().iter().filter(|r| r.method == method).count()
    }

    /// Make every request wait `delay` first (None: answer at once).
    pub fn delay_by(&self, delay: Option<std::time::Duration>) {
        if let Ok(mut d) = self.delay.lock() {
            *d = delay;
        }
    }

    /// Make every request answer `status` (None: behave).
    pub fn fail_with(&self, status: Option<StatusCode>) {
        if let Ok(mut f) = self.failing.lock() {
            *f = status;
        }
    }
}

async fn handle(
    State(store): State<Arc<TodoStore>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    user: Option<Path<String>>,
    body: Bytes,
) -> StatusCode {
    let delay = store.delay.lock().ok().and_then(|d| *d);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if let Ok(mut r) = store.received.lock() {
        r.push(Received { method: method.clone(), uri: uri.to_string(), headers, body: body.clone() });
    }
    if let Some(status) = store.failing.lock().ok().and_then(|f| *f) {
        return status;
    }
    let Some(Path(user)) = user else { return StatusCode::OK };
    let Ok(mut todos) = store.todos.lock() else { return StatusCode::INTERNAL_SERVER_ERROR };
    match method {
        Method::DELETE => {
            todos.remove(&user);
            StatusCode::NO_CONTENT
        }
        Method::POST => {
            todos.entry(user).or_default().push(String::from_utf8_lossy(&body).into_owned());
            StatusCode::CREATED
        }
        _ => StatusCode::OK,
    }
}

/// A running todo service.
pub struct TodoService {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TodoService {
    /// Starts on `addr` (port 0 for any free port).
    pub async fn start(store: Arc<TodoStore>, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/users/{user}/todos", any(handle))
            .fallback(any(|s, m, u, h, b| handle(s, m, u, h, None, b)))
            .with_state(store);
        let task = crate::serve::spawn(listener, app);
        Ok(Self { addr, task })
    }

    /// Stops it: the port refuses connections until started again.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
