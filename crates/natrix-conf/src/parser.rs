//! A recursive-descent parser for the nats-server configuration format. It reads characters,
//! not tokens, because the format decides what a word is by where it stands (`include` is a
//! keyword only before a space; `2m` is an integer, `500ms` a string).
//!
//! Bounds: blocks and arrays nest at most [`MAX_NESTING`] deep (counting the blocks around an
//! include and the depth of a value a `$name` copies in), includes [`MAX_INCLUDE_DEPTH`] deep,
//! environment variables refer to each other at most [`MAX_VARIABLE_DEPTH`] deep, so no input can
//! exhaust the stack. Variables copy values and includes repeat files, so a short text can stand
//! for an exponentially large tree (`b: [$a, $a]`, `c: [$b, $b]`, ...); the bytes they add are
//! bounded by [`MAX_EXPANSION_BYTES`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{ConfError, Entry, Map, Pos, Spanned, Value};

pub const MAX_NESTING: usize = 64;
pub const MAX_INCLUDE_DEPTH: usize = 16;
pub const MAX_VARIABLE_DEPTH: usize = 8;
/// How much variable references and includes may add to the configuration, in bytes (included
/// text plus an estimate of the memory of every copied value). Real configurations stay far
/// below it; it stops `b: [$a, $a]`-style doubling from exhausting memory.
pub const MAX_EXPANSION_BYTES: usize = 64 << 20;

type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Parses configuration files; holds how environment variables are looked up.
pub struct Loader {
    env: Box<EnvLookup>,
    max_expansion: usize,
}

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

impl Loader {
    /// A loader that resolves `$NAME` against the process environment.
    pub fn new() -> Self {
        Self::with_env(|name| std::env::var(name).ok())
    }

    /// A loader with its own environment (tests, embedding).
    pub fn with_env(env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            env: Box::new(env),
            max_expansion: MAX_EXPANSION_BYTES,
        }
    }

    /// Lowers (or raises) the bound on what variables and includes may add, in bytes
    /// ([`MAX_EXPANSION_BYTES`] by default). The fuzz target uses a small one, so that inputs
    /// that reach it stay cheap.
    pub fn with_max_expansion(mut self, bytes: usize) -> Self {
        self.max_expansion = bytes;
        self
    }

    fn shared(&self) -> Shared {
        Shared {
            includes: Vec::new(),
            expanded: 0,
            max_expansion: self.max_expansion,
        }
    }

    /// Parses the file at `path` and everything it includes.
    pub fn parse_file(&self, path: &Path) -> Result<Map, ConfError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut shared = self.shared();
        if let Ok(canonical) = std::fs::canonicalize(path) {
            shared.includes.push(canonical);
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let file: Arc<str> = Arc::from(path.display().to_string());
        Parser::new(&text, file, Some(dir), self, &mut shared, 0, 0).parse_document()
    }

    /// Parses `text` as a configuration named `name` in messages; includes are resolved
    /// relative to `base_dir`, and refused when it is `None`.
    pub fn parse_str(
        &self,
        text: &str,
        name: &str,
        base_dir: Option<&Path>,
    ) -> Result<Map, ConfError> {
        let mut shared = self.shared();
        Parser::new(
            text,
            Arc::from(name),
            base_dir.map(Path::to_path_buf),
            self,
            &mut shared,
            0,
            0,
        )
        .parse_document()
    }
}

/// Parses the file at `path` with variables taken from the process environment.
pub fn parse_file(path: &Path) -> Result<Map, ConfError> {
    Loader::new().parse_file(path)
}

/// Parses `text` (named `name` in messages), with includes relative to the working directory.
pub fn parse_str(text: &str, name: &str) -> Result<Map, ConfError> {
    Loader::new().parse_str(text, name, Some(Path::new(".")))
}

/// What the parsers of one configuration (the file, its includes, environment values) share.
struct Shared {
    /// Canonical paths of the files being included, outermost first.
    includes: Vec<PathBuf>,
    /// Bytes added so far by includes and variable references (see [`MAX_EXPANSION_BYTES`]).
    expanded: usize,
    max_expansion: usize,
}

