use std::path::Path;

use proptest::prelude::*;

use super::*;

fn loader() -> Loader {
    Loader::with_env(|name| match name {
        "NATRIX_TEST_PORT" => Some("4333".into()),
        "NATRIX_TEST_NAME" => Some("from-env".into()),
        "NATRIX_TEST_LIST" => Some("[a, b]".into()),
        "NATRIX_TEST_WORDS" => Some("hello world".into()),
        "NATRIX_TEST_LOOP" => Some("$NATRIX_TEST_LOOP".into()),
        "NATRIX_TEST_DEEP" => Some(format!("{}{}", "[".repeat(10), "]".repeat(10))),
        _ => None,
    })
}

fn parse(text: &str) -> Map {
    match loader().parse_str(text, "test.conf", None) {
        Ok(map) => map,
        Err(err) => panic!("unexpected error: {err}"),
    }
}

fn parse_err(text: &str) -> ConfError {
    match loader().parse_str(text, "test.conf", None) {
        Ok(map) => panic!("expected an error, got {map:?}"),
        Err(err) => err,
    }
}

fn get<'m>(map: &'m Map, key: &str) -> &'m Value {
    match map.get(key) {
        Some(entry) => &entry.value.value,
        None => panic!("no key {key} in {map:?}"),
    }
}

fn sub<'m>(map: &'m Map, key: &str) -> &'m Map {
    match get(map, key) {
        Value::Map(m) => m,
        other => panic!("{key} is not a map: {other:?}"),
    }
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

#[test]
fn all_three_key_separators_assign_values() {
    let map = parse("a: 1\nb = 2\nc 3\n");
    assert_eq!(get(&map, "a"), &Value::Int(1));
    assert_eq!(get(&map, "b"), &Value::Int(2));
    assert_eq!(get(&map, "c"), &Value::Int(3));
}

#[test]
fn keys_keep_file_order_and_positions() {
    let map = parse("# header\nzeta: 1\n  alpha: 2\n");
    let keys: Vec<_> = map.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["zeta", "alpha"]);
    let alpha = map.get("alpha").unwrap();
    assert_eq!((alpha.key_pos.line, alpha.key_pos.col), (3, 3));
    assert_eq!((alpha.value.pos.line, alpha.value.pos.col), (3, 10));
    assert_eq!(&*alpha.key_pos.file, "test.conf");
}

#[test]
fn the_last_assignment_of_a_key_wins() {
    let map = parse("port: 1\nport: 2\n");
    assert_eq!(map.len(), 1);
    assert_eq!(get(&map, "port"), &Value::Int(2));
}

#[test]
fn blocks_parse_with_and_without_separator_and_on_the_next_line() {
    let map = parse(
        "cluster {\n  name: c1\n}\nhttp: { port: 1 }\nleaf = {a: 1; b: 2, c: 3}\nx\n{\n y: 1\n}\n",
    );
    assert_eq!(get(sub(&map, "cluster"), "name"), &s("c1"));
    assert_eq!(get(sub(&map, "http"), "port"), &Value::Int(1));
    let leaf = sub(&map, "leaf");
    assert_eq!(leaf.len(), 3);
    assert_eq!(get(sub(&map, "x"), "y"), &Value::Int(1));
}

#[test]
fn arrays_accept_commas_new_lines_comments_and_a_trailing_comma() {
    let map = parse(
        "routes = [\n  nats://a:1 # first\n  nats://b:2, \"nats://c:3\",\n  // last\n]\nempty: []\n",
    );
    let Value::Array(items) = get(&map, "routes") else {
        panic!("not an array")
    };
    let values: Vec<_> = items.iter().map(|i| i.value.clone()).collect();
    assert_eq!(values, [s("nats://a:1"), s("nats://b:2"), s("nats://c:3")]);
    assert_eq!(items[1].pos.line, 3);
    assert_eq!(get(&map, "empty"), &Value::Array(vec![]));
}

#[test]
fn arrays_hold_maps_and_nested_arrays() {
    let map = parse("users = [ {user: a, password: b}, {user: c} ]\nm = [[1, 2], [3]]\n");
    let Value::Array(users) = get(&map, "users") else {
        panic!("not an array")
    };
    assert_eq!(users.len(), 2);
    let Value::Map(first) = &users[0].value else {
        panic!("not a map")
    };
    assert_eq!(get(first, "password"), &s("b"));
}

