//! FusionAuth, as fusionhook needs it: the webhook event envelope, the table of
//! event types, signature verification of `X-FusionAuth-Signature-JWT`, and
//! FusionAuth's JWKS. The facts behind every rule live in
//! `docs/FACTS.md`; sections are cited as `FACTS.md §x`.

pub mod client;
pub mod event;
pub mod event_types;
pub mod jwks;
pub mod limited;
pub mod model;
pub mod signature;

pub use event::{EnvelopeError, Event, EventRequest};
