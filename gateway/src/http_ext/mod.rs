//! What the gateway adds to the `http` and `hyper` crates and shares across its layers: the one
//! body type ([`body`]) and the header names more than one module sets or reads ([`names`]).
//! A leaf: it imports nothing of the gateway, so the listeners, the forwarding steps, the
//! upstream connections and the error answers can all use it without importing each other.

pub mod body;
pub mod names;