#[test]
fn comments_of_both_kinds_are_ignored_but_urls_keep_their_slashes() {
    let map = parse("# hash\n// slashes\nurl: nats://host:4222 // trailing\nname: x # trailing\n");
    assert_eq!(get(&map, "url"), &s("nats://host:4222"));
    assert_eq!(get(&map, "name"), &s("x"));
}

#[test]
fn quoted_strings_handle_escapes_and_single_quotes_are_raw() {
    let map = parse(
        r#"a: "tab\there \"q\" \x41 back\\slash"
b: 'raw \t $NOPE'
c: "with # hash and // slashes"
d: "$NOT_A_VARIABLE"
"#,
    );
    assert_eq!(get(&map, "a"), &s("tab\there \"q\" A back\\slash"));
    assert_eq!(get(&map, "b"), &s("raw \\t $NOPE"));
    assert_eq!(get(&map, "c"), &s("with # hash and // slashes"));
    assert_eq!(get(&map, "d"), &s("$NOT_A_VARIABLE"));
}

#[test]
fn bad_escapes_are_errors() {
    let err = parse_err("a: \"bad \\q\"\n");
    assert!(err.to_string().starts_with("test.conf:1:"), "{err}");
    assert!(
        err.to_string().contains("invalid escape character"),
        "{err}"
    );
}

#[test]
fn block_strings_run_until_a_closing_paren_on_its_own_line() {
    let map = parse("text: (\nline one (x)\nline two\n)\nafter: 1\n");
    assert_eq!(get(&map, "text"), &s("\nline one (x)\nline two"));
    assert_eq!(get(&map, "after"), &Value::Int(1));
}

#[test]
fn integers_take_nats_server_size_suffixes() {
    let map = parse(
        "a: 1k\nb: 1KB\nc: 1M\nd: 1mb\ne: 1G\nf: 1gb\ng: 1T\nh: 1tb\ni: 1P\nj: 1PB\nk: 1E\nl: 1EB\nm: 64KB\nn: -1\no: 2m\n",
    );
    let expect = [
        ("a", 1_000),
        ("b", 1024),
        ("c", 1_000_000),
        ("d", 1 << 20),
        ("e", 1_000_000_000),
        ("f", 1 << 30),
        ("g", 1_000_000_000_000),
        ("h", 1 << 40),
        ("i", 1_000_000_000_000_000),
        ("j", 1 << 50),
        ("k", 1_000_000_000_000_000_000),
        ("l", 1 << 60),
        ("m", 65_536),
        ("n", -1),
        // As in nats-server: a bare `2m` is two million, not two minutes.
        ("o", 2_000_000),
    ];
    for (key, value) in expect {
        assert_eq!(get(&map, key), &Value::Int(value), "{key}");
    }
}

