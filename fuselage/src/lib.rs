//! fuselage facade.
