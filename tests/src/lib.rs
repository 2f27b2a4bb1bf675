//! Test doubles and helpers shared by fusionhook's tests, benchmarks and
//! (later) the emulators and the sandbox.

pub mod events;
pub mod todo;