#[test]
fn integers_that_overflow_are_errors_naming_the_position() {
    let err = parse_err("a: 1\nb: 100EB\n");
    assert!(
        matches!(err, ConfError::IntegerOutOfRange { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "test.conf:2:4: integer '100EB' is out of range"
    );
    assert!(matches!(
        parse_err("a: 99999999999999999999\n"),
        ConfError::IntegerOutOfRange { .. }
    ));
}

#[test]
fn floats_booleans_and_words_that_start_with_digits() {
    let map = parse(
        "f: 0.5\nnf: -2.25\nt: true\ny: YES\no: on\nfa: False\nn: no\noff: off\nd: 500ms\nhm: 1h30m\nip: 127.0.0.1:4222\nv: 1.2.3\n",
    );
    assert_eq!(get(&map, "f"), &Value::Float(0.5));
    assert_eq!(get(&map, "nf"), &Value::Float(-2.25));
    for key in ["t", "y", "o"] {
        assert_eq!(get(&map, key), &Value::Bool(true), "{key}");
    }
    for key in ["fa", "n", "off"] {
        assert_eq!(get(&map, key), &Value::Bool(false), "{key}");
    }
    assert_eq!(get(&map, "d"), &s("500ms"));
    assert_eq!(get(&map, "hm"), &s("1h30m"));
    assert_eq!(get(&map, "ip"), &s("127.0.0.1:4222"));
    assert_eq!(get(&map, "v"), &s("1.2.3"));
}

#[test]
fn semicolons_and_commas_separate_top_level_values() {
    let map = parse("port: 4222; debug: true, name: x\n");
    assert_eq!(map.len(), 3);
    assert_eq!(get(&map, "debug"), &Value::Bool(true));
}

#[test]
fn two_values_on_one_line_without_separator_are_an_error() {
    let err = parse_err("port: 4222 debug: true\n");
    assert!(err.to_string().starts_with("test.conf:1:12: "), "{err}");
}

#[test]
fn a_file_wrapped_in_braces_is_accepted() {
    let map = parse("{\n  port: 1\n}\n");
    assert_eq!(get(&map, "port"), &Value::Int(1));
}

#[test]
fn variables_resolve_from_enclosing_blocks_and_are_marked_used() {
    let map = parse("PORT = 4333\nport: $PORT\ncluster {\n  CP = 6333\n  port: $CP\n}\n");
    assert_eq!(get(&map, "port"), &Value::Int(4333));
    assert!(map.get("PORT").unwrap().is_used_variable());
    assert!(!map.get("port").unwrap().is_used_variable());
    let cluster = sub(&map, "cluster");
    assert_eq!(get(cluster, "port"), &Value::Int(6333));
    assert!(cluster.get("CP").unwrap().is_used_variable());
}

#[test]
fn variables_defined_later_are_not_visible() {
    let err = parse_err("port: $LATER\nLATER = 1\n");
    assert_eq!(
        err.to_string(),
        "test.conf:1:7: variable reference for 'LATER' can not be found"
    );
}

#[test]
fn variables_from_an_outer_block_are_visible_inside_inner_blocks() {
    let map = parse("NAME = outer\na { b { c: $NAME } }\n");
    assert_eq!(get(sub(sub(&map, "a"), "b"), "c"), &s("outer"));
}

#[test]
fn variable_values_take_the_position_of_the_reference() {
    let map = parse("V = 1\n\n  x: $V\n");
    let x = map.get("x").unwrap();
    assert_eq!((x.value.pos.line, x.value.pos.col), (3, 6));
}

#[test]
fn environment_variables_are_parsed_as_values() {
    let map = parse(
        "port: $NATRIX_TEST_PORT\nname: $NATRIX_TEST_NAME\nlist: $NATRIX_TEST_LIST\nw: $NATRIX_TEST_WORDS\n",
    );
    assert_eq!(get(&map, "port"), &Value::Int(4333));
    assert_eq!(get(&map, "name"), &s("from-env"));
    assert_eq!(
        get(&map, "list"),
        &Value::Array(vec![]).clone_like(&[s("a"), s("b")])
    );
    assert_eq!(get(&map, "w"), &s("hello world"));
}

#[test]
fn a_self_referencing_environment_variable_is_an_error_not_a_hang() {
    let err = parse_err("x: $NATRIX_TEST_LOOP\n");
    assert!(matches!(err, ConfError::VariableTooDeep { .. }), "{err:?}");
}

#[test]
fn unknown_variables_are_errors_naming_file_line_and_column() {
    let err = parse_err("a: 1\n  b: $NOPE_NOT_SET\n");
    assert!(matches!(err, ConfError::UndefinedVariable { .. }));
    assert_eq!(
        err.to_string(),
        "test.conf:2:6: variable reference for 'NOPE_NOT_SET' can not be found"
    );
}

#[test]
fn bcrypt_hashes_stay_strings() {
    let map = parse("password: $2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG\n");
    assert_eq!(
        get(&map, "password"),
        &s("$2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG")
    );
}

#[test]
fn unclosed_blocks_arrays_and_strings_are_errors() {
    let err = parse_err("port: 1\ncluster {\n  name: x\n");
    assert!(
        err.to_string().contains("unexpected EOF processing map"),
        "{err}"
    );
    assert!(err.to_string().starts_with("test.conf:4:"), "{err}");
    assert!(
        parse_err("a: [1, 2\n")
            .to_string()
            .contains("unexpected EOF processing array")
    );
    assert_eq!(
        parse_err("a: 1\nb: \"open\n").to_string(),
        "test.conf:2:4: unexpected EOF in quoted string"
    );
    assert!(
        parse_err("a: 'open\n")
            .to_string()
            .contains("unexpected EOF in quoted string")
    );
}

#[test]
fn a_key_without_a_value_is_an_error() {
    assert!(
        parse_err("port:\n")
            .to_string()
            .contains("expected a value for \"port\"")
    );
    assert!(
        parse_err("port")
            .to_string()
            .contains("expected a value for \"port\"")
    );
    assert!(
        parse_err(": 1\n")
            .to_string()
            .contains("unexpected key separator")
    );
    assert!(
        parse_err("a: [1,,2]\n")
            .to_string()
            .contains("unexpected array value terminator")
    );
    assert!(parse_err("}\n").to_string().contains("unexpected '}'"));
}

#[test]
fn nesting_is_bounded() {
    let deep = format!(
        "a: {}{}\n",
        "[".repeat(MAX_NESTING + 1),
        "]".repeat(MAX_NESTING + 1)
    );
    assert!(matches!(parse_err(&deep), ConfError::NestingTooDeep { .. }));
    let ok = format!(
        "a: {}{}\n",
        "[".repeat(MAX_NESTING),
        "]".repeat(MAX_NESTING)
    );
    parse(&ok);
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn includes_are_relative_to_the_including_file_and_nest() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "main.conf",
        "port: 1\ninclude ./sub/a.conf\ncluster {\n  include 'sub/c.conf'\n}\n",
    );
    write(
        dir.path(),
        "sub/a.conf",
        "name: from-a\ninclude \"b.conf\" # relative to sub/\n",
    );
    write(dir.path(), "sub/b.conf", "debug: true\n");
    write(dir.path(), "sub/c.conf", "name: c1; port: 6222\n");
    let map = loader().parse_file(&main).unwrap();
    assert_eq!(get(&map, "name"), &s("from-a"));
    assert_eq!(get(&map, "debug"), &Value::Bool(true));
    assert_eq!(get(sub(&map, "cluster"), "port"), &Value::Int(6222));
    let debug = map.get("debug").unwrap();
    assert!(debug.key_pos.file.ends_with("b.conf"), "{}", debug.key_pos);
    assert_eq!(debug.key_pos.line, 1);
}

#[test]
fn a_missing_include_names_the_including_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "main.conf", "port: 1\ninclude ./nope.conf\n");
    let err = loader().parse_file(&main).unwrap_err();
    assert!(matches!(err, ConfError::Include { .. }));
    let text = err.to_string();
    assert!(
        text.contains("main.conf:2:1: error parsing include file './nope.conf'"),
        "{text}"
    );
}

