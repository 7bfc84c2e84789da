//! What the gateway adds to the `http` and `hyper` crates and shares across its layers: the one
//! body type ([`body`]). A leaf: it imports nothing of the gateway, so the listeners, the
//! forwarding steps, the upstream connections and the error answers can all use it without
//! importing each other.

pub mod body;
