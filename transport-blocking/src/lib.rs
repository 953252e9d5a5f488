//! Blocking transport.
