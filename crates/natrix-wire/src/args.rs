//! Argument splitting and size parsing exactly as nats-server's `processPub`/`splitArg` and
//! `parseSize` do them.

/// Splits `arg` into at most `N` tokens separated by spaces and tabs (and, when `crlf_sep`,
/// also `\r` and `\n`, as nats-server's `splitArg` for SUB/UNSUB). Returns the tokens' ranges
/// and their count; a count of `N + 1` means "more than `N`" (splitting stopped there).
#[inline]
pub(crate) fn split_args<const N: usize>(
    arg: &[u8],
    crlf_sep: bool,
) -> ([(usize, usize); N], usize) {
    // Every separator is <= b' ', so the common byte of a token costs one comparison.
    let is_sep =
        |b: u8| b <= b' ' && (b == b' ' || b == b'\t' || (crlf_sep && (b == b'\r' || b == b'\n')));
    let mut tokens = [(0usize, 0usize); N];
    let mut count = 0;
    let mut i = 0;
    let n = arg.len();
    loop {
        while i < n && is_sep(arg[i]) {
            i += 1;
        }
        if i == n {
            return (tokens, count);
        }
        let start = i;
        while i < n && !is_sep(arg[i]) {
            i += 1;
        }
        if count == N {
            return (tokens, N + 1);
        }
        tokens[count] = (start, i);
        count += 1;
    }
}

/// nats-server's `parseSize`: 1 to 9 ASCII digits, nothing else (no sign, no spaces).
#[inline]
pub(crate) fn parse_size(digits: &[u8]) -> Option<usize> {
    const MAX_DIGITS: usize = 9;
    if digits.is_empty() || digits.len() > MAX_DIGITS {
        return None;
    }
    let mut n = 0usize;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(d - b'0');
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pub_args_split_on_spaces_and_tabs_only() {
        let (t, n) = split_args::<3>(b"  foo\t\tbar  5 ", false);
        assert_eq!(n, 3);
        assert_eq!(t, [(2, 5), (7, 10), (12, 13)]);
        let (_, n) = split_args::<3>(b"foo\r 5", false);
        assert_eq!(n, 2);
    }

    #[test]
    fn sub_args_also_split_on_cr_and_lf() {
        let (t, n) = split_args::<3>(b"foo\r1", true);
        assert_eq!(n, 2);
        assert_eq!(t[..2], [(0, 3), (4, 5)]);
    }

    #[test]
    fn too_many_tokens_are_reported_as_n_plus_one() {
        assert_eq!(split_args::<2>(b"a b c", false).1, 3);
        assert_eq!(split_args::<2>(b"a b c d e", false).1, 3);
        assert_eq!(split_args::<2>(b"", false).1, 0);
    }

    #[test]
    fn sizes_are_one_to_nine_plain_digits() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"000000002"), Some(2));
        assert_eq!(parse_size(b"999999999"), Some(999_999_999));
        assert_eq!(parse_size(b"0000000002"), None);
        assert_eq!(parse_size(b""), None);
        assert_eq!(parse_size(b"-1"), None);
        assert_eq!(parse_size(b"+2"), None);
        assert_eq!(parse_size(b"1a"), None);
    }
}
