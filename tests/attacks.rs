//! Attacks on the real binaries: every one of them is refused.
//!
//! Each test drives the built `origin` and `edge` processes the way a hostile client would
//! (playlists and concat files disguised as uploads, slow or silent connections, weak secrets,
//! forged credentials) and asserts the refusal a user or an operator would see.
//!
//! # Layout
//! - [`edge`]: connection deadlines (plain and TLS, HTTP/1.1 and HTTP/2), memory per
//!   connection, response headers, secret strength.
//! - [`origin`]: hostile media, probe limits, disk and upload guards, error messages,
//!   connection deadlines, encoder lifetime, credentials and development mode.

#[path = "attacks/edge.rs"]
mod edge;
#[path = "attacks/origin.rs"]
mod origin;
