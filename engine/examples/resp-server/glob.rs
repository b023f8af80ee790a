//! Redis's glob matching for PSUBSCRIBE patterns (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes),
//! iterative with backtracking on the last `*`, so no pattern recurses or blows up.

/// Whether `text` matches `pattern` as Redis's `stringmatchlen` decides.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((hit, next)) = class(&pattern[p..], text[t]) {
                        if hit {
                            p += next;
                            t += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class at the start of `pat` (`[...]`); returns whether it hit
/// and the class's length, or `None` for an unterminated class (Redis then treats the
/// rest as the class).
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let not = pat.get(1) == Some(&b'^');
    if not {
        i += 1;
    }
    let mut hit = false;
    while i < pat.len() && pat[i] != b']' {
        if pat[i] == b'\\' && i + 1 < pat.len() {
            i += 1;
            hit |= pat[i] == c;
        } else if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
            let (mut lo, mut hi) = (pat[i], pat[i + 2]);
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            hit |= lo <= c && c <= hi;
            i += 2;
        } else {
            hit |= pat[i] == c;
        }
        i += 1;
    }
    let len = if i < pat.len() { i + 1 } else { i };
    Some((hit != not, len))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_cases() {
        assert!(matches(b"news.*", b"news.art"));
        assert!(!matches(b"news.*", b"new.art"));
        assert!(matches(b"h?llo", b"hello"));
        assert!(matches(b"h[ae]llo", b"hallo"));
        assert!(!matches(b"h[ae]llo", b"hillo"));
        assert!(matches(b"h[^e]llo", b"hallo"));
        assert!(!matches(b"h[^e]llo", b"hello"));
        assert!(matches(b"h[a-c]llo", b"hbllo"));
        assert!(matches(b"*", b""));
        assert!(matches(b"a*b*c", b"axxbyyc"));
        assert!(!matches(b"a*b*c", b"axxbyy"));
        assert!(matches(b"a\\*", b"a*"));
        assert!(!matches(b"a\\*", b"ab"));
        // Pathological patterns stay linear-ish: no recursion.
        let text = vec![b'a'; 5000];
        assert!(!matches(b"*a*a*a*a*a*a*b", &text));
    }
}
