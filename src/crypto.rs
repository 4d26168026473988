//! Fast signature primitives (filled in by the performance work).