#[test]
fn include_cycles_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "main.conf", "include ./a.conf\n");
    write(dir.path(), "a.conf", "x: 1\ninclude ./b.conf\n");
    write(dir.path(), "b.conf", "include ./a.conf\n");
    let err = loader().parse_file(&main).unwrap_err();
    assert!(matches!(err, ConfError::IncludeCycle { .. }), "{err:?}");
    assert!(
        err.to_string().contains("b.conf:1:1: include cycle"),
        "{err}"
    );

    let selfish = write(dir.path(), "self.conf", "include self.conf\n");
    assert!(matches!(
        loader().parse_file(&selfish),
        Err(ConfError::IncludeCycle { .. })
    ));
}

#[test]
fn errors_inside_an_included_file_name_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "main.conf", "port: 1\ninclude inc.conf\n");
    write(dir.path(), "inc.conf", "a: 1\nb: [\n");
    let err = loader().parse_file(&main).unwrap_err().to_string();
    assert!(err.contains("inc.conf:3:"), "{err}");
}

#[test]
fn include_is_an_ordinary_key_when_followed_by_a_separator() {
    let map = parse("include: yes\n");
    assert_eq!(get(&map, "include"), &Value::Bool(true));
}

// ---- bounds on what variables and includes expand to (found by the config_parser fuzz target's
// review; each crashed the parser before) ----

/// `v0` and `v1 .. v{n-1}`, each an array of two copies of the one before: 2^n strings in
/// a few hundred bytes of text.
fn doubling_variables(n: usize) -> String {
    let mut text = String::from("v0: [\"0123456789abcdef0123456789abcdef\", y]\n");
    for i in 1..n {
        text += &format!("v{i}: [$v{}, $v{}]\n", i - 1, i - 1);
    }
    text
}

