//! Empty on purpose: a library target lets `relay` name this crate as a build-dependency,
//! so that cargo reruns relay's build script (which builds the program in `main.rs`)
//! when this crate or `relay-common` changes.
#![no_std]
