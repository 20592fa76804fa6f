//! Attacks on the edge.
