//! Pulling from and pushing to distribution registries.
