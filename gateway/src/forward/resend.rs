//! A request body that can be sent again: the first attempt gets it; a later attempt (a retry on
//! another address, see [`crate::upstream::retry`]) gets it only when no attempt read any of it,
//! so a retry never sends a half-read body.
//!
//! - [`Reclaimable`]: a request body that can be taken back if the upstream request failed
//!   before reading any of it, so the request can go to another address.
//! - [`Resendable`]: the body of one request over its attempts.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::http_ext::body::{Body, BoxError};

/// A body that stays in a shared slot until first polled.
#[derive(Debug)]
pub struct Reclaimable<B> {
    slot: Arc<Mutex<Option<B>>>,
    body: Option<B>,
}

/// The other half of [`Reclaimable`]: takes the body back if it was never polled.
#[derive(Debug)]
pub struct Reclaim<B>(Arc<Mutex<Option<B>>>);

impl<B> Reclaimable<B> {
    pub fn new(body: B) -> (Self, Reclaim<B>) {
        let slot = Arc::new(Mutex::new(Some(body)));
        (
            Self {
                slot: Arc::clone(&slot),
                body: None,
            },
            Reclaim(slot),
        )
    }

    fn with_unpolled<T>(&self, f: impl FnOnce(&B) -> T) -> Option<T> {
        self.slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(f)
    }
}

impl<B> Reclaim<B> {
    /// The body, if nothing of it was read.
    pub fn take(&self) -> Option<B> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl<B> HttpBody for Reclaimable<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.body.is_none() {
            let taken = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            self.body = taken;
        }
        match self.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Some(body) => body.is_end_stream(),
            None => self.with_unpolled(B::is_end_stream).unwrap_or(true),
        }
    }

    fn size_hint(&self) -> SizeHint {
        // The framing (Content-Length or chunked) is decided before the first poll.
        match &self.body {
            Some(body) => body.size_hint(),
            None => self
                .with_unpolled(B::size_hint)
                .unwrap_or_else(|| SizeHint::with_exact(0)),
        }
    }
}

/// A request body for one or more attempts: the first attempt gets it; a later attempt gets it
/// only when no attempt read any of it. Without retries it is passed through untouched.
#[derive(Debug)]
pub enum Resendable {
    Once(Option<Body>),
    Retryable {
        fresh: Option<Reclaimable<Body>>,
        reclaim: Reclaim<Body>,
    },
}

impl Resendable {
    pub fn new(body: Body, retryable: bool) -> Self {
        if !retryable {
            return Self::Once(Some(body));
        }
        let (fresh, reclaim) = Reclaimable::new(body);
        Self::Retryable {
            fresh: Some(fresh),
            reclaim,
        }
    }

    /// The body for the next attempt, if it can still be sent whole.
    pub fn for_attempt(&mut self) -> Option<Body> {
        match self {
            Self::Once(body) => body.take(),
            Self::Retryable { fresh, reclaim } => {
                if let Some(fresh) = fresh.take() {
                    return Some(fresh.boxed());
                }
                let (body, handle) = Reclaimable::new(reclaim.take()?);
                *reclaim = handle;
                Some(body.boxed())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;
    use crate::http_ext::body::full;

    #[tokio::test]
    async fn an_unread_body_can_be_taken_back() {
        let (body, reclaim) = Reclaimable::new(Full::new(Bytes::from_static(b"abc")));
        assert_eq!(
            body.size_hint().exact(),
            Some(3),
            "framing is known before reading"
        );
        drop(body);
        let back = reclaim.take().expect("never polled");
        assert_eq!(back.collect().await.expect("body").to_bytes(), "abc");
    }

    #[tokio::test]
    async fn a_resendable_body_is_sent_again_only_while_unread() {
        let mut once = Resendable::new(full("abc"), false);
        assert!(once.for_attempt().is_some());
        assert!(once.for_attempt().is_none(), "no retries: one attempt only");
        let mut retryable = Resendable::new(full("abc"), true);
        drop(retryable.for_attempt().expect("first attempt"));
        let second = retryable.for_attempt().expect("unread: sent again");
        assert_eq!(second.collect().await.expect("body").to_bytes(), "abc");
        assert!(retryable.for_attempt().is_none(), "read: never sent again");
    }

    #[tokio::test]
    async fn a_read_body_is_gone() {
        let (body, reclaim) = Reclaimable::new(Full::new(Bytes::from_static(b"abc")));
        assert_eq!(body.collect().await.expect("body").to_bytes(), "abc");
        assert!(reclaim.take().is_none());
    }
}
