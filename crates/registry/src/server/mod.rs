//! Berth's registry server (`berth registry serve`).