impl Shared {
    /// Accounts for `bytes` more of expanded configuration, added at `pos`.
    fn charge_expansion(&mut self, bytes: usize, pos: &Pos) -> Result<(), ConfError> {
        let total = self.expanded.saturating_add(bytes);
        if total > self.max_expansion {
            return Err(ConfError::ExpansionTooLarge {
                pos: pos.clone(),
                max: self.max_expansion,
            });
        }
        self.expanded = total;
        Ok(())
    }
}

struct Parser<'a> {
    src: Vec<char>,
    i: usize,
    line: u32,
    line_start: usize,
    file: Arc<str>,
    /// Directory includes are relative to; `None` forbids includes (environment values).
    dir: Option<PathBuf>,
    loader: &'a Loader,
    shared: &'a mut Shared,
    /// The maps under construction, outermost first: where `$name` is looked up.
    scopes: Vec<Map>,
    /// Blocks and arrays around the current position, those around an include or a variable
    /// reference this parser works for included.
    nesting: usize,
    /// How many environment variables deep this parser is.
    variable_depth: usize,
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_newline(c: char) -> bool {
    c == '\n' || c == '\r'
}

/// Characters that end a bare (unquoted) value.
fn ends_bare_value(c: char) -> bool {
    is_blank(c) || is_newline(c) || matches!(c, ',' | ';' | ']' | '}')
}

fn describe(c: Option<char>) -> String {
    match c {
        None => "EOF".to_string(),
        Some('\n') => "new line".to_string(),
        Some('\r') => "carriage return".to_string(),
        Some(c) => format!("'{c}'"),
    }
}

impl<'a> Parser<'a> {
    fn new(
        text: &str,
        file: Arc<str>,
        dir: Option<PathBuf>,
        loader: &'a Loader,
        shared: &'a mut Shared,
        variable_depth: usize,
        nesting: usize,
    ) -> Self {
        Parser {
            src: text.chars().collect(),
            i: 0,
            line: 1,
            line_start: 0,
            file,
            dir,
            loader,
            shared,
            scopes: Vec::new(),
            nesting,
            variable_depth,
        }
    }

    // ---- character level ----

    fn peek(&self) -> Option<char> {
        self.src.get(self.i).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.src.get(self.i + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.line_start = self.i;
        }
        Some(c)
    }

    fn pos(&self) -> Pos {
        let col = (self.i - self.line_start + 1).min(u32::MAX as usize) as u32;
        Pos {
            file: self.file.clone(),
            line: self.line,
            col,
        }
    }

    fn syntax(&self, message: impl Into<String>) -> ConfError {
        ConfError::Syntax {
            pos: self.pos(),
            message: message.into(),
        }
    }

