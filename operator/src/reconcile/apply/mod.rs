//! apply: make the world match what build produced. Each applier does the
//! fewest writes that get there (none in steady state); errors carry the
//! condition reason a user can act on.
//!
//! - [`kubernetes`]: receiver objects server-side applied, their rollout, the status patch;
//! - [`fusionauth`]: signing key and webhook (create / drift repair), old keys deleted.

pub mod fusionauth;
pub mod kubernetes;
