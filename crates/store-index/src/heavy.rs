//! Exact search work, kept from starving other clients. The index gives a search its
//! candidates cheaply; the exact tests then cost (candidates x vertices). Usually that is
//! microseconds and runs where the request runs. A search whose cost estimate passes
//! [`HEAVY_SEARCH_COST`] (a 1000-vertex area over a dense city, say) runs on tokio's blocking
//! threads instead, at most [`heavy_permits`] at once, so the runtime's worker threads stay free
//! for cheap requests: a few expensive requests queue behind each other, not in front of
//! everyone else.

use std::sync::{Arc, LazyLock};

use geo4d::{Match, Volume4D};
use store::Stored;
use tokio::sync::Semaphore;

use crate::state::{exact_matches, Found, HasExtents};

/// Estimated vertex visits above which a search's exact tests leave the request's thread
/// (about a millisecond of work).
pub const HEAVY_SEARCH_COST: u64 = 200_000;

/// How many heavy searches run at once: half the cores, at least one.
pub fn heavy_permits() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

static HEAVY: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(heavy_permits())));

/// What a search found, decided: hits as they are, heavy candidates on the bounded pool.
pub async fn matches<T: HasExtents + Send + Sync + 'static>(
    area: &[Volume4D],
    how: Match,
    found: Found<T>,
) -> Vec<Stored<T>> {
    let candidates = match found {
        Found::Hits(hits) => return hits,
        Found::Heavy(candidates) => candidates,
    };
    let decide = move |area: &[Volume4D], candidates: &[Stored<T>]| -> Vec<Stored<T>> {
        let refs: Vec<&Stored<T>> = candidates.iter().collect();
        exact_matches(area, how, &refs).into_iter().cloned().collect()
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return decide(area, &candidates);
    }
    let permit = match HEAVY.clone().acquire_owned().await {
        Ok(p) => p,
        // The semaphore is never closed; if it were, the work still has to be done.
        Err(_) => return decide(area, &candidates),
    };
    let area = area.to_vec();
    let work = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        decide(&area, &candidates)
    });
    match work.await {
        Ok(found) => found,
        // A panic in the exact tests is a bug: surface it as the inline call would have.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a heavy search was cancelled: {e}"),
    }
}
