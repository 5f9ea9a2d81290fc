//! Rare paths' futures, kept out of the poll functions of the hot ones.
//!
//! A boxed future of a concrete type is still polled by a direct call,
//! which LLVM inlines: the rare path's code and stack frame join the poll
//! function of the future that awaits it. The gateway's hot futures are
//! polled several times per request, so a rare path inlined there (a TLS
//! handshake, a new upstream connection, the activator's queue) costs every
//! request: the connection task's poll had a 19 KB frame, whose stack probes
//! touch a page each, and a deep stack does not stay in the first-level data
//! cache between polls. Behind a trait object the rare path is called
//! through its vtable and never inlined.

use std::future::Future;
use std::pin::Pin;

/// A future polled through a vtable (see the module docs).
pub(crate) type Outlined<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Box `future` as a trait object: awaiting it never inlines its poll.
pub(crate) fn outlined<'a, T>(future: impl Future<Output = T> + Send + 'a) -> Outlined<'a, T> {
    Box::pin(future)
}