    fn at_comment(&self) -> bool {
        match self.peek() {
            Some('#') => true,
            Some('/') => self.peek_at(1) == Some('/'),
            _ => false,
        }
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek() {
            if is_newline(c) {
                break;
            }
            self.bump();
        }
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.bump();
        }
    }

    /// Skips spaces, new lines and comments.
    fn skip_space_and_comments(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                _ if self.at_comment() => self.skip_comment(),
                _ => break,
            }
        }
    }

    fn enter_nesting(&mut self) -> Result<(), ConfError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(ConfError::NestingTooDeep {
                pos: self.pos(),
                max: MAX_NESTING,
            });
        }
        Ok(())
    }

    // ---- structure ----

    fn parse_document(mut self) -> Result<Map, ConfError> {
        self.skip_space_and_comments();
        // nats-server accepts a whole file wrapped in one pair of braces.
        let wrapped = self.peek() == Some('{');
        if wrapped {
            self.bump();
        }
        self.scopes.push(Map::new());
        self.parse_entries(wrapped)?;
        if wrapped {
            self.bump();
            self.skip_space_and_comments();
            if let Some(c) = self.peek() {
                return Err(self.syntax(format!(
                    "unexpected {} after the closing '}}'",
                    describe(Some(c))
                )));
            }
        }
        Ok(self.scopes.pop().unwrap_or_default())
    }

    /// Parses `key: value` entries into the innermost scope until EOF (top level) or the `}`
    /// that closes the block, which is left unread.
    fn parse_entries(&mut self, in_block: bool) -> Result<(), ConfError> {
        loop {
            loop {
                self.skip_space_and_comments();
                // Stray value separators between entries are harmless.
                if matches!(self.peek(), Some(',' | ';')) {
                    self.bump();
                } else {
                    break;
                }
            }
            match self.peek() {
                None if in_block => return Err(self.syntax("unexpected EOF processing map")),
                None => return Ok(()),
                Some('}') if in_block => return Ok(()),
                Some('}') => return Err(self.syntax("unexpected '}' outside of a block")),
                Some(']') => return Err(self.syntax("unexpected array end ']' processing map")),
                Some(c @ (':' | '=')) => {
                    return Err(self.syntax(format!("unexpected key separator '{c}'")));
                }
                _ => {}
            }
            let key_pos = self.pos();
            let (key, quoted) = self.parse_key()?;
            if !quoted && key.eq_ignore_ascii_case("include") && self.peek().is_some_and(is_blank) {
                self.parse_include(key_pos)?;
            } else {
                self.parse_key_separator(&key)?;
                let value = self.parse_value()?;
                let entry = Entry {
                    key,
                    key_pos,
                    value,
                    used_as_variable: false,
                };
                if let Some(scope) = self.scopes.last_mut() {
                    scope.insert(entry);
                }
            }
            self.parse_value_end(in_block)?;
        }
    }

    fn parse_key(&mut self) -> Result<(String, bool), ConfError> {
        if let Some(quote @ ('"' | '\'')) = self.peek() {
            let start = self.pos();
            self.bump();
            let mut key = String::new();
            loop {
                match self.bump() {
                    Some(c) if c == quote => return Ok((key, true)),
                    Some(c) => key.push(c),
                    None => {
                        return Err(ConfError::Syntax {
                            pos: start,
                            message: "unexpected EOF in quoted key".into(),
                        });
                    }
                }
            }
        }
        let mut key = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, ':' | '=' | '{' | '[') {
                break;
            }
            key.push(c);
            self.bump();
        }
        if key.is_empty() {
            return Err(self.syntax(format!("expected a key but got {}", describe(self.peek()))));
        }
        Ok((key, false))
    }

    /// After a key: spaces (even new lines, as in nats-server), an optional `:` or `=`, then
    /// spaces on the same line.
    fn parse_key_separator(&mut self, key: &str) -> Result<(), ConfError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        if matches!(self.peek(), Some(':' | '=')) {
            self.bump();
        }
        self.skip_blanks();
        match self.peek() {
            None => Err(self.syntax(format!("expected a value for \"{key}\" but found EOF"))),
            Some(c) if is_newline(c) => {
                Err(self.syntax(format!("expected a value for \"{key}\" but found new line")))
            }
            _ => Ok(()),
        }
    }

    /// After a map entry: blanks, then a comment, `,`, `;`, a new line, the closing `}` (left
    /// unread) or EOF.
    fn parse_value_end(&mut self, in_block: bool) -> Result<(), ConfError> {
        self.skip_blanks();
        if self.at_comment() {
            self.skip_comment();
            return Ok(());
        }
        match self.peek() {
            None => Ok(()),
            Some(c) if is_newline(c) || c == ',' || c == ';' => {
                self.bump();
                Ok(())
            }
            Some('}') if in_block => Ok(()),
            c => Err(self.syntax(format!(
                "expected a value to end with a new line, ',', ';' or comment, but got {} instead",
                describe(c)
            ))),
        }
    }

    fn parse_value(&mut self) -> Result<Spanned<Value>, ConfError> {
        let pos = self.pos();
        let value = match self.peek() {
            None => return Err(self.syntax("expected a value but found EOF")),
            Some(c) if is_newline(c) => {
                return Err(self.syntax("expected a value but found new line"));
            }
            Some('[') => self.parse_array()?,
            Some('{') => self.parse_map()?,
            Some('"') => Value::String(self.parse_double_quoted()?),
            Some('\'') => Value::String(self.parse_single_quoted()?),
            Some('(') => Value::String(self.parse_block_string()?),
            Some(_) => return self.parse_bare(pos),
        };
        Ok(Spanned { value, pos })
    }

    fn parse_map(&mut self) -> Result<Value, ConfError> {
        self.enter_nesting()?;
        self.bump(); // '{'
        self.scopes.push(Map::new());
        let result = self.parse_entries(true);
        let map = self.scopes.pop().unwrap_or_default();
        result?;
        self.bump(); // '}'
        self.nesting -= 1;
        Ok(Value::Map(map))
    }

    fn parse_array(&mut self) -> Result<Value, ConfError> {
        self.enter_nesting()?;
        self.bump(); // '['
        let mut items = Vec::new();
        loop {
            self.skip_space_and_comments();
            match self.peek() {
                None => return Err(self.syntax("unexpected EOF processing array")),
                Some(']') => {
                    self.bump();
                    break;
                }
                Some(',') => return Err(self.syntax("unexpected array value terminator ','")),
                _ => {}
            }
            items.push(self.parse_value()?);
            self.skip_blanks();
            if self.at_comment() {
                self.skip_comment();
            }
            match self.peek() {
                Some(c) if c == ',' || is_newline(c) => {
                    self.bump();
                }
                Some(']') => {
                    self.bump();
                    break;
                }
                None => return Err(self.syntax("unexpected EOF processing array")),
                c => {
                    return Err(self.syntax(format!(
                        "expected an array value terminator ',' or an array terminator ']', but got {} instead",
                        describe(c)
                    )));
                }
            }
        }
        self.nesting -= 1;
        Ok(Value::Array(items))
    }

    fn parse_double_quoted(&mut self) -> Result<String, ConfError> {
        let start = self.pos();
        self.bump(); // '"'
        let mut bytes = Vec::new();
        let mut utf8 = [0u8; 4];
        loop {
            match self.bump() {
                None => {
                    return Err(ConfError::Syntax {
                        pos: start,
                        message: "unexpected EOF in quoted string".into(),
                    });
                }
                Some('"') => break,
                Some('\\') => {
                    let escaped = match self.bump() {
                        Some('t') => '\t',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('x') => {
                            let hex: String = [self.bump(), self.bump()].iter().flatten().collect();
                            match u8::from_str_radix(&hex, 16) {
                                Ok(b) if hex.len() == 2 => {
                                    bytes.push(b);
                                    continue;
                                }
                                _ => {
                                    return Err(self.syntax(format!(
                                        "expected two hexadecimal digits after '\\x', but got '{hex}'"
                                    )));
                                }
                            }
                        }
                        other => {
                            return Err(self.syntax(format!(
                                "invalid escape character {}; only \\xXX, \\t, \\n, \\r, \\\", \\\\ are allowed",
                                describe(other)
                            )));
                        }
                    };
                    bytes.extend_from_slice(escaped.encode_utf8(&mut utf8).as_bytes());
                }
                Some(c) => bytes.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn parse_single_quoted(&mut self) -> Result<String, ConfError> {
        let start = self.pos();
        self.bump(); // '\''
        let mut s = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(ConfError::Syntax {
                        pos: start,
                        message: "unexpected EOF in quoted string".into(),
                    });
                }
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    /// `( ... )` with the `)` alone on its own line: the text between, verbatim.
    fn parse_block_string(&mut self) -> Result<String, ConfError> {
        let start = self.pos();
        self.bump(); // '('
        let mut s = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(ConfError::Syntax {
                        pos: start,
                        message: "unexpected EOF in block string".into(),
                    });
                }
                Some('\n')
                    if self.peek() == Some(')')
                        && matches!(self.peek_at(1), None | Some('\n' | '\r')) =>
                {
                    self.bump();
                    return Ok(s);
                }
                Some(c) => s.push(c),
            }
        }
    }

    /// A bare word: a number, a size, a boolean, a variable reference or a string.
    fn parse_bare(&mut self, pos: Pos) -> Result<Spanned<Value>, ConfError> {
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if ends_bare_value(c) {
                break;
            }
            text.push(c);
            self.bump();
        }
        if let Some(name) = text.strip_prefix('$') {
            // nats-server keeps bcrypt hashes (`$2a$...`) unquoted as strings.
            if !name.starts_with("2a$") {
                return self.resolve_variable(name, pos);
            }
        }
        let value = classify_bare(&text).map_err(|()| ConfError::IntegerOutOfRange {
            pos: pos.clone(),
            text,
        })?;
        Ok(Spanned { value, pos })
    }

    fn resolve_variable(&mut self, name: &str, pos: Pos) -> Result<Spanned<Value>, ConfError> {
        let found = self
            .scopes
            .iter_mut()
            .rev()
            .find_map(|scope| scope.get_mut(name));
        if let Some(entry) = found {
            entry.used_as_variable = true;
            // Measured before copying, so that a copy too large or too deep is never made.
            let (bytes, depth) = footprint(&entry.value.value);
            if self.nesting + depth > MAX_NESTING {
                return Err(ConfError::NestingTooDeep {
                    pos,
                    max: MAX_NESTING,
                });
            }
            self.shared.charge_expansion(bytes, &pos)?;
            return Ok(Spanned {
                value: entry.value.value.clone(),
                pos,
            });
        }
        let Some(raw) = (self.loader.env)(name) else {
            return Err(ConfError::UndefinedVariable {
                pos,
                name: name.to_string(),
            });
        };
        if self.variable_depth >= MAX_VARIABLE_DEPTH {
            return Err(ConfError::VariableTooDeep {
                pos,
                name: name.to_string(),
            });
        }
        // nats-server parses an environment value as a configuration value, so `4222` is an
        // integer and `[a, b]` an array. A value that does not parse as one value stays a string.
        let file: Arc<str> = Arc::from(format!("${name}"));
        // The value lands here: it nests inside the current blocks, and what its own `$names`
        // copy counts against the same budget.
        let mut sub = Parser::new(
            &raw,
            file,
            None,
            self.loader,
            self.shared,
            self.variable_depth + 1,
            self.nesting,
        );
        sub.skip_blanks();
        let parsed = match sub.peek() {
            None => Ok(Value::String(String::new())),
            Some(_) => sub.parse_value().and_then(|v| {
                sub.skip_blanks();
                if sub.peek().is_none() {
                    Ok(v.value)
                } else {
                    Err(sub.syntax("trailing text"))
                }
            }),
        };
        match parsed {
            Ok(value) => Ok(Spanned { value, pos }),
            Err(
                err @ (ConfError::VariableTooDeep { .. }
                | ConfError::UndefinedVariable { .. }
                | ConfError::NestingTooDeep { .. }
                | ConfError::ExpansionTooLarge { .. }),
            ) => Err(err),
            Err(_) => Ok(Spanned {
                value: Value::String(raw),
                pos,
            }),
        }
    }

    fn parse_include(&mut self, pos: Pos) -> Result<(), ConfError> {
        self.skip_blanks();
        let path = match self.peek() {
            Some('"') => self.parse_double_quoted()?,
            Some('\'') => self.parse_single_quoted()?,
            c @ (None | Some('[' | '{' | '(' | '\\' | '\n' | '\r')) => {
                return Err(
                    self.syntax(format!("expected include value but found {}", describe(c)))
                );
            }
            Some(_) => {
                let mut s = String::new();
                while let Some(c) = self.peek() {
                    if is_blank(c) || is_newline(c) || c == ';' || c == '}' {
                        break;
                    }
                    s.push(c);
                    self.bump();
                }
                s
            }
        };
        if path.is_empty() {
            return Err(ConfError::Syntax {
                pos,
                message: "include needs a file name".into(),
            });
        }
        let Some(dir) = self.dir.clone() else {
            return Err(ConfError::Syntax {
                pos,
                message: "include is not allowed here".into(),
            });
        };
        if self.shared.includes.len() > MAX_INCLUDE_DEPTH {
            return Err(ConfError::IncludeTooDeep {
                pos,
                max: MAX_INCLUDE_DEPTH,
            });
        }
        let full = dir.join(&path);
        let include_err = |source| ConfError::Include {
            pos: pos.clone(),
            path: path.clone(),
            source,
        };
        let canonical = std::fs::canonicalize(&full).map_err(include_err)?;
        if self.shared.includes.contains(&canonical) {
            return Err(ConfError::IncludeCycle { pos, path });
        }
        // Read no more than the budget allows (`include /dev/zero` is an error, not an OOM).
        let remaining = self
            .shared
            .max_expansion
            .saturating_sub(self.shared.expanded);
        let text = read_at_most(&full, remaining).map_err(include_err)?;
        self.shared.charge_expansion(text.len(), &pos)?;
        self.shared.includes.push(canonical);
        let file: Arc<str> = Arc::from(full.display().to_string());
        let sub_dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
        // The included entries land in the current block: they nest inside it.
        let included = Parser::new(
            &text,
            file,
            Some(sub_dir),
            self.loader,
            self.shared,
            self.variable_depth,
            self.nesting,
        )
        .parse_document();
        self.shared.includes.pop();
        let included = included?;
        if let Some(scope) = self.scopes.last_mut() {
            for entry in included.iter() {
                scope.insert(entry.clone());
            }
        }
        Ok(())
    }
}

