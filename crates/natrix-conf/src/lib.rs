//! The nats-server configuration file format: a parser that turns a file (and the files it
//! includes) into a tree of values that remember where they were written, so that the binary can
//! report `<file>:<line>:<col>: <what>` for every mistake.
//!
//! The format is nats-server's `conf` package: `key: value`, `key = value` or `key value`; maps
//! `{}` and arrays `[]`; `#` and `//` comments; quoted and bare strings; integers with size
//! suffixes (`k`=1000, `kb`=1024, `m`, `mb`, `g`, `gb`, `t`, `tb`, `p`, `pb`, `e`, `eb`); floats;
//! booleans (`true/false/yes/no/on/off`); `include <path>` relative to the including file;
//! variables `$NAME` resolved against the enclosing blocks first and the environment last.
//! Durations stay strings; [`parse_duration`] reads them the way Go's `time.ParseDuration` does.

mod duration;
mod error;
mod parser;
mod value;

pub use duration::{DurationError, DurationSource, parse_duration, value_as_duration};
pub use error::ConfError;
pub use parser::{
    Loader, MAX_EXPANSION_BYTES, MAX_INCLUDE_DEPTH, MAX_NESTING, MAX_VARIABLE_DEPTH, parse_file,
    parse_str,
};
pub use value::{Entry, Map, Pos, Spanned, Value};
