//! The response body from an upstream: it drives its upstream connection while it streams, gives
//! the connection back for reuse at its end, and keeps its address's in-flight count and its
//! request's tickets (`max_in_flight`) until then.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use super::{connection::Connection, endpoint::InFlight};
use crate::capacity::Tickets;

/// A response body from an upstream: it drives its connection while it streams (see
/// [`crate::upstream::connection`]), gives the connection back for the worker's next request
/// once it has been read to its end, and holds the address's in-flight count, and the tickets
/// of the caps its request passed, until it is done: read to its end, or dropped (the client
/// left, the connection failed).
#[derive(Debug)]
pub struct Streamed {
    body: Incoming,
    /// `None` for a connection that cannot be reused (ended, or never pooled).
    connection: Option<Connection>,
    in_flight: InFlight,
    tickets: Tickets,
}

impl Streamed {
    pub fn new(
        body: Incoming,
        connection: Option<Connection>,
        in_flight: InFlight,
        tickets: Tickets,
    ) -> Self {
        Self {
            body,
            connection,
            in_flight,
            tickets,
        }
    }

    /// The response is complete: the connection goes back to its worker's pool, unless the
    /// upstream answered before the request body was all sent (then it closes with this body).
    fn finish(&mut self) {
        if let Some(connection) = self.connection.take()
            && connection.request_sent()
        {
            self.in_flight.give_back(connection);
        }
    }
}

impl HttpBody for Streamed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(connection) = &mut this.connection
            && !connection.drive(cx)
        {
            // Ended (the upstream closed it after this response, or failed): the body
            // ends or fails by itself; the connection is not kept.
            this.connection = None;
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.finish();
            // The answer is complete: the next request may have its place now, before the
            // server gets round to dropping this body.
            this.tickets = Tickets::default();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        // A body the server never polls (empty: a 204, a HEAD) is complete all the same; one
        // dropped halfway leaves unread bytes on its connection, which then closes with it.
        if self.body.is_end_stream() {
            self.finish();
        }
    }
}
