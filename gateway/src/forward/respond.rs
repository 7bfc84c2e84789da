//! Step 3 of a request: answer the client. The upstream's response headers are rewritten (RFC
//! 9110 §7.6), CORS applied, and the body streamed back, driving its upstream connection and
//! encoded on routes that ask for it ([`compress`]); a `101 Switching Protocols` is spliced
//! into a tunnel between the two upgraded connections.

use http::{HeaderValue, Response, StatusCode, Version, header::CONNECTION};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use crate::{
    access::TunnelEntry,
    capacity::Tickets,
    forward::{Proxy, Served, admit::Returning, compress, cors, headers, send::Sent},
    http_ext::body::{self, Body, BoxError},
    upstream::{endpoint::InFlight, streamed::Streamed},
};

/// The client's response to `sent`, which keeps the request's `tickets` until it has been sent
/// (or its tunnel closed).
pub fn respond(
    proxy: &Proxy,
    sent: Sent,
    returning: Returning,
    request_id: &HeaderValue,
    tickets: Tickets,
    served: &mut Served<'_>,
) -> Response<Body> {
    let Sent {
        mut response,
        connection,
        in_flight,
    } = sent;
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let upstream_upgrade = switching.then(|| hyper::upgrade::on(&mut response));
    let (mut parts, body) = response.into_parts();
    headers::prepare_response(&mut parts.headers, parts.status, parts.version, request_id);
    let body_unsent = connection.as_ref().is_some_and(|c| !c.request_sent());
    if body_unsent && returning.client_version <= Version::HTTP_11 {
        // The upstream answered before taking the whole request body (an early 413): the rest
        // of it will not be read, so this client connection closes after the response. Saying
        // so (RFC 9112 §9.6) keeps the client from sending another request on it meanwhile.
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(origin) = &returning.cors_origin {
        cors::decorate(&mut parts.headers, origin.as_ref());
    }
    if let (Some(client), Some(upstream)) = (returning.client_upgrade, upstream_upgrade) {
        let entry = proxy.access_log.enabled().then(TunnelEntry::default);
        served.tunnel.clone_from(&entry);
        proxy.spawn_tunnel(client, upstream, (in_flight, tickets), entry);
        return Response::from_parts(parts, body::empty());
    }
    let mut body = Streamed::new(body, connection, in_flight, tickets)
        .map_err(BoxError::from)
        .boxed();
    if let Some(choice) = returning.compress {
        body = compress::apply(choice, &mut parts, body);
    }
    Response::from_parts(parts, body)
}

impl Proxy {
    /// Splices the client's and the upstream's upgraded connections until either side closes,
    /// or until shutdown closes all tunnels. The tunnel counts as a request in flight (on its
    /// address, and against the caps its request passed) for as long as it is open.
    /// Splices the two upgraded connections; when they close, writes the access-log line
    /// `entry` holds by then, with the bytes each way.
    fn spawn_tunnel(
        &self,
        client: OnUpgrade,
        upstream: OnUpgrade,
        held: (InFlight, Tickets),
        entry: Option<TunnelEntry>,
    ) {
        let closing = self.close_tunnels.clone();
        self.tunnels.spawn(
            async move {
                let (client, upstream) = match tokio::try_join!(client, upstream) {
                    Ok(sides) => sides,
                    Err(err) => {
                        tracing::debug!(error = %err, "upgrade did not complete");
                        return;
                    }
                };
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                let mut copied = (0, 0);
                tokio::select! {
                    result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                        if let Ok((up, down)) = result {
                            tracing::debug!(bytes_up = up, bytes_down = down, "tunnel closed");
                            copied = (up, down);
                        }
                    }
                    () = closing.cancelled() => tracing::debug!("tunnel closed at shutdown"),
                }
                drop(held);
                let line =
                    entry.and_then(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).take());
                if let Some(line) = line {
                    line.finish(copied.1, Some(copied.0));
                }
            }
            .in_current_span(),
        );
    }
}
