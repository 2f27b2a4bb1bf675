//! fusionhook-receiver: FusionAuth webhook events in, 200 or 500 out.
//!
//! Stages, each in its own module: [`verify`] (who sent it), [`dedupe`]
//! (did we handle it already), [`route`] (who wants it), [`action`] (do it),
//! [`answer`] (what FusionAuth hears). With a [`store`], durable routes are
//! committed before the answer and worked off by [`delivery`]; [`admin`]
//! serves the admin API. [`app`](mod@app) wires them; [`config`] reads
//! the config file; [`server`] serves and shuts down gracefully; [`process`]
//! sets up logging (and [`telemetry`]'s traces) and waits for the shutdown
//! signal (both binaries use it).

pub mod action;
pub mod admin;
pub mod answer;
pub mod app;
pub mod config;
pub mod dedupe;
pub mod delivery;
pub mod metrics;
pub mod process;
pub mod route;
pub mod secret;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod verify;

pub use app::{AppState, app};
pub use config::Config;
