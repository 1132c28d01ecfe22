//! Token verification lives in the shared `auth` crate (the participant uses it too); the
//! server re-exports it and maps its errors in `error`.

pub use auth::{AuthError, Caller, Scope, Verifier};