/// The text of the file at `path`, or of its first `limit + 1` bytes when it is longer.
fn read_at_most(path: &Path, limit: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_string(&mut text)?;
    Ok(text)
}

/// The memory a copy of `value` takes, roughly (nodes plus text, in bytes), and how deeply it
/// nests (0 for a scalar, 1 for a flat array or map). Recursion is bounded: every stored value
/// nests at most [`MAX_NESTING`] deep.
fn footprint(value: &Value) -> (usize, usize) {
    let node = std::mem::size_of::<Spanned<Value>>();
    match value {
        Value::Bool(_) | Value::Int(_) | Value::Float(_) => (node, 0),
        Value::String(s) => (node.saturating_add(s.len()), 0),
        Value::Array(items) => items.iter().fold((node, 1), |(bytes, depth), item| {
            let (b, d) = footprint(&item.value);
            (bytes.saturating_add(b), depth.max(d + 1))
        }),
        Value::Map(map) => map.iter().fold((node, 1), |(bytes, depth), entry| {
            let (b, d) = footprint(&entry.value.value);
            let entry_bytes = std::mem::size_of::<Entry>().saturating_add(entry.key.len());
            (
                bytes.saturating_add(b).saturating_add(entry_bytes),
                depth.max(d + 1),
            )
        }),
    }
}

