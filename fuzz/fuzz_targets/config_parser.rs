//! Arbitrary text through `natrix_conf`'s parser, with includes resolved in a scratch directory
//! of small files (one that includes itself, two that include each other, a deep one, one that
//! fans out) and a fixed environment (values, arrays, cycles). Checks: no panic, no stack
//! overflow, no unbounded allocation (libFuzzer's -rss_limit_mb and -timeout catch those), and
//! for every accepted text:
//! - every map holds each key once, and nothing nests deeper than `MAX_NESTING`;
//! - positions in the fuzzed file are inside it (line 1..=lines+1, column >= 1);
//! - the tree printed back in canonical form (quoted keys and strings, plain numbers) parses to
//!   the same tree;
//! - every string or integer read as a duration gives a duration or an error, never a panic.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use natrix_conf::{Loader, MAX_NESTING, Map, Value, value_as_duration};

const NAME: &str = "fuzz.conf";
/// Trees larger than this (variables can copy up to `MAX_EXPANSION_BYTES`) skip the print and
/// re-parse check: it costs the harness seconds, and the parser was already measured by then.
const MAX_NODES_TO_PRINT: usize = 20_000;

/// The scratch directory includes are resolved in (created once per process).
fn include_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("natrix-fuzz-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory for include files");
        let deep = format!("{}1{}\n", "x { ".repeat(60), "}".repeat(60));
        let files = [
            (
                "ok.conf",
                "port: 4222\nnested { a: [1, 2kb, \"s\"], b: true }\n".to_string(),
            ),
            ("self.conf", "include self.conf\n".to_string()),
            ("a.conf", "a: 1\ninclude b.conf\n".to_string()),
            ("b.conf", "b: 2\ninclude a.conf\n".to_string()),
            ("deep.conf", deep),
            (
                "fanout.conf",
                (0..8)
                    .map(|i| format!("f{i} {{ include ok.conf }}\n"))
                    .collect(),
            ),
            ("bad.conf", "port: [\n".to_string()),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("writing an include file");
        }
        dir
    })
}

fn env(name: &str) -> Option<String> {
    let value = match name {
        "PORT" => "4222",
        "HOST" => "127.0.0.1",
        "LIST" => "[1, 2, $PORT]",
        "MAP" => "{ a: 1, b: [x, y] }",
        "SELF" => "$SELF",
        "A" => "$B",
        "B" => "$A",
        "WIDE" => "[$LIST, $LIST, $LIST, $LIST, $LIST, $LIST, $LIST, $LIST]",
        "EMPTY" => "",
        "DUR" => "2m30s",
        // Those the repository's deploy files and tests use.
        "SERVER_NAME" => "n1",
        "CLIENT_PORT" => "14222",
        "NATRIX_IT_CLIENT_PORT" => "4333",
        _ => return None,
    };
    Some(value.to_string())
}

fn loader() -> &'static Loader {
    static LOADER: OnceLock<Loader> = OnceLock::new();
    // A 1 MiB expansion bound instead of 64 MiB: the same code paths, 64 times cheaper inputs.
    LOADER.get_or_init(|| Loader::with_env(env).with_max_expansion(1 << 20))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(map) = loader().parse_str(&text, NAME, Some(include_dir())) else {
        return;
    };
    let lines = u32::try_from(text.lines().count()).unwrap_or(u32::MAX);
    let nodes = check_map(&map, 0, lines);
    if nodes > MAX_NODES_TO_PRINT {
        return;
    }
    if let Some(printed) = print_document(&map) {
        let reparsed = match loader().parse_str(&printed, "printed.conf", None) {
            Ok(reparsed) => reparsed,
            Err(err) => panic!("canonical form does not parse: {err}\n--- text\n{printed}"),
        };
        assert!(
            same_map(&map, &reparsed),
            "canonical form parses to another tree\n--- text\n{printed}"
        );
    }
});

/// Checks the invariants of `map` and returns how many values it holds.
fn check_map(map: &Map, depth: usize, lines: u32) -> usize {
    assert!(depth <= MAX_NESTING, "map nested {depth} deep");
    let mut keys: Vec<&str> = map.iter().map(|e| e.key.as_str()).collect();
    keys.sort_unstable();
    let total = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), total, "a key appears twice in one map");
    let mut nodes = 0;
    for entry in map {
        check_pos(&entry.key_pos, lines);
        nodes += 1 + check_value(&entry.value.value, depth, lines);
        check_pos(&entry.value.pos, lines);
    }
    nodes
}

fn check_value(value: &Value, depth: usize, lines: u32) -> usize {
    match value {
        Value::Map(map) => check_map(map, depth + 1, lines),
        Value::Array(items) => {
            assert!(depth < MAX_NESTING, "array nested {} deep", depth + 1);
            let mut nodes = 0;
            for item in items {
                check_pos(&item.pos, lines);
                nodes += 1 + check_value(&item.value, depth + 1, lines);
            }
            nodes
        }
        Value::String(_) | Value::Int(_) => {
            let _ = value_as_duration(value);
            0
        }
        Value::Bool(_) | Value::Float(_) => 0,
    }
}

fn check_pos(pos: &natrix_conf::Pos, lines: u32) {
    assert!(
        pos.line >= 1 && pos.col >= 1,
        "position {pos} before the start"
    );
    if &*pos.file == NAME {
        assert!(
            pos.line <= lines.saturating_add(1),
            "position {pos} after the end"
        );
    }
}

// ---- canonical printing: None when a key can not be written (it holds both quote kinds) or
// a float can not be (infinite) ----

fn print_document(map: &Map) -> Option<String> {
    let mut out = String::new();
    print_entries(map, &mut out)?;
    Some(out)
}

fn print_entries(map: &Map, out: &mut String) -> Option<()> {
    for entry in map {
        let quote = if !entry.key.contains('"') {
            '"'
        } else if !entry.key.contains('\'') {
            '\''
        } else {
            return None;
        };
        out.push(quote);
        out.push_str(&entry.key);
        out.push(quote);
        out.push_str(": ");
        print_value(&entry.value.value, out)?;
        out.push('\n');
    }
    Some(())
}

fn print_value(value: &Value, out: &mut String) -> Option<()> {
    match value {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => out.push_str(&n.to_string()),
        Value::Float(f) => {
            if !f.is_finite() {
                return None;
            }
            let text = f.to_string();
            out.push_str(&text);
            if !text.contains('.') {
                out.push_str(".0");
            }
        }
        Value::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::Array(items) => {
            out.push_str("[\n");
            for item in items {
                print_value(&item.value, out)?;
                out.push_str(",\n");
            }
            out.push(']');
        }
        Value::Map(map) => {
            out.push_str("{\n");
            print_entries(map, out)?;
            out.push('}');
        }
    }
    Some(())
}

/// Equal trees, positions aside.
fn same_map(a: &Map, b: &Map) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|(x, y)| x.key == y.key && same_value(&x.value.value, &y.value.value))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(&p.value, &q.value))
        }
        (Value::Map(x), Value::Map(y)) => same_map(x, y),
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}
