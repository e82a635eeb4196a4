//! A simulated Forgejo (placeholder: being written).