#[test]
fn variables_that_double_each_other_are_an_error_not_an_out_of_memory_abort() {
    // 2^40 copies: the parser used to copy every one of them and abort without memory.
    let err = parse_err(&doubling_variables(40));
    assert!(
        matches!(err, ConfError::ExpansionTooLarge { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("variables and includes expand the configuration beyond"),
        "{err}"
    );
    // The bound can be lowered (the fuzz target does).
    let small = loader().with_max_expansion(4096);
    let err = small
        .parse_str(&doubling_variables(8), "small.conf", None)
        .unwrap_err();
    assert!(
        matches!(err, ConfError::ExpansionTooLarge { max: 4096, .. }),
        "{err:?}"
    );
    // A few doublings are an ordinary configuration.
    let map = parse(&doubling_variables(8));
    let Value::Array(items) = get(&map, "v7") else {
        panic!("v7 is not an array");
    };
    assert_eq!(items.len(), 2);
}

#[test]
fn a_variable_can_not_nest_its_value_deeper_than_the_bound() {
    // Each reference used to add up to MAX_NESTING levels, until cloning or dropping the tree
    // overflowed the stack.
    let block = |inner: &str, levels: usize| {
        format!("{}{inner}{}", "{a: ".repeat(levels), "}".repeat(levels))
    };
    let v0 = block("1", MAX_NESTING - 4);
    let ok = format!("v0: {v0}\nv1: {}\n", block("$v0", 4));
    let map = parse(&ok);
    assert!(map.get("v1").is_some());
    let too_deep = format!("v0: {v0}\nv1: {}\n", block("$v0", 5));
    let err = parse_err(&too_deep);
    assert!(matches!(err, ConfError::NestingTooDeep { .. }), "{err:?}");
    assert!(err.to_string().starts_with("test.conf:2:"), "{err}");
}

#[test]
fn an_environment_value_nests_inside_the_blocks_around_its_reference() {
    let inside = |levels: usize| {
        format!(
            "a: {}$NATRIX_TEST_DEEP{}\n",
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    parse(&inside(MAX_NESTING - 10));
    let err = parse_err(&inside(MAX_NESTING - 9));
    assert!(matches!(err, ConfError::NestingTooDeep { .. }), "{err:?}");
}

#[test]
fn an_included_file_nests_inside_the_blocks_around_the_include() {
    let dir = tempfile::tempdir().unwrap();
    let deep = |levels: usize| format!("x: {}1{}\n", "[".repeat(levels), "]".repeat(levels));
    write(dir.path(), "deep.conf", &deep(MAX_NESTING - 2));
    let at = |levels: usize| {
        let open: String = (0..levels).map(|i| format!("b{i} {{ ")).collect();
        format!("{open}include deep.conf\n{}\n", "}".repeat(levels))
    };
    let ok = write(dir.path(), "ok.conf", &at(2));
    loader().parse_file(&ok).unwrap();
    // Includes used to start counting again at zero: 16 includes could nest 16 * 64 deep.
    let too_deep = write(dir.path(), "too-deep.conf", &at(3));
    let err = loader().parse_file(&too_deep).unwrap_err();
    assert!(matches!(err, ConfError::NestingTooDeep { .. }), "{err:?}");
}

#[cfg(target_os = "linux")]
#[test]
fn including_an_endless_file_is_an_error_not_an_out_of_memory_abort() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "main.conf", "include /dev/zero\n");
    let err = loader().parse_file(&main).unwrap_err();
    assert!(
        matches!(err, ConfError::ExpansionTooLarge { .. }),
        "{err:?}"
    );
}

#[test]
fn a_file_with_many_keys_parses_in_linear_time() {
    // Each new key used to be compared with every earlier one: 40,000 keys took 5 s in a
    // release build, 50,000 over five minutes in a debug one. Indexed: a few seconds in debug.
    let text: String = (0..50_000).map(|i| format!("k{i}: {i}\n")).collect();
    let start = std::time::Instant::now();
    let map = parse(&text);
    assert_eq!(map.len(), 50_000);
    assert_eq!(get(&map, "k49999"), &Value::Int(49_999));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_missing_top_level_file_is_an_open_error() {
    let err = loader()
        .parse_file(Path::new("/nonexistent/natrix.conf"))
        .unwrap_err();
    assert!(matches!(err, ConfError::Open { .. }));
    assert!(err.to_string().contains("/nonexistent/natrix.conf"));
}

trait CloneLike {
    fn clone_like(&self, items: &[Value]) -> Value;
}

impl CloneLike for Value {
    /// Builds an array of `items` positioned like the environment parser positions them.
    fn clone_like(&self, items: &[Value]) -> Value {
        let file: std::sync::Arc<str> = std::sync::Arc::from("$NATRIX_TEST_LIST");
        let cols = [2, 5];
        Value::Array(
            items
                .iter()
                .zip(cols)
                .map(|(v, col)| Spanned {
                    value: v.clone(),
                    pos: Pos {
                        file: file.clone(),
                        line: 1,
                        col,
                    },
                })
                .collect(),
        )
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = loader().parse_str(&text, "fuzz.conf", None);
    }

    #[test]
    fn config_like_text_never_panics(text in "[a-z0-9 :=\\[\\]{}(),;#/\"'$\\\\\n.\\-]{0,200}") {
        let _ = loader().parse_str(&text, "fuzz.conf", None);
    }

    #[test]
    fn any_integer_round_trips(n in any::<i64>()) {
        let map = loader().parse_str(&format!("n: {n}\n"), "p.conf", None).unwrap();
        prop_assert_eq!(&map.get("n").unwrap().value.value, &Value::Int(n));
    }
}

// ---- generated configurations: text written in any of the format's styles parses to the tree
// it was written from ----

/// A value without positions, to compare what was written with what was parsed.
#[derive(Debug, Clone, PartialEq)]
enum Plain {
    Bool(bool),
    Int(i64),
    /// Compared bit for bit (`-0.0` stays `-0.0`).
    Float(u64),
    Str(String),
    Array(Vec<Plain>),
    Map(Vec<(String, Plain)>),
}

fn plain(value: &Value) -> Plain {
    match value {
        Value::Bool(b) => Plain::Bool(*b),
        Value::Int(n) => Plain::Int(*n),
        Value::Float(f) => Plain::Float(f.to_bits()),
        Value::String(s) => Plain::Str(s.clone()),
        Value::Array(items) => Plain::Array(items.iter().map(|i| plain(&i.value)).collect()),
        Value::Map(map) => plain_map(map),
    }
}

fn plain_map(map: &Map) -> Plain {
    Plain::Map(
        map.iter()
            .map(|e| (e.key.clone(), plain(&e.value.value)))
            .collect(),
    )
}

/// How one piece of a generated file is written.
#[derive(Debug, Clone)]
struct Written {
    text: String,
    expected: Plain,
}

fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn scalar() -> impl Strategy<Value = Written> {
    let sizes = [
        ("", 1i64),
        ("k", 1_000),
        ("kb", 1 << 10),
        ("KB", 1 << 10),
        ("m", 1_000_000),
        ("MB", 1 << 20),
        ("g", 1_000_000_000),
        ("gb", 1 << 30),
    ];
    prop_oneof![
        any::<i64>().prop_map(|n| Written {
            text: n.to_string(),
            expected: Plain::Int(n),
        }),
        (0i64..1000, 0..sizes.len()).prop_map(move |(n, i)| Written {
            text: format!("{n}{}", sizes[i].0),
            expected: Plain::Int(n * sizes[i].1),
        }),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| {
                let mut text = f.to_string();
                if !text.contains('.') {
                    text.push_str(".0");
                }
                Written {
                    text,
                    expected: Plain::Float(f.to_bits()),
                }
            }),
        (any::<bool>(), 0..3usize).prop_map(|(b, style)| {
            let words = if b {
                ["true", "yes", "on"]
            } else {
                ["false", "no", "off"]
            };
            Written {
                text: words[style].to_string(),
                expected: Plain::Bool(b),
            }
        }),
        "\\PC{0,20}".prop_map(|s| Written {
            text: quoted(&s),
            expected: Plain::Str(s),
        }),
        "[^'\n\r]{0,20}".prop_map(|s| Written {
            text: format!("'{s}'"),
            expected: Plain::Str(s),
        }),
        // Bare words: not a number, a boolean or a variable.
        "[a-z][a-z0-9._-]{0,12}"
            .prop_filter("not a boolean", |s| {
                !["true", "false", "yes", "no", "on", "off"].contains(&s.as_str())
            })
            .prop_map(|s| Written {
                text: s.clone(),
                expected: Plain::Str(s),
            }),
        // Durations and addresses stay strings.
        (1u32..100, prop::sample::select(vec!["ms", "s", "m", "h"])).prop_map(|(n, unit)| {
            let text = if unit == "m" {
                format!("{n}m30s")
            } else {
                format!("{n}{unit}")
            };
            Written {
                expected: Plain::Str(text.clone()),
                text,
            }
        }),
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| {
            let text = format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3]);
            Written {
                expected: Plain::Str(text.clone()),
                text,
            }
        }),
    ]
}

