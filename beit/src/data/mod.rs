//! Datasets. The built-in one is the UCI handwritten digits ([`Digits`]).

mod digits;

pub use digits::Digits;
