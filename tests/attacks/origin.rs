//! Attacks on the origin.
