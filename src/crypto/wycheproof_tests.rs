//! Wycheproof (placeholder)
