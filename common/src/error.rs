//! Error reporting helpers.

use std::error::Error;

/// An error and all its sources, `outer: inner: innermost`, skipping sources
/// whose text the outer message already contains. Some libraries (e.g.
/// `postgres`: "db error") put the useful detail only in the source.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("db error")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("loading failed: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn includes_sources_once() {
        let e = Outer(std::io::Error::other("deadlock detected"));
        assert_eq!(chain(&e), "db error: deadlock detected");
        let e = Repeats(std::io::Error::other("boom"));
        assert_eq!(chain(&e), "loading failed: boom");
    }
}
