//! The per-core loop: receive a batch, demultiplex, fan out, send a batch (being written).
