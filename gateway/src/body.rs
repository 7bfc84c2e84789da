//! Wrappers around bodies crossing the gateway.
//!
//! - [`Reclaimable`]: a request body that can be taken back if the upstream request failed
//!   before reading any of it, so the request can go to another address (a retry never sends a
//!   half-read body).
//! - [`Tracked`]: a response body that keeps its address's in-flight count until it ends.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::{BoxError, upstream::InFlight};

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

impl<B> Body for Reclaimable<B>
where
    B: Body<Data = Bytes> + Unpin,
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

/// A response body holding its address's in-flight guard until the body ends or is dropped.
#[derive(Debug)]
pub struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

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
    async fn a_read_body_is_gone() {
        let (body, reclaim) = Reclaimable::new(Full::new(Bytes::from_static(b"abc")));
        assert_eq!(body.collect().await.expect("body").to_bytes(), "abc");
        assert!(reclaim.take().is_none());
    }
}
