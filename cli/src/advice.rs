//! advice: what a condition's reason means and what to do about it, in
//! plain words: the contract's [`Reason::advice`], for the terminal.

use fusionhook_api::conditions::Reason;

/// What to do about `reason` (`None`: nothing to do; a reason this plugin
/// does not know, from a newer operator: see the message).
pub fn what_to_do(reason: &str) -> Option<&'static str> {
    Reason::named(reason).map_or(Some("see the message"), Reason::advice)
}
