//! apply: make the world match what build produced. Each applier does the
//! fewest writes that get there (none in steady state) and reports a status
//! step; errors carry the condition reason a user can act on.
//!
//! - [`kubernetes`]: Secrets read, receiver objects server-side applied, status;
//! - [`fusionauth`]: signing key, webhook (create / drift repair), tenant
//!   switches, and their clean-up on delete.

pub mod fusionauth;
pub mod kubernetes;
