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
