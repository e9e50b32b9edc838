//! What every controller does with the outcome of `kube::runtime::finalizer`.

use kube::runtime::controller::Action;
use kube::runtime::finalizer;

use super::context::Context;
use super::error::{Error, Result};

/// A success resets the object's retry back-off; a failed apply or cleanup is returned as it
/// is; a failure of the finalizer patch itself says which object it was.
pub fn outcome(
    ctx: &Context,
    kind: &'static str,
    key: String,
    result: std::result::Result<Action, finalizer::Error<Error>>,
) -> Result<Action> {
    match result {
        Ok(action) => {
            ctx.succeeded(&key);
            Ok(action)
        }
        Err(finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e)) => Err(e),
        Err(e) => Err(Error::Finalizer {
            kind,
            name: key,
            message: e.to_string(),
        }),
    }
}