fn key() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,10}"
            .prop_filter("not the include keyword", |k| k != "include")
            .prop_map(|k| (k.clone(), k)),
        "[^\"\n\r]{0,12}".prop_map(|k| (format!("\"{k}\""), k)),
    ]
}

fn entry_end() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "\n",
        ",\n",
        ";\n",
        "; ",
        ", ",
        " # note\n",
        " // note\n",
    ])
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![": ", " = ", " ", ":", "=", "  :  "])
}

fn map_body(
    value: BoxedStrategy<Written>,
) -> impl Strategy<Value = (String, Vec<(String, Plain)>)> {
    prop::collection::vec((key(), separator(), value, entry_end()), 0..5).prop_map(|entries| {
        let mut text = String::new();
        let mut expected: Vec<(String, Plain)> = Vec::new();
        for ((written_key, key), sep, value, end) in entries {
            text += &format!("{written_key}{sep}{}{end}", value.text);
            // A key written twice keeps its first place and its last value.
            match expected.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => *v = value.expected,
                None => expected.push((key, value.expected)),
            }
        }
        (text, expected)
    })
}

fn value() -> BoxedStrategy<Written> {
    scalar()
        .boxed()
        .prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                (
                    prop::collection::vec(inner.clone(), 0..5),
                    prop::sample::select(vec![", ", ",\n", "\n", " , "]),
                    any::<bool>(),
                )
                    .prop_map(|(items, sep, trailing)| {
                        let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
                        let comma = if trailing && !items.is_empty() {
                            ","
                        } else {
                            ""
                        };
                        Written {
                            text: format!("[{}{comma}]", texts.join(sep)),
                            expected: Plain::Array(items.into_iter().map(|i| i.expected).collect()),
                        }
                    }),
                map_body(inner).prop_map(|(body, expected)| Written {
                    text: format!("{{\n{body}\n}}"),
                    expected: Plain::Map(expected),
                }),
            ]
        })
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn generated_configs_parse_to_the_values_they_were_written_from(
        (body, expected) in map_body(value()),
        wrapped in any::<bool>(),
    ) {
        let text = if wrapped { format!("{{\n{body}\n}}\n") } else { body };
        let map = match loader().parse_str(&text, "gen.conf", None) {
            Ok(map) => map,
            Err(err) => return Err(TestCaseError::fail(format!("{err}\n--- text\n{text}"))),
        };
        prop_assert_eq!(plain_map(&map), Plain::Map(expected), "text:\n{}", text);
    }

    #[test]
    fn variables_parse_to_the_value_they_name(
        defined in value(),
        uses in 1usize..4,
    ) {
        let refs: Vec<String> = (0..uses).map(|i| format!("use{i}: $defined")).collect();
        let text = format!("defined: {}\nblock {{\n  {}\n}}\n", defined.text, refs.join("\n  "));
        let map = match loader().parse_str(&text, "gen.conf", None) {
            Ok(map) => map,
            Err(err) => return Err(TestCaseError::fail(format!("{err}\n--- text\n{text}"))),
        };
        prop_assert!(map.get("defined").is_some_and(Entry::is_used_variable));
        for i in 0..uses {
            prop_assert_eq!(plain(get(sub(&map, "block"), &format!("use{i}"))), defined.expected.clone());
        }
    }

    #[test]
    fn generated_duration_strings_read_as_the_duration_written(
        h in 0u64..100, m in 0u64..60, s in 0u64..60, ms in 0u64..1000,
    ) {
        let text = format!("d: {h}h{m}m{s}s{ms}ms\n");
        let map = loader().parse_str(&text, "gen.conf", None).unwrap();
        let expected = std::time::Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms);
        prop_assert_eq!(
            crate::value_as_duration(get(&map, "d")),
            Ok((expected, crate::DurationSource::Text))
        );
    }
}
