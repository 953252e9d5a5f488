//! Filesystem backends.
