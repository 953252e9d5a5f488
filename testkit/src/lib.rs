//! Simulated kernel.
