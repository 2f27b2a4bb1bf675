//! Test doubles and helpers shared by fusionhook's tests, benchmarks and
//! the sandbox: a FusionAuth emulator, a todo service, event builders.

pub mod binaries;
pub mod control_plane;
pub mod events;
pub mod fusionauth_emulator;
pub mod kube_emulator;
pub mod kubelet;
pub mod logs;
pub mod netns;
pub mod node;
pub mod otlp;
pub mod postgres;
pub mod promtool;
pub mod reference;
pub mod release;
pub mod serve;
pub mod stack;
pub mod todo;
pub mod tools;
pub mod volumes;
