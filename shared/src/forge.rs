//! Forgejo API v1 client (placeholder: being written).
