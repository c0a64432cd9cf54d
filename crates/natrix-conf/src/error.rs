//! Errors of the configuration parser. Each names the file, line and column it is about, in
//! nats-server's `<file>:<line>:<col>: <what>` form.

use std::path::PathBuf;

use crate::Pos;

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// The top-level configuration file could not be read.
    #[error("error opening config file '{}': {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text does not follow the format.
    #[error("{pos}: {message}")]
    Syntax { pos: Pos, message: String },
    /// An integer (after its size suffix) does not fit in 64 bits.
    #[error("{pos}: integer '{text}' is out of range")]
    IntegerOutOfRange { pos: Pos, text: String },
    /// `$name` is neither an earlier key of an enclosing block nor an environment variable.
    #[error("{pos}: variable reference for '{name}' can not be found")]
    UndefinedVariable { pos: Pos, name: String },
    /// Environment variables referring to each other too deeply (most likely a cycle).
    #[error("{pos}: variable reference for '{name}' nests too deeply (is it a cycle?)")]
    VariableTooDeep { pos: Pos, name: String },
    /// An included file could not be read.
    #[error("{pos}: error parsing include file '{path}': {source}")]
    Include {
        pos: Pos,
        path: String,
        source: std::io::Error,
    },
    /// A file includes itself, directly or through other files.
    #[error("{pos}: include cycle: '{path}' is already being included")]
    IncludeCycle { pos: Pos, path: String },
    /// Includes nested deeper than the parser allows.
    #[error("{pos}: includes nested deeper than {max} levels")]
    IncludeTooDeep { pos: Pos, max: usize },
    /// Blocks and arrays nested deeper than the parser allows.
    #[error("{pos}: blocks and arrays nested deeper than {max} levels")]
    NestingTooDeep { pos: Pos, max: usize },
    /// Variable references and includes that would grow the configuration beyond the bound
    /// (most likely values doubled by referring to each other).
    #[error("{pos}: variables and includes expand the configuration beyond {max} bytes")]
    ExpansionTooLarge { pos: Pos, max: usize },
}

impl ConfError {
    /// The position the error is about, when it has one.
    pub fn pos(&self) -> Option<&Pos> {
        match self {
            ConfError::Open { .. } => None,
            ConfError::Syntax { pos, .. }
            | ConfError::IntegerOutOfRange { pos, .. }
            | ConfError::UndefinedVariable { pos, .. }
            | ConfError::VariableTooDeep { pos, .. }
            | ConfError::Include { pos, .. }
            | ConfError::IncludeCycle { pos, .. }
            | ConfError::IncludeTooDeep { pos, .. }
            | ConfError::NestingTooDeep { pos, .. }
            | ConfError::ExpansionTooLarge { pos, .. } => Some(pos),
        }
    }
}