/// What a bare word means; `Err` when it is an integer that does not fit in 64 bits.
fn classify_bare(text: &str) -> Result<Value, ()> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.starts_with(|c: char| c.is_ascii_digit()) {
        if let Some(value) = classify_number(text)? {
            return Ok(value);
        }
        return Ok(Value::String(text.to_string()));
    }
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Ok(Value::Bool(true)),
        "false" | "no" | "off" => Ok(Value::Bool(false)),
        _ => Ok(Value::String(text.to_string())),
    }
}

/// An integer (optionally with a size suffix) or a float; `None` for other words that start with
/// a digit (durations, addresses, dates), which are strings.
fn classify_number(text: &str) -> Result<Option<Value>, ()> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let int_len = body.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, suffix) = body.split_at(int_len);
    if let Some(frac) = suffix.strip_prefix('.') {
        if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(text.parse::<f64>().ok().map(Value::Float));
        }
        return Ok(None);
    }
    let multiplier: i64 = match suffix.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        "t" => 1_000_000_000_000,
        "tb" => 1 << 40,
        "p" => 1_000_000_000_000_000,
        "pb" => 1 << 50,
        "e" => 1_000_000_000_000_000_000,
        "eb" => 1 << 60,
        _ => return Ok(None),
    };
    let magnitude: i128 = int_part.parse().map_err(|_| ())?;
    let signed = if negative { -magnitude } else { magnitude };
    let value = signed.checked_mul(i128::from(multiplier)).ok_or(())?;
    i64::try_from(value)
        .map(|v| Some(Value::Int(v)))
        .map_err(|_| ())
}

#[cfg(test)]
#[path = "parser_test.rs"]
mod tests;
