//! Library side of kith's runnable examples: helpers the benchmarks share.
//!
//! [`transfer_anchors`] builds the photo set for the transfer benchmark and measures the two
//! anchors kith's figure is printed next to (a raw TCP copy and Syncthing, both on loopback).

pub mod transfer_anchors;
