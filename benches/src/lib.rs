//! Load tools and micro benchmarks for relay.
